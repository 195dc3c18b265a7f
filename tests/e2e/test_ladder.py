"""Contract sections 4-7 end to end: shop events in through Kafka, state out through HTTP and stage changes."""

from __future__ import annotations

import json
import uuid
from itertools import pairwise
from typing import Any

from tests.support import Shop, System, TopicReader, complaint, purchase, referral, uid, wait_until

STAGE_ORDER = ["potential", "visitor", "first_purchase", "regular", "advocate"]


def changes_of(reader: TopicReader, customer_id: str, *, count: int, timeout_s: float = 20.0) -> list[Any]:
    """The stage-change records of one customer, once there are `count` of them."""

    def probe() -> list[Any] | None:
        mine = [r for r in reader.poll() if r.key == customer_id.encode()]
        return mine if len(mine) >= count else None

    return wait_until(probe, timeout_s=timeout_s, what=f"{count} stage changes of {customer_id}")


def test_a_customer_climbs_all_five_rungs(system: System, shop: Shop, stage_changes: TopicReader) -> None:
    c = uid("climb-")
    shop.send_all(
        [
            purchase(c, at="2026-06-03T10:00:00Z", amount="100.00", cost="60.00"),
            purchase(c, at="2026-06-20T10:00:00Z", amount="100.00", cost="60.00"),
            purchase(c, at="2026-07-02T10:00:00+02:00", amount="100.00", cost="60.00"),
        ]
    )
    got = system.wait_customer(c, lambda x: x["stage"] == "regular")
    assert got["counts"]["orders"] == 3
    assert got["profitability"] == {"sales": "300.00", "costs": "180.00", "profit": "120.00", "tier": "profitable"}
    assert got["stage_entered_at"].startswith("2026-07-02T08:00:00")

    friend = uid("friend-")
    shop.send_all([referral(c, friend, at="2026-07-05T10:00:00Z")])
    got = system.wait_customer(c, lambda x: x["stage"] == "advocate")
    assert [h["to_stage"] for h in got["history"]] == STAGE_ORDER[1:]
    assert got["history"][2]["reason"] == "3 orders in 2 months"

    records = changes_of(stage_changes, c, count=4)
    values = [json.loads(r.value) for r in records]
    assert [(v["from_stage"], v["to_stage"]) for v in values] == list(pairwise(STAGE_ORDER))
    regular = values[2]
    assert regular["type"] == "stage_changed" and regular["schema_version"] == 1
    assert regular["customer_id"] == c
    assert regular["occurred_at"] == "2026-07-02T08:00:00Z"
    assert regular["reason"] == "3 orders in 2 months"
    assert regular["profitability"] == {"sales": "300.00", "costs": "180.00", "profit": "120.00", "tier": "profitable"}
    assert set(regular["loyalty"]) == {"financial", "procedural", "contact", "evaluative", "consultative"}
    assert all(0 <= x <= 1 for x in regular["loyalty"].values())
    assert len({v["event_id"] for v in values}) == 4
    # the referred friend exists as a visitor
    assert system.wait_customer(friend)["stage"] == "visitor"


def test_several_rungs_on_one_event_give_one_message_each_in_ladder_order(
    system: System, shop: Shop, stage_changes: TopicReader
) -> None:
    c = uid("multi-")
    first = purchase(c, at="2026-05-01T09:00:00Z")
    shop.send_all([first])
    values = [json.loads(r.value) for r in changes_of(stage_changes, c, count=2)]
    assert [(v["from_stage"], v["to_stage"]) for v in values] == [
        ("potential", "visitor"),
        ("visitor", "first_purchase"),
    ]
    assert {v["cause_event_id"] for v in values} == {first["event_id"]}


def test_duplicates_with_same_and_different_content_count_once(system: System, shop: Shop) -> None:
    c = uid("dup-")
    e = purchase(c, at="2026-06-01T10:00:00Z", amount="10.00")
    shop.send_all([e, e])
    system.wait_customer(c, lambda x: x["counts"]["orders"] == 1)
    # unkeyed copies may land on different partitions, so "first" is only defined once the first was applied
    altered = {**e, "amount": "999.00"}
    shop.send_all([altered, e, purchase(c, at="2026-06-02T10:00:00Z", amount="1.00")])
    got = system.wait_customer(c, lambda x: x["counts"]["orders"] >= 2)
    assert got["counts"]["orders"] == 2
    assert got["profitability"]["sales"] == "11.00"
    metrics = system.get("/metrics").text
    assert 'loyalty_events_total{outcome="duplicate",service="scoring",type="purchase"}' in metrics


def test_out_of_order_events_end_in_the_same_state(system: System, shop: Shop, stage_changes: TopicReader) -> None:
    a, b = uid("ordered-"), uid("shuffled-")

    def events(c: str) -> list[dict[str, Any]]:
        return [
            purchase(c, at="2026-03-01T10:00:00Z", amount="50.00", event_id=f"{c}-1"),
            purchase(c, at="2026-03-15T10:00:00Z", amount="20.00", discount="5.00", event_id=f"{c}-2"),
            purchase(c, at="2026-04-01T10:00:00Z", amount="30.00", event_id=f"{c}-3"),
            purchase(c, at="2026-04-02T10:00:00Z", amount="30.00", refund=True, event_id=f"{c}-4"),
            complaint(c, at="2026-04-03T10:00:00Z", handling_cost="5.00", event_id=f"{c}-5"),
            purchase(c, at="2026-05-01T10:00:00Z", amount="40.00", event_id=f"{c}-6"),
        ]

    shop.send_all(events(a))
    shop.send_all(list(reversed(events(b))))
    ga = system.wait_customer(a, lambda x: x["counts"]["complaints"] == 1 and x["counts"]["orders"] == 4)
    gb = system.wait_customer(b, lambda x: x["counts"]["complaints"] == 1 and x["counts"]["orders"] == 4)
    for key in ("stage", "counts", "profitability", "loyalty", "stability", "first_seen_at", "last_event_at"):
        assert ga[key] == gb[key], key
    assert ga["stage"] == "regular"
    assert {h["to_stage"] for h in ga["history"]} == {h["to_stage"] for h in gb["history"]}
    ta = {json.loads(r.value)["to_stage"] for r in changes_of(stage_changes, a, count=3)}
    tb = {json.loads(r.value)["to_stage"] for r in changes_of(stage_changes, b, count=3)}
    assert ta == tb == {"visitor", "first_purchase", "regular"}


def test_a_refund_never_moves_a_rung_down(system: System, shop: Shop) -> None:
    c = uid("refund-")
    order = purchase(c, at="2026-06-01T10:00:00Z", amount="80.00", cost="30.00")
    shop.send_all([order])
    before = system.wait_customer(c, lambda x: x["stage"] == "first_purchase")
    shop.send_all([purchase(c, at="2026-06-02T10:00:00Z", amount="80.00", cost="5.00", refund=True)])
    after = system.wait_customer(c, lambda x: x["counts"]["refunds"] == 1)
    assert after["stage"] == "first_purchase"
    assert after["profitability"] == {"sales": "0.00", "costs": "35.00", "profit": "-35.00", "tier": "unprofitable"}
    assert after["loyalty"]["procedural"] < before["loyalty"]["procedural"]


def test_a_complaint_only_customer_is_a_visitor(system: System, shop: Shop) -> None:
    c = uid("complainer-")
    shop.send_all([complaint(c, handling_cost="12.50", severity="high")])
    got = system.wait_customer(c)
    assert got["stage"] == "visitor"
    assert got["counts"] == {
        "orders": 0,
        "refunds": 0,
        "full_price_orders": 0,
        "referrals_made": 0,
        "referrals_converted": 0,
        "complaints": 1,
    }
    assert got["profitability"] == {"sales": "0.00", "costs": "12.50", "profit": "-12.50", "tier": "unprofitable"}
    assert got["loyalty"]["evaluative"] > 0 and got["loyalty"]["financial"] == 0
    assert [h["to_stage"] for h in got["history"]] == ["visitor"]


def test_referral_conversion_counts_whichever_arrives_first(system: System, shop: Shop) -> None:
    r1, f1 = uid("referrer-a-"), uid("friend-a-")
    shop.send_all([referral(r1, f1, at="2026-06-01T10:00:00Z")])
    system.wait_customer(f1)
    shop.send_all([purchase(f1, at="2026-06-05T10:00:00Z")])

    r2, f2 = uid("referrer-b-"), uid("friend-b-")
    shop.send_all([purchase(f2, at="2026-06-05T10:00:00Z")])
    system.wait_customer(f2)
    shop.send_all([referral(r2, f2, at="2026-06-06T10:00:00Z", reward_cost="3.00")])

    for r in (r1, r2):
        got = system.wait_customer(r, lambda x: x["counts"]["referrals_converted"] == 1)
        assert got["counts"]["referrals_made"] == 1
        assert got["loyalty"]["consultative"] > 0
    assert system.customer(r2)["profitability"]["costs"] == "3.00"  # type: ignore[index]


def test_money_is_exact_two_place_strings(system: System, shop: Shop) -> None:
    c = uid("money-")
    shop.send_all(
        [
            purchase(c, amount="0.10", cost="0.05", at="2026-06-01T10:00:00Z"),
            purchase(c, amount=0.20, cost="0.015", at="2026-06-01T11:00:00Z"),
        ]
    )  # type: ignore[arg-type]
    got = system.wait_customer(c, lambda x: x["counts"]["orders"] == 2)
    assert got["profitability"] == {"sales": "0.30", "costs": "0.06", "profit": "0.24", "tier": "middling"}


def test_unknown_customer_is_a_json_404(system: System) -> None:
    r = system.get(f"/v1/customers/{uuid.uuid4()}")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_stages_counts_every_rung_and_tier(system: System, shop: Shop) -> None:
    c = uid("stages-")
    shop.send_all([purchase(c, amount="500.00", at="2026-06-01T10:00:00Z")])
    system.wait_customer(c)
    body = system.get("/v1/stages").json()
    assert list(body["stages"]) == STAGE_ORDER
    for rung in body["stages"].values():
        assert set(rung["tiers"]) == {"profitable", "middling", "unprofitable"}
        assert rung["customers"] == sum(rung["tiers"].values())
    assert body["customers"] == sum(r["customers"] for r in body["stages"].values())
    assert body["stages"]["first_purchase"]["tiers"]["profitable"] >= 1


def test_stage_change_ids_are_stable_and_unique_per_customer_and_rung(stage_changes: TopicReader) -> None:
    values = stage_changes.json_values()
    assert values, "earlier tests published stage changes"
    pairs = {(v["customer_id"], v["to_stage"]): v["event_id"] for v in values}
    assert len(pairs) == len({v["event_id"] for v in values}) == len(values)
