"""The policy: thresholds of the rungs and tiers, and the constants of the loyalty formulas.

Parsed from TOML text (`policy.toml` beside the scoring package is the default). Pure: reading the file
is the caller's business.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# The only counts a rung may be conditioned on: each only ever grows as events are added, which is what
# makes the final rung independent of arrival order.
MONOTONE_COUNTS = ("orders", "order_months", "full_price_orders", "referrals_made", "referrals_converted",
                   "complaints")


class PolicyError(ValueError):
    """A policy file that breaks the shape the ladder depends on."""


@dataclass(frozen=True, slots=True)
class KindParams:
    """Constants of one loyalty kind."""

    half_life_days: float
    scale: float
    extra: float = 0.0  # refund_weight (procedural) or conversion_weight (consultative)


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything that sets numbers on the ladder."""

    rungs: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    profitable_min: Decimal
    unprofitable_below: Decimal
    activity_horizon_months: int
    kinds: tuple[tuple[str, KindParams], ...]

    def conditions_of(self, rung: str) -> tuple[tuple[str, int], ...]:
        """(count name, threshold) pairs a customer needs for `rung`, beyond the rung below it."""
        return dict(self.rungs).get(rung, ())

    def kind(self, name: str) -> KindParams:
        """Constants of loyalty kind `name`."""
        return dict(self.kinds)[name]


_RUNGS_WITH_CONDITIONS = ("first_purchase", "regular", "advocate")
_KINDS = ("financial", "procedural", "contact", "evaluative", "consultative")


def parse_policy(text: str) -> Policy:
    """The policy in TOML `text`; raises PolicyError when it is not a valid, monotone policy."""
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy is not valid TOML: {exc}") from exc
    rungs: list[tuple[str, tuple[tuple[str, int], ...]]] = []
    for rung in _RUNGS_WITH_CONDITIONS:
        conds = raw.get("rungs", {}).get(rung, {})
        pairs: list[tuple[str, int]] = []
        for name, need in conds.items():
            if name not in MONOTONE_COUNTS:
                raise PolicyError(f"rungs.{rung}.{name}: only these counts may be used: {MONOTONE_COUNTS}")
            if not isinstance(need, int) or isinstance(need, bool) or need < 0:
                raise PolicyError(f"rungs.{rung}.{name} must be a whole number >= 0, got {need!r}")
            pairs.append((name, need))
        rungs.append((rung, tuple(pairs)))
    tiers = raw.get("tiers", {})
    profitable_min = Decimal(str(tiers.get("profitable_min", "100.00")))
    unprofitable_below = Decimal(str(tiers.get("unprofitable_below", "0")))
    if unprofitable_below > profitable_min:
        raise PolicyError("tiers.unprofitable_below must not exceed tiers.profitable_min")
    loyalty = raw.get("loyalty", {})
    kinds: list[tuple[str, KindParams]] = []
    for kind in _KINDS:
        section = loyalty.get(kind, {})
        params = KindParams(
            half_life_days=float(section.get("half_life_days", 180)),
            scale=float(section.get("scale", "1")),
            extra=float(section.get("refund_weight", section.get("conversion_weight", "0"))),
        )
        if params.half_life_days <= 0 or params.scale <= 0 or params.extra < 0:
            raise PolicyError(f"loyalty.{kind}: half_life_days and scale must be > 0, weights >= 0")
        kinds.append((kind, params))
    horizon = int(loyalty.get("activity_horizon_months", 36))
    if horizon < 12:
        raise PolicyError("loyalty.activity_horizon_months must be >= 12 (stability looks back 12 months)")
    return Policy(rungs=tuple(rungs), profitable_min=profitable_min, unprofitable_below=unprofitable_below,
                  activity_horizon_months=horizon, kinds=tuple(kinds))
