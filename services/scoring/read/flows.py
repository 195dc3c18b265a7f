"""Flows: how many customers entered each rung per UTC day, Monday week or month.

Bounds (contract section 15): a range covers at most MAX_YEARS years and MAX_BUCKETS buckets. A range the
client gives in full is checked before any query. A missing end comes from the data: without `until` the
series ends with the last entry; without `since` it starts with the first entry, or, when the entries reach
further back than the bounds allow, at the earliest bucket within them, and the entries before that bucket
are counted in `earlier` (so that the buckets plus `earlier` still add up to every customer who reached a
rung). One event dated in year 1 thus neither breaks nor stretches everybody's chart.

Nobody enters `potential` by a stage change (every customer starts there), so its entries are the customers
first seen in each bucket (`customers.first_seen_at`, the earliest occurred_at of any event naming them); the
sum over the buckets is then every customer, as for the other rungs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, Engine, text

from services.scoring.domain.state import STAGES

BucketName = Literal["day", "week", "month"]
# rungs a customer enters by a stage change: nobody enters `potential` that way, they start there
ENTERED_RUNGS = STAGES[1:]
FLOW_RUNGS = STAGES
MAX_BUCKETS = 5_000
MAX_YEARS = 10
_ENTERED = "to_stage <> 'potential'"


class InvalidRange(ValueError):
    """A since/until/bucket combination that has no series: empty, reversed, out of bounds or out of range."""


def bucket_of(moment: datetime, bucket: str) -> date:
    """The first day (UTC) of the bucket holding `moment`; weeks start on Monday, as date_trunc('week')."""
    day = moment.astimezone(UTC).date()
    if bucket == "day":
        return day
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_bucket(start: date, bucket: str) -> date:
    """The first day of the bucket after the one starting on `start`."""
    if bucket == "day":
        return start + timedelta(days=1)
    if bucket == "week":
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def bucket_count(first: date, last: date, bucket: str) -> int:
    """How many buckets from the one starting on `first` to the one starting on `last`, both included."""
    if last < first:
        return 0
    if bucket == "day":
        return (last - first).days + 1
    if bucket == "week":
        return (last - first).days // 7 + 1
    return (last.year - first.year) * 12 + last.month - first.month + 1


def bucket_starts(first: date, last: date, bucket: str) -> list[date]:
    """Every bucket start from `first` to `last`, both included; raises InvalidRange past MAX_BUCKETS."""
    if bucket_count(first, last, bucket) > MAX_BUCKETS:
        raise InvalidRange(f"more than {MAX_BUCKETS} {bucket} buckets; use a longer bucket or a shorter range")
    starts: list[date] = []
    current = first
    while current <= last:
        starts.append(current)
        if current == last:
            break  # the next start may lie past date.max
        current = next_bucket(current, bucket)
    return starts


def earliest_since(until: datetime) -> datetime:
    """The earliest start a range ending at `until` may have: MAX_YEARS calendar years before (29 February
    counts from the 28th)."""
    if until.year <= MAX_YEARS:
        return datetime.min.replace(tzinfo=UTC)
    try:
        return until.replace(year=until.year - MAX_YEARS)
    except ValueError:
        return until.replace(year=until.year - MAX_YEARS, day=28)


def check_range(lo: datetime, hi: datetime, bucket: str) -> None:
    """Raises InvalidRange unless [lo, hi) is non-empty, at most MAX_YEARS long and at most MAX_BUCKETS buckets."""
    if lo >= hi:
        raise InvalidRange("since must be before until")
    if lo < earliest_since(hi):
        raise InvalidRange(f"the range is longer than {MAX_YEARS} years")
    if bucket_count(bucket_of(lo, bucket), bucket_of(hi - timedelta(microseconds=1), bucket), bucket) > MAX_BUCKETS:
        raise InvalidRange(f"more than {MAX_BUCKETS} {bucket} buckets; use a longer bucket or a shorter range")


def flow_series(
    counts: dict[tuple[date, str], int], *, bucket: str, since: datetime | None, until: datetime | None
) -> list[dict[str, object]]:
    """Buckets in time order with every rung's entries, empty buckets included.

    The series covers the bucket of `since` (else of the first entry) to the bucket of the last instant before
    `until` (else of the last entry), so a chart's x axis is evenly spaced and an empty week shows as zero.
    """
    data_starts = sorted({start for start, _ in counts})
    first = bucket_of(since, bucket) if since is not None else (data_starts[0] if data_starts else None)
    last = (
        bucket_of(until - timedelta(microseconds=1), bucket)
        if until is not None
        else (data_starts[-1] if data_starts else None)
    )
    if first is None or last is None:
        return []
    return [
        {"start": start.isoformat(), "entered": {r: counts.get((start, r), 0) for r in FLOW_RUNGS}}
        for start in bucket_starts(first, last, bucket)
    ]


def as_utc(moment: datetime | None) -> datetime | None:
    """`moment` in UTC; a moment without an offset is read as UTC. Raises InvalidRange when the UTC moment is
    outside the years 1-9999 (0001-01-01T00:00:00+14:00 is still year 0 in UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidRange(f"{moment.isoformat()} is outside the years 1-9999 in UTC") from None


@dataclass(frozen=True)
class Window:
    """What one flows answer covers: [lo, hi) (None = open on that side, up to the data) and whether the
    entries before `lo` are to be counted apart (`lo` was set by the bounds, not by the client)."""

    lo: datetime | None
    hi: datetime | None
    clipped: bool = False


def _where(lo: datetime | None, hi: datetime | None, column: str = "occurred_at") -> tuple[str, dict[str, object]]:
    where: list[str] = [_ENTERED if column == "occurred_at" else "true"]
    params: dict[str, object] = {}
    if lo is not None:
        where.append(f"{column} >= :since")
        params["since"] = lo
    if hi is not None:
        where.append(f"{column} < :until")
        params["until"] = hi
    return " AND ".join(where), params


def clipped_start(end: datetime, bucket: str) -> datetime:
    """The start of the earliest whole bucket that keeps [start, end) within both bounds."""
    last = bucket_of(end - timedelta(microseconds=1), bucket)
    start = bucket_of(earliest_since(end), bucket)
    if datetime(start.year, start.month, start.day, tzinfo=UTC) < earliest_since(end):
        start = next_bucket(start, bucket)
    while bucket_count(start, last, bucket) > MAX_BUCKETS:
        start = next_bucket(start, bucket)
    return datetime(start.year, start.month, start.day, tzinfo=UTC)


def resolve_window(conn: Connection, *, bucket: str, since: datetime | None, until: datetime | None) -> Window:
    """The window of an answer: the client's range (checked already) or, with an end missing, the data's
    (two index lookups), within the bounds. Raises InvalidRange when the client's `since` is too far back."""
    if since is not None and until is not None:
        return Window(since, until)
    where, params = _where(since, until)
    seen, _ = _where(since, until, "first_seen_at")
    row = conn.execute(
        text(
            f"SELECT min(lo) AS lo, max(hi) AS hi FROM ("
            f"SELECT min(occurred_at) AS lo, max(occurred_at) AS hi FROM stage_history WHERE {where} UNION ALL "
            f"SELECT min(first_seen_at), max(first_seen_at) FROM customers WHERE {seen}) AS ends"
        ),
        params,
    ).one()
    if row.lo is None:
        return Window(since, until)
    end = until if until is not None else row.hi + timedelta(microseconds=1)
    if since is not None:
        check_range(since, end, bucket)  # the client asked for that start: say why it cannot be had
        return Window(since, until)
    first = row.lo
    try:
        check_range(first, end, bucket)
        return Window(None, until)
    except InvalidRange:
        pass
    return Window(clipped_start(end, bucket), until, clipped=True)


def load_flows(
    conn: Connection, *, bucket: str, since: datetime | None, until: datetime | None
) -> dict[tuple[date, str], int]:
    """Entries per (bucket start, rung) from stage_history, by occurred_at of the cause, in UTC."""
    where, params = _where(since, until)
    params["bucket"] = bucket
    # AT TIME ZONE 'UTC' first: the buckets are UTC days whatever the session's TimeZone is
    sql = (
        "SELECT date_trunc(:bucket, occurred_at AT TIME ZONE 'UTC') AS start, to_stage, count(*) AS n "
        f"FROM stage_history WHERE {where} GROUP BY 1, 2"
    )
    counts = {(row.start.date(), row.to_stage): int(row.n) for row in conn.execute(text(sql), params)}
    seen, params = _where(since, until, "first_seen_at")
    params["bucket"] = bucket
    sql = (
        "SELECT date_trunc(:bucket, first_seen_at AT TIME ZONE 'UTC') AS start, count(*) AS n "
        f"FROM customers WHERE {seen} GROUP BY 1"
    )
    counts.update(((row.start.date(), "potential"), int(row.n)) for row in conn.execute(text(sql), params))
    return counts


def load_earlier(conn: Connection, *, before: datetime) -> dict[str, int]:
    """Entries per rung dated before `before`."""
    rows = conn.execute(
        text(
            f"SELECT to_stage, count(*) AS n FROM stage_history WHERE {_ENTERED} "
            "AND occurred_at < :before GROUP BY to_stage"
        ),
        {"before": before},
    )
    counts = {row.to_stage: int(row.n) for row in rows}
    counts["potential"] = conn.execute(
        text("SELECT count(*) FROM customers WHERE first_seen_at < :before"), {"before": before}
    ).scalar_one()
    return {r: counts.get(r, 0) for r in FLOW_RUNGS}


def flows(engine: Engine, *, bucket: str, since: datetime | None, until: datetime | None) -> dict[str, object]:
    """The GET /v1/flows body; moments without an offset are UTC. Raises InvalidRange for a range with no series
    or out of bounds; a range given in full is checked before any query."""
    lo, hi = as_utc(since), as_utc(until)
    if lo is not None and hi is not None:
        check_range(lo, hi, bucket)
    with engine.connect() as conn:
        window = resolve_window(conn, bucket=bucket, since=lo, until=hi)
        counts = load_flows(conn, bucket=bucket, since=window.lo, until=window.hi)
        earlier = load_earlier(conn, before=window.lo) if window.clipped and window.lo is not None else None
    body: dict[str, object] = {
        "bucket": bucket,
        "series": flow_series(counts, bucket=bucket, since=window.lo, until=window.hi),
    }
    if earlier is not None:
        body["earlier"] = earlier
    return body
