"""Health on the read side: one customer's health as of now, the model in force, and the backtest.

A customer's health is computed as of the moment of reading, with the model in force, from the same order days
the scoring transaction uses; the stored status says since when a customer is at risk (the list filter and
`/v1/stages` count the stored status, which the scan keeps within `HEALTH_SCAN_SECONDS` of the computed one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text

from services.scoring.domain.health import (
    Model,
    ModelKind,
    expected_orders_90d,
    p_alive,
    status_of,
    summary,
)
from services.scoring.domain.health_fit import FitFailure, expected_orders_array, fit, group_days
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import CustomerState, day_index
from services.scoring.health.models import active_model

MAX_HORIZON_DAYS = 3650
FREQUENCY_ROWS = 7  # x = 0..6, then "7+", as the paper draws it


class BacktestRefused(ValueError):
    """A backtest that cannot be run: the code names why (`cutoff_in_future`, `too_few_customers`, `fit_failed`)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class StoredHealth:
    status: str | None
    at_risk_since: datetime | None
    due_at: datetime | None


def stored_health(conn: Connection, *, customer_id: str) -> StoredHealth:
    row = conn.execute(
        text("SELECT health_status, at_risk_since, health_due_at FROM customers WHERE customer_id = :id"),
        {"id": customer_id},
    ).first()
    return StoredHealth(None, None, None) if row is None else StoredHealth(*row)


def health_view(
    state: CustomerState, stored: StoredHealth, *, model: Model, policy: Policy, at: datetime
) -> dict[str, object] | None:
    """The `health` block of GET /v1/customers/{id} as of `at`; None without orders."""
    s = summary(state.order_days, as_of_day=day_index(at))
    if s is None:
        return None
    p = p_alive(model, s)
    status = status_of(p, at_risk_below=policy.health.at_risk_below)
    since = None
    if status == "at_risk":
        # the stored change if there is one; else the scan has not marked it yet, and it crossed at its due moment
        since = stored.at_risk_since if stored.status == "at_risk" else (stored.due_at or at)
    return {
        "status": status,
        "p_alive": p,
        "expected_orders_90d": expected_orders_90d(model, s),
        "as_of": at,
        "model_version": model.version,
        "x": s.x,
        "t_x_weeks": s.t_x,
        "T_weeks": s.T,
        "at_risk_since": since,
    }


def customer_health(
    conn: Connection, state: CustomerState, *, policy: Policy, at: datetime
) -> dict[str, object] | None:
    """`health_view` of a customer read on `conn`."""
    if not state.order_days:
        return None
    model = active_model(conn, policy=policy).model
    return health_view(state, stored_health(conn, customer_id=state.customer_id), model=model, policy=policy, at=at)


def model_view(engine: Engine, *, policy: Policy) -> dict[str, object]:
    """The GET /v1/health/model body."""
    with engine.connect() as conn:
        return active_model(conn, policy=policy).view()


# ---- backtest ---------------------------------------------------------------------------------------------------

# per customer with an order on or before the cutoff's day: x, recency and age in days in the calibration period,
# and the distinct order days in the holdout (cutoff's day, cutoff's day + horizon]
_BACKTEST = text("""
    SELECT count(*) FILTER (WHERE d <= :cut) - 1 AS x,
           max(d) FILTER (WHERE d <= :cut) - min(d) AS recency,
           :cut - min(d) AS age,
           count(*) FILTER (WHERE d > :cut AND d <= :until) AS holdout
    FROM customers AS c
    CROSS JOIN LATERAL (SELECT value::integer AS d FROM jsonb_array_elements_text(c.state::jsonb -> 'order_days'))
        AS o
    WHERE c.order_first_day <= :cut
    GROUP BY c.customer_id
""")


def backtest(
    engine: Engine, *, cutoff: datetime, horizon_days: int, kind: ModelKind, policy: Policy, now: datetime | None = None
) -> dict[str, object]:
    """Fit `kind` on the orders up to the cutoff's UTC day and compare its forecast with the holdout.

    Raises BacktestRefused for a cutoff in the future, too few customers, or a fit that fails. Changes nothing.
    """
    at = now or datetime.now(UTC)
    cut_at = cutoff.replace(tzinfo=UTC) if cutoff.tzinfo is None else cutoff.astimezone(UTC)
    if cut_at > at:
        raise BacktestRefused("cutoff_in_future", f"the cutoff {cut_at.isoformat()} is in the future")
    if not 1 <= horizon_days <= MAX_HORIZON_DAYS:
        raise BacktestRefused("invalid_horizon", f"horizon_days must be 1 to {MAX_HORIZON_DAYS}, got {horizon_days}")
    cut = day_index(cut_at)
    with engine.connect() as conn:
        rows = conn.execute(_BACKTEST, {"cut": cut, "until": cut + horizon_days}).all()
    needed = policy.health.min_customers
    if len(rows) < needed:
        raise BacktestRefused(
            "too_few_customers", f"{len(rows)} customers with an order on or before the cutoff, {needed} needed"
        )
    x = np.array([r.x for r in rows], dtype=np.int64)
    recency = np.array([r.recency for r in rows], dtype=np.int64)
    age = np.array([r.age for r in rows], dtype=np.int64)
    actual = np.array([r.holdout for r in rows], dtype=np.int64)
    result = fit(kind, group_days(x, recency, age))
    if isinstance(result, FitFailure):
        raise BacktestRefused("fit_failed", result.reason)
    predicted = expected_orders_array(
        kind, result.params, x.astype(np.float64), recency / 7.0, age / 7.0, horizon_days / 7.0
    )
    return {
        "model": kind,
        "cutoff": cut_at,
        "horizon_days": horizon_days,
        "customers": len(rows),
        "params": result.params.as_dict(),
        "log_likelihood": result.log_likelihood,
        "predicted_repeat_orders": float(predicted.sum()),
        "actual_repeat_orders": int(actual.sum()),
        "by_frequency": _by_frequency(x, predicted, actual),
    }


def _by_frequency(x: Any, predicted: Any, actual: Any) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for k in range(FREQUENCY_ROWS + 1):
        mask = x == k if k < FREQUENCY_ROWS else x >= FREQUENCY_ROWS
        n = int(mask.sum())
        rows.append(
            {
                "x": k if k < FREQUENCY_ROWS else f"{FREQUENCY_ROWS}+",
                "customers": n,
                "predicted": float(predicted[mask].mean()) if n else 0.0,
                "actual": float(actual[mask].mean()) if n else 0.0,
            }
        )
    return rows
