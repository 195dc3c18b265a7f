"""Measures of a customer at a moment: loyalty vector, stability, profitability tier.

Formulas (documented in docs/loyalty.md): each kind's activity is a sum of weights from the month buckets,
each weight halved every `half_life_days` of age (age = time since the start of its month, never
negative), and the score is `1 - exp(-activity / scale)`: 0 with no activity, growing with activity,
below 1, fading when nothing new happens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from services.scoring.domain.policy import Policy
from services.scoring.domain.state import LOYALTY_KINDS, CustomerState, month_index, month_start
from shared.frozen import quick_init

TIERS = ("profitable", "middling", "unprofitable")
_CENT = Decimal("0.01")


@quick_init
@dataclass(frozen=True, slots=True)
class Loyalty:
    """Five numbers in [0, 1]."""

    financial: float
    procedural: float
    contact: float
    evaluative: float
    consultative: float

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in LOYALTY_KINDS}


def _saturate(activity: float, scale: float) -> float:
    return 1.0 - math.exp(-activity / scale) if activity > 0 else 0.0


def loyalty(state: CustomerState, *, at: datetime, policy: Policy) -> Loyalty:
    """The loyalty vector of `state` as of `at`."""
    params = dict(policy.kinds)  # one dict, not five scans: this runs for every stage change
    fin, proc, con, ev, cons = (params[k] for k in LOYALTY_KINDS)
    financial = orders = refunds = contact = evaluative = consultative = 0.0
    for month, act in state.activity:  # one pass: the age of a month is the same for every kind
        age_days = max(0.0, (at - month_start(month)).total_seconds() / 86400.0)
        if act.orders:
            proc_decay = 0.5 ** (age_days / proc.half_life_days)
            financial += float(act.order_value) * 0.5 ** (age_days / fin.half_life_days)
            orders += act.orders * proc_decay
        if act.refunds:
            refunds += act.refunds * 0.5 ** (age_days / proc.half_life_days)
        contacts = act.contacts
        if contacts:
            contact += contacts * 0.5 ** (age_days / con.half_life_days)
        if act.complaints:
            evaluative += act.complaints * 0.5 ** (age_days / ev.half_life_days)
        if act.referrals or act.conversions:
            consultative += (act.referrals + cons.extra * act.conversions) * 0.5 ** (age_days / cons.half_life_days)
    # following our processes = ordering without bouncing orders back; refunds pull it down
    procedural = _saturate(orders, proc.scale) * orders / (orders + proc.extra * refunds) if orders > 0 else 0.0
    values = (_saturate(financial, fin.scale), procedural, _saturate(contact, con.scale),
              _saturate(evaluative, ev.scale), _saturate(consultative, cons.scale))
    return Loyalty(*(round(min(1.0, max(0.0, v)), 4) for v in values))


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
