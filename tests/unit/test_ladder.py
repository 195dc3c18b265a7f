"""The ladder rulebook: apply(state, fact) -> (state, changes), conditions, reached_rung, next_rung.

Table-driven cases first (state built from prior facts, one fact, exact expected fields and changes), then
properties over generated fact lists (order independence, monotone climbing, serialisation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.ladder import (
    Change,
    Condition,
    ReferralConverted,
    StageChanged,
    _with_activity,
    apply,
    conditions,
    new_customer,
    next_rung,
    reached_rung,
)
from services.scoring.domain.policy import Policy, parse_policy
from services.scoring.domain.state import (
    RANK,
    STAGES,
    CustomerState,
    MonthActivity,
    PendingReferral,
    from_json,
    from_text,
    month_index,
    to_json,
    to_text,
)
from shared.wire.messages import Fact
from tests.unit.domain_builders import (
    CUSTOMER,
    at,
    complaint,
    conversions,
    customer_facts,
    default_policy,
    flat,
    order,
    prospect,
    referral_converted,
    referral_made,
    referral_received,
    refund,
    run,
    stage_steps,
    touch,
    without_stage_time,
)

POLICY = default_policy()
PROPS = settings(max_examples=200, deadline=None)

JAN = at(2024, 1, 10)
JAN2 = at(2024, 1, 20)
JAN3 = at(2024, 1, 25)
FEB = at(2024, 2, 5)
MAR = at(2024, 3, 5)
M_JAN = month_index(JAN)
M_FEB = month_index(FEB)

VISITOR_REASON = "first event: knows us"
ADVOCATE_REASON = "3 full price orders, 1 referral made"


def sc(fact: Fact, from_stage: str, to_stage: str, reason: str) -> StageChanged:
    """The stage change `fact` should cause."""
    return StageChanged(
        customer_id=fact.customer_id,
        from_stage=from_stage,
        to_stage=to_stage,
        occurred_at=fact.occurred_at,
        cause_event_id=fact.event_id,
        reason=reason,
    )


@dataclass
class Case:
    prior: list[Fact]
    fact: Fact
    fields: dict[str, Any]
    changes: list[Change] = field(default_factory=list)


def _case_table() -> dict[str, Case]:
    o1, o2 = order("o1", JAN), order("o2", JAN2)
    first = order("o1", JAN)
    third_same_month = order("o3", JAN3)
    third_feb = order("o3", FEB)
    third_feb_after_ref = order("o3", FEB)
    ref_last = referral_made("r1", MAR)
    disc_feb = order("o3", FEB, discount="5.00")
    fourth_full = order("o4", MAR)
    one_month_adv = order("o3", JAN3)
    cpl = complaint("k1", JAN, handling_cost="12.50")
    rm = referral_made("r1", JAN, referred="friend-1", reward_cost="5.00")
    rr = referral_received("rr1", JAN, referrer="r-a")
    rr_after_order = referral_received("rr1", FEB, referrer="r-a")
    ord_pending = order("o1", FEB)
    first_refund = refund("x1", JAN, "50.00", cost="2.00")
    conv = referral_converted("r1", FEB, referred="friend-1")
    conv_new = referral_converted("r9", FEB, referred="friend-9")
    cents = order("o2", JAN2, "0.20", cost="0.10")
    # 01:00 at +03:00 on 1 February is 22:00 UTC on 31 January: a January order
    tz_order = order("o3", datetime(2024, 2, 1, 1, 0, tzinfo=timezone(timedelta(hours=3))))
    return {
        "new-customer-complaint-one-change-potential-visitor": Case(
            [],
            cpl,
            {
                "stage": "visitor",
                "complaints": 1,
                "orders": 0,
                "sales": "0",
                "costs": "12.50",
                "stage_entered_at": JAN,
                "first_seen_at": JAN,
                "last_event_at": JAN,
            },
            [sc(cpl, "potential", "visitor", VISITOR_REASON)],
        ),
        "new-customer-first-order-two-changes-in-ladder-order": Case(
            [],
            first,
            {
                "stage": "first_purchase",
                "orders": 1,
                "full_price_orders": 1,
                "sales": "100.00",
                "order_months": frozenset({M_JAN}),
                "stage_entered_at": JAN,
            },
            [sc(first, "potential", "visitor", VISITOR_REASON), sc(first, "visitor", "first_purchase", "1 order")],
        ),
        "visitor-first-order-one-change": Case(
            [complaint("k1", JAN)],
            order("o1", FEB),
            {
                "stage": "first_purchase",
                "orders": 1,
                "complaints": 1,
                "stage_entered_at": FEB,
                "first_seen_at": JAN,
                "last_event_at": FEB,
            },
            [sc(order("o1", FEB), "visitor", "first_purchase", "1 order")],
        ),
        "three-orders-one-month-stays-first-purchase": Case(
            [o1, o2],
            third_same_month,
            {"stage": "first_purchase", "orders": 3, "order_months": frozenset({M_JAN}), "stage_entered_at": JAN},
            [],
        ),
        "third-order-in-second-month-regular": Case(
            [o1, o2],
            third_feb,
            {"stage": "regular", "orders": 3, "order_months": frozenset({M_JAN, M_FEB}), "stage_entered_at": FEB},
            [sc(third_feb, "first_purchase", "regular", "3 orders in 2 months")],
        ),
        "order-at-plus-0300-on-1-feb-is-a-utc-january-order": Case(
            [o1, o2], tz_order, {"stage": "first_purchase", "orders": 3, "order_months": frozenset({M_JAN})}, []
        ),
        "regular-and-advocate-on-one-event": Case(
            [o1, o2, referral_made("r1", JAN2)],
            third_feb_after_ref,
            {"stage": "advocate", "orders": 3, "full_price_orders": 3, "referrals_made": 1},
            [
                sc(third_feb_after_ref, "first_purchase", "regular", "3 orders in 2 months"),
                sc(third_feb_after_ref, "regular", "advocate", ADVOCATE_REASON),
            ],
        ),
        "referral-last-makes-regular-advocate": Case(
            [o1, o2, order("o3", FEB)],
            ref_last,
            {"stage": "advocate", "referrals_made": 1, "stage_entered_at": MAR},
            [sc(ref_last, "regular", "advocate", ADVOCATE_REASON)],
        ),
        "discounted-orders-are-not-full-price": Case(
            [order("o1", JAN, discount="5.00"), order("o2", JAN2, discount="0.01"), referral_made("r1", JAN)],
            disc_feb,
            {"stage": "regular", "orders": 3, "full_price_orders": 0},
            [sc(disc_feb, "first_purchase", "regular", "3 orders in 2 months")],
        ),
        "third-full-price-order-after-a-discounted-one-makes-advocate": Case(
            [o1, order("o2", JAN2, discount="5.00"), referral_made("r1", JAN), order("o3", FEB)],
            fourth_full,
            {"stage": "advocate", "orders": 4, "full_price_orders": 3},
            [sc(fourth_full, "regular", "advocate", ADVOCATE_REASON)],
        ),
        "advocate-needs-regular-first": Case(
            [o1, o2, referral_made("r1", JAN)],
            one_month_adv,
            {"stage": "first_purchase", "full_price_orders": 3, "referrals_made": 1},
            [],
        ),
        "refund-never-moves-down-and-moves-money": Case(
            [order("o1", JAN, cost="60.00"), order("o2", JAN2, cost="60.00"), order("o3", FEB, cost="60.00")],
            refund("x1", MAR, "100.00", cost="5.00"),
            {
                "stage": "regular",
                "refunds": 1,
                "orders": 3,
                "sales": "200.00",
                "costs": "185.00",
                "stage_entered_at": FEB,
                "last_event_at": MAR,
            },
            [],
        ),
        "refund-larger-than-sales-makes-sales-negative": Case(
            [order("o1", JAN, "30.00")],
            refund("x1", FEB, "45.50"),
            {"stage": "first_purchase", "refunds": 1, "orders": 1, "sales": "-15.50"},
            [],
        ),
        "refund-as-first-event-makes-a-visitor": Case(
            [],
            first_refund,
            {"stage": "visitor", "refunds": 1, "orders": 0, "sales": "-50.00", "costs": "2.00"},
            [sc(first_refund, "potential", "visitor", VISITOR_REASON)],
        ),
        "referral-made-counts-and-adds-reward-cost": Case(
            [],
            rm,
            {"stage": "visitor", "referrals_made": 1, "costs": "5.00", "sales": "0"},
            [sc(rm, "potential", "visitor", VISITOR_REASON)],
        ),
        "referral-received-creates-referred-as-visitor": Case(
            [],
            rr,
            {
                "stage": "visitor",
                "orders": 0,
                "referrals_made": 0,
                "pending_referrals": frozenset({PendingReferral("rr1", "r-a", JAN)}),
                "activity": (),
            },
            [sc(rr, "potential", "visitor", VISITOR_REASON)],
        ),
        "referral-received-after-an-order-converts-at-once": Case(
            [order("o1", JAN)],
            rr_after_order,
            {"stage": "first_purchase", "pending_referrals": frozenset()},
            [
                ReferralConverted(
                    referrer_id="r-a", referred_customer_id=CUSTOMER, referral_event_id="rr1", occurred_at=FEB
                )
            ],
        ),
        "first-order-converts-every-pending-referral": Case(
            [referral_received("rr2", JAN2, referrer="r-b"), referral_received("rr1", JAN, referrer="r-a")],
            ord_pending,
            {"stage": "first_purchase", "pending_referrals": frozenset()},
            [
                sc(ord_pending, "visitor", "first_purchase", "1 order"),
                ReferralConverted("r-a", CUSTOMER, "rr1", JAN),
                ReferralConverted("r-b", CUSTOMER, "rr2", JAN2),
            ],
        ),
        "second-order-converts-nothing": Case(
            [referral_received("rr1", JAN, referrer="r-a"), order("o1", JAN2)],
            order("o2", FEB),
            {"orders": 2, "pending_referrals": frozenset()},
            [],
        ),
        "refund-does-not-convert-a-pending-referral": Case(
            [referral_received("rr1", JAN, referrer="r-a")],
            refund("x1", FEB),
            {"pending_referrals": frozenset({PendingReferral("rr1", "r-a", JAN)})},
            [],
        ),
        "referral-converted-counts": Case(
            [referral_made("r1", JAN, referred="friend-1")],
            conv,
            {
                "stage": "visitor",
                "referrals_converted": 1,
                "referrals_made": 1,
                "activity": ((M_JAN, MonthActivity(referrals=1)), (M_FEB, MonthActivity(conversions=1))),
            },
            [],
        ),
        "referral-converted-for-unknown-referrer-creates-them": Case(
            [],
            conv_new,
            {"stage": "visitor", "referrals_converted": 1},
            [sc(conv_new, "potential", "visitor", VISITOR_REASON)],
        ),
        "money-is-exact-0.10-plus-0.20": Case(
            [order("o1", JAN, "0.10", cost="0.20")],
            cents,
            {
                "sales": "0.30",
                "costs": "0.30",
                "profit": "0.00",
                "activity": ((M_JAN, MonthActivity(orders=2, order_value=Decimal("0.30"))),),
            },
            [],
        ),
        "late-fact-moves-first-seen-back-not-last-event": Case(
            [order("o1", FEB)],
            complaint("k1", JAN),
            {"first_seen_at": JAN, "last_event_at": FEB, "stage_entered_at": FEB, "complaints": 1},
            [],
        ),
    }


CASES = _case_table()


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_apply_table(case: Case) -> None:
    state, _ = run(case.prior, POLICY) if case.prior else (None, [])
    after, changes = apply(state, case.fact, policy=POLICY)
    for name, expected in case.fields.items():
        actual = getattr(after, name)
        if isinstance(actual, Decimal):
            assert str(actual) == expected, name  # exact, digits included
        else:
            assert actual == expected, name
    assert changes == case.changes
    assert after.customer_id == case.fact.customer_id


def test_apply_does_not_mutate_the_given_state() -> None:
    state, _ = run([order("o1", JAN)], POLICY)
    snapshot = to_json(state)
    apply(state, order("o2", FEB), policy=POLICY)
    assert to_json(state) == snapshot


def test_unknown_fact_kind_is_refused() -> None:
    bad = replace(order("o1", JAN), kind="order_cancelled")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order_cancelled"):
        apply(None, bad, policy=POLICY)


def test_full_history_of_a_customer_climbing_to_advocate() -> None:
    facts = [complaint("k1", JAN), order("o1", JAN2), order("o2", JAN3), referral_made("r1", FEB), order("o3", MAR)]
    state, per_fact = run(facts, POLICY)
    assert [stage_steps(c) for c in per_fact] == [
        [("potential", "visitor")],
        [("visitor", "first_purchase")],
        [],
        [],
        [("first_purchase", "regular"), ("regular", "advocate")],
    ]
    assert state.stage == "advocate"
    assert state.stage_entered_at == MAR
    assert [c.cause_event_id for c in flat(per_fact) if isinstance(c, StageChanged)] == ["k1", "o1", "o3", "o3"]


# ---- conditions, reached_rung, next_rung ---------------------------------------------------------------------


def _state(facts: list[Fact]) -> CustomerState:
    return run(facts, POLICY)[0] if facts else new_customer(CUSTOMER, JAN)


NEXT_RUNG = {
    "potential": ([], "visitor", [("known", 0, 1, False)]),
    "prospect": ([prospect("p1", JAN)], "visitor", [("known", 0, 1, False)]),
    "visitor": ([complaint("k1", JAN)], "first_purchase", [("orders", 0, 1, False)]),
    "first_purchase": (
        [order("o1", JAN), order("o2", JAN2, discount="1.00")],
        "regular",
        [("orders", 2, 3, False), ("order_months", 1, 2, False)],
    ),
    "regular": (
        [order("o1", JAN), order("o2", JAN2), order("o3", FEB, discount="1.00")],
        "advocate",
        [("full_price_orders", 2, 3, False), ("referrals_made", 0, 1, False)],
    ),
    "regular-half-way": (
        [
            order("o1", JAN),
            order("o2", JAN2, discount="1.00"),
            order("o3", FEB, discount="1"),
            referral_made("r1", FEB),
        ],
        "advocate",
        [("full_price_orders", 1, 3, False), ("referrals_made", 1, 1, True)],
    ),
    "advocate": ([order("o1", JAN), order("o2", JAN2), order("o3", FEB), referral_made("r1", FEB)], None, []),
}


@pytest.mark.parametrize(("facts", "expected_next", "expected_conds"), list(NEXT_RUNG.values()), ids=list(NEXT_RUNG))
def test_next_rung(
    facts: list[Fact], expected_next: str | None, expected_conds: list[tuple[str, int, int, bool]]
) -> None:
    state = _state(facts)
    rung, conds = next_rung(state, policy=POLICY)
    assert rung == expected_next
    assert [(c.name, c.have, c.need, c.met) for c in conds] == expected_conds


def test_conditions_of_each_rung() -> None:
    state = _state([order("o1", JAN), order("o2", FEB)])
    assert conditions(state, "potential", policy=POLICY) == []
    assert conditions(state, "visitor", policy=POLICY) == [Condition("known", 1, 1)]
    assert conditions(state, "first_purchase", policy=POLICY) == [Condition("orders", 2, 1)]
    assert conditions(state, "regular", policy=POLICY) == [Condition("orders", 2, 3), Condition("order_months", 2, 2)]
    assert [c.met for c in conditions(state, "regular", policy=POLICY)] == [False, True]


def test_reached_rung_is_visitor_for_a_known_customer_and_never_skips() -> None:
    assert reached_rung(new_customer(CUSTOMER, JAN), policy=POLICY) == "potential"
    assert reached_rung(_state([prospect("p1", JAN)]), policy=POLICY) == "potential"
    assert reached_rung(_state([touch("t1", JAN)]), policy=POLICY) == "visitor"
    # advocate's own numbers met, regular's not: stays on first_purchase
    state = replace(_state([order("o1", JAN)]), full_price_orders=5, referrals_made=3)
    assert reached_rung(state, policy=POLICY) == "first_purchase"


def test_rungs_a_customer_stands_on_count_as_met_after_a_stricter_policy() -> None:
    # on `regular` under the default policy (3 orders in 2 months)
    state, _ = run([order("o1", JAN), order("o2", JAN2), order("o3", FEB)], POLICY)
    assert state.stage == "regular"
    # the stricter policy's regular (4 orders in 3 months) no longer holds; the customer stays on it ...
    assert reached_rung(state, policy=STRICT) == "first_purchase"
    assert reached_rung(state, policy=STRICT, standing_on="regular") == "regular"
    c1 = complaint("k1", FEB)
    state, changes = apply(state, c1, policy=STRICT)
    assert (state.stage, changes) == ("regular", [])
    # ... and climbs on advocate's own conditions, as next_rung tells the marketer
    assert [(c.name, c.met) for c in next_rung(state, policy=STRICT)[1]] == [("referrals_converted", False)]
    conv = referral_converted("r1", FEB)
    state, changes = apply(state, conv, policy=STRICT)
    assert state.stage == "advocate"
    assert stage_steps(changes) == [("regular", "advocate")]


# ---- a policy with other numbers -----------------------------------------------------------------------------

STRICT = parse_policy("""
[rungs.first_purchase]
orders = 2
[rungs.regular]
orders = 4
order_months = 3
[rungs.advocate]
referrals_converted = 1
""")

LOOSE = parse_policy("""
[rungs.first_purchase]
orders = 1
[rungs.regular]
orders = 1
order_months = 1
[rungs.advocate]
full_price_orders = 0
""")


def test_stricter_policy_moves_the_rungs() -> None:
    state, per_fact = run([order("o1", JAN)], STRICT)
    assert state.stage == "visitor"
    assert stage_steps(flat(per_fact)) == [("potential", "visitor")]
    assert [(c.name, c.have, c.need) for c in next_rung(state, policy=STRICT)[1]] == [("orders", 1, 2)]

    o2 = order("o2", JAN2)
    state, changes = apply(state, o2, policy=STRICT)
    assert changes == [sc(o2, "visitor", "first_purchase", "2 orders")]

    facts = [order("o3", FEB), order("o4", FEB), referral_made("r1", FEB)]
    state, per_fact = run(facts, STRICT, state)
    assert state.stage == "first_purchase"  # 4 orders in 2 months: the strict policy needs 3 months
    o5 = order("o5", MAR)
    state, changes = apply(state, o5, policy=STRICT)
    assert changes == [sc(o5, "first_purchase", "regular", "5 orders in 3 months")]
    conv = referral_converted("r1", MAR)
    state, changes = apply(state, conv, policy=STRICT)
    assert changes == [sc(conv, "regular", "advocate", "1 referral converted")]
    assert state.stage == "advocate"


def test_loose_policy_climbs_every_rung_on_the_first_order() -> None:
    first = order("o1", JAN, discount="3.00")
    _, changes = apply(None, first, policy=LOOSE)
    assert changes == [
        sc(first, "potential", "visitor", VISITOR_REASON),
        sc(first, "visitor", "first_purchase", "1 order"),
        sc(first, "first_purchase", "regular", "1 order in 1 month"),
        sc(first, "regular", "advocate", "0 full price orders"),
    ]
    # the same order under the default policy
    _, changes = apply(None, first, policy=POLICY)
    assert stage_steps(changes) == [("potential", "visitor"), ("visitor", "first_purchase")]


def test_policy_without_conditions_on_a_rung_uses_the_rung_name_as_reason() -> None:
    # an explicitly empty rung section: the rung needs nothing beyond the one below it
    policy = parse_policy("[rungs.first_purchase]\norders = 1\n[rungs.regular]\norders = 2\n[rungs.advocate]\n")
    o2 = order("o2", JAN2)
    state, _ = run([order("o1", JAN)], policy)
    _, changes = apply(state, o2, policy=policy)
    assert changes == [sc(o2, "first_purchase", "regular", "2 orders"), sc(o2, "regular", "advocate", "advocate")]


# ---- properties ----------------------------------------------------------------------------------------------


def _rungs(changes: list[Change]) -> set[str]:
    return {to for _, to in stage_steps(changes)}


def _conversion_keys(changes: list[Change]) -> list[tuple[str, str, str, datetime]]:
    return sorted(
        (c.referrer_id, c.referred_customer_id, c.referral_event_id, c.occurred_at) for c in conversions(changes)
    )


@PROPS
@given(st.data())
def test_any_order_of_the_facts_ends_in_the_same_state_and_rungs(data: st.DataObject) -> None:
    facts = data.draw(customer_facts(), label="facts")
    shuffled = data.draw(st.permutations(facts), label="shuffled")
    state_a, per_a = run(facts, POLICY)
    state_b, per_b = run(shuffled, POLICY)
    assert without_stage_time(state_a) == without_stage_time(state_b)
    assert to_json(without_stage_time(state_a)) == to_json(without_stage_time(state_b))
    assert _rungs(flat(per_a)) == _rungs(flat(per_b))
    # the cross-customer effects too: each referral converts once, with the same key and time
    assert _conversion_keys(flat(per_a)) == _conversion_keys(flat(per_b))


def _deduped_run(
    facts: list[Fact],
    policy: Policy,
    state: CustomerState | None,
    seen: set[tuple[str, str]],
) -> tuple[CustomerState | None, list[Change]]:
    """What the caller does: skip a fact whose (event_id, role) was applied already."""
    out: list[Change] = []
    for fact in facts:
        if fact.dedupe_key in seen:
            continue
        seen.add(fact.dedupe_key)
        state, changes = apply(state, fact, policy=policy)
        out.extend(changes)
    return state, out


@PROPS
@given(customer_facts())
def test_applying_the_list_twice(facts: list[Fact]) -> None:
    # with the caller's dedupe (by Fact.dedupe_key) the second pass is a no-op
    seen: set[tuple[str, str]] = set()
    once, _ = _deduped_run(facts, POLICY, None, seen)
    twice, second = _deduped_run(facts, POLICY, once, seen)
    assert twice == once
    assert second == []
    # without it the domain counts every fact again (dedupe is the caller's job), but still never
    # re-announces a rung or leaves one: the rung set only grows
    raw_once, per_once = run(facts, POLICY)
    raw_twice, per_twice = run(facts, POLICY, raw_once)
    assert raw_twice.orders == 2 * raw_once.orders
    assert not _rungs(flat(per_once)) & _rungs(flat(per_twice))
    assert RANK[raw_twice.stage] >= RANK[raw_once.stage]


def test_without_dedupe_a_repeated_list_can_climb() -> None:
    """Why the caller must dedupe: two orders in two months, counted twice, look like four."""
    facts = [order("o1", JAN), order("o2", FEB)]
    once, _ = run(facts, POLICY)
    twice, per_fact = run(facts, POLICY, once)
    assert (once.stage, twice.stage) == ("first_purchase", "regular")
    assert stage_steps(flat(per_fact)) == [("first_purchase", "regular")]


@PROPS
@given(customer_facts())
def test_climbing_is_monotone_in_ladder_order_and_each_rung_once(facts: list[Fact]) -> None:
    state: CustomerState | None = None
    steps: list[tuple[str, str]] = []
    for fact in facts:
        before = state
        state, changes = apply(state, fact, policy=POLICY)
        if before is not None:
            assert RANK[state.stage] >= RANK[before.stage]
        kinds = [type(c) for c in changes]
        # stage changes come first, then cross-customer effects
        assert kinds == sorted(kinds, key=lambda k: k is ReferralConverted)
        fact_steps = stage_steps(changes)
        assert all(
            c.cause_event_id == fact.event_id and c.occurred_at == fact.occurred_at
            for c in changes
            if isinstance(c, StageChanged)
        )
        if fact_steps:
            assert fact_steps[-1][1] == state.stage
            assert state.stage_entered_at == fact.occurred_at
        steps.extend(fact_steps)
    assert state is not None
    # potential -> visitor -> ... -> the final rung, each once, no gaps
    assert steps == [(STAGES[i - 1], STAGES[i]) for i in range(1, RANK[state.stage] + 1)]
    assert state.stage == reached_rung(state, policy=POLICY)


@PROPS
@given(customer_facts())
def test_state_round_trips_through_json(facts: list[Fact]) -> None:
    state, _ = run(facts, POLICY)
    raw = to_json(state)
    wire = json.loads(json.dumps(raw))
    back = from_json(wire)
    assert back == state
    assert to_json(back) == raw
    assert [str(a.order_value) for _, a in back.activity] == [str(a.order_value) for _, a in state.activity]
    assert (str(back.sales), str(back.costs)) == (str(state.sales), str(state.costs))
    # the stored text is written by orjson from datetimes, not from to_json's isoformat() strings: the same bytes
    assert to_text(state) == orjson.dumps(raw).decode()
    assert from_text(to_text(state)) == state


def test_the_stored_text_writes_fractions_and_offsets_as_isoformat_did() -> None:
    moments = [
        datetime(2024, 2, 1, 1, 0, 0, 123456, tzinfo=timezone(timedelta(hours=3))),
        datetime(2024, 3, 5, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 3, 6, 0, 0, 0, 500, tzinfo=UTC),
    ]
    state, _ = run([order(f"o{i}", at) for i, at in enumerate(moments)], POLICY)
    assert to_text(state) == orjson.dumps(to_json(state)).decode()
    assert '"first_seen_at":"2024-01-31T22:00:00.123456+00:00"' in to_text(state)


def _buckets_by_the_general_rule(
    activity: tuple[tuple[int, MonthActivity], ...], month: int, delta: MonthActivity, horizon: int
) -> tuple[tuple[int, MonthActivity], ...]:
    """Add to the month, keep the months within `horizon` before the newest: the rule, without fast paths."""
    buckets = dict(activity)
    newest = max([month, *buckets])
    cutoff = newest - horizon
    if month > cutoff:
        buckets[month] = buckets[month].plus(delta) if month in buckets else delta
    return tuple(sorted((m, a) for m, a in buckets.items() if m > cutoff))


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(24_300, 24_400), st.integers(1, 3)), max_size=30), st.integers(12, 40))
def test_the_bucket_fast_paths_follow_the_general_rule(events: list[tuple[int, int]], horizon: int) -> None:
    policy = replace(POLICY, activity_horizon_months=horizon)
    fast: tuple[tuple[int, MonthActivity], ...] = ()
    general: tuple[tuple[int, MonthActivity], ...] = ()
    for month, orders in events:
        moment = datetime(month // 12, month % 12 + 1, 15, tzinfo=UTC)
        delta = MonthActivity(orders=orders, order_value=Decimal(orders))
        fast = _with_activity(fast, moment, delta, policy=policy)
        general = _buckets_by_the_general_rule(general, month, delta, horizon)
        assert fast == general


# ---- prospects and touches (contract section 12) --------------------------------------------------------------


def test_a_prospect_stays_on_potential_and_announces_nothing() -> None:
    state, changes = apply(None, prospect("p1", JAN, source="fair-2024"), policy=POLICY)
    assert (state.stage, state.known, changes) == ("potential", False, [])
    again, more = apply(state, prospect("p2", FEB), policy=POLICY)
    assert (again.stage, more, again.first_seen_at, again.last_event_at) == ("potential", [], JAN, FEB)


@pytest.mark.parametrize("channel", ["email", "web", "store", "ad", "call", "other"])
def test_a_touch_makes_a_prospect_a_visitor_with_the_channel_as_reason(channel: str) -> None:
    t = touch("t1", FEB, channel=channel)
    state, changes = run([prospect("p1", JAN), t], POLICY)
    assert flat(changes) == [sc(t, "potential", "visitor", f"first touch: {channel}")]
    assert (state.stage, state.touches, state.first_seen_at) == ("visitor", 1, JAN)


def test_a_purchase_still_makes_a_prospect_a_visitor_at_once() -> None:
    o = order("o1", FEB)
    state, changes = run([prospect("p1", JAN), o], POLICY)
    assert stage_steps(flat(changes)) == [("potential", "visitor"), ("visitor", "first_purchase")]
    assert flat(changes)[0] == sc(o, "potential", "visitor", VISITOR_REASON)
    # and a listing after the purchase changes no rung
    later, none = apply(state, prospect("p2", MAR), policy=POLICY)
    assert (later.stage, none) == ("first_purchase", [])


def test_only_inbound_touches_count_as_contacts() -> None:
    state, _ = run(
        [
            touch("t1", JAN, direction="outbound"),
            touch("t2", JAN2, direction="inbound"),
            touch("t3", FEB, direction="inbound"),
        ],
        POLICY,
    )
    assert state.touches == 3
    assert [(m, a.inbound_touches, a.contacts) for m, a in state.activity] == [(M_JAN, 1, 1), (M_FEB, 1, 1)]
    outbound_only, _ = run([touch("t1", JAN, direction="outbound")], POLICY)
    assert outbound_only.activity == ()


def test_a_state_stored_before_prospects_reads_as_known() -> None:
    state, _ = run([order("o1", JAN)], POLICY)
    raw = to_json(state)
    del raw["known"], raw["touches"]
    raw["activity"] = [row[:7] for row in raw["activity"]]
    assert from_json(raw) == state
