"""Contract section 15 and the security rules of the API end to end: a system started as `make run` starts it,
fed through Kafka, asked over HTTP (uvicorn, as in production: the raw path, the real headers)."""

from __future__ import annotations

import csv
import io
import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from tests.support import ROOT, Shop, System, purchase, uid, wait_until

# ids a shop may send: `/` and `%` are valid id characters, and so is everything a spreadsheet would run
PATH_IDS = ["shop/c-1", "50%off", "x/next-rung", "a%2Fb", "sp ace?#frag", "ü/ß"]
FORMULA_IDS = ['=HYPERLINK("http://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"]


@pytest.fixture(scope="module")
def customers(system: System, shop: Shop) -> dict[str, str]:
    """Every id above with an order, one unprofitable customer, and an event dated in 1970 (the earliest an
    event may be: more than 10 years before the others)."""
    suffix = uid()
    ids = {i: f"{i}-{suffix}" for i in [*PATH_IDS, *FORMULA_IDS]}
    ids["loss"] = f"loss-{suffix}"
    ids["ancient"] = f"ancient-{suffix}"
    events = [purchase(c) for k, c in ids.items() if k not in ("loss", "ancient")]
    events.append(purchase(ids["loss"], amount="10.00", cost="40.00"))
    events.append(purchase(ids["ancient"], at="1970-01-02T00:00:00Z"))
    shop.send_all(events)
    for c in ids.values():
        wait_until(
            lambda c=c: system.get(f"/v1/customers/{quote(c, safe='')}").status_code == 200, what=f"customer {c!r}"
        )
    return ids


def assert_json_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["error"] == error and body["detail"]
    return body


# ---- every valid id is reachable ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", PATH_IDS)
def test_an_id_with_a_slash_or_a_percent_is_reachable(system: System, customers: dict[str, str], key: str) -> None:
    c = customers[key]
    encoded = quote(c, safe="")
    body = system.get(f"/v1/customers/{encoded}").json()
    assert body["customer_id"] == c and body["stage"] == "first_purchase"
    rung = system.get(f"/v1/customers/{encoded}/next-rung")
    assert rung.status_code == 200 and rung.json()["next_stage"] == "regular", rung.text


def test_the_next_rung_of_x_is_not_the_customer_called_x_next_rung(system: System, customers: dict[str, str]) -> None:
    c = customers["x/next-rung"]  # "x/next-rung-<suffix>": the customer's own page, not a sub-resource
    assert system.get(f"/v1/customers/{quote(c, safe='')}").json()["customer_id"] == c
    exact = "x/next-rung"  # as an id it ends with the sub-resource's name; only the encoding tells them apart
    assert_json_error(system.get(f"/v1/customers/{quote(exact, safe='')}"), 404, "not_found")
    assert_json_error(system.get("/v1/customers/x/next-rung"), 404, "not_found")  # next rung of unknown "x"


# ---- errors are JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, params, status, error",
    [
        ("/v1/customers/%00", {}, 404, "not_found"),
        ("/v1/customers", {"after": "AA"}, 400, "invalid_cursor"),  # the cursor of "\x00"
        ("/v1/flows", {"since": "0001-01-01T00:00:00+14:00"}, 422, "invalid_range"),
        ("/v1/customers", {"limit": "1001"}, 422, "invalid_request"),
        (
            "/v1/flows",
            {"bucket": "week", "since": "2000-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            422,
            "invalid_range",
        ),
        ("/no/such/path", {}, 404, "not_found"),
    ],
)
def test_what_were_plain_text_500s_and_every_refusal_are_json(
    system: System, path: str, params: dict[str, str], status: int, error: str
) -> None:
    assert_json_error(system.get(path, params=params), status, error)


@pytest.mark.parametrize("service", ["scoring", "ingest"])
def test_a_body_over_the_limit_is_413_json_on_both_services(system: System, service: str) -> None:
    r = httpx.post(system.url(service, "/healthz"), content=b"x" * (1_048_576 + 1), timeout=10)
    assert_json_error(r, 413, "payload_too_large")
    assert_json_error(httpx.delete(system.url(service, "/healthz"), timeout=10), 405, "method_not_allowed")


def test_all_time_flows_stay_within_ten_years_and_count_the_rest(system: System, customers: dict[str, str]) -> None:
    for bucket in ("day", "week", "month"):
        r = system.get("/v1/flows", params={"bucket": bucket})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["earlier"]["first_purchase"] >= 1 and body["series"][0]["start"] > "2000-01-01"


# ---- CSV formula injection ---------------------------------------------------------------------------------


def test_the_csv_export_defuses_formulas_and_keeps_numbers(system: System, customers: dict[str, str]) -> None:
    r = system.get("/v1/customers", headers={"Accept": "text/csv"})
    assert r.status_code == 200
    rows = {row[0]: row for row in csv.reader(io.StringIO(r.text, newline=""))}
    for key in FORMULA_IDS:
        c = customers[key]
        assert "'" + c in rows, f"{c!r} is not written with a leading quote"
        assert c not in rows
    for key in PATH_IDS:
        assert customers[key] in rows  # nothing else is touched
    loss = rows[customers["loss"]]
    assert loss[2] == "unprofitable" and loss[5] == "-30.00"  # a negative amount stays a number


# ---- headers, documents, probes -----------------------------------------------------------------------------


def test_the_page_has_a_strict_policy_and_no_inline_code(system: System) -> None:
    page = system.get("/ui")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page.text):
        assert system.get(asset).headers["x-content-type-options"] == "nosniff", asset
    html = (ROOT / "services" / "scoring" / "static" / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html), "an inline style or event handler"
    api = system.get("/v1/stages")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_metrics_answers_the_content_type_its_openapi_documents(system: System) -> None:
    documented = system.get("/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    for service in ("scoring", "ingest"):
        r = system.get("/metrics", service=service)
        assert r.headers["content-type"] == CONTENT_TYPE_LATEST and CONTENT_TYPE_LATEST in documented


def test_every_operation_documents_its_errors_as_the_v1_shape(system: System) -> None:
    spec = system.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorOut", (method, path, status)
    assert set(spec["components"]["schemas"]["ErrorOut"]["required"]) == {"error", "detail"}
