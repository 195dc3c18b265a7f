"""Maximum-likelihood fit of BG/NBD and MBG/NBD over a population, and the backtest's forecast (numpy/scipy).

Customers with the same (x, t_x, T) contribute the same term to the log-likelihood, so the data are grouped
first and each group weighted by its count: with days as the unit a million customers make a few hundred
thousand groups at most, and every evaluation is one vectorised pass over them. The optimiser works on the
logs of the parameters, which keeps them positive without bounds. A fit that does not converge, or lands on
a non-finite likelihood or parameter, comes back as a `FitFailure` carrying the reason; nothing here raises
for bad data.
Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

from services.scoring.domain.health import DAYS_PER_WEEK, ModelKind, Params

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Grouped:
    """Distinct (x, t_x, T) rows in weeks, with how many customers share each.

    Each row also holds where its x, t_x and T sit among the distinct values of each (`ix`, `it`, `iT`): the
    gamma functions depend on x alone and the logs on t_x or T alone, and there are only a few hundred
    distinct values of each, so the likelihood evaluates them once per distinct value and gathers.
    """

    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    weight: FloatArray
    ux: FloatArray
    ut: FloatArray
    uT: FloatArray
    ix: npt.NDArray[np.intp]
    it: npt.NDArray[np.intp]
    iT: npt.NDArray[np.intp]

    @property
    def customers(self) -> int:
        return round(float(self.weight.sum()))


@dataclass(frozen=True, slots=True)
class FitResult:
    params: Params
    log_likelihood: float
    customers: int
    iterations: int


@dataclass(frozen=True, slots=True)
class FitFailure:
    reason: str
    customers: int


def group_days(
    x: npt.ArrayLike, recency_days: npt.ArrayLike, age_days: npt.ArrayLike, weight: npt.ArrayLike | None = None
) -> Grouped:
    """Group customers by (x, dl - d0, da - d0) in whole days; t_x and T come out in weeks."""
    xs = np.asarray(x, dtype=np.int64)
    rec = np.asarray(recency_days, dtype=np.int64)
    age = np.asarray(age_days, dtype=np.int64)
    w = np.ones(len(xs), dtype=np.float64) if weight is None else np.asarray(weight, dtype=np.float64)
    if len(xs) == 0:
        return _grouped(np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.float64))
    # one int64 key per customer (x, recency, age each below 2^21 days or orders) sorts far faster than rows
    span = np.int64(1 << 21)
    if xs.min() < 0 or rec.min() < 0 or age.min() < 0 or max(xs.max(), rec.max(), age.max()) >= span:
        raise ValueError("x, recency and age must be in [0, 2^21)")
    keys = (xs * span + rec) * span + age
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=w, minlength=len(unique))
    rows = np.stack([unique // (span * span), (unique // span) % span, unique % span], axis=1)
    return _grouped(rows, counts.astype(np.float64))


def _grouped(rows: npt.NDArray[np.int64], weight: FloatArray) -> Grouped:
    x = rows[:, 0].astype(np.float64)
    t_x = rows[:, 1] / DAYS_PER_WEEK
    T = rows[:, 2] / DAYS_PER_WEEK
    ux, ix = np.unique(x, return_inverse=True)
    ut, it = np.unique(t_x, return_inverse=True)
    uT, iT = np.unique(T, return_inverse=True)
    return Grouped(x=x, t_x=t_x, T=T, weight=weight, ux=ux, ut=ut, uT=uT, ix=ix.ravel(), it=it.ravel(), iT=iT.ravel())


def log_likelihood(kind: ModelKind, params: Params, data: Grouped) -> float:
    """The summed log-likelihood of `data` under the model (Fader et al. 2005 eq. 6; Batislam et al. 2007)."""
    return float(np.dot(data.weight, _ll_terms(kind, (params.r, params.alpha, params.a, params.b), data)))


def _ll_terms(kind: ModelKind, theta: tuple[float, float, float, float], d: Grouped) -> FloatArray:
    """Each row's log-likelihood: A1 + A2 + A3 + log(1 + [x > 0 for BG/NBD] e^A4) in the usual notation."""
    r, alpha, a, b = theta
    ux = d.ux
    log_T = np.log(alpha + d.uT)[d.iT]
    log_t = np.log(alpha + d.ut)[d.it]
    shift = 0.0 if kind == "bg_nbd" else 1.0
    # A1 + A2 per distinct x
    head = (
        gammaln(r + ux)
        - gammaln(r)
        + r * math.log(alpha)
        + gammaln(a + b)
        + gammaln(b + ux + shift)
        - gammaln(b)
        - gammaln(a + b + ux + shift)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "bg_nbd":
            log_factor = np.where(ux > 0, math.log(a) - np.log(np.maximum(b + ux - 1, 1e-300)), -np.inf)
        else:
            log_factor = math.log(a) - np.log(b + ux)
    rx = r + d.x
    a4 = log_factor[d.ix] + rx * (log_T - log_t)
    result: FloatArray = head[d.ix] - rx * log_T + np.logaddexp(a4, 0.0)
    return result


def fit(
    kind: ModelKind, data: Grouped, *, start: Params | None = None, max_iterations: int = 2000
) -> FitResult | FitFailure:
    """The maximum-likelihood parameters of `kind` on `data`, or why there are none."""
    customers = data.customers
    if customers == 0:
        return FitFailure("no customers with an order", customers)
    total = float(data.weight.sum())
    first = start if start is not None and start.valid else Params(r=1.0, alpha=1.0, a=1.0, b=1.0)

    def objective(log_theta: FloatArray) -> float:
        theta = np.exp(log_theta)
        if not np.all(np.isfinite(theta)):
            return math.inf
        with np.errstate(all="ignore"):
            terms = _ll_terms(kind, (float(theta[0]), float(theta[1]), float(theta[2]), float(theta[3])), data)
            value = -float(np.dot(data.weight, terms)) / total
        return value if math.isfinite(value) else math.inf

    x0 = np.log(np.array([first.r, first.alpha, first.a, first.b], dtype=np.float64))
    try:
        # quasi-Newton first (few evaluations: what a million customers need); where it stops short, a
        # derivative-free polish from where it got
        best: Any = minimize(
            objective, x0, method="L-BFGS-B", options={"maxiter": max_iterations, "ftol": 1e-13, "gtol": 1e-9}
        )
        if not best.success or not math.isfinite(best.fun):
            polish: Any = minimize(
                objective,
                best.x if math.isfinite(best.fun) else x0,
                method="Nelder-Mead",
                options={"maxiter": max_iterations, "xatol": 1e-7, "fatol": 1e-12},
            )
            if math.isfinite(polish.fun) and (polish.success or polish.fun < best.fun):
                best = polish
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        return FitFailure(f"optimiser failed: {type(exc).__name__}: {exc}", customers)
    theta = np.exp(best.x)
    params = Params(r=float(theta[0]), alpha=float(theta[1]), a=float(theta[2]), b=float(theta[3]))
    ll = -float(best.fun) * total
    if not params.valid or not math.isfinite(ll):
        return FitFailure(f"no finite optimum (log-likelihood {ll}, parameters {params.as_dict()})", customers)
    if not best.success:
        return FitFailure(f"did not converge: {best.message}", customers)
    return FitResult(params=params, log_likelihood=ll, customers=customers, iterations=int(best.nit))


def expected_orders_array(
    kind: ModelKind, params: Params, x: FloatArray, t_x: FloatArray, T: FloatArray, weeks: float
) -> FloatArray:
    """`health.expected_orders` over arrays (the backtest's forecast for every customer at once)."""
    r, alpha, b = params.r, params.alpha, params.b
    a = params.a if abs(params.a - 1.0) > 1e-7 else 1.0 + 1e-7
    z = weeks / (alpha + T + weeks)
    power = ((alpha + T) / (alpha + T + weeks)) ** (r + x)
    ratio = ((alpha + T) / (alpha + t_x)) ** (r + x)
    if kind == "bg_nbd":
        lead = (a + b + x - 1) / (a - 1)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        with np.errstate(divide="ignore", invalid="ignore"):
            odds = np.where(x > 0, a / (b + x - 1) * ratio, 0.0)
    else:
        lead = (a + b + x) / (a - 1)
        hyp = hyp2f1(r + x, b + x + 1, a + b + x, z)
        odds = a / (b + x) * ratio
    value: FloatArray = lead * (1.0 - power * hyp) / (1.0 + odds)
    return np.maximum(value, 0.0)


def p_alive_array(kind: ModelKind, params: Params, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """`health.p_alive` over arrays (the bulk recompute after a refit)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_ratio = (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        if kind == "bg_nbd":
            log_factor = np.where(x > 0, math.log(a) - np.log(np.maximum(b + x - 1, 1e-300)), -np.inf)
        else:
            log_factor = math.log(a) - np.log(b + x)
        # 1 / (1 + e^z) without overflow
        result: FloatArray = np.exp(-np.logaddexp(0.0, log_factor + log_ratio))
    return result
