"""The scoring transaction, whole: one database transaction per consumed batch.

    per chunk of the batch's customers (pipeline mode: chunk k's SQL runs while Python applies chunk k + 1):
        dedupe rows (INSERT .. ON CONFLICT DO NOTHING RETURNING)  -> which facts are new
        customer rows (SELECT .. FOR UPDATE), unless cached        -> their state
        domain.apply() in memory, each customer's facts in offset order -> new state, rungs, conversions
        focus as of each written customer's last event             -> develop, loyalty_index columns
        customers upsert (compare-and-set on version)              \
        stage_history insert                                        > one statement each, set-based (unnest)
        outbox insert (stage changes, referral conversions)        /
    every upsert wrote all its rows, or ConcurrentUpdate           -> the whole batch rolls back
    COMMIT                                                          -> then, and only then, the Kafka offsets

Nothing commits unless the whole batch went through: `session()` rolls back on any exception.

The `StateCache` holds the state and version this instance last committed for recently written customers,
so a batch reads from the table only the customers it has not written lately. It is safe because the upsert
is a compare-and-set on the version: a cached state another writer has moved past (a rebalance, a second
instance) fails the whole batch with `ConcurrentUpdate`, the worker empties the cache, and the retry reads
the table. The cache learns a batch's states only after its commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from services.scoring.cache import StateCache
from services.scoring.domain.focus import Focus, focus, index_units
from services.scoring.domain.ladder import ReferralConverted, StageChanged, apply
from services.scoring.domain.measures import loyalty, tier
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import RANK, CustomerState, from_text, to_text
from services.scoring.health.marks import NO_MARK, HealthContext, HealthMark
from services.scoring.health.rows import HealthColumns, health_of, health_params, prior_context
from services.scoring.outgoing import (
    Measures,
    conversion_fact,
    conversion_message_id,
    measures_of,
    stage_change_id,
    stage_change_payload,
)
from shared.adapters.pgarrays import BigIntArray, BytesArray, SmallIntArray, TextArray
from shared.wire.messages import Fact, encode


class ConcurrentUpdate(RuntimeError):
    """Another instance wrote a customer of this batch since we read it; the batch is retried."""


@dataclass
class BatchOutcome:
    """What one batch did, for metrics and logs."""

    accepted: list[Fact] = field(default_factory=list)
    duplicates: list[Fact] = field(default_factory=list)
    stage_changes: list[StageChanged] = field(default_factory=list)
    conversions: list[ReferralConverted] = field(default_factory=list)
    # customer id -> (state, version) as written by this batch: the cache learns them once it committed
    written: dict[str, tuple[CustomerState, int]] = field(default_factory=dict)
    # customer id -> the health written by this batch (customers with an order), for the cache too
    marks: dict[str, HealthMark] = field(default_factory=dict)
    health_changes: int = 0


def unique_facts(facts: Sequence[Fact]) -> tuple[list[Fact], list[Fact]]:
    """(first occurrence of each dedupe key, the repeats) — a poll batch can hold one event twice."""
    seen: set[tuple[str, str]] = set()
    first: list[Fact] = []
    repeats: list[Fact] = []
    for fact in facts:
        key = (fact.event_id, fact.role)  # Fact.dedupe_key, spelled out: a property call per fact adds up
        if key in seen:
            repeats.append(fact)
        else:
            seen.add(key)
            first.append(fact)
    return first, repeats


_CLAIM_EVENTS = """
    INSERT INTO processed_events (event_id, role, customer_id)
    SELECT e, r, c FROM unnest(%(event_ids)b::text[], %(roles)b::text[], %(customers)b::text[])
        AS u(e, r, c)
    ORDER BY e, r
    ON CONFLICT DO NOTHING
    RETURNING event_id, role
"""

_LOAD = """
    SELECT customer_id, state, version, health_status, health_transitions, at_risk_since FROM customers
    WHERE customer_id = ANY(%(ids)b::text[])
    ORDER BY customer_id
    FOR UPDATE
"""

_UPSERT = """
    INSERT INTO customers AS c (customer_id, stage, stage_rank, stage_entered_at, tier, sales, costs, profit,
                                first_seen_at, last_event_at, develop, loyalty_index, state, version, updated_at,
                                {health_columns})
    SELECT id, stage, rank, entered, tier, sales, costs, sales - costs, first_seen, last_event,
           develop, index_units::numeric / 10000, st, ver, now(), {health_values}
    FROM unnest(%(ids)b::text[], %(stages)b::text[], %(ranks)b::smallint[],
                %(entered)b::timestamptz[], %(tiers)b::text[], %(sales)b::text[]::numeric[],
                %(costs)b::text[]::numeric[], %(first_seen)b::timestamptz[], %(last_event)b::timestamptz[],
                %(develop)b::text[], %(index_units)b::smallint[], %(states)b::text[], %(versions)b::bigint[],
                {health_arrays})
        AS u(id, stage, rank, entered, tier, sales, costs, first_seen, last_event, develop, index_units, st, ver,
             {health_names})
    ON CONFLICT (customer_id) DO UPDATE SET
        stage = excluded.stage, stage_rank = excluded.stage_rank, stage_entered_at = excluded.stage_entered_at,
        tier = excluded.tier, sales = excluded.sales, costs = excluded.costs, profit = excluded.profit,
        first_seen_at = excluded.first_seen_at, last_event_at = excluded.last_event_at,
        develop = excluded.develop, loyalty_index = excluded.loyalty_index,
        state = excluded.state, version = excluded.version, updated_at = now(), {health_updates}
    WHERE c.version = excluded.version - 1
    RETURNING customer_id
""".format(**HealthColumns.upsert_fragments())

_HISTORY = """
    INSERT INTO stage_history (customer_id, to_stage, from_stage, occurred_at, cause_event_id, reason)
    SELECT * FROM unnest(%(customers)b::text[], %(to_stages)b::text[], %(from_stages)b::text[],
                         %(occurred)b::timestamptz[], %(causes)b::text[], %(reasons)b::text[])
    ON CONFLICT DO NOTHING
"""

_OUTBOX = """
    INSERT INTO outbox (message_id, topic, key, payload)
    SELECT * FROM unnest(%(ids)b::text[], %(topics)b::text[], %(keys)b::text[],
                         %(payloads)b::bytea[])
    ON CONFLICT (message_id) DO NOTHING
"""


# (sql, params, the (state, version) pairs an upsert writes: its row count is checked against them)
Statement = tuple[str, dict[str, Any], list[tuple[CustomerState, int]] | None]

# a batch's customers are applied and written in this many chunks (each at least this many customers)
_CHUNKS = 6
_CHUNK_MIN_CUSTOMERS = 200


def process_batch(
    conn: Connection,
    *,
    facts: Sequence[Fact],
    policy: Policy,
    stage_topic: str,
    conversion_topic: str,
    cache: StateCache | None = None,
    health: HealthContext | None = None,
) -> BatchOutcome:
    """Apply `facts` (in offset order) to customer state inside the caller's transaction.

    The batch's customers are taken in chunks, in pipeline mode: while Python applies chunk k, the database
    writes chunk k - 1 and claims and reads chunk k + 1, so the two wait for each other only at the edges.
    It is one transaction all the same, and chunks share no customer. `cache` is read, never written: the
    caller feeds it `outcome.written` after the commit. `health` is the model in force and the moment to assess
    the health of every customer with an order as of (default: the policy's priors, now).
    """
    outcome = BatchOutcome()
    health = health if health is not None else prior_context(policy)
    candidates, outcome.duplicates = unique_facts(facts)
    if not candidates:
        return outcome
    facts_of: dict[str, list[Fact]] = {}
    for fact in candidates:
        facts_of.setdefault(fact.customer_id, []).append(fact)
    customers = sorted(facts_of)  # one lock order for every writer
    size = max(_CHUNK_MIN_CUSTOMERS, -(-len(customers) // _CHUNKS))
    chunks = [customers[i : i + size] for i in range(0, len(customers), size)]
    pg = conn.connection.driver_connection
    cursors: list[Any] = []  # kept open until the pipeline has delivered every result
    upserts: list[tuple[Any, list[tuple[CustomerState, int]]]] = []

    def queue(statements: list[Statement]) -> None:
        for sql, params, written in statements:
            cursors.append(cursor := _send(pg, sql, params))
            if written is not None:
                upserts.append((cursor, written))

    try:
        with pg.pipeline():  # type: ignore[union-attr]
            reads = _send_reads(pg, chunks[0], facts_of=facts_of, cache=cache)
            unsent: list[Statement] = []
            for k, chunk in enumerate(chunks):
                claim, load, cached = reads
                cursors.extend(c for c in (claim, load) if c is not None)
                claimed = {tuple(row) for row in claim.fetchall()}  # waits for what was queued before it, too
                loaded = load.fetchall() if load is not None else []
                # the previous chunk's writes, then the next chunk's reads: the database runs both while we apply
                queue(unsent)
                if k + 1 < len(chunks):
                    reads = _send_reads(pg, chunks[k + 1], facts_of=facts_of, cache=cache)
                unsent = _apply_chunk(
                    chunk,
                    facts_of=facts_of,
                    claimed=claimed,
                    loaded=loaded,
                    cached=cached,
                    outcome=outcome,
                    policy=policy,
                    stage_topic=stage_topic,
                    conversion_topic=conversion_topic,
                    health=health,
                    cache=cache,
                )
            queue(unsent)
        # leaving the pipeline synced it: every statement has run, in order, and any error was raised
        for cursor, written in upserts:
            stored = len(cursor.fetchall())
            if stored != len(written):
                raise ConcurrentUpdate(f"{len(written) - stored} of {len(written)} customers changed under this batch")
            outcome.written.update((state.customer_id, (state, version)) for state, version in written)
    finally:
        for cursor in cursors:
            cursor.close()
    return outcome


def _send_reads(
    pg: Any, chunk: list[str], *, facts_of: dict[str, list[Fact]], cache: StateCache | None
) -> tuple[Any, Any | None, dict[str, tuple[CustomerState, int]]]:
    """Queue the claim of the chunk's facts and the load of its customers the cache does not hold.

    Returns the two cursors (no load when the cache holds every customer) and the cache's entries for the chunk.
    """
    chunk_facts = [f for c in chunk for f in facts_of[c]]
    claim = _send(
        pg,
        _CLAIM_EVENTS,
        {
            "event_ids": TextArray([f.event_id for f in chunk_facts]),
            "roles": TextArray([f.role for f in chunk_facts]),
            "customers": TextArray([f.customer_id for f in chunk_facts]),
        },
    )
    # loaded before the claim says which facts are new: a customer whose facts all turn out duplicates is
    # read (and locked) for nothing, which is rare and harmless
    cached: dict[str, tuple[CustomerState, int]] = {}
    unknown: list[str] = []
    for customer_id in chunk:
        hit = cache.get(customer_id) if cache is not None else None
        if hit is None:
            unknown.append(customer_id)
        else:
            cached[customer_id] = hit
    return claim, (_send(pg, _LOAD, {"ids": TextArray(unknown)}) if unknown else None), cached


def _apply_chunk(
    chunk: list[str],
    *,
    facts_of: dict[str, list[Fact]],
    claimed: set[tuple[Any, ...]],
    loaded: list[Any],
    cached: dict[str, tuple[CustomerState, int]],
    outcome: BatchOutcome,
    policy: Policy,
    stage_topic: str,
    conversion_topic: str,
    health: HealthContext,
    cache: StateCache | None,
) -> list[Statement]:
    """Apply the claimed facts of `chunk` in memory; the statements that write the result.

    A customer's state comes from `loaded` (rows read from the table) or `cached` (the cache's entries for
    the chunk); one in neither is new. So does its health mark.
    """
    rows = {row[0]: (from_text(row[1]), row[2]) for row in loaded}
    marks = {row[0]: HealthMark(row[3], row[4], row[5]) for row in loaded if row[3] is not None}
    written: list[tuple[CustomerState, int]] = []
    foci: list[Focus] = []
    healths: list[HealthColumns] = []
    stage_changes: list[StageChanged] = []
    outbox_rows: list[tuple[str, str, str, bytes]] = []
    focus_policy = policy.focus
    for customer_id in chunk:
        new: list[Fact] = []
        for fact in facts_of[customer_id]:
            (new if (fact.event_id, fact.role) in claimed else outcome.duplicates).append(fact)
        if not new:
            continue
        outcome.accepted.extend(new)
        known = rows.get(customer_id) or cached.get(customer_id)
        state, version = known if known is not None else (None, 0)
        # the last focus measured for a stage change: (state, moment, focus), reused below when it is the
        # written state's own (typically a new customer's first fact)
        measured: tuple[CustomerState, datetime, Focus] | None = None
        for fact in new:
            state, changes = apply(state, fact, policy=policy)
            measures: Measures | None = None  # several rungs entered on one fact share one state and one moment
            for change in changes:
                if isinstance(change, StageChanged):
                    if measures is None:
                        scores = loyalty(state, at=fact.occurred_at, policy=policy)
                        focused = focus(scores, state.stage, focus_policy)
                        measures = measures_of(state, scores, focused, policy=policy)
                        measured = (state, fact.occurred_at, focused)
                    stage_changes.append(change)
                    change_id = stage_change_id(change.customer_id, change.to_stage)
                    outbox_rows.append(
                        (
                            change_id,
                            stage_topic,
                            change.customer_id,
                            stage_change_payload(change, state, policy=policy, measures=measures, event_id=change_id),
                        )
                    )
                else:
                    outcome.conversions.append(change)
                    outbox_rows.append(
                        (
                            conversion_message_id(change.referral_event_id),
                            conversion_topic,
                            change.referrer_id,
                            encode(conversion_fact(change)),
                        )
                    )
        assert state is not None  # at least one fact was applied
        written.append((state, version + 1))
        # the stored focus is as of the customer's last event, not of now: it depends only on the events (every
        # instance and every replay stores the same), and lists can sort and filter on it (docs/loyalty.md)
        if measured is not None and measured[0] is state and measured[1] == state.last_event_at:
            foci.append(measured[2])
        else:
            foci.append(focus(loyalty(state, at=state.last_event_at, policy=policy), state.stage, focus_policy))
        mark = marks.get(customer_id) or (
            cache.mark(customer_id) if cache is not None and known is not None and customer_id not in rows else None
        )
        columns = health_of(state, mark or NO_MARK, ctx=health)
        healths.append(columns)
        if columns.assessment is not None:
            outcome.marks[customer_id] = columns.assessment.mark
            if columns.assessment.message is not None:
                outbox_rows.append(columns.assessment.message)
                outcome.health_changes += 1
    statements: list[Statement] = []
    if written:
        statements.append(
            (_UPSERT, {**_customer_params(written, foci, policy=policy), **health_params(healths)}, written)
        )
    if stage_changes:
        outcome.stage_changes.extend(stage_changes)
        sc = stage_changes
        statements.append(
            (
                _HISTORY,
                {
                    "customers": TextArray([c.customer_id for c in sc]),
                    "to_stages": TextArray([c.to_stage for c in sc]),
                    "from_stages": TextArray([c.from_stage for c in sc]),
                    "occurred": [c.occurred_at for c in sc],
                    "causes": TextArray([c.cause_event_id for c in sc]),
                    "reasons": TextArray([c.reason for c in sc]),
                },
                None,
            )
        )
    if outbox_rows:
        ids, topics, keys, payloads = zip(*outbox_rows, strict=True)
        statements.append(
            (
                _OUTBOX,
                {
                    "ids": TextArray(ids),
                    "topics": TextArray(topics),
                    "keys": TextArray(keys),
                    "payloads": BytesArray(payloads),
                },
                None,
            )
        )
    return statements


def _send(pg: Any, sql: str, params: dict[str, Any]) -> Any:
    """Queue `sql` on the connection in pipeline mode; its cursor holds the result once the pipeline synced."""
    cursor = pg.cursor(binary=True)
    cursor.execute(sql, params)
    return cursor


def _customer_params(written: list[tuple[CustomerState, int]], foci: list[Focus], *, policy: Policy) -> dict[str, Any]:
    states = [s for s, _ in written]
    return {
        "ids": TextArray([s.customer_id for s in states]),
        "stages": TextArray([s.stage for s in states]),
        "ranks": SmallIntArray([RANK[s.stage] for s in states]),
        "entered": [s.stage_entered_at for s in states],
        "tiers": TextArray([tier(s.profit, policy=policy) for s in states]),
        "sales": TextArray([str(s.sales) for s in states]),  # exact; cast to numeric in the statement
        "costs": TextArray([str(s.costs) for s in states]),
        "first_seen": [s.first_seen_at for s in states],
        "last_event": [s.last_event_at for s in states],
        "develop": TextArray([f.develop for f in foci]),
        "index_units": SmallIntArray([index_units(f) for f in foci]),
        "states": TextArray([to_text(s) for s in states]),
        "versions": BigIntArray([v for _, v in written]),
    }
