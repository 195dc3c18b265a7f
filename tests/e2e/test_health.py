"""Health end to end: the CDNOW sample streamed through the running system (Kafka in) and the paper's BG/NBD
parameters out of POST /v1/health/backtest; at-risk and recovered messages on the health topic; health on the
customer, the lists and /v1/stages; the refit on demand; and the backtest's refusals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.scoring.health.marks import health_message_id
from tests.cdnow import PAPER_LL, PAPER_PARAMS, purchases, sig3
from tests.support import Shop, System, TopicReader, purchase, uid, wait_until

SAMPLE = purchases()
CUSTOMERS = len({c for c, _, _ in SAMPLE})


def _post(system: System, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(system.url("scoring", path), json=body, timeout=120)


def _accepted_purchases(system: System) -> float:
    match = re.search(
        r'^loyalty_events_total\{outcome="accepted",service="scoring",type="purchase"\} (\S+)$',
        system.get("/metrics").text,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def cdnow(system: System, shop: Shop) -> int:
    """The CDNOW sample sent as the shop would send it, one purchase a line; waits until scoring applied all."""
    for i, (customer, day, amount) in enumerate(SAMPLE):
        shop.send(
            purchase(f"cdnow-{customer}", at=f"{day.isoformat()}T12:00:00Z", amount=amount, event_id=f"cdnow-{i}")
        )
    shop.flush()
    wait_until(lambda: _accepted_purchases(system) >= len(SAMPLE), timeout_s=180, what="the CDNOW sample applied")
    return len(SAMPLE)


def test_the_cdnow_backtest_gives_the_papers_bg_nbd_parameters(system: System, cdnow: int) -> None:
    r = _post(system, "/v1/health/backtest", {"cutoff": "1997-09-30T00:00:00Z", "horizon_days": 273, "model": "bg_nbd"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["customers"] == CUSTOMERS == 2357
    assert {k: sig3(v) for k, v in body["params"].items()} == {k: sig3(v) for k, v in PAPER_PARAMS.items()}
    assert sig3(body["log_likelihood"]) == sig3(PAPER_LL)
    assert body["log_likelihood"] == pytest.approx(PAPER_LL, abs=0.05)
    rows = body["by_frequency"]
    assert [row["x"] for row in rows] == [0, 1, 2, 3, 4, 5, 6, "7+"]
    assert sum(row["customers"] for row in rows) == 2357
    # the holdout (weeks 40 to 78) as counted from the sample's order days, and the forecast's order of magnitude
    assert body["actual_repeat_orders"] == 1882
    assert body["predicted_repeat_orders"] == pytest.approx(body["actual_repeat_orders"], rel=0.15)
    assert rows[0]["actual"] < rows[3]["actual"] and rows[0]["predicted"] < rows[3]["predicted"]
    # it changed nothing: the model in force is still the priors
    assert system.get("/v1/health/model").json()["version"] == 0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"cutoff": "2999-01-01T00:00:00Z"}, "cutoff_in_future"),
        ({"cutoff": "1997-09-30T00:00:00Z", "horizon_days": 0}, "invalid_request"),
        ({"cutoff": "1997-09-30T00:00:00Z", "horizon_days": 3651}, "invalid_request"),
        ({"cutoff": "1997-09-30T00:00:00Z", "model": "pareto_nbd"}, "invalid_request"),
        ({"cutoff": "not a time"}, "invalid_request"),
        ({"cutoff": "1997-01-01T00:00:00Z"}, "too_few_customers"),
    ],
)
def test_a_backtest_that_cannot_run_is_a_json_422(system: System, cdnow: int, body: dict[str, Any], error: str) -> None:
    r = _post(system, "/v1/health/backtest", body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == error and r.json()["detail"]
    if error == "too_few_customers":
        assert re.search(r"\d+ customers with an order on or before the cutoff, 500 needed", r.json()["detail"])


def test_old_orders_put_a_customer_at_risk_at_once_and_a_new_order_recovers_them(
    system: System, shop: Shop, customer_health: TopicReader
) -> None:
    customer = uid("a-risk-")  # sorts before the CDNOW customers, so it is on the lists' first page
    long_ago = datetime.now(UTC) - timedelta(days=800)
    shop.send_all(
        [
            purchase(
                customer, at=(long_ago + timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ"), event_id=f"{customer}-{d}"
            )
            for d in (0, 30)
        ]
    )

    def messages() -> list[dict[str, Any]]:
        return [m for m in customer_health.json_values() if m["customer_id"] == customer]

    [risk] = wait_until(lambda: messages() or None, timeout_s=20, what="the at-risk message")
    assert risk["type"] == "customer_at_risk" and risk["event_id"] == health_message_id(customer, 1)
    assert risk["stage"] == "first_purchase" and risk["p_alive"] < 0.5
    body = system.customer(customer)
    assert body is not None
    health = body["health"]
    assert health["status"] == "at_risk" and health["x"] == 1 and health["t_x_weeks"] == pytest.approx(30 / 7)
    assert datetime.fromisoformat(health["at_risk_since"]) == datetime.fromisoformat(risk["as_of"])
    listed = system.get("/v1/customers", params={"health": "at_risk", "stage": "first_purchase", "limit": 1000}).json()[
        "items"
    ]
    assert customer in {item["customer_id"] for item in listed}
    assert system.get("/v1/stages").json()["stages"]["first_purchase"]["at_risk"] >= 1
    csv = system.get("/v1/customers", params={"health": "at_risk"}, headers={"Accept": "text/csv"}).text
    assert customer in csv

    shop.send_all([purchase(customer, at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))])
    both = wait_until(lambda: m if len(m := messages()) == 2 else None, timeout_s=20, what="the recovery")
    assert [m["type"] for m in both] == ["customer_at_risk", "customer_recovered"]
    assert both[1]["event_id"] == health_message_id(customer, 2)
    active = system.wait_customer(customer, lambda c: c["health"]["status"] == "active")
    assert active["health"]["at_risk_since"] is None and active["health"]["x"] == 2
    assert customer not in {
        i["customer_id"]
        for i in system.get("/v1/customers", params={"health": "at_risk", "limit": 1000}).json()["items"]
    }


def test_a_customer_without_orders_has_no_health(system: System, shop: Shop) -> None:
    customer = uid("visitor-")
    shop.send_all(
        [
            {
                "event_id": uid("c-"),
                "type": "complaint",
                "customer_id": customer,
                "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ]
    )
    assert system.wait_customer(customer)["health"] is None


def test_a_refit_on_demand_makes_a_new_model_version(system: System, cdnow: int) -> None:
    r = _post(system, "/v1/health/model/fit")
    assert r.status_code == 200, r.text
    model = r.json()
    assert model["version"] >= 1 and model["model"] == "mbg_nbd" and model["customers"] >= 2357
    assert model["log_likelihood"] < 0 and model["fitted_at"]
    assert system.get("/v1/health/model").json() == model
    policy = system.get("/v1/policy").json()
    assert policy["health"]["model"] == "mbg_nbd" and policy["health"]["at_risk_below"] == 0.5
    # every customer follows the new model: the CDNOW customers' health carries its version
    wait_until(
        lambda: system.customer("cdnow-00004")["health"]["model_version"] == model["version"],
        timeout_s=30,
        what="health under the new model",
    )
