"""Flows: how many customers entered each rung per UTC day, Monday week or month."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, text

from services.scoring.domain.state import STAGES

BucketName = Literal["day", "week", "month"]
# rungs a customer can enter: nobody ever enters `potential`, they start there
ENTERED_RUNGS = STAGES[1:]
MAX_BUCKETS = 10_000


class InvalidRange(ValueError):
    """A since/until/bucket combination that has no series: empty, reversed, or too many buckets."""


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


def bucket_starts(first: date, last: date, bucket: str) -> list[date]:
    """Every bucket start from `first` to `last`, both included; raises InvalidRange past MAX_BUCKETS."""
    starts: list[date] = []
    current = first
    while current <= last:
        if len(starts) >= MAX_BUCKETS:
            raise InvalidRange(f"more than {MAX_BUCKETS} {bucket} buckets; use a longer bucket or a shorter range")
        starts.append(current)
        current = next_bucket(current, bucket)
    return starts


def flow_series(counts: dict[tuple[date, str], int], *, bucket: str, since: datetime | None,
                until: datetime | None) -> list[dict[str, object]]:
    """Buckets in time order with every rung's entries, empty buckets included.

    The series covers the bucket of `since` (else of the first entry) to the bucket of the last instant before
    `until` (else of the last entry), so a chart's x axis is evenly spaced and an empty week shows as zero.
    """
    data_starts = sorted({start for start, _ in counts})
    first = bucket_of(since, bucket) if since is not None else (data_starts[0] if data_starts else None)
    last = (bucket_of(until - timedelta(microseconds=1), bucket) if until is not None
            else (data_starts[-1] if data_starts else None))
    if first is None or last is None:
        return []
    return [{"start": start.isoformat(), "entered": {r: counts.get((start, r), 0) for r in ENTERED_RUNGS}}
            for start in bucket_starts(first, last, bucket)]


def as_utc(moment: datetime | None) -> datetime | None:
    """`moment` in UTC; a moment without an offset is read as UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def load_flows(engine: Engine, *, bucket: str, since: datetime | None,
               until: datetime | None) -> dict[tuple[date, str], int]:
    """Entries per (bucket start, rung) from stage_history, by occurred_at of the cause, in UTC."""
    where, params = ["to_stage <> 'potential'"], {"bucket": bucket}
    if since is not None:
        where.append("occurred_at >= :since")
        params["since"] = since  # type: ignore[assignment]
    if until is not None:
        where.append("occurred_at < :until")
        params["until"] = until  # type: ignore[assignment]
    # AT TIME ZONE 'UTC' first: the buckets are UTC days whatever the session's TimeZone is
    sql = ("SELECT date_trunc(:bucket, occurred_at AT TIME ZONE 'UTC') AS start, to_stage, count(*) AS n "
           f"FROM stage_history WHERE {' AND '.join(where)} GROUP BY 1, 2")
    with engine.connect() as conn:
        return {(row.start.date(), row.to_stage): int(row.n) for row in conn.execute(text(sql), params)}


def flows(engine: Engine, *, bucket: str, since: datetime | None, until: datetime | None) -> dict[str, object]:
    """The GET /v1/flows body; moments without an offset are UTC. Raises InvalidRange for a range with no series.

    A reversed range is refused before the query; a range with too many buckets only after it, since without
    `since` or `until` the data decides where the series starts or ends.
    """
    lo, hi = as_utc(since), as_utc(until)
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidRange("since must be before until")
    counts = load_flows(engine, bucket=bucket, since=lo, until=hi)
    return {"bucket": bucket, "series": flow_series(counts, bucket=bucket, since=lo, until=hi)}
