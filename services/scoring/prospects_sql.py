"""The bulk import's writes (contract section 12): prospects in chunks, set-based, each chunk one transaction.

    per chunk (~10,000 rows), one statement:
        claim the rows' event ids in processed_events (ON CONFLICT DO NOTHING RETURNING)   -> which rows are new
        insert a `potential` state row for each new row's customer (ON CONFLICT DO NOTHING) -> which were unknown
    COMMIT

It is the effectively-once path of the events, taken without the broker: a row's event id is derived from
its customer id alone (`import_event_id`), so the same customer in a retried file, in another file or twice
in one file is claimed once; and the customer row is inserted only where none exists, so a known customer
is left as it is. A chunk commits whole or not at all: after a crash (kill -9 included) a retry of the same
file finds the committed chunks' customers known and imports the rest, and each prospect exists once.

A prospect announces nothing (no stage change, no history row, no outbox row), and every new prospect's state
is the same but for its id and moment, so one row per customer is all there is to write. Against the scoring
worker the insert is safe both ways: a worker that creates the same customer at the same moment fails its
compare-and-set (`version = 1` exists already) and retries its batch, which then reads this row; an import
that finds the worker's row counts the customer as existing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from services.scoring.domain.focus import focus, index_units
from services.scoring.domain.ladder import new_customer
from services.scoring.domain.measures import loyalty, tier
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import RANK, to_text
from services.scoring.unit_of_work import run_sql, session
from shared.adapters.pgarrays import TextArray

ROLE = "primary"
_PREFIX = "import:"


def import_event_id(customer_id: str) -> str:
    """The event id of a customer's import row: the same for that customer in any file, at any time."""
    return _PREFIX + hashlib.sha256(customer_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Prospect:
    """One accepted row: who, since when, and where the lead comes from (kept on the row's log line only)."""

    customer_id: str
    occurred_at: datetime
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """What every new prospect's row shares: its stored columns are those of a state with no activity."""

    tier: str
    develop: str
    index_units: int

    @classmethod
    def of(cls, policy: Policy, at: datetime) -> Template:
        state = new_customer("template", at)
        focused = focus(loyalty(state, at=at, policy=policy), state.stage, policy.focus)
        return cls(tier=tier(state.profit, policy=policy), develop=focused.develop, index_units=index_units(focused))


_WRITE = """
    WITH batch AS (
        SELECT * FROM unnest(%(event_ids)b::text[], %(ids)b::text[], %(ats)b::text[]::timestamptz[],
                             %(states)b::text[]) AS u(event_id, id, at, st)
    ), claimed AS (
        INSERT INTO processed_events (event_id, role, customer_id)
        SELECT event_id, %(role)s, id FROM batch ORDER BY event_id
        ON CONFLICT DO NOTHING
        RETURNING customer_id
    ), inserted AS (
        INSERT INTO customers (customer_id, stage, stage_rank, stage_entered_at, tier, sales, costs, profit,
                               first_seen_at, last_event_at, develop, loyalty_index, state, version, updated_at)
        SELECT batch.id, 'potential', %(rank)s, batch.at, %(tier)s, 0, 0, 0, batch.at, batch.at,
               %(develop)s, %(index_units)s::numeric / 10000, batch.st, 1, now()
        FROM batch JOIN claimed ON claimed.customer_id = batch.id
        ORDER BY batch.id  -- the lock order of every writer
        ON CONFLICT (customer_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
"""


def write_chunk(engine: Engine, rows: Sequence[Prospect], template: Template) -> int:
    """Import `rows` (distinct customers) in one transaction; how many of them were new customers."""
    if not rows:
        return 0
    ids = [r.customer_id for r in rows]
    params = {
        "event_ids": TextArray([import_event_id(c) for c in ids]),
        "ids": TextArray(ids),
        # as text: one binary array of timestamps would need psycopg to adapt a datetime per element anyway
        "ats": TextArray([r.occurred_at.isoformat() for r in rows]),
        "states": TextArray([to_text(new_customer(r.customer_id, r.occurred_at)) for r in rows]),
        "role": ROLE,
        "rank": RANK["potential"],
        "tier": template.tier,
        "develop": template.develop,
        "index_units": template.index_units,
    }
    with session(engine) as conn:
        [(inserted,)] = run_sql(conn, _WRITE, params)
    return int(inserted)
