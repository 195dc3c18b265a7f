"""What every router of the scoring API shares: the context handlers close over, errors as JSON, customer ids
in paths, and security headers. The bounds of the expensive requests are in `services.scoring.heavy`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote, unquote, unquote_to_bytes

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from psycopg.errors import QueryCanceled
from pydantic import BeforeValidator
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.scoring.auth import AccessDenied
from services.scoring.domain.policy import Policy
from shared.adapters.http import json_error
from shared.settings import Settings
from shared.wire.text import is_id

CUSTOMER_PREFIX = "/v1/customers/"
# what may follow a customer id in a path; anything else after the prefix is all id
CUSTOMER_SUBRESOURCES = ("/next-rung",)
RETRY_AFTER_S = "1"

if TYPE_CHECKING:
    from services.scoring.health.refit import HealthLoop


class ApiError(Exception):
    """A 4xx or 5xx with a JSON body."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers
        self.extra = extra or {}  # fields the answer adds to {error, detail}, e.g. an import's counts


@dataclass(frozen=True)
class ApiContext:
    """What request handlers need, built once at start-up; `engine` is the read side's own pool."""

    engine: Engine
    policy: Policy
    settings: Settings
    # the scoring process's health loop, which POST /v1/health/model/fit asks to refit (None: refit in the request)
    health: HealthLoop | None = None


def not_found(customer_id: str) -> ApiError:
    """The 404 of a customer id nobody has seen."""
    return ApiError(404, "not_found", f"no customer {customer_id!r}")


def path_customer_id(
    customer_id: Annotated[str, Path(description="The customer id, percent-encoded (`/` as `%2F`, `%` as `%25`).")],
) -> str:
    """The customer id of the path, as CustomerIdPaths left it (percent-encoded); an id that no event can
    carry (empty, over 128 characters, a control character such as NUL) is unknown without a query."""
    customer_id = unquote(customer_id)
    if not is_id(customer_id):
        raise not_found(customer_id)
    return customer_id


CustomerId = Annotated[str, Depends(path_customer_id)]

_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ].*)?")


def _date_time_text(value: object) -> object:
    # pydantic reads a number as Unix time ("0.5" is 1970-01-01T00:00:00.5Z); a moment here is written out
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("not an RFC 3339 date-time, e.g. 2026-06-01T00:00:00Z")
    return value


# a query moment: RFC 3339 (an offset is optional: none is UTC)
Moment = Annotated[datetime, BeforeValidator(_date_time_text)]


class CustomerIdPaths:
    """ASGI middleware: routes `/v1/customers/<id>[/next-rung]` on the path as the client encoded it.

    Servers decode `%2F` before routing, so an id holding `/` (a valid id) would be split into segments, and
    `x%2Fnext-rung` (the customer `x/next-rung`) would look like the next-rung of `x`. Here the id is read from
    the raw path (a literal `/next-rung` at its end is the sub-resource; every other `/` is part of the id) and
    the path is rewritten with the id percent-encoded as one segment, which `path_customer_id` decodes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CUSTOMER_PREFIX):
            scope = {**scope, "path": self.normalised(scope["path"], scope.get("raw_path"))}
        await self.app(scope, receive, send)

    @staticmethod
    def normalised(path: str, raw_path: bytes | None) -> str:
        prefix = CUSTOMER_PREFIX.encode()
        if raw_path is not None and raw_path.startswith(prefix):
            rest = raw_path.split(b"?", 1)[0][len(prefix) :]
            suffix = next((s for s in CUSTOMER_SUBRESOURCES if rest.endswith(s.encode())), "")
            encoded_id = rest[: len(rest) - len(suffix)]
            customer_id = unquote_to_bytes(encoded_id).decode("utf-8", errors="replace")
        else:  # no raw path (or one spelled differently): the decoded path is all there is
            rest_text = path[len(CUSTOMER_PREFIX) :]
            suffix = next((s for s in CUSTOMER_SUBRESOURCES if rest_text.endswith(s)), "")
            customer_id = rest_text[: len(rest_text) - len(suffix)]
        if not customer_id:
            return path
        return CUSTOMER_PREFIX + quote(customer_id, safe="") + suffix


def install_error_handlers(app: FastAPI) -> None:
    """The scoring API's own errors as JSON {error, detail}; the framework's come from shared.adapters.http."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return json_error(exc.status, exc.error, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(AccessDenied)
    async def _access_denied(_: Request, exc: AccessDenied) -> JSONResponse:
        return exc.response()

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(_: Request, exc: PoolTimeout) -> JSONResponse:
        return json_error(
            503,
            "busy",
            "every database connection of the API is in use; retry shortly",
            headers={"Retry-After": RETRY_AFTER_S},
        )

    @app.exception_handler(OperationalError)
    async def _database_error(_: Request, exc: OperationalError) -> JSONResponse:
        # any other database error is a bug: the last-resort handler logs it and answers 500
        if isinstance(exc.orig, QueryCanceled):
            return json_error(
                503,
                "timeout",
                "the query took longer than the API allows (API_STATEMENT_TIMEOUT_MS)",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        # the server's own message is for the log (readiness says it), not for the client
        return json_error(
            503, "database_unavailable", "the database did not answer", headers={"Retry-After": RETRY_AFTER_S}
        )


# The /ui page loads its script, styles and Chart.js from this service only and has no inline script or style
# attribute (element.style set from the module is CSSOM, which style-src does not govern); it may not be framed.
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# JSON and CSV answers are never a document to render or frame
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# /docs and /redoc (development only, API_DOCS_ENABLED) load Swagger UI and ReDoc with inline script
_NO_CSP = ("/docs", "/redoc")


class SecurityHeaders:
    """ASGI middleware: `X-Content-Type-Options: nosniff` on every answer, a Content-Security-Policy (the page's
    own on /ui, none allowed elsewhere) with `frame-ancestors 'none'`, and no Referer leaving the page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = [(b"x-content-type-options", b"nosniff")]
        if path == "/ui" or path.startswith("/ui/"):
            extra += [
                (b"content-security-policy", UI_CSP.encode()),
                (b"x-frame-options", b"DENY"),
                (b"referrer-policy", b"no-referrer"),
            ]
        elif not path.startswith(_NO_CSP):
            extra.append((b"content-security-policy", API_CSP.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
