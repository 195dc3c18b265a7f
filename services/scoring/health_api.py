"""The health endpoints (contract section 11): the model in force, a refit on demand, and the backtest.

    GET  /v1/health/model        the model in force (read)
    POST /v1/health/model/fit    refit now; 200 with the new model once it is stored (admin)
    POST /v1/health/backtest     fit before a cutoff, forecast against what happened after it (admin)

The answers come from `services.scoring.read.health` and `services.scoring.health.refit`; this module routes and
maps what they refuse to a status code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from services.scoring.domain.health_fit import FitFailure
from services.scoring.health.models import ModelVersion
from services.scoring.health.refit import Busy, TooFew, refit
from services.scoring.http_common import ApiContext, ApiError
from services.scoring.read.health import BacktestRefused, backtest, model_view
from services.scoring.schemas import BacktestIn, BacktestOut, ErrorOut, HealthModelOut


def health_router(*, ctx: ApiContext, read: Callable[..., None], admin: Callable[..., None]) -> APIRouter:
    router = APIRouter(responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}}, tags=["health"])

    @router.get("/v1/health/model", response_model=HealthModelOut, dependencies=[Depends(read)])
    def get_model() -> dict[str, object]:
        """The health model in force: the newest fit of the policy's model kind, else the priors (version 0)."""
        return model_view(ctx.engine, policy=ctx.policy)

    @router.post(
        "/v1/health/model/fit",
        response_model=HealthModelOut,
        dependencies=[Depends(admin)],
        responses={409: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    )
    async def post_fit() -> dict[str, object]:
        """Refit the model over every customer with an order; 200 with the new model in force once it is stored.

        Every customer's health follows within HEALTH_SCAN_SECONDS. 422 when fewer customers have an order than
        the policy's `min_customers` (the priors stay in force); 503 when the fit fails (the previous model stays
        in force); 409 while another refit runs.
        """

        def run() -> ModelVersion | TooFew | FitFailure:
            if ctx.health is not None:
                return ctx.health.refit_now()
            return refit(ctx.engine, policy=ctx.policy)

        try:
            result = await run_in_threadpool(run)
        except Busy as exc:
            raise ApiError(409, "refit_in_progress", str(exc)) from exc
        if isinstance(result, TooFew):
            raise ApiError(422, "too_few_customers", result.reason)
        if isinstance(result, FitFailure):
            raise ApiError(503, "fit_failed", f"the previous model stays in force: {result.reason}")
        return result.view()

    @router.post(
        "/v1/health/backtest",
        response_model=BacktestOut,
        dependencies=[Depends(admin)],
        responses={422: {"model": ErrorOut}},
    )
    async def post_backtest(body: BacktestIn) -> dict[str, object]:
        """Fit on the orders up to the cutoff's UTC day and compare the forecast with the holdout; changes nothing.

        Orders count as distinct UTC order days; T runs to the cutoff's day. `by_frequency` has one row per
        number of calibration repeat orders x = 0..6 and a last row "7+", each with the mean predicted and
        actual repeat orders per customer in the holdout, as Fader, Hardie & Lee (2005) draw it. 422 for a cutoff
        in the future, a horizon outside 1..3650 days, an unknown model, or too few customers.
        """
        try:
            return await run_in_threadpool(
                backtest,
                ctx.engine,
                cutoff=body.cutoff,
                horizon_days=body.horizon_days,
                kind=body.model,
                policy=ctx.policy,
                now=datetime.now(UTC),
            )
        except BacktestRefused as exc:
            raise ApiError(503 if exc.code == "fit_failed" else 422, exc.code, str(exc)) from exc

    return router
