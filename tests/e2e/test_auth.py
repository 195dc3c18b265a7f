"""Contract section 10 end to end: a system started with API_TOKENS, asked over HTTP with and without tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Shop, System, purchase, uid, wait_until

READ_TOKEN = "r3ad-t0ken:with-a-colon"  # the scope is after the last colon, so a token may hold colons
ADMIN_TOKEN = "adm1n-t0ken-0123456789"


@pytest.fixture(scope="module")
def secured(system_env: dict[str, str], state_dir: Path) -> Iterator[System]:
    env = {**system_env, "API_TOKENS": f"{READ_TOKEN}:read, {ADMIN_TOKEN}:admin"}
    with System(env=env, state_dir=state_dir / f"secured-{system_env['SCORING_GROUP_ID']}") as sut:
        yield sut


@pytest.fixture(scope="module")
def customer(secured: System, shop: Shop) -> str:
    c = uid("auth-")
    shop.send_all([purchase(c)])

    def seen() -> bool:
        return secured.get(f"/v1/customers/{c}", headers=bearer(READ_TOKEN)).status_code == 200

    wait_until(seen, what=f"customer {c}")
    return c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


READS = [
    "/v1/stages",
    "/v1/customers",
    "/v1/customers?stage=first_purchase&tier=middling",
    "/v1/customers/{c}",
    "/v1/customers/{c}/next-rung",
    "/v1/flows?bucket=month",
]


def get(system: System, path: str, customer: str, **kw: Any) -> httpx.Response:
    return system.get(path.format(c=customer), **kw)


def assert_json_error(r: httpx.Response, status: int, error: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == error and body["detail"]


@pytest.mark.parametrize("path", [*READS, "/v1/policy", "/v1/no-such-endpoint"])
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param(bearer("not-a-known-token"), id="unknown-token"),
        pytest.param(bearer(READ_TOKEN + "x"), id="token-with-extra-char"),
        pytest.param(bearer(READ_TOKEN.split(":")[0]), id="token-prefix"),
        pytest.param({"Authorization": f"Basic {READ_TOKEN}"}, id="not-bearer"),
        pytest.param({"Authorization": "Bearer"}, id="empty-bearer"),
        pytest.param(bearer(f"{READ_TOKEN}:read"), id="token-with-scope-suffix"),
    ],
)
def test_no_or_unknown_token_is_401_with_a_challenge(
    secured: System, customer: str, path: str, headers: dict[str, str]
) -> None:
    r = get(secured, path, customer, headers=headers)
    assert_json_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", [READ_TOKEN, ADMIN_TOKEN], ids=["read", "admin"])
@pytest.mark.parametrize("path", READS)
def test_read_and_admin_tokens_may_read(secured: System, customer: str, token: str, path: str) -> None:
    r = get(secured, path, customer, headers=bearer(token))
    assert r.status_code == 200, r.text


def test_the_bearer_scheme_is_case_insensitive(secured: System, customer: str) -> None:
    assert secured.get("/v1/stages", headers={"Authorization": f"bearer {READ_TOKEN}"}).status_code == 200


def test_csv_export_needs_a_token_too(secured: System, customer: str) -> None:
    assert secured.get("/v1/customers", headers={"Accept": "text/csv"}).status_code == 401
    r = secured.get("/v1/customers", headers={"Accept": "text/csv", **bearer(READ_TOKEN)})
    assert r.status_code == 200 and r.text.startswith("customer_id,stage,tier,")
    assert customer in r.text


def test_a_read_token_on_an_admin_endpoint_is_403(secured: System, customer: str) -> None:
    r = secured.get("/v1/policy", headers=bearer(READ_TOKEN))
    assert_json_error(r, 403, "forbidden")
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_an_admin_token_sees_the_active_policy(secured: System, customer: str) -> None:
    r = secured.get("/v1/policy", headers=bearer(ADMIN_TOKEN))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"rung": "regular", "conditions": {"orders": 3, "order_months": 2}} in body["rungs"]
    assert body["profitable_min"] == "100.00" and body["unprofitable_below"] == "0"


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/ui", "/ui/static/workspace.js", "/ui/static/vendor/chart.umd.min.js"]
)
def test_platform_endpoints_and_the_page_stay_open(secured: System, path: str) -> None:
    assert secured.get(path).status_code == 200


def test_the_ingest_service_health_stays_open(secured: System) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert secured.get(path, service="ingest").status_code == 200


def test_tokens_never_reach_the_log(secured: System, customer: str) -> None:
    for token in (READ_TOKEN, ADMIN_TOKEN, "not-a-known-token"):
        secured.get("/v1/stages", headers=bearer(token))
        secured.get("/v1/policy", headers=bearer(token))
    log = secured.log_path.read_text(errors="replace")
    assert "API_TOKENS is not set" not in log
    for secret in (READ_TOKEN, ADMIN_TOKEN, "adm1n-t0ken", "r3ad-t0ken", "not-a-known-token"):
        assert secret not in log
