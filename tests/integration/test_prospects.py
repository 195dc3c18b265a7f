"""POST /v1/prospects and GET /v1/funnel (contract section 12) against the real PostgreSQL: the import writes
through the scoring database's dedupe rows, the funnel and flows read what the scoring transaction wrote."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import text

from services.scoring.prospects_sql import Prospect, Template, import_event_id, write_chunk
from tests.integration.test_api_limits import POLICY, Api, assert_json_error, make_api, seed
from tests.unit.domain_builders import at, order, touch

__all__ = ["make_api"]  # the fixture, shared with the API limits tests

CSV = {"content-type": "text/csv"}
NDJSON = {"content-type": "application/x-ndjson"}


def stored(api: Api) -> dict[str, tuple[str, datetime]]:
    with api.engine.connect() as conn:
        return {
            r.customer_id: (r.stage, r.first_seen_at)
            for r in conn.execute(text("SELECT customer_id, stage, first_seen_at FROM customers"))
        }


def test_a_csv_file_imports_prospects_on_potential(make_api: Callable[..., Api]) -> None:
    api = make_api()
    body = b"occurred_at,customer_id,source\r\n2026-05-01T10:00:00+02:00,p-1,fair\r\n,p-2,\r\n"
    before = datetime.now(UTC)
    r = api.client.post("/v1/prospects", content=body, headers=CSV)
    assert r.status_code == 200, r.text
    assert r.json() == {"imported": 2, "existing": 0, "rejected": [], "rejected_total": 0}
    rows = stored(api)
    assert rows["p-1"] == ("potential", datetime(2026, 5, 1, 8, tzinfo=UTC))
    assert rows["p-2"][0] == "potential" and rows["p-2"][1] >= before  # no occurred_at: the moment of the import
    customer = api.client.get("/v1/customers/p-1").json()
    assert customer["stage"] == "potential" and customer["history"] == []
    # the same file again: everyone is known, nobody is added or changed
    again = api.client.post("/v1/prospects", content=body, headers=CSV)
    assert again.json() == {"imported": 0, "existing": 2, "rejected": [], "rejected_total": 0}
    assert stored(api) == rows


def test_bad_lines_are_reported_with_their_numbers_and_the_rest_imports(make_api: Callable[..., Api]) -> None:
    api = make_api()
    lines = [
        "customer_id,occurred_at",
        "ok-1,",
        "x" * 129 + ",",
        "ok-2,yesterday",
        "ok-3,2026-06-01T10:00:00",
        "",
        "ok-1,",
        "a,b,c",
        "ok-4,2026-06-01T10:00:00Z",
    ]
    r = api.client.post("/v1/prospects", content="\n".join(lines).encode(), headers=CSV)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["imported"], body["existing"], body["rejected_total"]) == (2, 0, 5)
    assert [(x["line"], x["error"].split(":")[0].split(" ")[0]) for x in body["rejected"]] == [
        (3, "customer_id"),
        (4, "occurred_at"),
        (5, "occurred_at"),
        (7, "duplicate"),
        (8, "3"),
    ]
    assert set(stored(api)) == {"ok-1", "ok-4"}


def test_ndjson_lines_are_numbered_from_one(make_api: Callable[..., Api]) -> None:
    api = make_api()
    body = (
        b'{"customer_id": "n-1", "source": "form"}\n[1]\n{"customer_id": 7}\n{"source": "x"}\nnot json\n'
        b'{"customer_id": "n-2", "occurred_at": "2026-01-01T00:00:00Z"}'
    )
    r = api.client.post("/v1/prospects", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text
    assert [x["line"] for x in r.json()["rejected"]] == [2, 3, 4, 5]
    assert r.json()["imported"] == 2


def test_a_known_customer_is_left_as_is(make_api: Callable[..., Api]) -> None:
    api = make_api()
    seed(api.engine, [order("o1", at(2026, 3, 1), customer="buyer")])
    r = api.client.post("/v1/prospects", content=b"customer_id,occurred_at\nbuyer,2020-01-01T00:00:00Z\n", headers=CSV)
    assert r.json()["existing"] == 1
    assert stored(api)["buyer"] == ("first_purchase", at(2026, 3, 1))


def test_a_crash_mid_import_and_a_retry_give_each_prospect_once(make_api: Callable[..., Api]) -> None:
    api = make_api()
    ids = [f"c-{i:05d}" for i in range(25_000)]
    now = datetime.now(UTC)
    template = Template.of(POLICY, now)
    # the first chunk committed before the process died; the second was in flight (rolled back with it)
    assert write_chunk(api.engine, [Prospect(c, now) for c in ids[:10_000]], template) == 10_000
    body = ("customer_id\n" + "\n".join(ids) + "\n").encode()
    r = api.client.post("/v1/prospects", content=body, headers=CSV)
    assert r.json() == {"imported": 15_000, "existing": 10_000, "rejected": [], "rejected_total": 0}
    with api.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers")).scalar_one() == 25_000
        claims = conn.execute(text("SELECT count(*) FROM processed_events WHERE event_id LIKE 'import:%'"))
        assert claims.scalar_one() == 25_000
        assert (
            conn.execute(
                text("SELECT customer_id FROM processed_events WHERE event_id = :e"), {"e": import_event_id("c-00042")}
            ).scalar_one()
            == "c-00042"
        )


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b"customer_id,email\nx,y\n", CSV, 400, "invalid_header"),
        (b"id\nx\n", CSV, 400, "invalid_header"),
        (b"customer_id,customer_id\nx,y\n", CSV, 400, "invalid_header"),
        (b"", CSV, 400, "empty_body"),
        (b"\n\n", CSV, 400, "empty_body"),
        (b"", NDJSON, 400, "empty_body"),
        (b"customer_id\nx\n", {"content-type": "application/json"}, 415, "unsupported_media_type"),
        (b"customer_id\nx\n", {}, 415, "unsupported_media_type"),
    ],
)
def test_a_body_that_cannot_be_imported_is_a_json_error(
    make_api: Callable[..., Api], body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    api = make_api()
    assert_json_error(api.client.post("/v1/prospects", content=body, headers=headers), status, error)
    assert stored(api) == {}


def test_the_import_needs_an_admin_token(make_api: Callable[..., Api]) -> None:
    reader, admin = "r" * 16, "a" * 16
    api = make_api(api_tokens=f"{reader}:read,{admin}:admin")
    body = b"customer_id\nx\n"
    assert_json_error(api.client.post("/v1/prospects", content=body, headers=CSV), 401, "unauthorized")
    assert_json_error(
        api.client.post("/v1/prospects", content=body, headers={**CSV, "authorization": f"Bearer {reader}"}),
        403,
        "forbidden",
    )
    ok = api.client.post("/v1/prospects", content=body, headers={**CSV, "authorization": f"Bearer {admin}"})
    assert ok.json()["imported"] == 1


def test_a_body_over_the_limit_is_413(make_api: Callable[..., Api]) -> None:
    api = make_api(import_max_bytes=1024)
    rows = b"customer_id\n" + b"".join(b"big-%04d\n" % i for i in range(400))  # 9 bytes a row
    declared = api.client.post("/v1/prospects", content=rows, headers=CSV)
    assert_json_error(declared, 413, "payload_too_large")
    assert stored(api) == {}

    def pieces() -> Iterator[bytes]:  # no Content-Length: the limit is found while reading
        for start in range(0, len(rows), 100):
            yield rows[start : start + 100]

    streamed = api.client.post("/v1/prospects", content=pieces(), headers=CSV)
    body = assert_json_error(streamed, 413, "payload_too_large")
    # the lines that ended within the first 1,024 bytes: (1024 - 12) // 9 = 112 rows
    assert (body["imported"], body["existing"]) == (112, 0)
    assert len(stored(api)) == 112


def test_the_funnel_counts_each_cohort_on_or_above_each_rung(make_api: Callable[..., Api]) -> None:
    api = make_api()
    seed(
        api.engine,
        [
            order("o1", at(2026, 5, 3), customer="may-buyer"),
            touch("t1", at(2026, 5, 20), customer="may-visitor"),
            order("o2", at(2026, 7, 1), customer="jul-buyer"),
        ],
    )
    ndjson = b"\n".join(
        orjson.dumps({"customer_id": c, "occurred_at": t})
        for c, t in [("may-prospect", "2026-05-09T00:00:00Z"), ("jun-prospect", "2026-06-30T23:59:59Z")]
    )
    assert api.client.post("/v1/prospects", content=ndjson, headers=NDJSON).json()["imported"] == 2
    r = api.client.get("/v1/funnel", params={"cohort": "month"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "cohort": "month",
        "rows": [
            {
                "start": "2026-05-01",
                "customers": 3,
                "reached": {"visitor": 2, "first_purchase": 1, "regular": 0, "advocate": 0},
            },
            {
                "start": "2026-06-01",
                "customers": 1,
                "reached": {"visitor": 0, "first_purchase": 0, "regular": 0, "advocate": 0},
            },
            {
                "start": "2026-07-01",
                "customers": 1,
                "reached": {"visitor": 1, "first_purchase": 1, "regular": 0, "advocate": 0},
            },
        ],
    }
    weeks = api.client.get(
        "/v1/funnel", params={"cohort": "week", "since": "2026-05-04T00:00:00Z", "until": "2026-05-18T00:00:00Z"}
    ).json()
    assert [(w["start"], w["customers"]) for w in weeks["rows"]] == [("2026-05-04", 1), ("2026-05-11", 0)]
    flows = api.client.get("/v1/flows", params={"bucket": "month"}).json()
    assert [(b["start"], b["entered"]["potential"], b["entered"]["visitor"]) for b in flows["series"]] == [
        ("2026-05-01", 3, 2),
        ("2026-06-01", 1, 0),
        ("2026-07-01", 1, 1),
    ]
    assert_json_error(
        api.client.get("/v1/funnel", params={"since": "2000-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
        422,
        "invalid_range",
    )
    assert_json_error(
        api.client.get(
            "/v1/funnel", params={"cohort": "week", "since": "1930-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
        ),
        422,
        "invalid_range",
    )
