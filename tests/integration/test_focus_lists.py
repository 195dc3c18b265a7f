"""The stored focus against the real PostgreSQL: migration 0005 on a table with rows, the `develop=` filter,
`sort=index` keyset pages (ties, rows without a stored focus), the per-rung breakdown, and the index the
pages walk."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, text

from services.scoring.cache import StateCache
from services.scoring.domain.ladder import apply
from services.scoring.domain.state import LOYALTY_KINDS, STAGES, to_text
from services.scoring.migrate import alembic_config
from services.scoring.read.ladder import stage_counts
from services.scoring.read.lists import ListFilter, csv_rows, customer_page, page_query
from services.scoring.store import process_batch
from services.scoring.unit_of_work import session
from shared.adapters.db import make_engine
from shared.wire.messages import Fact
from tests.unit.domain_builders import at, complaint, default_policy, order, referral_made

POLICY = default_policy()
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = make_engine(database_url)
    yield e
    e.dispose()


def _write(engine: Engine, facts: list[Fact]) -> None:
    with session(engine) as conn:
        process_batch(
            conn, facts=facts, policy=POLICY, stage_topic="s", conversion_topic="f", cache=StateCache(capacity=0)
        )


def _walk(engine: Engine, flt: ListFilter, *, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page: dict[str, Any] = customer_page(
            engine, flt, cursor=cursor, limit=limit, policy=POLICY, at=NOW, order="index"
        )
        items.extend(page["items"])
        cursor = page["next"]
        if cursor is None:
            return items


def test_rows_from_before_the_migration_keep_null_until_their_next_event(database_url: str, engine: Engine) -> None:
    cfg = alembic_config(database_url)
    command.downgrade(cfg, "0004")
    # two customers as the previous version wrote them: no focus columns
    for fact in (order("o1", at(2026, 1, 5), customer="old-1"), order("o2", at(2026, 1, 6), customer="old-2")):
        state, _ = apply(None, fact, policy=POLICY)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO customers (customer_id, stage, stage_rank, stage_entered_at, tier, sales, costs, "
                    "profit, first_seen_at, last_event_at, state, version) "
                    "VALUES (:id, :stage, 2, :at, 'middling', 100, 0, 100, :at, :at, :state, 1)"
                ),
                {"id": state.customer_id, "stage": state.stage, "at": fact.occurred_at, "state": to_text(state)},
            )
            conn.execute(
                text("INSERT INTO processed_events (event_id, role, customer_id) VALUES (:e, 'primary', :c)"),
                {"e": fact.event_id, "c": fact.customer_id},
            )
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT customer_id, develop, loyalty_index FROM customers ORDER BY 1")).all()
    assert [tuple(r) for r in rows] == [("old-1", None, None), ("old-2", None, None)]

    _write(engine, [complaint("k1", at(2026, 2, 1), customer="old-2"), order("o3", at(2026, 2, 1), customer="new")])
    stages: dict[str, Any] = stage_counts(engine)["stages"]  # type: ignore[assignment]
    assert stages["first_purchase"]["customers"] == 3
    # old-1 has no stored focus yet: in the rung's count, in no develop count
    assert sum(stages["first_purchase"]["develop"].values()) == 2
    assert set(stages["visitor"]["develop"]) == set(LOYALTY_KINDS)

    items = _walk(engine, ListFilter(), limit=1)
    assert [i["customer_id"] for i in items][-1] == "old-1"  # no stored index: last
    assert items[-1]["focus"] is None and all(i["focus"] is not None for i in items[:-1])
    for kind in LOYALTY_KINDS:
        listed: dict[str, Any] = customer_page(
            engine, ListFilter(develop=kind), cursor=None, limit=10, policy=POLICY, at=NOW
        )
        assert "old-1" not in {i["customer_id"] for i in listed["items"]}

    command.downgrade(cfg, "0004")  # and back: the columns and indexes go, the rows stay
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 3
    command.upgrade(cfg, "head")


def test_index_pages_are_in_index_order_ties_by_id_and_neither_repeat_nor_skip(engine: Engine) -> None:
    facts: list[Fact] = []
    # ten pairs of customers with identical histories (equal indexes: ties), on two rungs, with various kinds
    for n in range(10):
        for twin in ("a", "b"):
            c = f"c-{n:02d}-{twin}"
            facts.append(order(f"o-{c}", at(2026, 1 + n % 6, 3), amount=f"{50 + 40 * n}.00", customer=c))
            if n % 3 == 0:
                facts.append(complaint(f"k-{c}", at(2026, 1 + n % 6, 4), customer=c))
            if n % 4 == 1:
                facts.append(referral_made(f"r-{c}", at(2026, 1 + n % 6, 5), customer=c, referred=f"f-{c}"))
    _write(engine, facts)
    whole = _walk(engine, ListFilter(), limit=1000)
    keys = [(-float(i["focus"]["index"]), i["customer_id"]) for i in whole]
    assert keys == sorted(keys) and len(keys) == len({k[1] for k in keys})
    assert any(a[0] == b[0] for a, b in pairwise(keys))  # the input does make ties
    for limit in (1, 3, 7):
        assert _walk(engine, ListFilter(), limit=limit) == whole
    for kind in LOYALTY_KINDS:
        filtered = _walk(engine, ListFilter(develop=kind), limit=2)
        assert filtered == [i for i in whole if i["focus"]["develop"] == kind]
    for stage in STAGES:
        assert _walk(engine, ListFilter(stage=stage), limit=4) == [i for i in whole if i["stage"] == stage]
    # CSV in the same order
    assert [r[0] for r in csv_rows(engine, ListFilter(), policy=POLICY, at=NOW, order="index")] == [
        i["customer_id"] for i in whole
    ]


def test_an_index_page_after_a_cursor_walks_the_index(engine: Engine) -> None:
    _write(engine, [order(f"o{n}", at(2026, 3, 1 + n), customer=f"p-{n}") for n in range(20)])
    sql, params = page_query(ListFilter(), after=(4125, "p-3"), limit=10, order="index")
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table: ask whether the index can serve it
        plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {sql}"), params))
    assert "ix_customers_index_order" in plan and "Index Cond" in plan, plan
    assert "Sort" not in plan, plan
    assert params["after_key"] == Decimal("-0.4125")
