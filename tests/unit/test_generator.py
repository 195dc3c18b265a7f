"""The synthetic shop (bench/generator.py): pure, deterministic by seed, and always valid input."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bench.generator import WINDOW_DAYS, generate, summary
from shared.wire.events import parse_rfc3339
from shared.wire.validation import validate

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def stream() -> list[dict[str, object]]:
    return generate(customers=800, events=6000, seed=11, now=NOW, duplicates=0.02)


def originals(stream: list[dict[str, object]]) -> list[dict[str, object]]:
    seen: set[object] = set()
    out = []
    for e in stream:
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            out.append(e)
    return out


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = generate(customers=200, events=1500, seed=3, now=NOW, duplicates=0.01)
    b = generate(customers=200, events=1500, seed=3, now=NOW, duplicates=0.01)
    c = generate(customers=200, events=1500, seed=4, now=NOW, duplicates=0.01)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)
    # streams of different seeds never share an event or a customer
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in c}
    assert not {e["customer_id"] for e in a} & {e["customer_id"] for e in c}


@pytest.mark.parametrize(("customers", "events"), [(1, 1), (10, 3), (50, 50), (100, 2000), (1000, 1000)])
def test_exactly_the_number_of_events_asked_for(customers: int, events: int) -> None:
    s = generate(customers=customers, events=events, seed=1, now=NOW)
    assert len(s) == events
    assert summary(s)["customers"] <= customers


def test_no_events() -> None:
    assert generate(customers=5, events=0, seed=1, now=NOW) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate(customers=0, events=10, seed=1)
    with pytest.raises(ValueError):
        generate(customers=10, events=10, seed=1, duplicates=0.9)


def test_every_event_is_valid_under_the_contract(stream: list[dict[str, object]]) -> None:
    for event in stream:
        result = validate(json.dumps(event).encode(), base_currency="EUR", max_bytes=65536, now=NOW)
        assert isinstance(result, list), (event, result)


def test_timestamps_are_utc_within_the_window_and_never_after_now(stream: list[dict[str, object]]) -> None:
    earliest = NOW - timedelta(days=WINDOW_DAYS)
    for event in stream:
        text = str(event["occurred_at"])
        assert text.endswith("Z")
        moment = parse_rfc3339(text)
        assert earliest <= moment <= NOW


def test_time_order_and_duplicates_are_exact_late_copies(stream: list[dict[str, object]]) -> None:
    first = originals(stream)
    stamps = [parse_rfc3339(str(e["occurred_at"])) for e in first]
    assert stamps == sorted(stamps)
    assert len({e["event_id"] for e in stream}) == len(first)
    by_id = {e["event_id"]: e for e in first}
    copies = len(stream) - len(first)
    assert copies == int(6000 * 0.02)
    position = {e["event_id"]: i for i, e in reversed(list(enumerate(stream)))}
    for i, e in enumerate(stream):
        assert e == by_id[e["event_id"]]  # a copy is the same message, field for field
        assert i >= position[e["event_id"]]


def test_no_duplicates_unless_asked() -> None:
    s = generate(customers=100, events=1000, seed=5, now=NOW)
    assert len({e["event_id"] for e in s}) == 1000


def test_the_mix_looks_like_a_shop(stream: list[dict[str, object]]) -> None:
    first = originals(stream)
    kinds = Counter(e["type"] for e in first)
    orders = [e for e in first if e["type"] == "purchase" and not e["refund"]]
    refunds = [e for e in first if e["type"] == "purchase" and e["refund"]]
    assert kinds["purchase"] > 0.85 * len(first)
    assert 0 < len(refunds) < 0.06 * len(orders)
    assert 0 < kinds["complaint"] < 0.05 * len(first)
    assert 0 < kinds["referral"] < 0.1 * len(first)
    discounted = [o for o in orders if Decimal(str(o["discount"])) > 0]
    assert 0.15 * len(orders) < len(discounted) < 0.35 * len(orders)
    # margins: every order costs less than its list price, and money has cents at most
    for o in orders:
        amount, cost, discount = (Decimal(str(o[k])) for k in ("amount", "cost", "discount"))
        assert amount > 0 and 0 <= cost < amount + discount
        assert amount == amount.quantize(Decimal("0.01"))
    # cadences: some customers buy once, some many times
    per_customer = Counter(o["customer_id"] for o in orders)
    assert sum(1 for n in per_customer.values() if n == 1) > 0.1 * len(per_customer)
    assert max(per_customer.values()) >= 12


def test_refunds_follow_an_earlier_order_of_the_same_customer(stream: list[dict[str, object]]) -> None:
    paid: dict[object, Decimal] = {}
    owner: dict[object, object] = {}
    for e in originals(stream):
        if e["type"] != "purchase":
            continue
        if e["refund"]:
            assert e["order_id"] in paid, "refund before its order"
            assert owner[e["order_id"]] == e["customer_id"]
            assert Decimal(str(e["amount"])) <= paid[e["order_id"]]
        else:
            assert e["order_id"] not in paid
            paid[e["order_id"]] = Decimal(str(e["amount"]))
            owner[e["order_id"]] = e["customer_id"]


def test_referrals_come_from_earlier_customers_and_before_the_referred_one_shows_up(
    stream: list[dict[str, object]],
) -> None:
    first_seen: dict[object, int] = {}
    referred_then_bought = 0
    referred: dict[object, int] = {}
    orders_after: defaultdict[object, int] = defaultdict(int)
    for i, e in enumerate(originals(stream)):
        if e["type"] == "referral":
            assert e["referred_customer_id"] != e["customer_id"]
            assert e["customer_id"] in first_seen, "the referrer is a customer already"
            assert e["referred_customer_id"] not in first_seen, "the referral is the referred one's first event"
            referred[e["referred_customer_id"]] = i
            first_seen.setdefault(e["referred_customer_id"], i)
        elif e["type"] == "purchase" and not e["refund"] and e["customer_id"] in referred:
            orders_after[e["customer_id"]] += 1
        first_seen.setdefault(e["customer_id"], i)
    referred_then_bought = len(orders_after)
    assert referred and referred_then_bought > 0.5 * len(referred)
    # chains: some referred customers refer others in turn
    referrers = {e["customer_id"] for e in stream if e["type"] == "referral"}
    assert referrers & set(referred)


def test_summary_counts(stream: list[dict[str, object]]) -> None:
    s = summary(stream)
    assert s["messages"] == 6000
    assert s["distinct_events"] + s["duplicates"] == 6000
    assert s["orders"] + s["refunds"] + s["complaints"] + s["referrals"] == s["distinct_events"]
