"""Measures of a customer: loyalty vector, stability, profitability and tier (services/scoring/domain/measures.py).

The expected loyalty numbers are worked out by hand from docs/loyalty.md, so a change of formula fails here.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.ladder import StageChanged, new_customer, next_rung
from services.scoring.domain.measures import Loyalty, loyalty, money, profitability, stability, tier
from services.scoring.domain.policy import Policy, parse_policy
from services.scoring.domain.state import LOYALTY_KINDS, CustomerState, MonthActivity, month_index, month_start
from shared.wire.messages import Fact
from tests.unit.domain_builders import (
    START,
    at,
    complaint,
    customer_facts,
    days,
    default_policy,
    order,
    referral_converted,
    referral_made,
    referral_received,
    refund,
    run,
)

POLICY = default_policy()
PROPS = settings(max_examples=200, deadline=None)
ZERO = Loyalty(0.0, 0.0, 0.0, 0.0, 0.0)


def sat(activity: float, scale: float) -> float:
    return 1 - math.exp(-activity / scale)


# ---- loyalty: exact values -------------------------------------------------------------------------------

LOYALTY_CASES: dict[str, tuple[list[Fact], datetime, Loyalty]] = {
    # 500.00 of orders at age 0: financial 1-e^-1; procedural 1-e^-(1/2); contact 1-e^-(1/4)
    "one-order-500-at-month-start": (
        [order("o1", at(2024, 1, 1), "500.00")],
        at(2024, 1, 1),
        Loyalty(0.6321, 0.3935, 0.2212, 0.0, 0.0),
    ),
    # one half-life (180 days) later: halved activity; contact (90 days) two half-lives
    "one-order-500-180-days-later": (
        [order("o1", at(2024, 1, 1), "500.00")],
        at(2024, 1, 1) + days(180),
        Loyalty(0.3935, 0.2212, 0.0606, 0.0, 0.0),
    ),
    # age counts from the start of the order's month: 30 days old on the day it was placed
    "order-on-the-31st-is-30-days-old-that-day": (
        [order("o1", at(2024, 1, 31), "500.00")],
        at(2024, 1, 31),
        Loyalty(0.5897, 0.3595, 0.18, 0.0, 0.0),
    ),
    # age is never negative: read before its month, an order counts as new
    "read-before-the-month-counts-as-age-0": (
        [order("o1", at(2024, 1, 1), "500.00")],
        at(2023, 6, 1),
        Loyalty(0.6321, 0.3935, 0.2212, 0.0, 0.0),
    ),
    # procedural x orders/(orders + 2*refunds) = 1/3; financial ignores refunds; contact counts both
    "order-and-refund": (
        [order("o1", at(2024, 1, 1), "500.00"), refund("x1", at(2024, 1, 2), "500.00")],
        at(2024, 1, 1),
        Loyalty(0.6321, 0.1312, 0.3935, 0.0, 0.0),
    ),
    "refund-only-has-no-procedural": (
        [refund("x1", at(2024, 1, 2), "20.00")],
        at(2024, 1, 1),
        Loyalty(0.0, 0.0, 0.2212, 0.0, 0.0),
    ),
    "complaint": (
        [complaint("k1", at(2024, 1, 5), handling_cost="3.00")],
        at(2024, 1, 1),
        Loyalty(0.0, 0.0, 0.2212, 0.6321, 0.0),
    ),
    # consultative: 1 referral + 2 x 1 conversion = 3, scale 2; contact counts the referral, not the conversion
    "referral-and-its-conversion": (
        [referral_made("r1", at(2024, 1, 5)), referral_converted("r1", at(2024, 1, 5))],
        at(2024, 1, 1),
        Loyalty(0.0, 0.0, 0.2212, 0.0, 0.7769),
    ),
    "referral-without-conversion": (
        [referral_made("r1", at(2024, 1, 5))],
        at(2024, 1, 1),
        Loyalty(0.0, 0.0, 0.2212, 0.0, 0.3935),
    ),
    "being-referred-is-no-activity": ([referral_received("rr1", at(2024, 1, 5))], at(2024, 1, 1), ZERO),
    "zero-amount-order-has-no-financial": (
        [order("o1", at(2024, 1, 1), "0.00")],
        at(2024, 1, 1),
        Loyalty(0.0, 0.3935, 0.2212, 0.0, 0.0),
    ),
}


@pytest.mark.parametrize(("facts", "when", "expected"), list(LOYALTY_CASES.values()), ids=list(LOYALTY_CASES))
def test_loyalty_values(facts: list[Fact], when: datetime, expected: Loyalty) -> None:
    state, _ = run(facts, POLICY)
    assert loyalty(state, at=when, policy=POLICY) == expected


def test_loyalty_matches_the_documented_formula_over_several_months() -> None:
    facts = [
        order("o1", at(2024, 1, 3), "120.00"),
        order("o2", at(2024, 3, 9), "80.00"),
        refund("x1", at(2024, 3, 20), "80.00"),
        complaint("k1", at(2024, 2, 2)),
        referral_made("r1", at(2024, 2, 2)),
        referral_converted("r1", at(2024, 4, 1)),
    ]
    state, _ = run(facts, POLICY)
    when = at(2024, 6, 15)

    def age(month: datetime) -> float:
        return (when - month).total_seconds() / 86400

    jan, feb, mar, apr = at(2024, 1, 1), at(2024, 2, 1), at(2024, 3, 1), at(2024, 4, 1)
    fin = 120 * 0.5 ** (age(jan) / 180) + 80 * 0.5 ** (age(mar) / 180)
    orders = 0.5 ** (age(jan) / 180) + 0.5 ** (age(mar) / 180)
    refunds = 0.5 ** (age(mar) / 180)
    contact = 0.5 ** (age(jan) / 90) + 2 * 0.5 ** (age(feb) / 90) + 2 * 0.5 ** (age(mar) / 90)
    cons = 0.5 ** (age(feb) / 180) + 2 * 0.5 ** (age(apr) / 180)
    expected = Loyalty(
        round(sat(fin, 500), 4),
        round(sat(orders, 2) * orders / (orders + 2 * refunds), 4),
        round(sat(contact, 4), 4),
        round(sat(0.5 ** (age(feb) / 180), 1), 4),
        round(sat(cons, 2), 4),
    )
    assert loyalty(state, at=when, policy=POLICY) == expected


def test_loyalty_constants_come_from_the_policy() -> None:
    policy = parse_policy("""
[loyalty.financial]
half_life_days = 30
scale = "100"
""")
    state, _ = run([order("o1", at(2024, 1, 1), "100.00")], policy)
    got = loyalty(state, at=at(2024, 1, 31), policy=policy)
    assert got.financial == round(sat(0.5, 1), 4) == 0.3935
    # kinds the file leaves out keep the contract's defaults (procedural: half-life 180, scale 2)
    assert got.procedural == round(sat(0.5 ** (30 / 180), 2), 4)


def test_activity_older_than_the_horizon_is_cut() -> None:
    old = order("o1", at(2020, 1, 15), "500.00")
    # 35 months later the January 2020 bucket is still kept ...
    kept, _ = run([old, complaint("k1", at(2022, 12, 15))], POLICY)
    assert [m for m, _ in kept.activity] == [month_index(at(2020, 1)), month_index(at(2022, 12))]
    age = (at(2023, 1, 1) - at(2020, 1, 1)).days  # 1096
    assert loyalty(kept, at=at(2023, 1, 1), policy=POLICY).financial == round(sat(500 * 0.5 ** (age / 180), 500), 4)
    # ... 36 months later it is gone, from loyalty only: the counts and stability's months stay
    cut, _ = run([old, complaint("k1", at(2023, 1, 15))], POLICY)
    assert cut.activity == ((month_index(at(2023, 1)), MonthActivity(complaints=1)),)
    assert loyalty(cut, at=at(2023, 1, 15), policy=POLICY).financial == 0.0
    assert (cut.orders, cut.sales, cut.order_months) == (1, Decimal("500.00"), frozenset({month_index(at(2020, 1))}))
    # the same facts the other way round: the late order is never bucketed, same state
    late, _ = run([complaint("k1", at(2023, 1, 15)), old], POLICY)
    assert late.activity == cut.activity


# ---- stability -----------------------------------------------------------------------------------------------

STABILITY_CASES: dict[str, tuple[list[Fact], datetime, float]] = {
    "no-orders": ([complaint("k1", at(2024, 1, 5))], at(2024, 1, 20), 0.0),
    "two-months": ([order("o1", at(2024, 1, 5)), order("o2", at(2024, 2, 5))], at(2024, 2, 28), 0.1667),
    "same-month-counts-once": (
        [order("o1", at(2024, 1, 5)), order("o2", at(2024, 1, 6)), order("o3", at(2024, 1, 31))],
        at(2024, 1, 31),
        0.0833,
    ),
    "eleven-months-back-is-in": ([order("o1", at(2023, 2, 1))], at(2024, 1, 31, 23, 59), 0.0833),
    "twelve-months-back-is-out": ([order("o1", at(2023, 1, 31, 23, 59))], at(2024, 1, 1), 0.0),
    "future-month-is-out": ([order("o1", at(2024, 3, 1))], at(2024, 2, 29, 23, 59), 0.0),
    "refunds-are-not-orders": ([refund("x1", at(2024, 1, 5))], at(2024, 1, 20), 0.0),
    "every-month-for-13-months": (
        [order(f"o{i}", at(2023 + (i // 12), i % 12 + 1, 15)) for i in range(13)],
        at(2024, 1, 20),
        1.0,
    ),
    "six-of-twelve": ([order(f"o{i}", at(2023, 2 * i + 1, 15)) for i in range(6)], at(2023, 12, 31), 0.5),
}


@pytest.mark.parametrize(("facts", "when", "expected"), list(STABILITY_CASES.values()), ids=list(STABILITY_CASES))
def test_stability_values(facts: list[Fact], when: datetime, expected: float) -> None:
    state, _ = run(facts, POLICY)
    assert stability(state, at=when) == expected


# ---- profitability and tier ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profit", "expected"),
    [
        ("100.00", "profitable"),
        ("100", "profitable"),
        ("100000.5", "profitable"),
        ("99.99", "middling"),
        ("0.00", "middling"),
        ("0", "middling"),
        ("-0.01", "unprofitable"),
        ("-500", "unprofitable"),
    ],
    ids=["100.00", "100", "large", "99.99", "0.00", "0", "-0.01", "-500"],
)
def test_tier_boundaries_of_the_default_policy(profit: str, expected: str) -> None:
    assert tier(Decimal(profit), policy=POLICY) == expected


@pytest.mark.parametrize(
    ("profit", "expected"),
    [
        ("50", "profitable"),
        ("49.99", "middling"),
        ("-10", "middling"),
        ("-10.01", "unprofitable"),
    ],
    ids=["50", "49.99", "-10", "-10.01"],
)
def test_tier_boundaries_of_another_policy(profit: str, expected: str) -> None:
    policy = parse_policy('[tiers]\nprofitable_min = "50"\nunprofitable_below = "-10"\n')
    assert tier(Decimal(profit), policy=policy) == expected


PROFIT_CASES: dict[str, tuple[list[Fact], dict[str, str]]] = {
    "contract-example": (
        [
            order("o1", at(2024, 1, 5), "100.00", cost="60.00"),
            order("o2", at(2024, 1, 9), "100.00", cost="60.00"),
            order("o3", at(2024, 2, 5), "100.00", cost="60.00"),
        ],
        {"sales": "300.00", "costs": "180.00", "profit": "120.00", "tier": "profitable"},
    ),
    "exactly-100": (
        [order("o1", at(2024, 1, 5), "100")],
        {"sales": "100.00", "costs": "0.00", "profit": "100.00", "tier": "profitable"},
    ),
    "99.99": (
        [order("o1", at(2024, 1, 5), "100.00", cost="0.01")],
        {"sales": "100.00", "costs": "0.01", "profit": "99.99", "tier": "middling"},
    ),
    "0.00": (
        [order("o1", at(2024, 1, 5), "0.10", cost="0.10")],
        {"sales": "0.10", "costs": "0.10", "profit": "0.00", "tier": "middling"},
    ),
    "-0.01": (
        [complaint("k1", at(2024, 1, 5), handling_cost="0.01")],
        {"sales": "0.00", "costs": "0.01", "profit": "-0.01", "tier": "unprofitable"},
    ),
    "cents-add-exactly": (
        [
            order("o1", at(2024, 1, 5), "0.10"),
            order("o2", at(2024, 1, 6), "0.20"),
            refund("x1", at(2024, 1, 7), "0.30", cost="0.10"),
            complaint("k1", at(2024, 1, 8), handling_cost="0.20"),
        ],
        {"sales": "0.00", "costs": "0.30", "profit": "-0.30", "tier": "unprofitable"},
    ),
    "every-cost-counts": (
        [
            order("o1", at(2024, 1, 5), "250.00", cost="100.00"),
            refund("x1", at(2024, 1, 6), "50.00", cost="5.00"),
            complaint("k1", at(2024, 1, 7), handling_cost="7.50"),
            referral_made("r1", at(2024, 1, 8), reward_cost="10"),
        ],
        {"sales": "200.00", "costs": "122.50", "profit": "77.50", "tier": "middling"},
    ),
}


@pytest.mark.parametrize(("facts", "expected"), list(PROFIT_CASES.values()), ids=list(PROFIT_CASES))
def test_profitability(facts: list[Fact], expected: dict[str, str]) -> None:
    state, _ = run(facts, POLICY)
    assert profitability(state, policy=POLICY) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("5"), "5.00"),
        (Decimal("0.1") + Decimal("0.2"), "0.30"),
        (Decimal("-0.01"), "-0.01"),
        (Decimal(0), "0.00"),
        (Decimal("12345678901234567.1"), "12345678901234567.10"),
        (Decimal("0.125"), "0.12"),
        (Decimal("0.135"), "0.14"),
    ],
    ids=["int", "0.1+0.2", "negative", "zero", "large", "half-even-down", "half-even-up"],
)
def test_money_has_two_places(value: Decimal, expected: str) -> None:
    assert money(value) == expected


# ---- properties ----------------------------------------------------------------------------------------------


def _active_kinds(facts: list[Fact]) -> set[str]:
    kinds = {f.kind for f in facts}
    out: set[str] = set()
    if "order_placed" in kinds:
        out |= {"financial", "procedural", "contact"}
    if kinds & {"order_refunded", "complaint_filed", "referral_made"}:
        out.add("contact")
    if any(f.kind == "touch_made" and f.direction == "inbound" for f in facts):
        out.add("contact")  # an outbound touch is ours, not theirs: it feeds no loyalty
    if "complaint_filed" in kinds:
        out.add("evaluative")
    if kinds & {"referral_made", "referral_converted"}:
        out.add("consultative")
    return out


@PROPS
@given(customer_facts(), st.integers(-365 * 86400, 6 * 365 * 86400))
def test_loyalty_is_in_0_1_and_0_without_activity_of_its_kind(facts: list[Fact], offset: int) -> None:
    state, _ = run(facts, POLICY)
    values = loyalty(state, at=START + timedelta(seconds=offset), policy=POLICY).as_dict()
    assert list(values) == list(LOYALTY_KINDS)
    assert all(0.0 <= v <= 1.0 for v in values.values()), values
    for kind in set(LOYALTY_KINDS) - _active_kinds(facts):
        assert values[kind] == 0.0, kind


@PROPS
@given(customer_facts(), st.integers(0, 3 * 365 * 86400), st.integers(1, 2 * 365 * 86400))
def test_loyalty_fades_without_new_activity(facts: list[Fact], after_last: int, later: int) -> None:
    state, _ = run(facts, POLICY)
    t0 = state.last_event_at + timedelta(seconds=after_last)
    now = loyalty(state, at=t0, policy=POLICY).as_dict()
    then = loyalty(state, at=t0 + timedelta(seconds=later), policy=POLICY).as_dict()
    year = loyalty(state, at=t0 + days(365), policy=POLICY).as_dict()
    for kind in LOYALTY_KINDS:
        assert then[kind] <= now[kind], kind
        if now[kind] > 0:
            assert year[kind] < now[kind], kind


def documented_loyalty(state: CustomerState, at: datetime, policy: Policy) -> Loyalty:
    """docs/loyalty.md's formulas written plainly: a datetime per month, `total_seconds`, a clamp, no shortcuts."""
    p = dict(policy.kinds)
    sums = dict.fromkeys(("financial", "orders", "refunds", "contact", "evaluative", "consultative"), 0.0)
    for month, act in state.activity:
        age = max(0.0, (at - month_start(month)).total_seconds() / 86400.0)

        def decayed(weight: float, kind: str, age: float = age) -> float:
            return weight * 0.5 ** (age / p[kind].half_life_days)

        if act.orders:
            sums["financial"] += decayed(float(act.order_value), "financial")
            sums["orders"] += decayed(act.orders, "procedural")
        if act.refunds:
            sums["refunds"] += decayed(act.refunds, "procedural")
        if act.contacts:
            sums["contact"] += decayed(act.contacts, "contact")
        if act.complaints:
            sums["evaluative"] += decayed(act.complaints, "evaluative")
        if act.referrals or act.conversions:
            sums["consultative"] += decayed(act.referrals + p["consultative"].extra * act.conversions, "consultative")

    def saturate(activity: float, kind: str) -> float:
        return 1.0 - math.exp(-activity / p[kind].scale) if activity > 0 else 0.0

    orders, refunds = sums["orders"], sums["refunds"]
    procedural = (
        saturate(orders, "procedural") * orders / (orders + p["procedural"].extra * refunds) if orders > 0 else 0.0
    )
    values = (
        saturate(sums["financial"], "financial"),
        procedural,
        saturate(sums["contact"], "contact"),
        saturate(sums["evaluative"], "evaluative"),
        saturate(sums["consultative"], "consultative"),
    )
    return Loyalty(*(round(min(1.0, max(0.0, v)), 4) for v in values))


@PROPS
@given(customer_facts(), st.integers(-365 * 86400, 6 * 365 * 86400), st.integers(0, 999_999))
def test_loyalty_is_exactly_the_documented_formula_read_plainly(facts: list[Fact], offset: int, micros: int) -> None:
    # loyalty() is written for speed (whole microseconds per month, no clamp): it must give the same floats
    state, _ = run(facts, POLICY)
    when = START + timedelta(seconds=offset, microseconds=micros)
    assert loyalty(state, at=when, policy=POLICY) == documented_loyalty(state, when, POLICY)
    other = parse_policy(
        "[loyalty.contact]\nhalf_life_days = 30.5\nscale = 7\n[loyalty.consultative]\n"
        "conversion_weight = 0.5\n[loyalty.procedural]\nrefund_weight = 0\n"
    )
    assert loyalty(state, at=when, policy=other) == documented_loyalty(state, when, other)


def _last_12_months(when: datetime) -> set[tuple[int, int]]:
    y, m = when.year, when.month
    out = set()
    for _ in range(12):
        out.add((y, m))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out


@PROPS
@given(customer_facts(), st.integers(-365 * 86400, 5 * 365 * 86400))
def test_stability_is_the_share_of_the_last_12_months_with_an_order(facts: list[Fact], offset: int) -> None:
    state, _ = run(facts, POLICY)
    when = START + timedelta(seconds=offset)
    months = {(f.occurred_at.year, f.occurred_at.month) for f in facts if f.kind == "order_placed"}
    expected = len(months & _last_12_months(when)) / 12
    got = stability(state, at=when)
    assert 0.0 <= got <= 1.0
    assert got == round(expected, 4)


def test_new_customer_has_zero_measures() -> None:
    state = new_customer("c-0", at(2024, 1, 1))
    assert loyalty(state, at=at(2024, 1, 1), policy=POLICY) == ZERO
    assert stability(state, at=at(2024, 1, 1)) == 0.0
    assert profitability(state, policy=POLICY) == {
        "sales": "0.00",
        "costs": "0.00",
        "profit": "0.00",
        "tier": "middling",
    }


def test_docs_worked_example() -> None:
    """The worked example in docs/loyalty.md, number for number."""
    facts = [
        order("o1", at(2024, 1, 10), "120.00", cost="70.00"),
        order("o2", at(2024, 1, 20), "80.00", cost="50.00", discount="10.00"),
        referral_made("r1", at(2024, 2, 5), reward_cost="5.00"),
        order("o3", at(2024, 2, 12), "100.00", cost="60.00"),
        complaint("k1", at(2024, 3, 1), handling_cost="4.00"),
    ]
    state, per_fact = run(facts, POLICY)
    assert [
        [(c.from_stage, c.to_stage, c.reason) for c in changes if isinstance(c, StageChanged)] for changes in per_fact
    ] == [
        [("potential", "visitor", "first event: knows us"), ("visitor", "first_purchase", "1 order")],
        [],
        [],
        [("first_purchase", "regular", "3 orders in 2 months")],
        [],
    ]
    assert profitability(state, policy=POLICY) == {
        "sales": "300.00",
        "costs": "189.00",
        "profit": "111.00",
        "tier": "profitable",
    }
    rung, conds = next_rung(state, policy=POLICY)
    assert (rung, [(c.name, c.have, c.need, c.met) for c in conds]) == (
        "advocate",
        [("full_price_orders", 2, 3, False), ("referrals_made", 1, 1, True)],
    )
    assert loyalty(state, at=at(2024, 4, 1), policy=POLICY) == Loyalty(0.3563, 0.6675, 0.5323, 0.5883, 0.3276)
    assert stability(state, at=at(2024, 4, 1)) == 0.1667
