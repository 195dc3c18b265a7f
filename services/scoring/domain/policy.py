"""The policy: thresholds of the rungs and tiers, the constants of the loyalty formulas, and the shop's focus.

Parsed from TOML text (`policy.toml` beside the scoring package is the default). Pure: reading the file
is the caller's business.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.scoring.domain.health import MODEL_KINDS, Model, ModelKind, Params
from services.scoring.domain.state import LOYALTY_KINDS

# The only counts a rung may be conditioned on: each only ever grows as events are added, which is what
# makes the final rung independent of arrival order.
MONOTONE_COUNTS = ("orders", "order_months", "full_price_orders", "referrals_made", "referrals_converted", "complaints")


class PolicyError(ValueError):
    """A policy file that breaks the shape the ladder depends on."""


@dataclass(frozen=True, slots=True)
class KindParams:
    """Constants of one loyalty kind."""

    half_life_days: float
    scale: float
    extra: float = 0.0  # refund_weight (procedural) or conversion_weight (consultative)


# the priors in force until a fit has `min_customers`: each variant fitted to the CDNOW sample (BG/NBD: Fader,
# Hardie & Lee 2005, table 1; MBG/NBD: the same data and calibration period, tests/unit/test_health.py)
DEFAULT_PRIORS: dict[str, Params] = {
    "bg_nbd": Params(r=0.243, alpha=4.414, a=0.793, b=2.426),
    "mbg_nbd": Params(r=0.525, alpha=6.183, a=0.891, b=1.614),
}


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """The `[health]` table: which model, where at risk starts, and the priors until a fit has enough customers."""

    model: ModelKind = "mbg_nbd"
    at_risk_below: float = 0.5
    min_customers: int = 500
    prior: Params = DEFAULT_PRIORS["mbg_nbd"]

    @property
    def prior_model(self) -> Model:
        """The model in force before any fit: the priors, version 0."""
        return Model(kind=self.model, params=self.prior, version=0)


@dataclass(frozen=True, slots=True)
class FocusPolicy:
    """The shop's focus (contract section 16): how much each loyalty kind matters, and one action per kind.

    Each tuple is in LOYALTY_KINDS order. `units` are the weights as whole numbers on a common scale
    (weight x 10^places): the focus rules compare weighted gaps exactly, so a tie the policy's decimals make
    is a tie, not whatever float rounding leaves of it.
    """

    weights: tuple[Decimal, ...]
    actions: tuple[str, ...]
    units: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything that sets numbers on the ladder."""

    rungs: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    profitable_min: Decimal
    unprofitable_below: Decimal
    activity_horizon_months: int
    kinds: tuple[tuple[str, KindParams], ...]
    focus: FocusPolicy
    health: HealthPolicy = HealthPolicy()

    def conditions_of(self, rung: str) -> tuple[tuple[str, int], ...]:
        """(count name, threshold) pairs a customer needs for `rung`, beyond the rung below it."""
        for name, conds in self.rungs:  # three entries: a scan beats building a dict on the hot path
            if name == rung:
                return conds
        return ()


_RUNGS_WITH_CONDITIONS = ("first_purchase", "regular", "advocate")
_EXTRA_KEY = {"procedural": "refund_weight", "consultative": "conversion_weight"}

# the contract's numbers: what a policy file that leaves a section out gets
DEFAULT_RUNGS: dict[str, tuple[tuple[str, int], ...]] = {
    "first_purchase": (("orders", 1),),
    "regular": (("orders", 3), ("order_months", 2)),
    "advocate": (("full_price_orders", 3), ("referrals_made", 1)),
}
DEFAULT_KINDS: dict[str, KindParams] = {
    "financial": KindParams(half_life_days=180, scale=500),
    "procedural": KindParams(half_life_days=180, scale=2, extra=2),
    "contact": KindParams(half_life_days=90, scale=4),
    "evaluative": KindParams(half_life_days=180, scale=1),
    "consultative": KindParams(half_life_days=180, scale=2, extra=2),
}

MAX_ACTION_CHARS = 500
MAX_WEIGHT, MAX_WEIGHT_PLACES = Decimal(1_000_000), 6
# seed 003's own examples of what raises each kind, as one suggestion a marketer can act on
DEFAULT_ACTIONS: dict[str, str] = {
    "financial": "offer a larger basket or a repeat order at full price (a bundle, a volume price), "
    "and make paying easy",
    "procedural": "show how we work (how to order, pay and collect) and make the way we ask the easy way",
    "contact": "call after the order with the quality questions; a small gift for the answers",
    "evaluative": "ask for feedback after the order and thank every complaint: it shows our weak spots",
    "consultative": "ask them to share their experience and ideas and to recommend us; reward a referral that buys",
}


def focus_policy(weights: dict[str, Decimal], actions: dict[str, str]) -> FocusPolicy:
    """A FocusPolicy from per-kind weights and actions (every kind present), with its exact integer `units`."""
    ordered = tuple(weights[k] for k in LOYALTY_KINDS)
    places = max(max(0, -int(w.as_tuple().exponent)) for w in ordered)
    return FocusPolicy(
        weights=ordered,
        actions=tuple(actions[k] for k in LOYALTY_KINDS),
        units=tuple(int(w.scaleb(places)) for w in ordered),
    )


DEFAULT_FOCUS = focus_policy({k: Decimal(1) for k in LOYALTY_KINDS}, DEFAULT_ACTIONS)


def _table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise PolicyError(f"{where}{key} must be a table, got {value!r}")
    return value


def _unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise PolicyError(f"{where}: unknown keys {extra}; allowed: {list(allowed)}")


def _decimal(value: Any, where: str) -> Decimal:
    try:
        parsed = Decimal(str(value))
    except ArithmeticError as exc:
        raise PolicyError(f"{where} must be a decimal number, got {value!r}") from exc
    if not parsed.is_finite() or isinstance(value, bool):
        raise PolicyError(f"{where} must be a finite decimal number, got {value!r}")
    return parsed


def _float(value: Any, where: str) -> float:
    return float(_decimal(value, where))


def parse_policy(text: str) -> Policy:
    """The policy in TOML `text` over the contract's defaults; raises PolicyError on anything not a valid policy.

    A section left out keeps the contract's numbers; a rung section that is present replaces that rung's
    conditions; an unknown section or key is refused (a typo must not silently unconditon a rung).
    """
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy is not valid TOML: {exc}") from exc
    _unknown(raw, ("rungs", "tiers", "loyalty", "focus", "health"), "policy")

    rung_tables = _table(raw, "rungs", "")
    _unknown(rung_tables, _RUNGS_WITH_CONDITIONS, "rungs")
    rungs: list[tuple[str, tuple[tuple[str, int], ...]]] = []
    for rung in _RUNGS_WITH_CONDITIONS:
        if rung not in rung_tables:
            rungs.append((rung, DEFAULT_RUNGS[rung]))
            continue
        conds = _table(rung_tables, rung, "rungs.")
        pairs: list[tuple[str, int]] = []
        for name, need in conds.items():
            if name not in MONOTONE_COUNTS:
                raise PolicyError(f"rungs.{rung}.{name}: only these counts may be used: {MONOTONE_COUNTS}")
            if not isinstance(need, int) or isinstance(need, bool) or need < 0:
                raise PolicyError(f"rungs.{rung}.{name} must be a whole number >= 0, got {need!r}")
            pairs.append((name, need))
        rungs.append((rung, tuple(pairs)))

    tiers = _table(raw, "tiers", "")
    _unknown(tiers, ("profitable_min", "unprofitable_below"), "tiers")
    profitable_min = _decimal(tiers.get("profitable_min", "100.00"), "tiers.profitable_min")
    unprofitable_below = _decimal(tiers.get("unprofitable_below", "0"), "tiers.unprofitable_below")
    if unprofitable_below > profitable_min:
        raise PolicyError("tiers.unprofitable_below must not exceed tiers.profitable_min")

    loyalty = _table(raw, "loyalty", "")
    _unknown(loyalty, ("activity_horizon_months", *LOYALTY_KINDS), "loyalty")
    kinds: list[tuple[str, KindParams]] = []
    for kind in LOYALTY_KINDS:
        section = _table(loyalty, kind, "loyalty.")
        extra_key = _EXTRA_KEY.get(kind)
        _unknown(section, ("half_life_days", "scale", *((extra_key,) if extra_key else ())), f"loyalty.{kind}")
        default = DEFAULT_KINDS[kind]
        where = f"loyalty.{kind}"
        params = KindParams(
            half_life_days=_float(section.get("half_life_days", default.half_life_days), f"{where}.half_life_days"),
            scale=_float(section.get("scale", default.scale), f"{where}.scale"),
            extra=_float(section.get(extra_key, default.extra), f"{where}.{extra_key}") if extra_key else 0.0,
        )
        if params.half_life_days <= 0 or params.scale <= 0 or params.extra < 0:
            raise PolicyError(f"{where}: half_life_days and scale must be > 0, weights >= 0")
        kinds.append((kind, params))
    horizon = loyalty.get("activity_horizon_months", 36)
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 12:
        raise PolicyError(
            f"loyalty.activity_horizon_months must be a whole number >= 12 (stability looks back "
            f"12 months), got {horizon!r}"
        )
    return Policy(
        rungs=tuple(rungs),
        profitable_min=profitable_min,
        unprofitable_below=unprofitable_below,
        activity_horizon_months=horizon,
        kinds=tuple(kinds),
        focus=_focus(_table(raw, "focus", "")),
        health=_health(_table(raw, "health", "")),
    )


def _focus(section: dict[str, Any]) -> FocusPolicy:
    """`[focus]`: `weights` (a kind left out weighs 1) and `actions` (a kind left out keeps the default)."""
    _unknown(section, ("weights", "actions"), "focus")
    given_weights = _table(section, "weights", "focus.")
    _unknown(given_weights, LOYALTY_KINDS, "focus.weights")
    weights: dict[str, Decimal] = {}
    for kind in LOYALTY_KINDS:
        where = f"focus.weights.{kind}"
        weight = _decimal(given_weights.get(kind, 1), where)
        if weight < 0:
            raise PolicyError(f"{where} must be >= 0, got {given_weights[kind]!r}")
        weight = weight.normalize() if weight else Decimal(0)
        # only ratios matter; the bounds keep the exact whole-number weights (`units`) small
        if weight > MAX_WEIGHT or -int(weight.as_tuple().exponent) > MAX_WEIGHT_PLACES:
            raise PolicyError(
                f"{where} must be at most {MAX_WEIGHT} with at most {MAX_WEIGHT_PLACES} decimal "
                f"places, got {given_weights[kind]!r}"
            )
        weights[kind] = weight
    if not any(weights.values()):
        raise PolicyError(
            f"focus.weights: at least one weight must be > 0 (a kind left out weighs 1), got {given_weights!r}"
        )
    given_actions = _table(section, "actions", "focus.")
    _unknown(given_actions, LOYALTY_KINDS, "focus.actions")
    actions: dict[str, str] = {}
    for kind in LOYALTY_KINDS:
        where = f"focus.actions.{kind}"
        action = given_actions.get(kind, DEFAULT_ACTIONS[kind])
        if not isinstance(action, str) or not action.strip():
            raise PolicyError(f"{where} must be a non-empty string, got {action!r}")
        if len(action) > MAX_ACTION_CHARS:
            raise PolicyError(f"{where} is {len(action)} characters; at most {MAX_ACTION_CHARS} are allowed")
        actions[kind] = action
    return focus_policy(weights, actions)


def _health(table: dict[str, Any]) -> HealthPolicy:
    _unknown(table, ("model", "at_risk_below", "min_customers", "prior"), "health")
    model = table.get("model", "mbg_nbd")
    if model not in MODEL_KINDS:
        raise PolicyError(f"health.model must be one of {list(MODEL_KINDS)}, got {model!r}")
    threshold = _float(table.get("at_risk_below", 0.5), "health.at_risk_below")
    if not 0 < threshold < 1:
        raise PolicyError(f"health.at_risk_below must be between 0 and 1, got {threshold}")
    minimum = table.get("min_customers", 500)
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1:
        raise PolicyError(f"health.min_customers must be a whole number >= 1, got {minimum!r}")
    prior_table = _table(table, "prior", "health.")
    _unknown(prior_table, ("r", "alpha", "a", "b"), "health.prior")
    # a prior left out is the chosen variant's own: the two variants' parameters mean different things
    default = DEFAULT_PRIORS[model]
    prior = Params(
        **{
            name: _float(prior_table.get(name, getattr(default, name)), f"health.prior.{name}")
            for name in ("r", "alpha", "a", "b")
        }
    )
    if not prior.valid:
        raise PolicyError(f"health.prior: r, alpha, a and b must be > 0, got {prior.as_dict()}")
    return HealthPolicy(model=model, at_risk_below=threshold, min_customers=minimum, prior=prior)
