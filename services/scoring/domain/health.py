"""A customer's health: P(alive) and expected orders by BG/NBD and MBG/NBD (contract section 11).

    Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the Pareto/NBD model"
    Batislam, Denizel & Filiztekin (2007), "Empirical validation and comparison of models for customer base
    analysis" (MBG/NBD)

Time counts in whole UTC days: d0 = the first order's day, dl = the last order's day, da = the as-of day;
x = distinct order days - 1, t_x = (dl - d0) / 7, T = (da - d0) / 7, in weeks. Everything here comes from the
set of order days, so duplicates and the order of arrival change nothing.

The per-customer functions (`p_alive`, `at_risk_from_day`) run inside the scoring transaction for every customer
with an order, so they are closed forms on `math` (a few microseconds); only the conditional expectation needs
the Gauss hypergeometric function, from scipy, and it is computed where a message or a read needs it.
Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from scipy.special import hyp2f1

from shared.frozen import quick_init

ModelKind = Literal["bg_nbd", "mbg_nbd"]
MODEL_KINDS: tuple[ModelKind, ...] = ("mbg_nbd", "bg_nbd")
Status = Literal["active", "at_risk"]

EPOCH = date(1970, 1, 1)
DAYS_PER_WEEK = 7.0
# the contract's horizon of the expected orders: the next 90 days
EXPECTATION_DAYS = 90


@quick_init
@dataclass(frozen=True, slots=True)
class Params:
    """The population parameters: r, alpha (purchase rate, gamma-distributed; alpha in weeks), a, b (dropout)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @property
    def valid(self) -> bool:
        """All four finite and > 0: what the likelihood is defined for."""
        return all(math.isfinite(v) and v > 0 for v in (self.r, self.alpha, self.a, self.b))


@quick_init
@dataclass(frozen=True, slots=True)
class Model:
    """A model in force: which variant, its parameters, and its version (0 = the policy's priors)."""

    kind: ModelKind
    params: Params
    version: int = 0


@quick_init
@dataclass(frozen=True, slots=True)
class Summary:
    """x, t_x and T of one customer as of a day, and the days they come from (UTC day ordinals, 1970-01-01 = 0)."""

    x: int
    first_day: int
    last_day: int
    as_of_day: int

    @property
    def t_x(self) -> float:
        return (self.last_day - self.first_day) / DAYS_PER_WEEK

    @property
    def T(self) -> float:
        return (self.as_of_day - self.first_day) / DAYS_PER_WEEK


def midnight(day: int) -> datetime:
    """The first instant (UTC) of day ordinal `day`."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)


def summary(order_days: Iterable[int], *, as_of_day: int) -> Summary | None:
    """x, t_x, T from a set of order days as of `as_of_day`; None without orders.

    An order dated after the as-of day (a shop's clock may run up to a day ahead) moves the as-of day to it:
    T is never less than t_x.
    """
    days = set(order_days)
    if not days:
        return None
    first, last = min(days), max(days)
    return Summary(x=len(days) - 1, first_day=first, last_day=last, as_of_day=max(as_of_day, last))


def summary_of(*, x: int, first_day: int, last_day: int, as_of_day: int) -> Summary:
    """The summary from its projected parts (as stored beside the state)."""
    return Summary(x=x, first_day=first_day, last_day=last_day, as_of_day=max(as_of_day, last_day))


# ---- P(alive) --------------------------------------------------------------------------------------------------


def _odds_factor(kind: ModelKind, p: Params, x: int) -> float:
    """The factor before ((alpha + T)/(alpha + t_x))^(r + x) in 1/P(alive) - 1; 0 where the customer cannot be dead.

    BG/NBD: a/(b + x - 1), and 0 for x = 0 (dropout happens only after a repeat purchase, so a one-time buyer
    is alive for ever: lifetimes #44). MBG/NBD: a/(b + x) (dropout may follow the first purchase too).
    """
    if kind == "bg_nbd":
        return 0.0 if x == 0 else p.a / (p.b + x - 1)
    return p.a / (p.b + x)


def p_alive(model: Model, s: Summary) -> float:
    """P(alive | x, t_x, T), exactly as the contract writes it for the model's kind."""
    return p_alive_weeks(model, x=s.x, t_x=s.t_x, T=s.T)


def p_alive_weeks(model: Model, *, x: int, t_x: float, T: float) -> float:
    """P(alive) from x and t_x, T in weeks."""
    p = model.params
    factor = _odds_factor(model.kind, p, x)
    if factor == 0.0:
        return 1.0
    ratio = (p.alpha + T) / (p.alpha + t_x)
    exponent = p.r + x
    try:
        odds = factor * math.pow(ratio, exponent)
    except OverflowError:
        return 0.0
    return 1.0 / (1.0 + odds)


def status_of(p: float, *, at_risk_below: float) -> Status:
    return "at_risk" if p < at_risk_below else "active"


def at_risk_from_day(model: Model, s: Summary, *, at_risk_below: float) -> int | None:
    """The first UTC day on which P(alive) < `at_risk_below` if no order comes; None if that never happens.

    P(alive) falls only with T, which grows by 1/7 at each UTC midnight, so solving the P(alive) formula for T
    gives the crossing in closed form: T* = (alpha + t_x) * ((1/threshold - 1)/factor)^(1/(r + x)) - alpha,
    and the day is the first d with (d - d0)/7 > T*. The day returned may be before `s.as_of_day` (already
    at risk). Checked against `p_alive` on the day and the day before, so float rounding never puts it a day off.
    """
    p = model.params
    factor = _odds_factor(model.kind, p, s.x)
    if factor == 0.0 or at_risk_below <= 0.0:
        return None
    if at_risk_below >= 1.0:
        return s.first_day
    target_odds = 1.0 / at_risk_below - 1.0
    try:
        t_star = (p.alpha + s.t_x) * math.pow(target_odds / factor, 1.0 / (p.r + s.x)) - p.alpha
    except OverflowError:
        return None
    if not math.isfinite(t_star) or t_star > 1e7:
        return None
    day = max(s.first_day + max(0, math.floor(t_star * DAYS_PER_WEEK) + 1), s.last_day)
    # P(alive) < threshold  <=>  odds > target_odds; the odds on day d, as p_alive computes them
    base, exponent = p.alpha + s.t_x, p.r + s.x
    first, alpha = s.first_day, p.alpha

    def below(d: int) -> bool:
        return 1.0 / (1.0 + factor * math.pow((alpha + (d - first) / DAYS_PER_WEEK) / base, exponent)) < at_risk_below

    while not below(day):
        day += 1
    while day > s.last_day and below(day - 1):
        day -= 1
    return day


# ---- conditional expectation ------------------------------------------------------------------------------------


def expected_orders(model: Model, s: Summary, *, weeks: float) -> float:
    """E[orders in (T, T + weeks] | x, t_x, T]: Fader, Hardie & Lee (2005) eq. 10, or Batislam et al. (2007).

    BG/NBD: (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]
            / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))
    MBG/NBD: (a+b+x)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x+1; a+b+x; t/(alpha+T+t))]
            / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))
    The formula has a removable singularity at a = 1; there it is evaluated a hair away, which changes
    nothing at the precision anyone reads.
    """
    return expected_orders_weeks(model, x=s.x, t_x=s.t_x, T=s.T, weeks=weeks)


def expected_orders_weeks(model: Model, *, x: int, t_x: float, T: float, weeks: float) -> float:
    """`expected_orders` from x and t_x, T in weeks."""
    if weeks <= 0:
        return 0.0
    p = model.params
    a = p.a if abs(p.a - 1.0) > 1e-7 else 1.0 + 1e-7
    r, alpha, b, t = p.r, p.alpha, p.b, weeks
    z = t / (alpha + T + t)
    power = math.pow((alpha + T) / (alpha + T + t), r + x)
    if model.kind == "bg_nbd":
        lead = (a + b + x - 1) / (a - 1)
        hyp = float(hyp2f1(r + x, b + x, a + b + x - 1, z))
    else:
        lead = (a + b + x) / (a - 1)
        hyp = float(hyp2f1(r + x, b + x + 1, a + b + x, z))
    numerator = lead * (1.0 - power * hyp)
    value = numerator * p_alive_weeks(model, x=x, t_x=t_x, T=T)
    return max(0.0, value) if math.isfinite(value) else float("nan")


def expected_orders_90d(model: Model, s: Summary) -> float:
    """The contract's `expected_orders_90d`: the expectation over the next 90 days (90/7 weeks)."""
    return expected_orders(model, s, weeks=EXPECTATION_DAYS / DAYS_PER_WEEK)
