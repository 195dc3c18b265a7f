"""Measures of a customer at a moment: loyalty vector, stability, profitability tier.

Formulas (documented in docs/loyalty.md): each kind's activity is a sum of weights from the month buckets,
each weight halved every `half_life_days` of age (age = time since the start of its month, never
negative), and the score is `1 - exp(-activity / scale)`: 0 with no activity, growing with activity,
below 1, fading when nothing new happens.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@functools.lru_cache(maxsize=1024)  # a few dozen months are ever in play
def _month_start_us(month: int) -> int:
    """Microseconds from the epoch to the first instant of month `month`."""
    return (month_start(month) - _EPOCH) // _MICROSECOND


def loyalty(state: CustomerState, *, at: datetime, policy: Policy) -> Loyalty:
    """The loyalty vector of `state` as of `at`.

    It runs for every customer a batch writes (their stored focus) and for every stage change, so it is
    written for speed: the age of a month is whole microseconds divided once, as `timedelta.total_seconds()`
    divides them (the same float) but without a datetime per month, and the five kinds are spelled out.
    """
    (_, fin), (_, proc), (_, con), (_, ev), (_, cons) = policy.kinds  # in LOYALTY_KINDS order (parse_policy)
    exp = math.exp
    financial = orders = refunds = contact = evaluative = consultative = 0.0
    at_us = (at - _EPOCH) // _MICROSECOND
    for month, act in state.activity:  # one pass: the age of a month is the same for every kind
        age_days = max(0.0, (at_us - _month_start_us(month)) / 1_000_000 / 86400.0)
        n_orders, n_refunds, complaints, referrals = act.orders, act.refunds, act.complaints, act.referrals
        if n_orders:
            financial += float(act.order_value) * 0.5 ** (age_days / fin.half_life_days)
            orders += n_orders * 0.5 ** (age_days / proc.half_life_days)
        if n_refunds:
            refunds += n_refunds * 0.5 ** (age_days / proc.half_life_days)
        contacts = n_orders + n_refunds + complaints + referrals + act.inbound_touches  # MonthActivity.contacts
        if contacts:
            contact += contacts * 0.5 ** (age_days / con.half_life_days)
        if complaints:
            evaluative += complaints * 0.5 ** (age_days / ev.half_life_days)
        if referrals or act.conversions:
            consultative += (referrals + cons.extra * act.conversions) * 0.5 ** (age_days / cons.half_life_days)
    # following our processes = ordering without bouncing orders back; refunds pull it down
    procedural = (1.0 - exp(-orders / proc.scale)) * orders / (orders + proc.extra * refunds) if orders > 0 else 0.0
    # saturate(A, s) = 1 - exp(-A / s) for A > 0, else 0: in [0, 1] in floats too, and procedural is that times a
    # ratio in (0, 1], so no clamp is needed before rounding
    return Loyalty(
        round(1.0 - exp(-financial / fin.scale), 4) if financial > 0 else 0.0,
        round(procedural, 4),
        round(1.0 - exp(-contact / con.scale), 4) if contact > 0 else 0.0,
        round(1.0 - exp(-evaluative / ev.scale), 4) if evaluative > 0 else 0.0,
        round(1.0 - exp(-consultative / cons.scale), 4) if consultative > 0 else 0.0,
    )


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
