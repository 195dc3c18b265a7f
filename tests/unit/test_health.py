"""The health model's numbers: x, t_x, T from order days, P(alive), the conditional expectation, the fit.

The anchors are the paper's: Fader, Hardie & Lee (2005) fit BG/NBD to the CDNOW sample with r = 0.243,
alpha = 4.414, a = 0.793, b = 2.426 and LL = -9582.4, and give 1.226 as the expected purchases in the next 39
weeks of a customer with x = 2, t_x = 30.43, T = 38.86.
"""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest

from services.scoring.domain.health import (
    EPOCH,
    Model,
    Params,
    Summary,
    at_risk_from_day,
    expected_orders,
    expected_orders_weeks,
    p_alive,
    p_alive_weeks,
    summary,
)
from services.scoring.domain.health_fit import (
    FitFailure,
    FitResult,
    expected_orders_array,
    fit,
    group_days,
    log_likelihood,
    p_alive_array,
)
from services.scoring.domain.state import day_index
from tests.cdnow import CALIBRATION_END, PAPER_LL, PAPER_PARAMS, order_days, sig3
from tests.unit.domain_builders import at, complaint, default_policy, order, refund, run

PAPER = Params(r=0.243, alpha=4.414, a=0.793, b=2.426)
BG = Model("bg_nbd", PAPER)
MBG = Model("mbg_nbd", Params(r=0.525, alpha=6.183, a=0.891, b=1.614))


def _cdnow_calibration() -> tuple[list[int], list[int], list[int]]:
    cut = (CALIBRATION_END - EPOCH).days
    xs, rec, age = [], [], []
    for days in order_days().values():
        cal = sorted((d - EPOCH).days for d in days if (d - EPOCH).days <= cut)
        if cal:
            xs.append(len(cal) - 1)
            rec.append(cal[-1] - cal[0])
            age.append(cut - cal[0])
    return xs, rec, age


def test_summary_is_the_set_of_order_days_whatever_the_arrival() -> None:
    days = [100, 107, 107, 121, 100]
    for _ in range(5):
        random.shuffle(days)
        s = summary(days, as_of_day=135)
        assert s == Summary(x=2, first_day=100, last_day=121, as_of_day=135)
    assert s is not None and s.t_x == 3.0 and s.T == 5.0
    assert summary([], as_of_day=5) is None
    # an order dated after the as-of day (clock skew) moves the as-of day to it: T >= t_x
    ahead = summary([10, 20], as_of_day=19)
    assert ahead is not None and ahead.T == ahead.t_x


def test_order_days_come_from_orders_only_and_not_from_their_arrival() -> None:
    facts = [
        order("o1", at(2026, 1, 5, 9)),
        order("o2", at(2026, 1, 5, 23)),
        refund("f1", at(2026, 2, 1)),
        order("o3", at(2026, 3, 2)),
        complaint("c1", at(2026, 4, 1)),
    ]
    states = []
    for _ in range(6):
        random.shuffle(facts)
        state, _ = run(facts, default_policy())
        states.append((state.order_days, state.last_order_at))
    assert len(set(states)) == 1
    days, last = states[0]
    assert last == at(2026, 3, 2)
    s = summary(days, as_of_day=day_index(at(2026, 3, 16)))
    assert s is not None and (s.x, s.t_x, s.T) == (1, 56 / 7, 70 / 7)


def test_p_alive_is_the_contracts_formula() -> None:
    x, t_x, T = 2, 30.43, 38.86
    p = PAPER
    bg = 1 / (1 + p.a / (p.b + x - 1) * ((p.alpha + T) / (p.alpha + t_x)) ** (p.r + x))
    assert p_alive_weeks(BG, x=x, t_x=t_x, T=T) == pytest.approx(bg, rel=1e-12)
    q = MBG.params
    mbg = 1 / (1 + q.a / (q.b + x) * ((q.alpha + T) / (q.alpha + t_x)) ** (q.r + x))
    assert p_alive_weeks(MBG, x=x, t_x=t_x, T=T) == pytest.approx(mbg, rel=1e-12)


def test_one_time_buyers_never_die_under_bg_nbd_and_fade_under_mbg_nbd() -> None:
    young, old = Summary(0, 0, 0, 7), Summary(0, 0, 0, 700)
    assert p_alive(BG, young) == p_alive(BG, old) == 1.0
    assert at_risk_from_day(BG, old, at_risk_below=0.5) is None
    assert p_alive(MBG, old) < p_alive(MBG, young) < 1.0


def test_p_alive_falls_as_time_passes_without_an_order() -> None:
    values = [p_alive(MBG, Summary(3, 0, 60, d)) for d in range(60, 800, 20)]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]


@pytest.mark.parametrize("model", [BG, MBG], ids=["bg_nbd", "mbg_nbd"])
@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_the_at_risk_day_is_the_first_day_below_the_threshold(model: Model, threshold: float) -> None:
    for x, first, last in [(1, 0, 10), (2, 0, 213), (5, 0, 40), (12, 100, 400)]:
        s = Summary(x, first, last, last)
        day = at_risk_from_day(model, s, at_risk_below=threshold)
        assert day is not None
        assert p_alive(model, Summary(x, first, last, day)) < threshold
        if day > last:
            assert p_alive(model, Summary(x, first, last, day - 1)) >= threshold


def test_the_papers_conditional_expectation() -> None:
    assert sig3(expected_orders_weeks(BG, x=2, t_x=30.43, T=38.86, weeks=39)) == "1.23"
    assert expected_orders_weeks(BG, x=2, t_x=30.43, T=38.86, weeks=39) == pytest.approx(1.226, abs=5e-4)
    vec = expected_orders_array("bg_nbd", PAPER, np.array([2.0]), np.array([30.43]), np.array([38.86]), 39)
    assert float(vec[0]) == pytest.approx(1.226, abs=5e-4)


def test_expected_orders_grow_with_the_horizon_and_stop_at_zero() -> None:
    s = Summary(4, 0, 150, 200)
    for model in (BG, MBG):
        values = [expected_orders(model, s, weeks=w) for w in (0, 1, 13, 52, 260)]
        assert values[0] == 0.0 and values == sorted(values) and values[-1] > values[1] > 0


def test_the_array_forms_agree_with_the_scalar_ones() -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 15, 300).astype(float)
    t_x = rng.uniform(0, 50, 300)
    T = t_x + rng.uniform(0, 50, 300)
    for model in (BG, MBG):
        pa = p_alive_array(model.kind, model.params, x, t_x, T)
        eo = expected_orders_array(model.kind, model.params, x, t_x, T, 90 / 7)
        for i in range(0, 300, 17):
            assert pa[i] == pytest.approx(p_alive_weeks(model, x=int(x[i]), t_x=t_x[i], T=T[i]), rel=1e-9)
            assert eo[i] == pytest.approx(
                expected_orders_weeks(model, x=int(x[i]), t_x=t_x[i], T=T[i], weeks=90 / 7), rel=1e-7
            )


def test_cdnow_bg_nbd_fit_reproduces_the_paper() -> None:
    xs, rec, age = _cdnow_calibration()
    assert len(xs) == 2357
    # T as whole UTC days to the calibration's last day: 38.86 weeks for a first order on 1997-01-01
    assert max(age) / 7 == pytest.approx(38.86, abs=5e-3)
    data = group_days(xs, rec, age)
    assert data.customers == 2357 and len(data.x) < 2357  # grouped
    result = fit("bg_nbd", data)
    assert isinstance(result, FitResult), result
    got = result.params.as_dict()
    assert {k: sig3(v) for k, v in got.items()} == {k: sig3(v) for k, v in PAPER_PARAMS.items()}
    assert sig3(result.log_likelihood) == sig3(PAPER_LL)
    assert result.log_likelihood == pytest.approx(PAPER_LL, abs=0.05)
    assert log_likelihood("bg_nbd", result.params, data) == pytest.approx(result.log_likelihood)
    # the paper's own parameters are (to their rounding) the optimum
    assert log_likelihood("bg_nbd", PAPER, data) == pytest.approx(PAPER_LL, abs=0.1)


def test_cdnow_mbg_nbd_fits_as_well_as_bg_nbd() -> None:
    data = group_days(*_cdnow_calibration())
    result = fit("mbg_nbd", data)
    assert isinstance(result, FitResult), result
    assert result.log_likelihood == pytest.approx(-9582.1, abs=0.1)
    assert {k: sig3(v) for k, v in result.params.as_dict().items()} == {
        "r": "0.525",
        "alpha": "6.18",
        "a": "0.891",
        "b": "1.61",
    }


def simulate(n: int, params: Params, *, horizon_days: int, seed: int = 3) -> tuple[np.ndarray, ...]:
    """(x, recency days, age days) of `n` customers drawn from the MBG/NBD story, first orders spread out."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(params.r, 1 / params.alpha, n)  # orders per week
    dropout = rng.beta(params.a, params.b, n)
    first = rng.integers(0, horizon_days, n)
    age = horizon_days - first
    t, last, x = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
    alive = rng.random(n) >= dropout  # MBG/NBD: a customer may leave right after the first order
    for _ in range(80):
        t = t + rng.exponential(1, n) / np.maximum(rate, 1e-12) * 7
        placed = alive & (t <= age)
        x += placed
        last = np.where(placed, t, last)
        alive = placed & (rng.random(n) >= dropout)
    return x, np.floor(last).astype(np.int64), age


def test_a_million_customers_fit_in_seconds_and_find_the_parameters_they_came_from() -> None:
    truth = Params(r=0.5, alpha=6.0, a=0.9, b=1.6)
    x, rec, age = simulate(1_000_000, truth, horizon_days=730)
    started = time.monotonic()
    data = group_days(x, rec, age)
    result = fit("mbg_nbd", data)
    elapsed = time.monotonic() - started
    assert isinstance(result, FitResult), result
    assert data.customers == 1_000_000
    for name, value in truth.as_dict().items():
        assert result.params.as_dict()[name] == pytest.approx(value, rel=0.05), name
    assert elapsed < 20, f"{elapsed:.1f}s"  # ~1.5 s alone on the 2-core machine; the margin is for a busy one


def test_a_fit_that_cannot_succeed_says_why_and_never_raises() -> None:
    empty = group_days([], [], [])
    assert isinstance(fit("bg_nbd", empty), FitFailure)
    # nobody ever came back: the likelihood has no interior optimum; whatever the optimiser does, no exception
    nobody = group_days([0] * 50, [0] * 50, [100] * 50)
    outcome = fit("bg_nbd", nobody, max_iterations=50)
    assert isinstance(outcome, FitResult | FitFailure)
    if isinstance(outcome, FitResult):
        assert outcome.params.valid and math.isfinite(outcome.log_likelihood)
    bad = fit("mbg_nbd", group_days([1, 2], [5, 9], [10, 12]), start=Params(r=float("nan"), alpha=1, a=1, b=1))
    assert isinstance(bad, FitResult | FitFailure)
