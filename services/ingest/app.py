"""The ingest service's HTTP side: operations only (`/healthz`, `/readyz`, `/metrics`).

Ingest uses no database: it only reads the shop topics and writes the scoring-input and dead-letter topics,
so `/readyz` checks the broker alone.
"""

from __future__ import annotations

from fastapi import FastAPI

from shared.adapters.http import ops_router
from shared.adapters.kafka import broker_reachable
from shared.adapters.metrics import Metrics
from shared.settings import Settings


def create_app(*, settings: Settings, metrics: Metrics) -> FastAPI:
    """The ops app; readiness = the broker answers a metadata request (ingest has no database)."""
    app = FastAPI(title="loyalty-ladder ingest", docs_url=None, redoc_url=None, openapi_url=None)

    def broker() -> str | None:
        return broker_reachable(settings)

    app.include_router(ops_router(checks={"broker": broker}, registry=metrics.registry))
    return app
