"""Baseline 2: the naive path — one database transaction per shop event.

What a first implementation would do: for each event, validate it, then in its own transaction insert the
dedupe row, `SELECT ... FOR UPDATE` the customer(s), apply the domain (`ladder.apply`), upsert the
customer with its focus, insert stage history and outbox rows, COMMIT. The same tables, the same domain code
and the same durability (synchronous_commit=on) as the real system, but no Kafka and no batching: every event
pays a commit (a WAL flush) and ~6 round trips. It uses plain psycopg (lighter than SQLAlchemy), so the baseline
is, if anything, flattered.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from services.scoring.domain.focus import focus, index_units
from services.scoring.domain.ladder import StageChanged, apply
from services.scoring.domain.measures import loyalty, tier
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import RANK, from_text, to_text
from services.scoring.outgoing import conversion_message_id, stage_change_id, stage_change_payload
from shared.settings import libpq_url
from shared.wire.validation import validate

_CLAIM = (
    "INSERT INTO processed_events (event_id, role, customer_id) VALUES (%s, %s, %s) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)
_LOAD = "SELECT state, version FROM customers WHERE customer_id = %s FOR UPDATE"
_UPSERT = """
    INSERT INTO customers AS c (customer_id, stage, stage_rank, stage_entered_at, tier, sales, costs, profit,
                                first_seen_at, last_event_at, develop, loyalty_index, state, version, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
    ON CONFLICT (customer_id) DO UPDATE SET
        stage = excluded.stage, stage_rank = excluded.stage_rank, stage_entered_at = excluded.stage_entered_at,
        tier = excluded.tier, sales = excluded.sales, costs = excluded.costs, profit = excluded.profit,
        first_seen_at = excluded.first_seen_at, last_event_at = excluded.last_event_at,
        develop = excluded.develop, loyalty_index = excluded.loyalty_index,
        state = excluded.state, version = excluded.version, updated_at = now()
"""
_HISTORY = (
    "INSERT INTO stage_history (customer_id, to_stage, from_stage, occurred_at, cause_event_id, reason) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_OUTBOX = (
    "INSERT INTO outbox (message_id, topic, key, payload) VALUES (%s, %s, %s, %s) ON CONFLICT (message_id) DO NOTHING"
)


def run_naive(
    database_url: str,
    messages: Sequence[bytes],
    *,
    policy: Policy,
    stage_topic: str = "loyalty.stage-changes",
    conversion_topic: str = "loyalty.scoring-input",
) -> dict[str, Any]:
    """Apply `messages` (raw shop event values) one transaction each; returns counts and events/s."""
    applied = duplicates = rejected = 0
    now = datetime.now(UTC)
    with psycopg.connect(libpq_url(database_url)) as conn:
        started = time.perf_counter()
        for value in messages:
            facts = validate(value, base_currency="EUR", max_bytes=65536, now=now)
            if not isinstance(facts, list):
                rejected += 1
                continue
            with conn.transaction():
                for fact in facts:
                    if conn.execute(_CLAIM, (fact.event_id, fact.role, fact.customer_id)).fetchone() is None:
                        duplicates += 1
                        continue
                    row = conn.execute(_LOAD, (fact.customer_id,)).fetchone()
                    state, version = (from_text(row[0]), row[1]) if row else (None, 0)
                    new, changes = apply(state, fact, policy=policy)
                    focused = focus(loyalty(new, at=new.last_event_at, policy=policy), new.stage, policy.focus)
                    conn.execute(
                        _UPSERT,
                        (
                            new.customer_id,
                            new.stage,
                            RANK[new.stage],
                            new.stage_entered_at,
                            tier(new.profit, policy=policy),
                            new.sales,
                            new.costs,
                            new.profit,
                            new.first_seen_at,
                            new.last_event_at,
                            focused.develop,
                            Decimal(index_units(focused)).scaleb(-4),
                            to_text(new),
                            version + 1,
                        ),
                    )
                    for change in changes:
                        if isinstance(change, StageChanged):
                            conn.execute(
                                _HISTORY,
                                (
                                    change.customer_id,
                                    change.to_stage,
                                    change.from_stage,
                                    change.occurred_at,
                                    change.cause_event_id,
                                    change.reason,
                                ),
                            )
                            conn.execute(
                                _OUTBOX,
                                (
                                    stage_change_id(change.customer_id, change.to_stage),
                                    stage_topic,
                                    change.customer_id,
                                    stage_change_payload(change, new, policy=policy),
                                ),
                            )
                        else:
                            conn.execute(
                                _OUTBOX,
                                (
                                    conversion_message_id(change.referral_event_id),
                                    conversion_topic,
                                    change.referrer_id,
                                    b"{}",
                                ),
                            )
                    applied += 1
        elapsed = time.perf_counter() - started
    return {
        "events": len(messages),
        "facts_applied": applied,
        "duplicates": duplicates,
        "rejected": rejected,
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(messages) / elapsed, 1) if elapsed else 0.0,
    }
