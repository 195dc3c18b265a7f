"""Health in the database: the scoring transaction, the scan of customers due, the refit and the sweep after it,
against the real PostgreSQL. Time is moved by handing each step its own `now`; nothing sleeps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from services.scoring.cache import StateCache
from services.scoring.domain.health import Model, Params
from services.scoring.domain.policy import parse_policy
from services.scoring.health.marks import HealthContext, health_message_id
from services.scoring.health.models import ModelSource, active_model
from services.scoring.health.refit import TooFew, refit
from services.scoring.health.scan import scan_due, sweep
from services.scoring.store import ConcurrentUpdate, process_batch
from services.scoring.unit_of_work import run_sql, session
from shared.adapters.db import make_engine
from shared.wire.customer_health import CustomerHealthChanged
from shared.wire.messages import Fact
from tests.cdnow import purchases
from tests.unit.domain_builders import default_policy, order

POLICY = default_policy()
TOPIC = "health"
NOW = datetime(2026, 11, 2, 12, tzinfo=UTC)


def _ctx(now: datetime, model: Model | None = None) -> HealthContext:
    return HealthContext(model=model or POLICY.health.prior_model, at_risk_below=0.5, now=now, topic=TOPIC)


def _batch(
    engine: Engine, facts: list[Fact], now: datetime, cache: StateCache | None = None, model: Model | None = None
) -> None:
    with session(engine) as conn:
        outcome = process_batch(
            conn,
            facts=facts,
            policy=POLICY,
            stage_topic="stage",
            conversion_topic="facts",
            cache=cache,
            health=_ctx(now, model),
        )
    if cache is not None:
        cache.remember(outcome.written, outcome.marks)


def _messages(engine: Engine) -> list[dict[str, Any]]:
    with session(engine) as conn:
        rows = run_sql(
            conn, "SELECT message_id, payload FROM outbox WHERE topic = %(t)b::text ORDER BY id", {"t": TOPIC}
        )
    out = []
    for message_id, payload in rows:
        body = orjson.loads(payload)
        CustomerHealthChanged.model_validate(body)  # the published contract's shape
        assert body["event_id"] == message_id
        out.append(body)
    return out


def _row(engine: Engine, customer_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        from sqlalchemy import text

        row = conn.execute(text("SELECT * FROM customers WHERE customer_id = :c"), {"c": customer_id}).one()
    return dict(row._mapping)


def test_old_orders_turn_a_customer_at_risk_at_once_and_a_new_order_recovers_them(database_url: str) -> None:
    engine = make_engine(database_url)
    _batch(
        engine,
        [
            order("o1", datetime(2025, 1, 5, tzinfo=UTC), customer="c"),
            order("o2", datetime(2025, 2, 5, tzinfo=UTC), customer="c"),
        ],
        NOW,
    )
    row = _row(engine, "c")
    assert row["health_status"] == "at_risk" and row["health_transitions"] == 1 and row["at_risk_since"] == NOW
    assert row["health_due_at"] is None and row["p_alive"] < 0.5 and row["order_day_count"] == 2
    [risk] = _messages(engine)
    assert risk["type"] == "customer_at_risk" and risk["event_id"] == health_message_id("c", 1)
    assert risk["stage"] == "first_purchase" and risk["model_version"] == 0
    assert risk["last_order_at"] == "2025-02-05T00:00:00Z" and risk["as_of"] == "2026-11-02T12:00:00Z"
    # a duplicate changes nothing; a new order today lifts P(alive) back
    _batch(engine, [order("o2", datetime(2025, 2, 5, tzinfo=UTC), customer="c")], NOW)
    assert len(_messages(engine)) == 1
    _batch(engine, [order("o3", NOW - timedelta(hours=1), customer="c")], NOW)
    row = _row(engine, "c")
    assert row["health_status"] == "active" and row["at_risk_since"] is None and row["health_transitions"] == 2
    assert row["health_due_at"] > NOW
    recovered = _messages(engine)[-1]
    assert recovered["type"] == "customer_recovered" and recovered["event_id"] == health_message_id("c", 2)


def test_a_new_active_customer_announces_nothing_and_turns_at_risk_when_due(database_url: str) -> None:
    engine = make_engine(database_url)
    _batch(engine, [order("a1", NOW - timedelta(days=30), customer="a"), order("a2", NOW, customer="a")], NOW)
    row = _row(engine, "a")
    assert row["health_status"] == "active" and _messages(engine) == []
    due = row["health_due_at"]
    assert due is not None and due > NOW and due.hour == 0 and due.minute == 0  # a UTC midnight
    # a scan before the moment finds nothing; at the moment, the customer turns at risk, once
    assert scan_due(engine, _ctx(due - timedelta(seconds=1)), batch=10).assessed == 0
    first = scan_due(engine, _ctx(due + timedelta(seconds=5)), batch=10)
    again = scan_due(engine, _ctx(due + timedelta(seconds=65)), batch=10)
    assert (first.at_risk, again.assessed) == (1, 0)
    [msg] = _messages(engine)
    assert msg["type"] == "customer_at_risk" and msg["p_alive"] < 0.5 and msg["expected_orders_90d"] >= 0
    assert _row(engine, "a")["at_risk_since"] == due + timedelta(seconds=5)


def test_a_scan_in_small_batches_takes_every_customer_due_once(database_url: str) -> None:
    engine = make_engine(database_url)
    facts = [
        order(f"{c}-{i}", NOW - timedelta(days=40 - 20 * i), customer=f"c{c:02d}") for c in range(23) for i in range(2)
    ]
    _batch(engine, facts, NOW)
    later = NOW + timedelta(days=3650)
    outcome = scan_due(engine, _ctx(later), batch=5)
    assert outcome.at_risk == 23 and len(_messages(engine)) == 23
    assert scan_due(engine, _ctx(later), batch=5).assessed == 0


def test_a_status_change_by_the_scan_makes_a_cached_state_conflict(database_url: str) -> None:
    engine = make_engine(database_url)
    cache = StateCache(capacity=10)
    _batch(
        engine, [order("k1", NOW - timedelta(days=20), customer="k"), order("k2", NOW, customer="k")], NOW, cache=cache
    )
    due = _row(engine, "k")["health_due_at"]
    scan_due(engine, _ctx(due), batch=10)
    with pytest.raises(ConcurrentUpdate):
        _batch(engine, [order("k3", due, customer="k")], due, cache=cache)
    cache.clear()
    _batch(engine, [order("k3", due, customer="k")], due, cache=cache)
    assert [m["type"] for m in _messages(engine)] == ["customer_at_risk", "customer_recovered"]


def test_refit_needs_enough_customers_then_fits_and_the_sweep_moves_everyone(database_url: str) -> None:
    engine = make_engine(database_url)
    policy = parse_policy('[health]\nmodel = "bg_nbd"\nmin_customers = 100\n')
    end = datetime(1997, 9, 30, 12, tzinfo=UTC)
    facts = [
        order(f"cd-{i}", datetime(d.year, d.month, d.day, 12, tzinfo=UTC), customer=c)
        for i, (c, d, _) in enumerate(purchases())
        if d <= date(1997, 9, 30)
    ]
    few = {f.customer_id for f in facts[:150]}
    _batch(engine, [f for f in facts if f.customer_id in sorted(few)[:50]], end)
    assert refit(engine, policy=policy, now=end) == TooFew(customers=50, needed=100)
    for i in range(0, len(facts), 2000):
        _batch(engine, facts[i : i + 2000], end)
    result = refit(engine, policy=policy, now=end)
    assert not isinstance(result, TooFew)
    assert result.model.version == 1 and result.customers == 2357
    assert {k: f"{v:.3g}" for k, v in result.model.params.as_dict().items()} == {
        "r": "0.243",
        "alpha": "4.41",
        "a": "0.793",
        "b": "2.43",
    }
    assert f"{result.log_likelihood:.5g}" == "-9582.4"
    with engine.connect() as conn:
        assert active_model(conn, policy=policy).model == result.model
    source = ModelSource(engine, policy=policy, topic=TOPIC, ttl_s=0)
    before = len(_messages(engine))
    swept = sweep(engine, source.context(end), batch=400)
    assert swept.assessed == 2357
    assert sweep(engine, source.context(end), batch=400).assessed == 0  # done: resumable by the version stamp
    with engine.connect() as conn:
        from sqlalchemy import text

        versions = conn.execute(text("SELECT DISTINCT health_model_version FROM customers")).scalars().all()
    assert versions == [1]
    assert len(_messages(engine)) == before + swept.changes


def test_a_context_with_a_fitted_model_stamps_its_version(database_url: str) -> None:
    engine = make_engine(database_url)
    model = Model("bg_nbd", Params(0.243, 4.414, 0.793, 2.426), version=7)
    _batch(engine, [order("v1", NOW, customer="v")], NOW, model=model)
    row = _row(engine, "v")
    # BG/NBD: a one-time buyer is alive for ever, so never due
    assert row["health_model_version"] == 7 and row["p_alive"] == 1.0 and row["health_due_at"] is None
