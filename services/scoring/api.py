"""The scoring service's HTTP API (contract section 7) and the app that serves it with the workspace (section 9).

The answers come from `services.scoring.read`; this module only routes, checks access and maps "unknown" to 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from services.scoring.auth import Access, BearerAuth
from services.scoring.health_api import health_router
from services.scoring.heavy import Activity, Gate, Pacer
from services.scoring.http_common import (
    ApiContext,
    CustomerId,
    CustomerIdPaths,
    SecurityHeaders,
    install_error_handlers,
    not_found,
)
from services.scoring.prospects import prospects_router
from services.scoring.read.customers import customer
from services.scoring.read.ladder import policy_view, stage_counts
from services.scoring.schemas import CustomerOut, ErrorOut, PolicyOut, StagesOut
from services.scoring.workspace import STATIC_DIR, workspace_router
from shared.adapters.db import database_reachable
from shared.adapters.http import ERROR_RESPONSES, install_json_errors, ops_router
from shared.adapters.kafka import broker_reachable
from shared.adapters.metrics import Metrics


def create_app(
    *, ctx: ApiContext, metrics: Metrics, readiness_engine: Engine | None = None, event_path: Activity | None = None
) -> FastAPI:
    """The scoring service's FastAPI app; `ctx.engine` is the API's own pool, `readiness_engine` the one /readyz
    checks (the event path's, so that a busy API pool never takes the service out of rotation), `event_path`
    tells when the consumer is busy (the expensive requests then yield to it)."""
    settings = ctx.settings
    docs = settings.api_docs_enabled
    app = FastAPI(
        title="Loyalty ladder — scoring",
        version="1.0.0",
        description="Customers on the loyalty ladder: rung, loyalty vector, profitability, history. "
        "With API_TOKENS set, /v1/* needs `Authorization: Bearer <token>`. Every 4xx and "
        '5xx answer is JSON `{"error", "detail"}`.',
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        responses=ERROR_RESPONSES,
    )
    install_error_handlers(app)
    # parsed once here; a malformed API_TOKENS stops the service at start-up rather than at the first request
    access = Access.from_setting(settings.api_tokens)
    app.add_middleware(BearerAuth, access=access)
    # outside BearerAuth (added later = outer): it rewrites /v1/customers/<id> within /v1, so the path
    # authentication looks at keeps its prefix
    app.add_middleware(CustomerIdPaths)
    read, admin = Depends(access.require("read")), Depends(access.require("admin"))
    denied: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
    probe_engine = readiness_engine if readiness_engine is not None else ctx.engine
    app.include_router(
        ops_router(
            checks={"database": lambda: database_reachable(probe_engine), "broker": lambda: broker_reachable(settings)},
            registry=metrics.registry,
        )
    )

    @app.get(
        "/v1/customers/{customer_id}",
        response_model=CustomerOut,
        dependencies=[read],
        responses={404: {"model": ErrorOut}, **denied},
        tags=["customers"],
    )
    def get_customer(customer_id: CustomerId) -> dict[str, object]:
        """One customer's rung, loyalty vector, profitability, stability, counts, rung history and health."""
        body = customer(ctx.engine, customer_id=customer_id, policy=ctx.policy, at=datetime.now(UTC))
        if body is None:
            raise not_found(customer_id)
        return body

    @app.get("/v1/stages", response_model=StagesOut, dependencies=[read], responses=denied, tags=["customers"])
    def get_stages() -> dict[str, object]:
        """The number of customers on each rung, and on each rung by tier."""
        return stage_counts(ctx.engine)

    @app.get("/v1/policy", response_model=PolicyOut, dependencies=[admin], responses=denied, tags=["operations"])
    def get_policy() -> dict[str, object]:
        """The active policy (admin scope: it tells how the rungs and tiers are decided)."""
        return policy_view(ctx.policy)

    busy = event_path.busy if event_path is not None else (lambda: False)
    gate = Gate(settings.api_heavy_concurrency, pacer=Pacer(settings.api_heavy_share, busy=busy))
    app.include_router(workspace_router(ctx=ctx, read=access.require("read"), gate=gate))
    app.include_router(health_router(ctx=ctx, read=access.require("read"), admin=access.require("admin")))
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(prospects_router(ctx=ctx, admin=access.require("admin")))
    install_json_errors(app, max_body_bytes=settings.http_max_body_bytes, streamed=frozenset({"/v1/prospects"}))
    app.add_middleware(SecurityHeaders)  # outermost: the 413 and 500 answers get the headers too
    return app
