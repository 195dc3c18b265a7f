"""The refit of the health model over every customer with an order, and the loop that keeps health current.

The data come out of PostgreSQL already grouped by (x, recency, age) in days, so a million customers cross the
wire as a few hundred thousand rows at most, and the fit (`domain.health_fit`) works on the groups. A fit is
stored as the next model version; the sweep (`scan.sweep`) then brings every customer to it, a bounded
transaction at a time, which is what makes the recompute resumable after a crash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from services.scoring.domain.health import Model
from services.scoring.domain.health_fit import FitFailure, fit, group_days
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import day_index
from services.scoring.health.models import ModelSource, ModelVersion, active_model, save_model
from services.scoring.health.scan import PassOutcome, scan_due, sweep
from services.scoring.unit_of_work import session
from shared.adapters.metrics import Metrics
from shared.faults import Faults

log = logging.getLogger(__name__)

_REFIT_LOCK = 74210016  # one refit at a time across instances (transaction-scoped advisory lock)
_GROUPS = text("""
    SELECT order_day_count - 1 AS x, order_last_day - order_first_day AS recency,
           greatest(:today, order_last_day) - order_first_day AS age, count(*) AS n
    FROM customers WHERE order_day_count IS NOT NULL
    GROUP BY 1, 2, 3
""")


@dataclass(frozen=True, slots=True)
class TooFew:
    """Fewer customers with an order than the policy's `min_customers`: the priors stay in force."""

    customers: int
    needed: int

    @property
    def reason(self) -> str:
        return f"{self.customers} customers with an order, {self.needed} needed to fit"


class Busy(RuntimeError):
    """Another instance is refitting right now."""


def refit(
    engine: Engine, *, policy: Policy, now: datetime | None = None, metrics: Metrics | None = None
) -> ModelVersion | TooFew | FitFailure:
    """Fit the policy's model kind over every customer with an order and store it as the next version.

    Raises Busy when another instance holds the refit lock; never raises for a fit that fails.
    """
    at = now or datetime.now(UTC)
    with session(engine) as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _REFIT_LOCK}).scalar_one():
            raise Busy("another instance is refitting")
        rows = conn.execute(_GROUPS, {"today": day_index(at)}).all()
        data = group_days([r.x for r in rows], [r.recency for r in rows], [r.age for r in rows], [r.n for r in rows])
        needed = policy.health.min_customers
        if data.customers < needed:
            _count(metrics, "too_few")
            return TooFew(data.customers, needed)
        current = active_model(conn, policy=policy)
        started = time.monotonic()
        result = fit(policy.health.model, data, start=current.model.params)
        if isinstance(result, FitFailure):
            _count(metrics, "failed")
            log.error(
                "health model fit failed, the previous model stays in force: %s",
                result.reason,
                extra={"customers": result.customers, "model_version": current.model.version},
            )
            return result
        version = save_model(
            conn,
            kind=policy.health.model,
            params=result.params,
            customers=result.customers,
            log_likelihood=result.log_likelihood,
            fitted_at=at,
        )
    _count(metrics, "fitted")
    log.info(
        "health model fitted",
        extra={
            "model_version": version,
            "customers": result.customers,
            "log_likelihood": round(result.log_likelihood, 3),
            "params": result.params.as_dict(),
            "fit_seconds": round(time.monotonic() - started, 3),
        },
    )
    return ModelVersion(
        Model(kind=policy.health.model, params=result.params, version=version),
        customers=result.customers,
        log_likelihood=result.log_likelihood,
        fitted_at=at,
    )


def _count(metrics: Metrics | None, outcome: str) -> None:
    if metrics is not None:
        metrics.health_fits.labels(outcome=outcome).inc()


class HealthLoop:
    """A thread of the scoring process: every `scan_s`, the sweep and the scan; every `refit_h`, a refit.

    A refit is due when the model in force is older than `refit_h` (the priors count as infinitely old); a
    refit that finds too few customers is tried again after ten scans, a failed one after `refit_h`.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        policy: Policy,
        source: ModelSource,
        metrics: Metrics,
        scan_s: float,
        refit_h: float,
        batch: int,
        on_commit: Callable[[], None] = lambda: None,
        faults: Faults | None = None,
    ) -> None:
        self.engine, self.policy, self.source, self.metrics = engine, policy, source, metrics
        self.scan_s, self.refit_s, self.batch = scan_s, refit_h * 3600.0, batch
        self.on_commit, self.faults = on_commit, faults
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._next_refit = 0.0  # monotonic; 0 = decide at the first tick from the model's age
        self._refit_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def refit_now(self) -> ModelVersion | TooFew | FitFailure:
        """Refit at once (POST /v1/health/model/fit); the loop brings every customer to the new model at once.

        Raises Busy when another instance is refitting.
        """
        with self._refit_lock:
            result = refit(self.engine, policy=self.policy, metrics=self.metrics)
            if isinstance(result, ModelVersion):
                self.source.forget()
                self._next_refit = time.monotonic() + self.refit_s
                self._wake.set()
            return result

    def advance(self) -> PassOutcome:
        """The sweep to the model in force, then the scan of customers due, as of now."""
        ctx = self.source.context()
        self.metrics.health_model_version.set(ctx.model.version)
        outcome = sweep(self.engine, ctx, batch=self.batch, faults=self.faults)
        refitted = outcome.changes
        scanned = scan_due(self.engine, ctx, batch=self.batch, faults=self.faults)
        outcome.add(scanned)
        if refitted:
            self.metrics.health_changes.labels(cause="refit").inc(refitted)
        if scanned.changes:
            self.metrics.health_changes.labels(cause="scan").inc(scanned.changes)
        if outcome.changes:
            self.on_commit()
            log.info(
                "health advanced",
                extra={
                    "assessed": outcome.assessed,
                    "at_risk": outcome.at_risk,
                    "recovered": outcome.recovered,
                    "model_version": ctx.model.version,
                },
            )
        return outcome

    def _refit_due(self) -> bool:
        now = time.monotonic()
        if self._next_refit == 0.0:
            fitted_at = self.source.current().fitted_at
            age = (datetime.now(UTC) - fitted_at).total_seconds() if fitted_at is not None else float("inf")
            self._next_refit = now + max(0.0, self.refit_s - age)
        return now >= self._next_refit

    def _tick(self) -> None:
        if self._refit_due():
            with self._refit_lock:
                try:
                    result = refit(self.engine, policy=self.policy, metrics=self.metrics)
                except Busy:
                    result = None
                if isinstance(result, ModelVersion):
                    self.source.forget()
                    self._next_refit = time.monotonic() + self.refit_s
                elif isinstance(result, TooFew):
                    log.info("health model: %s; the priors stay in force", result.reason)
                    self._next_refit = time.monotonic() + 10 * self.scan_s
                else:
                    self._next_refit = time.monotonic() + (self.scan_s if result is None else self.refit_s)
        self.advance()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._tick()
            except (SQLAlchemyError, psycopg.Error, OSError) as exc:
                # the database is away: the next tick tries again; nothing of a pass commits half
                log.warning("health pass failed, retrying at the next tick: %s", str(exc).splitlines()[0])
            except Exception:  # a bug in one pass must not stop health for the life of the process
                log.exception("health pass failed unexpectedly, retrying at the next tick")
            self._wake.wait(self.scan_s)
            self._wake.clear()
