"""The scoring transaction against the real PostgreSQL, with the state cache: a stale cached version never
gets written (the version check refuses the whole batch), and cached or not the table ends up where the
pure domain says, the stored focus included."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from sqlalchemy import Engine

from bench.generator import generate
from services.scoring import store
from services.scoring.cache import StateCache
from services.scoring.domain.focus import focus
from services.scoring.domain.ladder import apply
from services.scoring.domain.measures import loyalty
from services.scoring.domain.state import CustomerState, from_text
from services.scoring.store import BatchOutcome, ConcurrentUpdate, process_batch
from services.scoring.unit_of_work import run_sql, session
from services.scoring.worker import ScoringWorker
from shared.adapters.db import make_engine
from shared.adapters.metrics import Metrics
from shared.settings import Settings
from shared.wire.messages import Fact
from shared.wire.validation import validate
from tests.unit.domain_builders import at, default_policy, order

POLICY = default_policy()
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _batch(engine: Engine, facts: list[Fact], cache: StateCache | None) -> BatchOutcome:
    with session(engine) as conn:
        outcome = process_batch(
            conn, facts=facts, policy=POLICY, stage_topic="stage", conversion_topic="facts", cache=cache
        )
    if cache is not None:
        cache.remember(outcome.written)
    return outcome


def _table(engine: Engine) -> dict[str, tuple[CustomerState, int]]:
    with session(engine) as conn:
        return {
            c: (from_text(s), v) for c, s, v in run_sql(conn, "SELECT customer_id, state, version FROM customers", {})
        }


def test_a_stale_cached_state_is_refused_not_written(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    cache = StateCache(capacity=100)
    _batch(engine, [order("o1", at(2026, 1, 5))], cache)
    _batch(engine, [order("o2", at(2026, 1, 6))], None)  # another writer moves the customer on
    with pytest.raises(ConcurrentUpdate):
        _batch(engine, [order("o3", at(2026, 2, 7))], cache)
    assert _table(engine)["c-1"][0].orders == 2  # nothing of the refused batch was written
    # the worker's own path: the refusal empties the cache and the retry reads the table
    worker = ScoringWorker(
        consumer=None,
        engine=engine,
        policy=POLICY,
        metrics=Metrics(service="scoring"),  # type: ignore[arg-type]
        dead_letter=None,
        dead_letter_topic="dl",
        stage_topic="stage",  # type: ignore[arg-type]
        conversion_topic="facts",
        poll_timeout_ms=100,
        max_records=16,
        cache=cache,
    )
    outcome = worker._transact([order("o3", at(2026, 2, 7))])
    state, version = _table(engine)["c-1"]
    assert state.orders == 3 and version == 3
    assert [c.to_stage for c in outcome.stage_changes] == ["regular"]
    assert cache.get("c-1") == (state, version)


def test_a_refusal_in_a_late_chunk_rolls_back_the_earlier_chunks(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_CHUNK_MIN_CUSTOMERS", 2)  # six customers: three chunks of two
    engine = make_engine(settings.database_url)
    customers = [f"c-{i}" for i in range(6)]
    cache = StateCache(capacity=100)
    _batch(engine, [order(f"a-{c}", at(2026, 1, 5), customer=c) for c in customers], cache)
    _batch(engine, [order("b-c-5", at(2026, 1, 6), customer="c-5")], None)  # c-5, in the last chunk, moves on
    with pytest.raises(ConcurrentUpdate):
        _batch(engine, [order(f"c-{c}", at(2026, 2, 7), customer=c) for c in customers], cache)
    table = _table(engine)
    assert {c: s.orders for c, (s, _) in table.items()} == {**dict.fromkeys(customers, 1), "c-5": 2}
    with session(engine) as conn:
        assert run_sql(conn, "SELECT count(*) FROM stage_history", {})[0][0] == 12  # visitor, first purchase
        # stage changes only: these old orders also put each customer at risk (health messages)
        assert run_sql(conn, "SELECT count(*) FROM outbox WHERE topic = 'stage'", {})[0][0] == 12
        assert run_sql(conn, "SELECT count(*) FROM processed_events WHERE event_id LIKE 'c-%%'", {})[0][0] == 0


def test_the_worker_fills_the_cache_it_was_given_empty(settings: Settings) -> None:
    """The cache a scoring process starts with is empty: the worker must use that one, not a stand-in."""
    engine = make_engine(settings.database_url)
    cache = StateCache(capacity=100)
    worker = ScoringWorker(
        consumer=None,
        engine=engine,
        policy=POLICY,
        metrics=Metrics(service="scoring"),  # type: ignore[arg-type]
        dead_letter=None,
        dead_letter_topic="dl",
        stage_topic="stage",  # type: ignore[arg-type]
        conversion_topic="facts",
        poll_timeout_ms=100,
        max_records=16,
        cache=cache,
    )
    worker._transact([order("o1", at(2026, 1, 5))])
    assert worker.cache is cache
    assert cache.get("c-1") == _table(engine)["c-1"]


@pytest.mark.parametrize("chunk_min", [250, 7])
def test_cached_or_not_the_table_ends_where_the_domain_says(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, chunk_min: int
) -> None:
    monkeypatch.setattr(store, "_CHUNK_MIN_CUSTOMERS", chunk_min)
    engine = make_engine(settings.database_url)
    facts: list[Fact] = []
    for event in generate(customers=60, events=900, seed=11, now=NOW, duplicates=0.0):
        result = validate(orjson.dumps(event), base_currency="EUR", max_bytes=65536, now=NOW)
        assert isinstance(result, list)
        facts.extend(result)
    cache = StateCache(capacity=25)  # smaller than the customers: hits, misses and evictions
    for i in range(0, len(facts), 120):
        _batch(engine, facts[i : i + 120], cache)
    expected: dict[str, CustomerState] = {}
    for fact in facts:
        expected[fact.customer_id], _ = apply(expected.get(fact.customer_id), fact, policy=POLICY)
    table = _table(engine)
    assert 0 < len(cache) <= 25
    assert {c: s for c, (s, _) in table.items()} == expected
    for customer_id, (state, version) in table.items():
        hit = cache.get(customer_id)
        assert hit is None or hit == (state, version)


def _stored_focus(engine: Engine) -> dict[str, tuple[str | None, Decimal | None, CustomerState]]:
    with session(engine) as conn:
        return {
            c: (d, i, from_text(s))
            for c, d, i, s in run_sql(conn, "SELECT customer_id, develop, loyalty_index, state FROM customers", {})
        }


def test_every_written_customer_stores_its_focus_as_of_its_last_event(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_CHUNK_MIN_CUSTOMERS", 7)  # several chunks per batch
    engine = make_engine(settings.database_url)
    facts: list[Fact] = []
    for event in generate(customers=40, events=500, seed=5, now=NOW, duplicates=0.0):
        result = validate(orjson.dumps(event), base_currency="EUR", max_bytes=65536, now=NOW)
        assert isinstance(result, list)
        facts.extend(result)
    for i in range(0, len(facts), 90):
        _batch(engine, facts[i : i + 90], StateCache(capacity=0))
    stored = _stored_focus(engine)
    assert len(stored) >= 40
    for customer_id, (develop, index, state) in stored.items():
        # what the domain says as of the last event: the same whatever the moment the batch ran at
        want = focus(loyalty(state, at=state.last_event_at, policy=POLICY), state.stage, POLICY.focus)
        assert (develop, index) == (want.develop, Decimal(str(want.index)).quantize(Decimal("0.0001"))), customer_id
    assert len({d for d, _, _ in stored.values()}) > 1  # the input gives more than one kind to develop


def test_the_stage_change_message_carries_the_focus_of_the_change(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    # a late fact first: the customer's last event is then later than the order that made a stage change
    facts = [
        order("o-late", at(2026, 9, 1), customer="f-1"),
        order("o-early", at(2026, 3, 1), customer="f-1"),
        order("o-2", at(2026, 3, 2), customer="f-2"),
    ]
    _batch(engine, facts, None)
    with session(engine) as conn:
        rows = run_sql(conn, "SELECT key, payload FROM outbox WHERE topic = 'stage' ORDER BY id", {})
    messages = [(key, orjson.loads(payload)) for key, payload in rows]
    assert [(k, m["to_stage"]) for k, m in messages] == [
        ("f-1", "visitor"),
        ("f-1", "first_purchase"),
        ("f-2", "visitor"),
        ("f-2", "first_purchase"),
    ]
    for _, message in messages:
        assert set(message["focus"]) == {"encourage", "develop", "action", "index"}
        assert message["focus"]["develop"] in ("contact", "evaluative", "consultative")
    stored = _stored_focus(engine)
    # f-2's only fact made its stage change: the stored focus is the message's; f-1's last event is later
    assert stored["f-2"][0:2] == (
        messages[3][1]["focus"]["develop"],
        Decimal(str(messages[3][1]["focus"]["index"])).quantize(Decimal("0.0001")),
    )
    f1 = stored["f-1"][2]
    want = focus(loyalty(f1, at=at(2026, 9, 1), policy=POLICY), f1.stage, POLICY.focus)
    assert stored["f-1"][1] == Decimal(str(want.index)).quantize(Decimal("0.0001"))
