"""HTTP pieces both services share: liveness, readiness, Prometheus metrics, and the server thread."""

from __future__ import annotations

import threading
from collections.abc import Callable

import uvicorn
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Check = Callable[[], str | None]


def ops_router(*, checks: dict[str, Check], registry: CollectorRegistry) -> APIRouter:
    """`/healthz`, `/readyz` (one check per dependency; None = reachable) and `/metrics`."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """200 while the process lives."""
        return {"status": "ok"}

    @router.get("/readyz")
    def readyz() -> JSONResponse:
        """200 when every dependency answers, else 503 naming the ones that do not."""
        failures = {name: reason for name, check in checks.items() if (reason := check()) is not None}
        body = {
            "status": "ready" if not failures else "unavailable",
            "checks": {name: ("ok" if name not in failures else failures[name]) for name in checks},
        }
        if failures:
            body["unreachable"] = sorted(failures)  # type: ignore[assignment]
        return JSONResponse(body, status_code=200 if not failures else 503)

    @router.get("/metrics")
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


class ServerThread:
    """Runs a FastAPI app under uvicorn in a daemon thread beside the consumer loop."""

    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"http-{port}", daemon=True)

    def start(self) -> None:
        """Start serving; returns at once."""
        self.thread.start()

    def stop(self) -> None:
        """Ask uvicorn to exit and wait briefly."""
        self.server.should_exit = True
        self.thread.join(timeout=5)
