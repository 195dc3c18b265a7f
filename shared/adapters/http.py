"""HTTP pieces both services share: liveness, readiness, Prometheus metrics, errors as JSON, body limits, and
the server thread.

Every 4xx and 5xx either service answers is JSON `{"error": "<code>", "detail": "<message>"}` (contract
section 15): `install_json_errors` handles the framework's own errors (unknown path, wrong method, invalid
parameters), refuses bodies over the limit with 413, and turns any exception nothing else handled into a
logged 500 instead of a plain-text page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.wire.text import printable

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
# how long /readyz reuses its last answer: a probe every second or two from several kubelets, load balancers
# and people must not each open a Kafka admin client and a database connection
READY_CACHE_S = 2.0

# the `error` code of a framework-raised status; anything else is `http_error`
_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


class ErrorOut(BaseModel):
    """Every 4xx/5xx body (contract section 15); a 422 may add `problems`."""

    error: str
    detail: str


# documented on every operation of both services: the specific codes each route lists come on top
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorOut, "description": "A client error, as JSON."},
    "5XX": {"model": ErrorOut, "description": "A server error (503: busy, timed out or a dependency down)."},
}


def json_error(
    status: int, error: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The JSON error response of the v1 shape."""
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status, headers=headers)


def validation_problems(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and why each parameter was refused (never the refused value: it may be huge or secret)."""
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]


def install_json_errors(app: FastAPI, *, max_body_bytes: int, streamed: frozenset[str] = frozenset()) -> None:
    """JSON errors for everything the framework raises, a body limit, and a last-resort 500 as JSON.

    Call it after the app's own middlewares: the ones it adds wrap those added before.
    """

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return json_error(
            exc.status_code,
            _ERROR_CODES.get(exc.status_code, "http_error"),
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = validation_problems(exc)
        detail = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems) or "invalid request"
        return json_error(422, "invalid_request", detail, problems=problems)

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, streamed=streamed)
    app.add_middleware(JsonServerErrors)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before it is read when its Content-Length says
    so, and as soon as the limit is passed when it is streamed (chunked). The `streamed` paths read their body
    piece by piece and bound it themselves (a bulk import)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, streamed: frozenset[str] = frozenset()) -> None:
        self.app, self.max_bytes, self.streamed = app, max_bytes, streamed

    def _too_large(self) -> HTTPException:
        # fastapi's HTTPException: FastAPI re-raises it from body parsing as it is (any other error becomes 400)
        return HTTPException(413, f"the request body is larger than {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.streamed:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await json_error(413, "payload_too_large", str(self._too_large().detail))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counted, send)


class JsonServerErrors:
    """ASGI middleware: an exception no handler took is logged once and answered 500 as JSON.

    Once a response has started (a CSV export that fails half-way) nothing can be sent instead: the exception
    goes on to the server, which cuts the connection, so the client sees a broken download, never a truncated
    file that looks whole.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("unhandled error answering %s %s", scope.get("method"), printable(scope.get("path", "")))
            if started:
                raise
            await json_error(500, "internal_error", "the server could not answer this request")(scope, receive, send)


class CachedChecks:
    """The readiness checks, run at most once per `ttl_s`; callers in between get the last answer.

    One caller runs the checks while the others wait for its answer rather than starting their own.
    """

    def __init__(
        self, checks: dict[str, Check], *, ttl_s: float = READY_CACHE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.checks, self.ttl_s, self.clock = checks, ttl_s, clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._failures: dict[str, str] = {}

    def failures(self) -> dict[str, str]:
        """Name -> reason of every check that failed (empty: all reachable), at most `ttl_s` old."""
        with self._lock:
            now = self.clock()
            if self._at is None or now - self._at >= self.ttl_s:
                self._failures = {
                    name: reason for name, check in self.checks.items() if (reason := check()) is not None
                }
                self._at = self.clock()
            return dict(self._failures)


_READY_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_NOT_READY_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        **_READY_BODY["properties"],
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "unreachable": {"type": "array", "items": {"type": "string"}},
    },
}


def ops_router(
    *, checks: dict[str, Check], registry: CollectorRegistry, ready_ttl_s: float = READY_CACHE_S
) -> APIRouter:
    """`/healthz`, `/readyz` (one check per dependency; None = reachable; answers cached ~2 s) and `/metrics`."""
    router = APIRouter(tags=["operations"])
    cache = CachedChecks(checks, ttl_s=ready_ttl_s)

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """200 while the process lives."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_class=JSONResponse,
        responses={
            200: {"description": "Every dependency answers.", "content": {"application/json": {"schema": _READY_BODY}}},
            503: {
                "description": "A dependency does not answer; `unreachable` names it.",
                "content": {"application/json": {"schema": _NOT_READY_BODY}},
            },
        },
    )
    def readyz() -> JSONResponse:
        """200 when every dependency answers, else 503 naming the ones that do not (answers ~2 s old at most)."""
        failures = cache.failures()
        body: dict[str, Any] = {
            "status": "ready" if not failures else "unavailable",
            "checks": {name: ("ok" if name not in failures else failures[name]) for name in checks},
        }
        if not failures:
            return JSONResponse(body)
        unreachable = sorted(failures)
        body.update(error="not_ready", detail=f"unreachable: {', '.join(unreachable)}", unreachable=unreachable)
        return JSONResponse(body, status_code=503)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format.",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            }
        },
    )
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


class ServerThread:
    """Runs a FastAPI app under uvicorn in a daemon thread beside the consumer loop."""

    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"http-{port}", daemon=True)

    def start(self) -> None:
        """Start serving; returns at once."""
        self.thread.start()

    def stop(self) -> None:
        """Ask uvicorn to exit and wait briefly."""
        self.server.should_exit = True
        self.thread.join(timeout=5)
