"""The numbered health models (`health_models`) and which one is in force.

The newest version of the policy's model kind is in force; before any, the policy's priors (version 0).
Every scoring instance reads it from the table, so a refit by any instance reaches all of them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

from services.scoring.domain.health import Model, Params
from services.scoring.domain.policy import Policy
from services.scoring.health.marks import HealthContext

_ACTIVE = text("""
    SELECT version, model, r, alpha, a, b, customers, log_likelihood, fitted_at FROM health_models
    WHERE model = :kind ORDER BY version DESC LIMIT 1
""")
_INSERT = text("""
    INSERT INTO health_models (model, r, alpha, a, b, customers, log_likelihood, fitted_at)
    VALUES (:kind, :r, :alpha, :a, :b, :customers, :ll, :fitted_at)
    RETURNING version
""")


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A model in force with what the API shows of it; `fitted_at` is None for the priors."""

    model: Model
    customers: int = 0
    log_likelihood: float | None = None
    fitted_at: datetime | None = None

    def view(self) -> dict[str, object]:
        """The GET /v1/health/model body."""
        return {
            "version": self.model.version,
            "model": self.model.kind,
            "params": self.model.params.as_dict(),
            "customers": self.customers,
            "log_likelihood": self.log_likelihood,
            "fitted_at": self.fitted_at,
        }


def active_model(conn: Connection, *, policy: Policy) -> ModelVersion:
    """The model in force: the newest fit of the policy's kind, else the priors."""
    row = conn.execute(_ACTIVE, {"kind": policy.health.model}).first()
    if row is None:
        return ModelVersion(policy.health.prior_model)
    params = Params(r=row.r, alpha=row.alpha, a=row.a, b=row.b)
    return ModelVersion(
        Model(kind=row.model, params=params, version=row.version),
        customers=row.customers,
        log_likelihood=row.log_likelihood,
        fitted_at=row.fitted_at,
    )


def save_model(
    conn: Connection, *, kind: str, params: Params, customers: int, log_likelihood: float, fitted_at: datetime
) -> int:
    """Store a fit as the next version; its number."""
    version = conn.execute(
        _INSERT,
        {"kind": kind, **params.as_dict(), "customers": customers, "ll": log_likelihood, "fitted_at": fitted_at},
    ).scalar_one()
    return int(version)


class ModelSource:
    """The model in force for the scoring transaction, read from the table at most every `ttl_s` seconds.

    A batch may use a model a few seconds old after a refit: it stamps its customers with that version, and the
    sweep after the refit (`scan.sweep`) picks them up again.
    """

    def __init__(self, engine: Engine, *, policy: Policy, topic: str, ttl_s: float = 5.0) -> None:
        self.engine, self.policy, self.topic, self.ttl_s = engine, policy, topic, ttl_s
        self._lock = threading.Lock()
        self._model: ModelVersion | None = None
        self._read_at = 0.0

    def current(self) -> ModelVersion:
        with self._lock:
            if self._model is None or time.monotonic() - self._read_at >= self.ttl_s:
                with self.engine.connect() as conn:
                    self._model = active_model(conn, policy=self.policy)
                self._read_at = time.monotonic()
            return self._model

    def forget(self) -> None:
        """Read the table at the next call (after this process stored a new version)."""
        with self._lock:
            self._model = None

    def context(self, now: datetime | None = None) -> HealthContext:
        """What the scoring transaction assesses health with, as of `now` (default: the wall clock)."""
        return HealthContext(
            model=self.current().model,
            at_risk_below=self.policy.health.at_risk_below,
            now=now or datetime.now(UTC),
            topic=self.topic,
        )
