"""The focus of a customer (contract section 16): encourage, develop, action, index (domain/focus.py).

Rules checked by hand on chosen vectors, then against a reference written with exact fractions on random
vectors and weights; ties always go to the earliest kind in the order financial, procedural, contact,
evaluative, consultative.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.focus import FIRST_KINDS, NEW_CUSTOMER_STAGES, Focus, focus, index_units
from services.scoring.domain.measures import Loyalty, loyalty
from services.scoring.domain.policy import DEFAULT_ACTIONS, DEFAULT_FOCUS, FocusPolicy, focus_policy, parse_policy
from services.scoring.domain.state import LOYALTY_KINDS, STAGES
from tests.unit.domain_builders import (
    at,
    complaint,
    default_policy,
    order,
    referral_converted,
    referral_made,
    run,
)

NEW = ("potential", "visitor", "first_purchase")
LATER = ("regular", "advocate")
ZERO = Loyalty(0.0, 0.0, 0.0, 0.0, 0.0)


def weights(**given: str | int) -> FocusPolicy:
    """A focus with the given weights (a kind left out weighs 0 here, to isolate the kinds a test is about)."""
    return focus_policy({k: Decimal(str(given.get(k, 0))) for k in LOYALTY_KINDS}, DEFAULT_ACTIONS)


def vector(**scores: float) -> Loyalty:
    return Loyalty(*(scores.get(k, 0.0) for k in LOYALTY_KINDS))


def test_the_rungs_of_new_customers_are_the_contracts() -> None:
    assert NEW_CUSTOMER_STAGES == set(NEW) and set(STAGES) == set(NEW) | set(LATER)
    assert FIRST_KINDS == ("contact", "evaluative", "consultative")


# ---- encourage ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scores, expected",
    [
        (vector(consultative=0.3), "consultative"),
        (vector(financial=0.2, procedural=0.9, contact=0.35), "procedural"),
        (ZERO, "financial"),  # a tie of five zeros: the first kind
        (vector(procedural=0.5, contact=0.5, evaluative=0.4), "procedural"),
        (vector(contact=0.7, consultative=0.7), "contact"),
        (vector(evaluative=1.0, consultative=1.0), "evaluative"),
    ],
)
@pytest.mark.parametrize("stage", STAGES)
def test_encourage_is_the_highest_score_earliest_on_a_tie(scores: Loyalty, expected: str, stage: str) -> None:
    assert focus(scores, stage, DEFAULT_FOCUS).encourage == expected


def test_encourage_ignores_the_weights() -> None:
    scores = vector(financial=0.9, consultative=0.1)
    assert focus(scores, "regular", weights(consultative=5)).encourage == "financial"


# ---- develop: new customers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scores, expected",
    [
        (ZERO, "contact"),  # all three at 0: the earliest of them
        (vector(contact=0.2), "evaluative"),  # evaluative and consultative tie at 0
        (vector(contact=0.2, evaluative=0.1), "consultative"),
        (vector(contact=0.2, evaluative=0.1, consultative=0.1), "evaluative"),
        (vector(contact=0.05, evaluative=0.1, consultative=0.3), "contact"),
        (vector(contact=0.4, evaluative=0.4, consultative=0.4), "contact"),
        # financial and procedural at 0 are not developed first: they come more easily afterwards (seed 003)
        (vector(contact=0.3, evaluative=0.6, consultative=0.5), "contact"),
    ],
)
@pytest.mark.parametrize("stage", NEW)
def test_new_customers_develop_the_lowest_of_contact_evaluative_consultative(
    scores: Loyalty, expected: str, stage: str
) -> None:
    assert focus(scores, stage, DEFAULT_FOCUS).develop == expected


def test_new_customers_develop_by_score_whatever_the_weights() -> None:
    scores = vector(contact=0.3, evaluative=0.1, consultative=0.5)
    assert focus(scores, "first_purchase", weights(financial=1, consultative=9)).develop == "evaluative"


# ---- develop: the rungs above --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scores, expected",
    [
        (vector(financial=0.5, procedural=0.9, contact=0.6, evaluative=0.7, consultative=0.8), "financial"),
        (vector(financial=0.9, procedural=0.9, contact=0.6, evaluative=0.6, consultative=0.8), "contact"),
        (ZERO, "financial"),  # five equal gaps of 1
        (vector(financial=0.21, procedural=1.0, contact=0.35), "evaluative"),  # the contract's example vector
        (vector(financial=1.0, procedural=1.0, contact=1.0, evaluative=1.0, consultative=1.0), "financial"),
    ],
)
@pytest.mark.parametrize("stage", LATER)
def test_with_equal_weights_the_lowest_score_is_developed(scores: Loyalty, expected: str, stage: str) -> None:
    assert focus(scores, stage, DEFAULT_FOCUS).develop == expected


def test_the_largest_weighted_gap_is_developed() -> None:
    # gaps: financial 3 x 0.2 = 0.6, contact 1 x 0.5 = 0.5: the shop's weight outranks the lower score
    scores = vector(financial=0.8, contact=0.5)
    assert focus(scores, "regular", weights(financial=3, contact=1)).develop == "financial"
    assert focus(scores, "regular", weights(financial=1, contact=1)).develop == "contact"


def test_a_kind_weighted_zero_is_not_developed_while_another_has_a_gap() -> None:
    scores = vector(financial=0.0, procedural=0.9, contact=0.9, evaluative=0.95, consultative=0.99)
    assert focus(scores, "advocate", weights(procedural=1, contact=1, evaluative=1, consultative=1)).develop == (
        "procedural"
    )
    # only consultative weighs: it is developed even at the highest score
    assert focus(scores, "advocate", weights(consultative=1)).develop == "consultative"


def test_when_every_weighted_gap_is_zero_the_first_kind_is_developed() -> None:
    scores = vector(financial=0.2, consultative=1.0)
    assert focus(scores, "regular", weights(consultative=2)).develop == "financial"


def test_a_weighted_tie_is_exact_not_a_float_rounding() -> None:
    # 0.3 x (1 - 0.9) = 0.03 = 0.1 x (1 - 0.7); in floats the first is 0.029999999999999995 and the second
    # 0.030000000000000006, which would wrongly pick procedural
    assert 0.3 * (1 - 0.9) < 0.1 * (1 - 0.7)
    scores = vector(financial=0.9, procedural=0.7, contact=1.0, evaluative=1.0, consultative=1.0)
    assert focus(scores, "regular", weights(financial="0.3", procedural="0.1")).develop == "financial"


# ---- action and index ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_the_action_is_the_policys_action_for_the_kind_to_develop(stage: str) -> None:
    policy = focus_policy({k: Decimal(1) for k in LOYALTY_KINDS}, {k: f"do {k}" for k in LOYALTY_KINDS})
    result = focus(vector(financial=0.5, contact=0.1), stage, policy)
    assert result.action == f"do {result.develop}"


@pytest.mark.parametrize(
    "scores, policy, expected",
    [
        (vector(financial=0.21, procedural=1.0, contact=0.35), DEFAULT_FOCUS, 0.312),
        (ZERO, DEFAULT_FOCUS, 0.0),
        (vector(financial=1.0, procedural=1.0, contact=1.0, evaluative=1.0, consultative=1.0), DEFAULT_FOCUS, 1.0),
        # weights 3 and 1: (3 x 0.8 + 0.5) / 4 = 0.725; the kinds weighted 0 do not count
        (vector(financial=0.8, contact=0.5, consultative=1.0), weights(financial=3, contact=1), 0.725),
        # 4 places, half up: (0.0001 + 0) / 2 = 0.00005 -> 0.0001; (0.0001 + 0 + 0) / 3 -> 0.0000
        (vector(financial=0.0001), weights(financial=1, procedural=1), 0.0001),
        (vector(financial=0.0001), weights(financial=1, procedural=1, contact=1), 0.0),
        (vector(financial=0.3333, procedural=0.3334), weights(financial=1, procedural=2), 0.3334),
    ],
)
def test_the_index_is_the_weighted_mean_in_4_places(scores: Loyalty, policy: FocusPolicy, expected: float) -> None:
    result = focus(scores, "regular", policy)
    assert result.index == expected
    assert index_units(result) == round(expected * 10_000)


def test_the_index_does_not_depend_on_the_rung() -> None:
    scores = vector(financial=0.4, procedural=0.2, evaluative=0.9)
    assert len({focus(scores, stage, DEFAULT_FOCUS).index for stage in STAGES}) == 1


def test_as_dict_is_the_api_shape() -> None:
    result = focus(vector(contact=0.5), "visitor", DEFAULT_FOCUS)
    assert result.as_dict() == {
        "encourage": "contact",
        "develop": "evaluative",
        "action": DEFAULT_ACTIONS["evaluative"],
        "index": 0.1,
    }


# ---- against a reference in exact fractions ---------------------------------------------------------------


def reference(scores: Loyalty, stage: str, policy: FocusPolicy) -> Focus:
    """The contract's rules read literally, in Fractions (so every tie is exact)."""
    s = {k: Fraction(str(getattr(scores, k))) for k in LOYALTY_KINDS}
    w = {k: Fraction(wt) for k, wt in zip(LOYALTY_KINDS, policy.weights, strict=True)}
    order = {k: i for i, k in enumerate(LOYALTY_KINDS)}
    encourage = min(LOYALTY_KINDS, key=lambda k: (-s[k], order[k]))
    if stage in NEW:
        develop = min(FIRST_KINDS, key=lambda k: (s[k], order[k]))
    else:
        develop = min(LOYALTY_KINDS, key=lambda k: (-(w[k] * (1 - s[k])), order[k]))
    mean = Fraction(sum(w[k] * s[k] for k in LOYALTY_KINDS)) / sum(w.values())
    index = Decimal(mean.numerator) / Decimal(mean.denominator)
    return Focus(
        encourage,
        develop,
        policy.actions[order[develop]],
        float(index.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)),
    )


# scores on a coarse grid so that ties happen often; weights with up to 2 places, some 0, at least one > 0
SCORES = st.builds(Loyalty, *[st.integers(0, 20).map(lambda n: n / 20) for _ in LOYALTY_KINDS])
WEIGHTS = st.lists(
    st.sampled_from(["0", "0", "0.5", "1", "1", "1.5", "2", "0.25", "3", "0.1", "0.3"]), min_size=5, max_size=5
).filter(lambda ws: any(w != "0" for w in ws))


@settings(max_examples=400, deadline=None)
@given(SCORES, st.sampled_from(STAGES), WEIGHTS)
def test_focus_matches_the_rules_read_literally(scores: Loyalty, stage: str, given_weights: list[str]) -> None:
    policy = focus_policy({k: Decimal(w) for k, w in zip(LOYALTY_KINDS, given_weights, strict=True)}, DEFAULT_ACTIONS)
    got = focus(scores, stage, policy)
    assert got == reference(scores, stage, policy)
    assert 0.0 <= got.index <= 1.0


@settings(max_examples=200, deadline=None)
@given(
    st.builds(Loyalty, *[st.integers(0, 10_000).map(lambda n: n / 10_000) for _ in LOYALTY_KINDS]),
    st.sampled_from(STAGES),
)
def test_focus_matches_the_rules_on_any_4_place_vector(scores: Loyalty, stage: str) -> None:
    assert focus(scores, stage, DEFAULT_FOCUS) == reference(scores, stage, DEFAULT_FOCUS)


# ---- on real customers -----------------------------------------------------------------------------------------


def test_a_new_buyer_is_asked_for_feedback_and_a_regular_who_complains_is_asked_to_recommend() -> None:
    policy = default_policy()
    buyer, _ = run([order("o1", at(2024, 1, 10), "120.00")], policy)
    first = focus(loyalty(buyer, at=buyer.last_event_at, policy=policy), buyer.stage, policy.focus)
    assert (buyer.stage, first.encourage, first.develop) == ("first_purchase", "procedural", "evaluative")
    assert first.action == DEFAULT_ACTIONS["evaluative"]

    facts = [
        order("o1", at(2024, 1, 10)),
        order("o2", at(2024, 1, 20)),
        order("o3", at(2024, 2, 12)),
        complaint("k1", at(2024, 2, 20)),
        complaint("k2", at(2024, 2, 21)),
    ]
    regular, _ = run(facts, policy)
    later = focus(loyalty(regular, at=at(2024, 3, 1), policy=policy), regular.stage, policy.focus)
    assert regular.stage == "regular"
    assert later.develop == "consultative"  # no referral yet: the largest gap
    # a referral that converts lifts consultative above financial, which is then the largest gap
    referred, _ = run(
        [referral_made("r1", at(2024, 2, 25)), referral_converted("r1", at(2024, 2, 25))], policy, regular
    )
    assert (
        focus(loyalty(referred, at=at(2024, 3, 1), policy=policy), referred.stage, policy.focus).develop == "financial"
    )


def test_docs_worked_example_of_the_focus() -> None:
    """docs/loyalty.md, "Focus", worked example: number for number."""
    policy = default_policy()
    facts = [
        order("o1", at(2024, 1, 10), "120.00", cost="70.00"),
        order("o2", at(2024, 1, 20), "80.00", cost="50.00", discount="10.00"),
        referral_made("r1", at(2024, 2, 5), reward_cost="5.00"),
        order("o3", at(2024, 2, 12), "100.00", cost="60.00"),
        complaint("k1", at(2024, 3, 1), handling_cost="4.00"),
    ]
    state, _ = run(facts, policy)
    scores = loyalty(state, at=at(2024, 4, 1), policy=policy)
    assert scores == Loyalty(0.3563, 0.6675, 0.5323, 0.5883, 0.3276)
    default = focus(scores, state.stage, policy.focus)
    assert (state.stage, default.encourage, default.develop, default.index) == (
        "regular",
        "procedural",
        "consultative",
        0.4944,
    )
    assert default.action == DEFAULT_ACTIONS["consultative"]
    paying = parse_policy("[focus.weights]\nfinancial = 2\nevaluative = 0.5\n").focus
    assert focus(scores, state.stage, paying) == Focus("procedural", "financial", DEFAULT_ACTIONS["financial"], 0.4608)

    first, _ = run(facts[:1], policy)
    first_scores = loyalty(first, at=first.last_event_at, policy=policy)
    assert first_scores == Loyalty(0.2069, 0.3831, 0.2081, 0.0, 0.0)
    for weights in (policy.focus, paying):
        assert focus(first_scores, first.stage, weights).develop == "evaluative"
