"""The HTTP pieces both services share (shared/adapters/http.py), on small apps without I/O: errors as JSON,
the body limit, the last-resort 500, the readiness cache, the documented /metrics content type."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from services.scoring.heavy import Activity, Gate, HeldStream, Pacer
from services.scoring.http_common import CustomerIdPaths
from shared.adapters.http import CachedChecks, install_json_errors, ops_router


def app_with(*, max_body_bytes: int = 1024) -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug with a secret in its message")

    @app.get("/items/{n}")
    def item(n: int) -> dict[str, int]:
        return {"n": n}

    install_json_errors(app, max_body_bytes=max_body_bytes)
    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(app_with(), raise_server_exceptions=False)


def test_an_unhandled_exception_is_a_json_500_without_its_message(client: TestClient) -> None:
    r = client.get("/boom")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "internal_error", "detail": "the server could not answer this request"}


@pytest.mark.parametrize(
    "method, path, status, error",
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/boom", 405, "method_not_allowed"),
        ("GET", "/items/x", 422, "invalid_request"),
    ],
)
def test_framework_errors_are_json(client: TestClient, method: str, path: str, status: int, error: str) -> None:
    r = client.request(method, path)
    assert r.status_code == status
    assert r.json()["error"] == error and r.json()["detail"]


def test_a_422_lists_its_problems_without_echoing_the_input(client: TestClient) -> None:
    body = client.get("/items/secret-value").json()
    assert body["problems"] == [{"loc": ["path", "n"], "msg": body["problems"][0]["msg"], "type": "int_parsing"}]
    assert "secret-value" not in str(body)


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(client: TestClient) -> None:
    r = client.post("/echo", content=b"x" * 1025)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    assert client.post("/echo", content=b"x" * 1024).json() == {"bytes": 1024}


def test_a_streamed_body_is_cut_when_it_passes_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"y" * 200  # chunked: no Content-Length to refuse up front

    r = client.post("/echo", content=chunks())
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


def test_readiness_runs_its_checks_at_most_once_per_interval() -> None:
    calls: list[str] = []
    now = [100.0]

    def broker() -> str | None:
        calls.append("broker")
        return "NoBrokersAvailable" if len(calls) == 1 else None

    cache = CachedChecks({"broker": broker}, ttl_s=2.0, clock=lambda: now[0])
    assert cache.failures() == {"broker": "NoBrokersAvailable"}
    now[0] += 1.9
    assert cache.failures() == {"broker": "NoBrokersAvailable"} and len(calls) == 1
    now[0] += 0.1
    assert cache.failures() == {} and len(calls) == 2


def test_readyz_answers_from_the_cache_and_its_503_is_a_v1_error() -> None:
    calls: list[int] = []

    def database() -> str | None:
        calls.append(1)
        return "OperationalError: connection refused"

    app = FastAPI()
    app.include_router(ops_router(checks={"database": database}, registry=CollectorRegistry(), ready_ttl_s=3600))
    client = TestClient(app)
    bodies = [client.get("/readyz") for _ in range(5)]
    assert len(calls) == 1
    assert all(r.status_code == 503 for r in bodies)
    body = bodies[0].json()
    assert body["error"] == "not_ready" and body["detail"] == "unreachable: database"
    assert body["unreachable"] == ["database"] and body["checks"]["database"].startswith("OperationalError")


def test_metrics_is_documented_with_the_content_type_it_sends() -> None:
    app = FastAPI()
    app.include_router(ops_router(checks={}, registry=CollectorRegistry()))
    r = TestClient(app).get("/metrics")
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    documented = app.openapi()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(documented) == [CONTENT_TYPE_LATEST]


# ---- scoring's customer paths and the gate ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path, raw, rewritten",
    [
        ("/v1/customers/a/b", b"/v1/customers/a%2Fb", "/v1/customers/a%2Fb"),
        ("/v1/customers/a/b/next-rung", b"/v1/customers/a%2Fb/next-rung", "/v1/customers/a%2Fb/next-rung"),
        # the customer called "x/next-rung", not the next rung of "x"
        ("/v1/customers/x/next-rung", b"/v1/customers/x%2Fnext-rung", "/v1/customers/x%2Fnext-rung"),
        ("/v1/customers/a%b", b"/v1/customers/a%25b", "/v1/customers/a%25b"),
        ("/v1/customers/a/b", b"/v1/customers/a/b", "/v1/customers/a%2Fb"),  # an unencoded / is the id's too
        ("/v1/customers/é", b"/v1/customers/%C3%A9", "/v1/customers/%C3%A9"),
        ("/v1/customers/a/b", None, "/v1/customers/a%2Fb"),
    ],
)
def test_customer_paths_are_routed_on_the_id_as_the_client_encoded_it(
    path: str, raw: bytes | None, rewritten: str
) -> None:
    assert CustomerIdPaths.normalised(path, raw) == rewritten


def test_a_gate_refuses_beyond_its_size_and_a_stream_gives_its_slot_back() -> None:
    gate = Gate(1)
    stream = HeldStream(iter([b"a", b"b"]), gate.enter())
    with pytest.raises(Exception, match="too many"):
        gate.enter()
    assert list(stream) == [b"a", b"b"]
    gate.enter().release()
    never_read = HeldStream(iter([b"a"]), gate.enter())
    del never_read  # a response dropped before its first chunk still frees its slot
    with gate.enter():
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_while_the_event_path_is_busy_heavy_work_keeps_to_its_share() -> None:
    clock, busy = FakeClock(), [True]
    pacer = Pacer(0.1, busy=lambda: busy[0], clock=clock, sleep=clock.sleep)

    def work() -> str:
        clock.now += 0.05  # a chunk of an export: 50 ms
        return "chunk"

    assert [pacer.run(work) for _ in range(3)] == ["chunk"] * 3
    assert clock.slept == [0.45, 0.45]  # 50 ms of work, then 450 ms for the event path: a share of 0.1
    busy[0] = False
    pacer.run(work)
    assert clock.slept == [0.45, 0.45], "with no events to process, nothing waits"


def test_the_event_path_is_busy_for_a_second_after_a_commit() -> None:
    clock = FakeClock()
    activity = Activity(clock=clock)
    assert not activity.busy()
    activity.mark()
    clock.now += 0.9
    assert activity.busy()
    clock.now += 0.2
    assert not activity.busy()
