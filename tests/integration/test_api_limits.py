"""The scoring API's bounds and errors (contract section 15) and the read side's own resources, against the real
PostgreSQL: customers are written by the scoring transaction itself, the API answers over its own pool."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from devstack.embedded import free_port
from services.scoring.api import create_app
from services.scoring.http_common import ApiContext
from services.scoring.store import process_batch
from services.scoring.unit_of_work import session
from shared.adapters.db import make_engine
from shared.adapters.http import ServerThread
from shared.adapters.metrics import Metrics
from shared.settings import Settings, libpq_url
from shared.wire.messages import Fact
from tests.support import wait_until
from tests.unit.domain_builders import at, default_policy, order

POLICY = default_policy()


def seed(engine: Engine, facts: list[Fact]) -> None:
    """Customers as the scoring transaction writes them."""
    with session(engine) as conn:
        process_batch(conn, facts=facts, policy=POLICY, stage_topic="stage", conversion_topic="facts", cache=None)


@dataclass
class Api:
    settings: Settings
    engine: Engine
    client: TestClient


@pytest.fixture
def make_api(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Api]]:
    engines: list[Engine] = []

    def build(**overrides: Any) -> Api:
        settings = make_settings(**overrides)
        engine = make_engine(
            settings.database_url,
            pool_size=settings.api_pool_size,
            max_overflow=0,
            pool_timeout_s=settings.api_pool_timeout_s,
            statement_timeout_ms=settings.api_statement_timeout_ms,
            application_name="loyalty-scoring-api",
        )
        engines.append(engine)
        app = create_app(
            ctx=ApiContext(engine=engine, policy=POLICY, settings=settings), metrics=Metrics(service="scoring")
        )
        return Api(settings, engine, TestClient(app, raise_server_exceptions=False))

    yield build
    for engine in engines:
        engine.dispose()


def assert_json_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["error"] == error and isinstance(body["detail"], str) and body["detail"], body
    return body


# ---- errors that were plain-text 500s ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/%00",
        "/v1/customers/%00/next-rung",
        "/v1/customers/a%0Ab",
        "/v1/customers/" + "x" * 129,
        "/v1/customers/%ED%A0%80",
    ],
)
def test_an_id_no_event_can_carry_is_an_unknown_customer(make_api: Callable[..., Api], path: str) -> None:
    assert_json_error(make_api().client.get(path), 404, "not_found")


def test_a_cursor_naming_a_nul_is_refused_as_a_cursor(make_api: Callable[..., Api]) -> None:
    # base64url of "\x00": what decodes cleanly but names no possible customer
    assert_json_error(make_api().client.get("/v1/customers", params={"after": "AA"}), 400, "invalid_cursor")


@pytest.mark.parametrize(
    "params",
    [
        {"since": "0001-01-01T00:00:00+14:00"},
        {"until": "0001-01-01T00:00:00+14:00"},
        {"since": "9999-12-31T23:00:00-05:00", "until": "9999-12-31T23:59:59Z"},
    ],
)
def test_moments_outside_the_utc_calendar_are_422(make_api: Callable[..., Api], params: dict[str, str]) -> None:
    assert_json_error(make_api().client.get("/v1/flows", params=params), 422, "invalid_range")


# ---- bounds ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, error",
    [
        ({"limit": "1001"}, "invalid_request"),
        ({"limit": "0"}, "invalid_request"),
    ],
)
def test_limit_is_bounded(make_api: Callable[..., Api], params: dict[str, str], error: str) -> None:
    body = assert_json_error(make_api().client.get("/v1/customers", params=params), 422, error)
    assert body["problems"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(
    "params",
    [
        {"bucket": "month", "since": "2016-01-01T00:00:00Z", "until": "2026-01-01T00:00:01Z"},  # 10 years + 1 s
        {"bucket": "day", "since": "1990-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"bucket": "week", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"bucket": "week", "since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    ],
)
def test_flow_ranges_out_of_bounds_are_refused_before_any_query(
    make_api: Callable[..., Api], params: dict[str, str]
) -> None:
    api = make_api()
    # with the tables locked, a query would hang until the statement timeout: a quick 422 shows none was made
    with psycopg.connect(libpq_url(api.settings.database_url)) as locker:
        locker.execute("LOCK TABLE stage_history IN ACCESS EXCLUSIVE MODE")
        assert_json_error(api.client.get("/v1/flows", params=params), 422, "invalid_range")


def test_exactly_ten_years_is_within_bounds(make_api: Callable[..., Api]) -> None:
    r = make_api().client.get(
        "/v1/flows", params={"bucket": "day", "since": "2016-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["series"]) == 3653


def test_an_event_from_year_one_neither_breaks_nor_stretches_all_time_flows(make_api: Callable[..., Api]) -> None:
    api = make_api()
    seed(
        api.engine,
        [
            order("o-old", datetime(1, 1, 1, tzinfo=UTC), customer="ancient"),
            order("o-new", at(2026, 3, 4), customer="recent"),
        ],
    )
    for bucket in ("day", "week", "month"):
        r = api.client.get("/v1/flows", params={"bucket": bucket})
        assert r.status_code == 200, r.text
        body = r.json()
        series = body["series"]
        # the window ends with the last entry and covers at most 10 years; year 1 is counted in `earlier`
        assert series[-1]["start"] <= "2026-03-04" and series[0]["start"] >= "2016-03-04", (bucket, series[0])
        assert body["earlier"] == {"potential": 1, "visitor": 1, "first_purchase": 1, "regular": 0, "advocate": 0}
        totals = {r: sum(b["entered"][r] for b in series) + body["earlier"][r] for r in body["earlier"]}
        assert totals == {"potential": 2, "visitor": 2, "first_purchase": 2, "regular": 0, "advocate": 0}
    # without the far-away entry nothing is clipped and no `earlier` appears
    recent = api.client.get("/v1/flows", params={"bucket": "month", "since": "2026-01-01T00:00:00Z"}).json()
    assert "earlier" not in recent and recent["series"][-1]["entered"]["first_purchase"] == 1
    # asking for year 1 explicitly is a range like any other
    assert (
        api.client.get(
            "/v1/flows", params={"since": "0001-01-01T00:00:00Z", "until": "0002-01-01T00:00:00Z"}
        ).status_code
        == 200
    )
    assert_json_error(api.client.get("/v1/flows", params={"since": "2000-01-01T00:00:00Z"}), 422, "invalid_range")


def test_a_request_body_over_the_limit_is_413_json(make_api: Callable[..., Api]) -> None:
    api = make_api(http_max_body_bytes=4096)
    body = assert_json_error(api.client.post("/v1/stages", content=b"x" * 5000), 413, "payload_too_large")
    assert "4096" in body["detail"]
    assert api.client.post("/v1/stages", content=b"x" * 100).status_code == 405  # within: the route decides


# ---- the read side's own resources ---------------------------------------------------------------------------


def test_api_connections_carry_the_statement_timeout_and_a_slow_query_is_503(make_api: Callable[..., Api]) -> None:
    api = make_api(api_statement_timeout_ms=300)
    seed(api.engine, [order("o-1", at(2026, 1, 5), customer="c-slow")])
    with api.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "300ms"
    with psycopg.connect(libpq_url(api.settings.database_url)) as locker:
        locker.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        r = api.client.get("/v1/customers/c-slow")
        assert_json_error(r, 503, "timeout")
        assert r.headers["retry-after"] == "1"
    assert api.client.get("/v1/customers/c-slow").status_code == 200


def test_a_full_api_pool_answers_503_busy_and_never_grows(make_api: Callable[..., Api]) -> None:
    api = make_api(api_pool_size=1, api_pool_timeout_s=0.2, api_statement_timeout_ms=10_000)
    seed(api.engine, [order("o-1", at(2026, 1, 5), customer="c-1")])
    with psycopg.connect(libpq_url(api.settings.database_url), autocommit=True) as probe:
        with psycopg.connect(libpq_url(api.settings.database_url)) as locker:
            locker.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
            blocked: list[int] = []
            first = threading.Thread(target=lambda: blocked.append(api.client.get("/v1/customers/c-1").status_code))
            first.start()
            wait_until(lambda: waiting_api_connections(probe) == 1, what="the first request waiting on the lock")
            assert_json_error(api.client.get("/v1/stages"), 503, "busy")
            assert api_connections(probe) == 1
        first.join(10)
    assert blocked == [200]


def api_connections(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'loyalty-scoring-api' "
        "AND datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else 0


def waiting_api_connections(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'loyalty-scoring-api' "
        "AND datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_expensive_requests_beyond_the_gate_are_503_at_once(make_api: Callable[..., Api]) -> None:
    """One CSV export in flight (held up by a lock) fills a gate of one: another export and flows get 503
    at once; once it is done, the next one gets through. Over a real server, so the export truly streams."""
    api = make_api(api_heavy_concurrency=1, api_statement_timeout_ms=20_000)
    seed(api.engine, [order(f"o-{i}", at(2026, 1, 5), customer=f"c-{i:03d}") for i in range(30)])
    port = free_port()
    app = api.client.app
    server = ServerThread(app, host="127.0.0.1", port=port)  # type: ignore[arg-type]
    server.start()
    base = f"http://127.0.0.1:{port}"
    csv = {"Accept": "text/csv"}
    try:
        wait_until(lambda: _ok(f"{base}/healthz"), what="the server")
        with psycopg.connect(libpq_url(api.settings.database_url), autocommit=True) as probe:
            with psycopg.connect(libpq_url(api.settings.database_url)) as locker:
                locker.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
                got: list[httpx.Response] = []
                first = threading.Thread(
                    target=lambda: got.append(httpx.get(f"{base}/v1/customers", headers=csv, timeout=30))
                )
                first.start()
                wait_until(lambda: waiting_api_connections(probe) == 1, what="the export waiting on the lock")
                assert_json_error(httpx.get(f"{base}/v1/customers", headers=csv, timeout=5), 503, "busy")
                r = httpx.get(f"{base}/v1/flows", timeout=5)
                assert_json_error(r, 503, "busy")
                assert r.headers["retry-after"] == "1"
                assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # the service still answers
            first.join(30)
        assert got[0].status_code == 200 and got[0].text.count("\r\n") == 31
        assert httpx.get(f"{base}/v1/customers", headers=csv, timeout=5).status_code == 200
        assert httpx.get(f"{base}/v1/flows", timeout=5).status_code == 200
    finally:
        server.stop()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# ---- documentation pages behind a setting ----------------------------------------------------------------------


def test_documentation_pages_are_served_only_when_enabled(make_api: Callable[..., Api]) -> None:
    on, off = make_api(), make_api(api_docs_enabled=False)
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert on.client.get(path).status_code == 200, path
        assert_json_error(off.client.get(path), 404, "not_found")
    assert off.client.get("/v1/stages").status_code == 200
