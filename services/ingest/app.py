"""The ingest service's HTTP side: operations only (`/healthz`, `/readyz`, `/metrics`).

Ingest uses no database: it only reads the shop topics and writes the scoring-input and dead-letter topics,
so `/readyz` checks the broker alone.
"""

from __future__ import annotations

from fastapi import FastAPI

from shared.adapters.http import ERROR_RESPONSES, install_json_errors, ops_router
from shared.adapters.kafka import broker_reachable
from shared.adapters.metrics import Metrics
from shared.settings import Settings


def create_app(*, settings: Settings, metrics: Metrics) -> FastAPI:
    """The ops app; readiness = the broker answers a metadata request (ingest has no database)."""
    # no documentation pages: the OpenAPI document of these three endpoints is published in docs/contracts/
    app = FastAPI(
        title="loyalty-ladder ingest", docs_url=None, redoc_url=None, openapi_url=None, responses=ERROR_RESPONSES
    )

    def broker() -> str | None:
        return broker_reachable(settings)

    app.include_router(ops_router(checks={"broker": broker}, registry=metrics.registry))
    install_json_errors(app, max_body_bytes=settings.http_max_body_bytes)
    return app
