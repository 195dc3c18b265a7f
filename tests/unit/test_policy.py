"""parse_policy: the default file, and the shapes it refuses (contract section 4: monotone conditions only).

A policy file is an overlay on the contract's numbers: a section left out keeps them, and anything unknown or
malformed is refused with a PolicyError naming the key.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.scoring.domain.ladder import apply
from services.scoring.domain.policy import (
    DEFAULT_ACTIONS,
    DEFAULT_FOCUS,
    MAX_ACTION_CHARS,
    MONOTONE_COUNTS,
    KindParams,
    PolicyError,
    parse_policy,
)
from tests.unit.domain_builders import DEFAULT_POLICY_TEXT, at, complaint, default_policy

BASE_RUNGS = """
[rungs.first_purchase]
orders = 1
[rungs.regular]
orders = 3
order_months = 2
"""


def test_default_file_has_the_contracts_numbers() -> None:
    policy = default_policy()
    assert policy.rungs == (
        ("first_purchase", (("orders", 1),)),
        ("regular", (("orders", 3), ("order_months", 2))),
        ("advocate", (("full_price_orders", 3), ("referrals_made", 1))),
    )
    assert policy.conditions_of("visitor") == ()
    assert policy.conditions_of("potential") == ()
    assert (policy.profitable_min, policy.unprofitable_below) == (Decimal("100.00"), Decimal("0"))
    assert policy.activity_horizon_months == 36
    assert policy.kinds == (
        ("financial", KindParams(half_life_days=180.0, scale=500.0, extra=0.0)),
        ("procedural", KindParams(half_life_days=180.0, scale=2.0, extra=2.0)),
        ("contact", KindParams(half_life_days=90.0, scale=4.0, extra=0.0)),
        ("evaluative", KindParams(half_life_days=180.0, scale=1.0, extra=0.0)),
        ("consultative", KindParams(half_life_days=180.0, scale=2.0, extra=2.0)),
    )


def test_every_monotone_count_is_accepted() -> None:
    text = "[rungs.advocate]\n" + "".join(f"{name} = {i}\n" for i, name in enumerate(MONOTONE_COUNTS))
    policy = parse_policy(BASE_RUNGS + text)
    assert policy.conditions_of("advocate") == tuple((name, i) for i, name in enumerate(MONOTONE_COUNTS))
    assert MONOTONE_COUNTS == (
        "orders",
        "order_months",
        "full_price_orders",
        "referrals_made",
        "referrals_converted",
        "complaints",
    )


REFUSED = {
    # ratios and counts that can shrink are not monotone: arrival order would decide the rung
    "ratio-full-price-share": ("[rungs.advocate]\nfull_price_share = 1\n", "full_price_share"),
    "refunds-can-undo": ("[rungs.regular]\nnet_orders = 3\n", "net_orders"),
    "sales-not-a-count": ("[rungs.advocate]\nsales = 100\n", "sales"),
    "negative-threshold": ("[rungs.regular]\norders = -1\n", "orders"),
    "float-threshold": ("[rungs.regular]\norders = 1.5\n", "orders"),
    "string-threshold": ('[rungs.regular]\norders = "3"\n', "orders"),
    "bool-threshold": ("[rungs.regular]\norders = true\n", "orders"),
    "bad-toml": ("[rungs.regular\norders = 3\n", "TOML"),
    "tiers-crossed": ('[tiers]\nprofitable_min = "10"\nunprofitable_below = "10.01"\n', "unprofitable_below"),
    "horizon-under-12": ("[loyalty]\nactivity_horizon_months = 11\n", "activity_horizon_months"),
    "zero-half-life": ("[loyalty.contact]\nhalf_life_days = 0\n", "loyalty.contact"),
    "negative-scale": ('[loyalty.financial]\nscale = "-1"\n', "loyalty.financial"),
    "negative-weight": ('[loyalty.procedural]\nrefund_weight = "-2"\n', "loyalty.procedural"),
}


@pytest.mark.parametrize(("text", "mentions"), list(REFUSED.values()), ids=list(REFUSED))
def test_refused(text: str, mentions: str) -> None:
    with pytest.raises(PolicyError, match=mentions):
        parse_policy(text)


def test_edges_that_are_accepted() -> None:
    policy = parse_policy(
        BASE_RUNGS + '[rungs.advocate]\nreferrals_made = 0\n[tiers]\nprofitable_min = "5"\n'
        'unprofitable_below = "5"\n[loyalty]\nactivity_horizon_months = 12\n'
    )
    assert policy.conditions_of("advocate") == (("referrals_made", 0),)
    assert policy.profitable_min == policy.unprofitable_below == Decimal(5)
    assert policy.activity_horizon_months == 12


def test_changed_numbers_are_read() -> None:
    text = DEFAULT_POLICY_TEXT.replace("full_price_orders = 3", "full_price_orders = 5").replace(
        'profitable_min = "100.00"', 'profitable_min = "250.50"'
    )
    policy = parse_policy(text)
    assert policy.conditions_of("advocate") == (("full_price_orders", 5), ("referrals_made", 1))
    assert policy.profitable_min == Decimal("250.50")


# ---- malformed or partial files: refused with PolicyError, or the contract's numbers where a section is missing --


@pytest.mark.parametrize(
    "text",
    [
        '[tiers]\nprofitable_min = "abc"\n',
        '[loyalty.financial]\nscale = "abc"\n',
        "rungs = 3\n",
    ],
    ids=["tier-not-a-number", "scale-not-a-number", "rungs-not-a-table"],
)
def test_malformed_values_raise_policy_error(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


@pytest.mark.parametrize(
    "text",
    [
        "[loyalty.financial]\nscale = nan\n",
        "[loyalty.evaluative]\nhalf_life_days = inf\n",
        "[loyalty]\nactivity_horizon_months = 12.9\n",
    ],
    ids=["nan-scale", "inf-half-life", "fractional-horizon"],
)
def test_non_finite_or_fractional_constants_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_unknown_rung_section_is_refused() -> None:
    with pytest.raises(PolicyError):
        parse_policy(BASE_RUNGS + "[rungs.advocat]\nfull_price_orders = 3\nreferrals_made = 1\n")


@pytest.mark.parametrize("text", ["", '[tiers]\nprofitable_min = "50"\n'], ids=["empty", "tiers-only"])
def test_a_policy_without_rungs_does_not_make_everyone_an_advocate(text: str) -> None:
    policy = parse_policy(text)
    assert policy.rungs == default_policy().rungs
    state, _ = apply(None, complaint("k1", at(2024, 1, 1)), policy=policy)
    assert state.stage == "visitor"


# ---- [focus]: weights and actions (contract section 16) ------------------------------------------------------

KINDS = ("financial", "procedural", "contact", "evaluative", "consultative")


def test_the_default_focus_weighs_every_kind_1_and_suggests_an_action_for_each() -> None:
    policy = default_policy()
    assert policy.focus == DEFAULT_FOCUS
    assert policy.focus.weights == (Decimal(1),) * 5 and policy.focus.units == (1,) * 5
    assert policy.focus.actions == tuple(DEFAULT_ACTIONS[k] for k in KINDS)
    assert all(0 < len(a) <= MAX_ACTION_CHARS for a in policy.focus.actions)
    assert parse_policy("").focus == DEFAULT_FOCUS  # a file without [focus] gets the same


def test_the_contracts_inline_form_and_a_table_are_the_same() -> None:
    inline = parse_policy(
        "[focus]\nweights = {financial = 2.0, procedural = 0.5, contact = 1.0, evaluative = 0, consultative = 1.25}\n"
    )
    table = parse_policy(
        '[focus.weights]\nfinancial = 2\nprocedural = "0.5"\ncontact = 1\nevaluative = 0.0\nconsultative = 1.25\n'
    )
    assert inline.focus == table.focus
    assert inline.focus.weights == (Decimal(2), Decimal("0.5"), Decimal(1), Decimal(0), Decimal("1.25"))
    # on one scale, exact: 2 : 0.5 : 1 : 0 : 1.25 = 200 : 50 : 100 : 0 : 125
    assert inline.focus.units == (200, 50, 100, 0, 125)


def test_a_kind_left_out_weighs_1_and_keeps_its_action() -> None:
    policy = parse_policy('[focus.weights]\nfinancial = 3\n[focus.actions]\nevaluative = "ring them"\n')
    assert policy.focus.weights == (Decimal(3), Decimal(1), Decimal(1), Decimal(1), Decimal(1))
    assert policy.focus.actions[3] == "ring them"
    assert policy.focus.actions[4] == DEFAULT_ACTIONS["consultative"]


def test_an_action_of_exactly_500_characters_is_accepted() -> None:
    policy = parse_policy(f'[focus.actions]\ncontact = "{"x" * 500}"\n')
    assert policy.focus.actions[2] == "x" * 500


FOCUS_REFUSED = {
    "negative-weight": ("[focus.weights]\ncontact = -0.5\n", "focus.weights.contact"),
    "negative-weight-string": ('[focus.weights]\nfinancial = "-1"\n', "focus.weights.financial"),
    "all-zero": (
        "[focus]\nweights = {financial = 0, procedural = 0, contact = 0, evaluative = 0, consultative = 0}\n",
        "at least one weight must be > 0",
    ),
    "unknown-kind-weight": ("[focus.weights]\nloyalty = 1\n", r"focus\.weights: unknown keys \['loyalty'\]"),
    "unknown-kind-action": ('[focus.actions]\nfinancal = "x"\n', r"focus\.actions: unknown keys \['financal'\]"),
    "action-over-500": (
        f'[focus.actions]\nconsultative = "{"y" * 501}"\n',
        "focus.actions.consultative is 501 characters; at most 500",
    ),
    "empty-action": ('[focus.actions]\ncontact = "  "\n', "focus.actions.contact"),
    "action-not-text": ("[focus.actions]\ncontact = 3\n", "focus.actions.contact"),
    "weight-not-a-number": ('[focus.weights]\nevaluative = "lots"\n', "focus.weights.evaluative"),
    "weight-bool": ("[focus.weights]\nevaluative = true\n", "focus.weights.evaluative"),
    "weight-nan": ("[focus.weights]\nevaluative = nan\n", "focus.weights.evaluative"),
    "weights-not-a-table": ("[focus]\nweights = 1\n", "focus.weights"),
    "unknown-focus-key": ("[focus]\nweight = {financial = 1}\n", r"focus: unknown keys \['weight'\]"),
    "weight-too-fine": ('[focus.weights]\ncontact = "1e-999999"\n', "focus.weights.contact must be at most"),
    "weight-too-large": ("[focus.weights]\ncontact = 1e300\n", "focus.weights.contact must be at most"),
}


@pytest.mark.parametrize(("text", "mentions"), list(FOCUS_REFUSED.values()), ids=list(FOCUS_REFUSED))
def test_a_bad_focus_is_refused_naming_the_key(text: str, mentions: str) -> None:
    with pytest.raises(PolicyError, match=mentions):
        parse_policy(text)


def test_the_shipped_file_documents_its_focus() -> None:
    # the default actions live in the code and in the file: the file is what a shop edits
    assert "[focus.weights]" in DEFAULT_POLICY_TEXT and "[focus.actions]" in DEFAULT_POLICY_TEXT
    raw_policy = parse_policy(DEFAULT_POLICY_TEXT)
    assert raw_policy.focus == parse_policy("").focus


def test_the_health_table_defaults_to_mbg_nbd_with_its_priors() -> None:
    health = default_policy().health
    assert (health.model, health.at_risk_below, health.min_customers) == ("mbg_nbd", 0.5, 500)
    assert health.prior.as_dict() == {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
    assert parse_policy("").health == health
    bg = parse_policy('[health]\nmodel = "bg_nbd"\n').health
    assert bg.model == "bg_nbd" and bg.prior.as_dict() == {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert parse_policy("[health]\nat_risk_below = 0.3\n[health.prior]\nr = 1\n").health.prior.r == 1.0


@pytest.mark.parametrize(
    "text",
    [
        '[health]\nmodel = "pareto_nbd"\n',
        "[health]\nat_risk_below = 1.5\n",
        "[health]\nat_risk_below = 0\n",
        "[health]\nmin_customers = 0\n",
        "[health]\nthreshold = 0.5\n",
        "[health.prior]\nr = -1\n",
        "[health.prior]\nbeta = 1\n",
    ],
)
def test_a_bad_health_table_is_refused(text: str) -> None:
    with pytest.raises(PolicyError, match="health"):
        parse_policy(text)
