"""Measures of a customer at a moment: loyalty vector, stability, profitability tier.

Formulas (documented in docs/loyalty.md): each kind's activity is a sum of weights from the month buckets,
each weight halved every `half_life_days` of age (age = time since the start of its month, never
negative), and the score is `1 - exp(-activity / scale)`: 0 with no activity, growing with activity,
below 1, fading when nothing new happens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from services.scoring.domain.policy import Policy
from services.scoring.domain.state import CustomerState, MonthActivity, month_index, month_start

KINDS = ("financial", "procedural", "contact", "evaluative", "consultative")
TIERS = ("profitable", "middling", "unprofitable")
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Loyalty:
    """Five numbers in [0, 1]."""

    financial: float
    procedural: float
    contact: float
    evaluative: float
    consultative: float

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in KINDS}


def _saturate(activity: float, scale: float) -> float:
    return 1.0 - math.exp(-activity / scale) if activity > 0 else 0.0


Weight = Callable[[MonthActivity], float]


def _decayed(state: CustomerState, at: datetime, half_life_days: float, weight: Weight) -> float:
    total = 0.0
    for month, act in state.activity:
        value = weight(act)
        if not value:
            continue
        age_days = max(0.0, (at - month_start(month)).total_seconds() / 86400.0)
        total += value * 0.5 ** (age_days / half_life_days)
    return total


def loyalty(state: CustomerState, *, at: datetime, policy: Policy) -> Loyalty:
    """The loyalty vector of `state` as of `at`."""
    fin = policy.kind("financial")
    proc = policy.kind("procedural")
    con = policy.kind("contact")
    ev = policy.kind("evaluative")
    cons = policy.kind("consultative")

    financial = _saturate(_decayed(state, at, fin.half_life_days, lambda a: float(a.order_value)),
                          fin.scale)
    orders = _decayed(state, at, proc.half_life_days, lambda a: a.orders)
    refunds = _decayed(state, at, proc.half_life_days, lambda a: a.refunds)
    # following our processes = ordering without bouncing orders back; refunds pull it down
    procedural = (_saturate(orders, proc.scale) * orders / (orders + proc.extra * refunds)) if orders > 0 else 0.0
    contact = _saturate(_decayed(state, at, con.half_life_days, lambda a: a.contacts), con.scale)
    evaluative = _saturate(_decayed(state, at, ev.half_life_days, lambda a: a.complaints), ev.scale)
    consultative = _saturate(
        _decayed(state, at, cons.half_life_days,
                 lambda a: a.referrals + cons.extra * a.conversions),
        cons.scale,
    )
    return Loyalty(*(round(min(1.0, max(0.0, v)), 4)
                     for v in (financial, procedural, contact, evaluative, consultative)))


def stability(state: CustomerState, *, at: datetime) -> float:
    """Share of the last 12 calendar months (UTC, the month of `at` included) with an order."""
    now = month_index(at)
    active = sum(1 for m in state.order_months if now - 12 < m <= now)
    return round(active / 12, 4)


def tier(profit: Decimal, *, policy: Policy) -> str:
    """profitable, middling or unprofitable."""
    if profit >= policy.profitable_min:
        return "profitable"
    if profit < policy.unprofitable_below:
        return "unprofitable"
    return "middling"


def money(value: Decimal) -> str:
    """A 2-place decimal string."""
    return str(value.quantize(_CENT, rounding=ROUND_HALF_EVEN))


def profitability(state: CustomerState, *, policy: Policy) -> dict[str, str]:
    """sales, costs, profit (exact, 2 places) and tier."""
    return {
        "sales": money(state.sales),
        "costs": money(state.costs),
        "profit": money(state.profit),
        "tier": tier(state.profit, policy=policy),
    }
