"""The time-driven part of health: customers whose P(alive) has fallen below the threshold with no event, and
customers whose health was computed under another model version than the one in force.

    scan   rows with `health_due_at <= now`       (index on health_due_at: the cost is the customers due)
    sweep  rows with another `health_model_version` (index on it: the cost is the customers not yet redone)

Each pass takes at most `batch` rows with FOR UPDATE SKIP LOCKED, assesses them as the scoring transaction
does (`marks.assess`), writes their health and the messages of their status changes to the outbox, and commits:
a pass is all or nothing, and a kill -9 at any moment loses and doubles nothing (the next pass takes the same
rows again, since what selects them is what the pass changes). Passes repeat until one comes back short.

A row whose status changes gets a new `version`, so a scoring instance holding the row's state in its cache
fails its compare-and-set and reads the row again; a row whose status stays the same keeps its version (its
state is untouched), so the sweep after a refit does not make every cached customer conflict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from services.scoring.health.marks import HealthContext, HealthMark, assess
from services.scoring.unit_of_work import run_sql, session
from shared.adapters.pgarrays import BigIntArray, BytesArray, DoubleArray, TextArray
from shared.faults import Faults

_SELECT = """
    SELECT customer_id, stage, order_day_count, order_first_day, order_last_day, last_order_at, health_status,
           health_transitions, at_risk_since
    FROM customers
    WHERE {where}
    ORDER BY {order}
    LIMIT %(limit)b::integer
    FOR UPDATE SKIP LOCKED
"""
_DUE = _SELECT.format(where="health_due_at <= %(now)b::timestamptz", order="health_due_at")
# both sides of `<>` spelled out, so each is a range of the index on the version
_STALE = _SELECT.format(
    where="(health_model_version < %(version)b::integer OR health_model_version > %(version)b::integer)",
    order="health_model_version",
)

_UPDATE = """
    UPDATE customers AS c SET
        health_status = u.status, p_alive = u.p, health_as_of = %(now)b::timestamptz,
        health_model_version = %(version)b::integer, at_risk_since = u.since, health_due_at = u.due,
        health_transitions = u.n::integer, version = c.version + u.bump
    FROM unnest(%(ids)b::text[], %(statuses)b::text[], %(ps)b::float8[], %(since)b::timestamptz[],
                %(due)b::timestamptz[], %(ns)b::bigint[], %(bumps)b::bigint[]) AS u(id, status, p, since, due, n, bump)
    WHERE c.customer_id = u.id
"""
_OUTBOX = """
    INSERT INTO outbox (message_id, topic, key, payload)
    SELECT * FROM unnest(%(ids)b::text[], %(topics)b::text[], %(keys)b::text[], %(payloads)b::bytea[])
    ON CONFLICT (message_id) DO NOTHING
"""


@dataclass
class PassOutcome:
    """What the passes did: customers assessed, and status changes by type."""

    assessed: int = 0
    at_risk: int = 0
    recovered: int = 0

    @property
    def changes(self) -> int:
        return self.at_risk + self.recovered

    def add(self, other: PassOutcome) -> None:
        self.assessed += other.assessed
        self.at_risk += other.at_risk
        self.recovered += other.recovered


def scan_due(engine: Engine, ctx: HealthContext, *, batch: int, faults: Faults | None = None) -> PassOutcome:
    """Assess every customer whose due moment has come (they turn at risk), `batch` per transaction."""
    return _passes(engine, ctx, _DUE, {"now": ctx.now}, batch=batch, faults=faults)


def sweep(engine: Engine, ctx: HealthContext, *, batch: int, faults: Faults | None = None) -> PassOutcome:
    """Assess every customer stamped with another model version than the context's, `batch` per transaction."""
    return _passes(engine, ctx, _STALE, {"version": ctx.model.version}, batch=batch, faults=faults)


def _passes(
    engine: Engine, ctx: HealthContext, sql: str, params: dict[str, Any], *, batch: int, faults: Faults | None
) -> PassOutcome:
    total = PassOutcome()
    while True:
        with session(engine) as conn:
            rows = run_sql(conn, sql, {**params, "limit": batch})
            outcome = _write(conn, rows, ctx)
            if faults is not None:
                faults.point("health.before_commit")
        total.add(outcome)
        if len(rows) < batch:
            return total


def _write(conn: Any, rows: list[tuple[Any, ...]], ctx: HealthContext) -> PassOutcome:
    outcome = PassOutcome(assessed=len(rows))
    if not rows:
        return outcome
    ids, statuses, ps, since, due, ns, bumps = [], [], [], [], [], [], []
    messages: list[tuple[str, str, str, bytes]] = []
    for customer_id, stage, count, first, last, last_order_at, status, transitions, at_risk_since in rows:
        result = assess(
            customer_id=customer_id,
            stage=stage,
            x=count - 1,
            first_day=first,
            last_day=last,
            last_order_at=last_order_at,
            mark=HealthMark(status, transitions, at_risk_since),
            ctx=ctx,
        )
        ids.append(customer_id)
        statuses.append(result.status)
        ps.append(result.p_alive)
        since.append(result.mark.at_risk_since)
        due.append(result.due_at)
        ns.append(result.mark.transitions)
        bumps.append(1 if result.message is not None else 0)
        if result.message is not None:
            messages.append(result.message)
            if result.status == "at_risk":
                outcome.at_risk += 1
            else:
                outcome.recovered += 1
    run_sql(
        conn,
        _UPDATE,
        {
            "ids": TextArray(ids),
            "statuses": TextArray(statuses),
            "ps": DoubleArray(ps),
            "since": since,
            "due": due,
            "ns": BigIntArray(ns),
            "bumps": BigIntArray(bumps),
            "now": ctx.now,
            "version": ctx.model.version,
        },
    )
    if messages:
        m_ids, topics, keys, payloads = zip(*messages, strict=True)
        run_sql(
            conn,
            _OUTBOX,
            {
                "ids": TextArray(m_ids),
                "topics": TextArray(topics),
                "keys": TextArray(keys),
                "payloads": BytesArray(payloads),
            },
        )
    return outcome
