"""What every router of the scoring API shares: the context handlers close over, and errors as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.scoring.auth import AccessDenied
from services.scoring.domain.policy import Policy
from shared.settings import Settings

if TYPE_CHECKING:
    from services.scoring.health.refit import HealthLoop


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
    # the scoring process's health loop, which POST /v1/health/model/fit asks to refit (None: refit in the request)
    health: HealthLoop | None = None


def not_found(customer_id: str) -> ApiError:
    """The 404 of a customer id nobody has seen."""
    return ApiError(404, "not_found", f"no customer {customer_id!r}")


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
