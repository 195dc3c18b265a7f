"""The funnel by cohort (contract section 12): for the customers first seen in each month or week, how many
stand on or above each rung now.

A customer's cohort is the UTC month or Monday week of `customers.first_seen_at`, the earliest occurred_at of
any event naming them (the ladder keeps the minimum whatever the order of arrival). Ranges are bounded as the
flows are (`read.flows`: at most 10 years and 5,000 buckets, else InvalidRange), with the same bucket code;
without `since` and with data reaching back further than the bounds allow, the rows start at the earliest
bucket within them (the older cohorts are left out: a share of a cohort has no meaning summed over many).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, text

from services.scoring.domain.state import RANK, STAGES
from services.scoring.read.flows import (
    InvalidRange,
    as_utc,
    bucket_of,
    bucket_starts,
    check_range,
    clipped_start,
)

CohortName = Literal["month", "week"]
REACHED = STAGES[1:]  # every customer stands on potential or above


def _first_seen_within(lo: datetime | None, hi: datetime | None) -> tuple[str, dict[str, object]]:
    """The WHERE clause (and its parameters) of customers first seen in [lo, hi); None = unbounded."""
    where: list[str] = ["true"]
    params: dict[str, object] = {}
    if lo is not None:
        where.append("first_seen_at >= :since")
        params["since"] = lo
    if hi is not None:
        where.append("first_seen_at < :until")
        params["until"] = hi
    return " AND ".join(where), params


def _window(
    engine: Engine,
    cohort: str,
    lo: datetime | None,
    hi: datetime | None,
) -> tuple[datetime | None, datetime | None]:
    if lo is not None and hi is not None:
        return lo, hi
    where, params = _first_seen_within(lo, hi)
    with engine.connect() as conn:
        row = conn.execute(
            text(f"SELECT min(first_seen_at) AS lo, max(first_seen_at) AS hi FROM customers WHERE {where}"), params
        ).one()
    if row.lo is None:
        return lo, hi
    end = hi if hi is not None else row.hi + timedelta(microseconds=1)
    if lo is not None:
        check_range(lo, end, cohort)
        return lo, hi
    try:
        check_range(row.lo, end, cohort)
        return None, hi
    except InvalidRange:
        return clipped_start(end, cohort), hi


def funnel(engine: Engine, *, cohort: str, since: datetime | None, until: datetime | None) -> dict[str, object]:
    """The GET /v1/funnel body; moments without an offset are UTC. Raises InvalidRange as flows do."""
    lo, hi = as_utc(since), as_utc(until)
    if lo is not None and hi is not None:
        check_range(lo, hi, cohort)
    lo, hi = _window(engine, cohort, lo, hi)
    where, params = _first_seen_within(lo, hi)
    params["cohort"] = cohort
    reached = ", ".join(f"count(*) FILTER (WHERE stage_rank >= {RANK[r]}) AS {r}" for r in REACHED)
    sql = (
        f"SELECT date_trunc(:cohort, first_seen_at AT TIME ZONE 'UTC') AS start, count(*) AS n, {reached} "
        f"FROM customers WHERE {where} GROUP BY 1"
    )
    with engine.connect() as conn:
        found: dict[date, dict[str, int]] = {
            row.start.date(): {"customers": int(row.n), **{r: int(getattr(row, r)) for r in REACHED}}
            for row in conn.execute(text(sql), params)
        }
    if not found and (lo is None or hi is None):
        return {"cohort": cohort, "rows": []}
    first = bucket_of(lo, cohort) if lo is not None else min(found)
    last = bucket_of(hi - timedelta(microseconds=1), cohort) if hi is not None else max(found)
    empty = {"customers": 0, **dict.fromkeys(REACHED, 0)}
    rows = []
    for start in bucket_starts(first, last, cohort):
        counts = found.get(start, empty)
        rows.append(
            {"start": start.isoformat(), "customers": counts["customers"], "reached": {r: counts[r] for r in REACHED}}
        )
    return {"cohort": cohort, "rows": rows}
