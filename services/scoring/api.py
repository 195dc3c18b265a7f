"""The scoring service's HTTP API (contract section 7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, text
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.scoring.auth import Access, AccessDenied, BearerAuth
from services.scoring.domain.measures import TIERS, loyalty, profitability, stability
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import RANK, STAGES, CustomerState, from_text
from services.scoring.schemas import CustomerOut, ErrorOut, PolicyOut, StagesOut
from shared.db import database_reachable
from shared.http import ops_router
from shared.kafka import broker_reachable
from shared.metrics import Metrics
from shared.settings import Settings


class ApiError(Exception):
    """A 4xx with a JSON body."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


@dataclass(frozen=True)
class ApiContext:
    """What request handlers need, built once at start-up."""

    engine: Engine
    policy: Policy
    settings: Settings


def customer_view(state: CustomerState, history: list[dict[str, object]], *, policy: Policy,
                  at: datetime) -> dict[str, object]:
    """The GET /v1/customers/{id} body for `state` as of `at`."""
    return {
        "customer_id": state.customer_id,
        "stage": state.stage,
        "stage_entered_at": state.stage_entered_at,
        "loyalty": loyalty(state, at=at, policy=policy).as_dict(),
        "profitability": profitability(state, policy=policy),
        "stability": stability(state, at=at),
        "counts": {
            "orders": state.orders, "refunds": state.refunds, "full_price_orders": state.full_price_orders,
            "referrals_made": state.referrals_made, "referrals_converted": state.referrals_converted,
            "complaints": state.complaints,
        },
        "first_seen_at": state.first_seen_at,
        "last_event_at": state.last_event_at,
        "history": history,
    }


def load_customer(ctx: ApiContext, *, customer_id: str) -> tuple[CustomerState, list[dict[str, object]]] | None:
    """A customer's state and rung history, or None when unknown."""
    with ctx.engine.connect() as conn:
        row = conn.execute(text("SELECT state FROM customers WHERE customer_id = :id"), {"id": customer_id}).first()
        if row is None:
            return None
        history = [dict(r._mapping) for r in conn.execute(text(
            "SELECT from_stage, to_stage, occurred_at, cause_event_id, reason FROM stage_history "
            "WHERE customer_id = :id"), {"id": customer_id})]
    history.sort(key=lambda h: RANK[str(h["to_stage"])])
    return from_text(row.state), history


def stage_counts(ctx: ApiContext) -> dict[str, object]:
    """Customers per rung and per rung by tier; every rung and tier present, zeros included."""
    with ctx.engine.connect() as conn:
        counts = {(r.stage, r.tier): int(r.n) for r in conn.execute(
            text("SELECT stage, tier, count(*) AS n FROM customers GROUP BY stage, tier"))}
    stages = {
        stage: {
            "customers": sum(n for (s, _), n in counts.items() if s == stage),
            "tiers": {t: counts.get((stage, t), 0) for t in TIERS},
        }
        for stage in STAGES
    }
    return {"customers": sum(counts.values()), "stages": stages}


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON {error, detail}."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(AccessDenied)
    async def _access_denied(_: Request, exc: AccessDenied) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": "http_error", "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_request", "detail": str(exc.errors())}, status_code=422)


def policy_view(policy: Policy) -> dict[str, object]:
    """The GET /v1/policy body: rung conditions, tier limits and loyalty constants of `policy`."""
    return {
        "rungs": [{"rung": rung, "conditions": dict(conds)} for rung, conds in policy.rungs],
        "profitable_min": str(policy.profitable_min),
        "unprofitable_below": str(policy.unprofitable_below),
        "activity_horizon_months": policy.activity_horizon_months,
        "loyalty": {kind: {"half_life_days": p.half_life_days, "scale": p.scale, "extra": p.extra}
                    for kind, p in policy.kinds},
    }


def create_app(*, ctx: ApiContext, metrics: Metrics) -> FastAPI:
    """The scoring service's FastAPI app."""
    # imported here: the workspace module builds on this module's ApiContext, ApiError and load_customer
    from services.scoring.workspace import STATIC_DIR, workspace_router

    app = FastAPI(title="Loyalty ladder — scoring", version="1.0.0",
                  description="Customers on the loyalty ladder: rung, loyalty vector, profitability, history. "
                              "With API_TOKENS set, /v1/* needs `Authorization: Bearer <token>`.")
    install_error_handlers(app)
    # parsed once here; a malformed API_TOKENS stops the service at start-up rather than at the first request
    access = Access.from_setting(ctx.settings.api_tokens)
    app.add_middleware(BearerAuth, access=access)
    read, admin = Depends(access.require("read")), Depends(access.require("admin"))
    denied: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
    app.include_router(ops_router(
        checks={"database": lambda: database_reachable(ctx.engine),
                "broker": lambda: broker_reachable(ctx.settings)},
        registry=metrics.registry,
    ))

    @app.get("/v1/customers/{customer_id}", response_model=CustomerOut, dependencies=[read],
             responses={404: {"model": ErrorOut}, **denied}, tags=["customers"])
    def get_customer(customer_id: str) -> dict[str, object]:
        """One customer's rung, loyalty vector, profitability, stability, counts and rung history."""
        found = load_customer(ctx, customer_id=customer_id)
        if found is None:
            raise ApiError(404, "not_found", f"no customer {customer_id!r}")
        state, history = found
        return customer_view(state, history, policy=ctx.policy, at=datetime.now(UTC))

    @app.get("/v1/stages", response_model=StagesOut, dependencies=[read], responses=denied, tags=["customers"])
    def get_stages() -> dict[str, object]:
        """The number of customers on each rung, and on each rung by tier."""
        return stage_counts(ctx)

    @app.get("/v1/policy", response_model=PolicyOut, dependencies=[admin], responses=denied, tags=["operations"])
    def get_policy() -> dict[str, object]:
        """The active policy (admin scope: it tells how the rungs and tiers are decided)."""
        return policy_view(ctx.policy)

    app.include_router(workspace_router(ctx=ctx, read=access.require("read")))
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    return app
