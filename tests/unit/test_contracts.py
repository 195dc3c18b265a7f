"""The published contracts (docs/contracts/) match the models they are generated from, and are valid."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from services.scoring.domain.focus import focus
from services.scoring.domain.ladder import apply
from services.scoring.domain.measures import loyalty
from services.scoring.health.marks import HEALTH_NAMESPACE, NO_MARK, HealthContext, assess, health_message_id
from services.scoring.outgoing import STAGE_CHANGE_NAMESPACE, stage_change_id, stage_change_payload
from shared.wire.customer_health import CustomerHealthChanged
from shared.wire.messages import Fact
from shared.wire.stage_changes import StageChanged
from tests.unit.domain_builders import default_policy
from tools.export_contracts import OUT, documents

ASYNCAPI_SCHEMA = json.loads((OUT / "vendor" / "asyncapi-3.0.0.schema.json").read_text())
ROOT = Path(__file__).resolve().parents[2]
CONTRACT_MD = ROOT / "docs" / "contract.md"  # the product contract v1, committed so a clone is self-contained
GIVEN_CONTRACT_MD = ROOT.parent / "shared" / "contract.md"  # the given material, beside the clone in CI


def _doc(name: str) -> dict[str, Any]:
    return json.loads((OUT / name).read_text())


@pytest.mark.parametrize("name", sorted(documents()))
def test_committed_contract_matches_the_models(name: str) -> None:
    assert (OUT / name).read_text() == documents()[name], f"{name} is stale: run `make contracts`"


def test_asyncapi_document_is_valid_asyncapi_3() -> None:
    jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).validate(_doc("asyncapi.json"))


def test_the_asyncapi_validation_catches_a_broken_document() -> None:
    broken = copy.deepcopy(_doc("asyncapi.json"))
    broken["operations"]["sendStageChanged"]["action"] = "publish"  # AsyncAPI 2 wording, invalid in 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).validate(broken)


def test_every_contract_topic_has_a_channel() -> None:
    addresses = {c["address"] for c in _doc("asyncapi.json")["channels"].values()}
    assert addresses == {
        "shop.purchases",
        "shop.referrals",
        "shop.complaints",
        "loyalty.stage-changes",
        "loyalty.customer-health",
        "loyalty.dead-letter",
    }


def _component_validator(schema_name: str) -> jsonschema.Draft202012Validator:
    doc = _doc("asyncapi.json")
    registry = Registry().with_resource("urn:asyncapi", Resource.opaque(doc))
    schema = {"$ref": f"urn:asyncapi#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_a_published_stage_change_matches_the_published_schema() -> None:
    policy = default_policy()
    fact = Fact(
        kind="order_placed",
        event_id="e-1",
        role="primary",
        customer_id="c-42",
        occurred_at=datetime(2026, 6, 1, 10, tzinfo=UTC),
        amount=Decimal("300.00"),
        cost=Decimal("180.00"),
    )
    state, changes = apply(None, fact, policy=policy)
    payloads = [json.loads(stage_change_payload(c, state, policy=policy)) for c in changes]  # type: ignore[arg-type]
    assert [p["to_stage"] for p in payloads] == ["visitor", "first_purchase"]
    assert payloads[0]["occurred_at"] == "2026-06-01T10:00:00Z"
    later = Fact(
        kind="order_placed",
        event_id="e-2",
        role="primary",
        customer_id="c-43",
        amount=Decimal("1"),
        occurred_at=datetime(2026, 6, 1, 12, 30, 0, 250000, tzinfo=timezone(timedelta(hours=2))),
    )
    state_b, changes_b = apply(None, later, policy=policy)
    assert json.loads(stage_change_payload(changes_b[0], state_b, policy=policy))["occurred_at"] == (  # type: ignore[arg-type]
        "2026-06-01T10:30:00.250000Z"
    )
    validator = _component_validator("StageChanged")
    for p in payloads:
        validator.validate(p)
        StageChanged.model_validate(p)
        assert p["event_id"] == stage_change_id("c-42", p["to_stage"])
    assert payloads[1]["profitability"] == {
        "sales": "300.00",
        "costs": "180.00",
        "profit": "120.00",
        "tier": "profitable",
    }
    # focus as of the change, the same for every rung entered on one fact; a new buyer develops a first kind
    scores = loyalty(state, at=fact.occurred_at, policy=policy)
    assert payloads[0]["focus"] == payloads[1]["focus"] == focus(scores, "first_purchase", policy.focus).as_dict()
    assert payloads[1]["focus"]["develop"] == "evaluative"
    assert StageChanged.model_validate({k: v for k, v in payloads[1].items() if k != "focus"}).focus is None
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**payloads[0], "to_stage": "gold"})


def test_the_committed_contract_is_the_given_one() -> None:
    text = CONTRACT_MD.read_text()
    assert "# The product contract (v2)" in text
    if GIVEN_CONTRACT_MD.exists():  # a clone without the given folder beside it has only the committed copy
        assert text == GIVEN_CONTRACT_MD.read_text(), "docs/contract.md differs from ../shared/contract.md"


def _contract_examples() -> list[dict[str, Any]]:
    text = CONTRACT_MD.read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```json")[1:]]
    return [json.loads(b) for b in blocks]


def test_the_contract_example_stage_change_fits_the_model() -> None:
    examples = [e for e in _contract_examples() if e.get("type") == "stage_changed"]
    assert len(examples) == 1
    example = {**examples[0], "occurred_at": "2026-06-01T10:00:00Z"}  # the contract shows a placeholder there
    StageChanged.model_validate(example)
    _component_validator("StageChanged").validate(example)


def test_openapi_of_scoring_documents_the_contract_endpoints() -> None:
    doc = _doc("openapi-scoring.json")
    assert {"/v1/customers/{customer_id}", "/v1/stages", "/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    customer = doc["components"]["schemas"]["CustomerOut"]["properties"]
    assert set(customer) == {
        "customer_id",
        "stage",
        "stage_entered_at",
        "loyalty",
        "profitability",
        "stability",
        "counts",
        "first_seen_at",
        "last_event_at",
        "history",
        "focus",
        "health",
    }
    health = doc["components"]["schemas"]["HealthOut"]["properties"]
    assert set(health) == {
        "status",
        "p_alive",
        "expected_orders_90d",
        "as_of",
        "model_version",
        "x",
        "t_x_weeks",
        "T_weeks",
        "at_risk_since",
    }
    assert {"/v1/health/model", "/v1/health/model/fit", "/v1/health/backtest"} <= set(doc["paths"])


@pytest.mark.parametrize("customer_id", ["c-42", "a", "é-ü-客户", "x" * 300, "with space", ""])
@pytest.mark.parametrize("to_stage", ["visitor", "first_purchase", "regular", "advocate"])
def test_stage_change_id_is_the_rfc_4122_uuid5_of_customer_and_rung(customer_id: str, to_stage: str) -> None:
    expected = uuid.uuid5(STAGE_CHANGE_NAMESPACE, f"{customer_id}\x1f{to_stage}")
    got = stage_change_id(customer_id, to_stage)
    assert got == str(expected)
    assert uuid.UUID(got).version == 5


def test_a_published_health_change_matches_the_published_schema() -> None:
    policy = default_policy()
    now = datetime(2026, 11, 2, 12, tzinfo=UTC)
    ctx = HealthContext(model=policy.health.prior_model, at_risk_below=0.5, now=now, topic="loyalty.customer-health")
    risk = assess(
        customer_id="c-42",
        stage="regular",
        x=3,
        first_day=19000,
        last_day=19100,
        last_order_at=datetime(2022, 1, 1, 9, tzinfo=UTC),
        mark=NO_MARK,
        ctx=ctx,
    )
    back = assess(
        customer_id="c-42",
        stage="regular",
        x=4,
        first_day=19000,
        last_day=20394,
        last_order_at=now,
        mark=risk.mark,
        ctx=ctx,
    )
    assert risk.message is not None and back.message is not None
    validator = _component_validator("CustomerHealthChanged")
    for n, (message_id, topic, key, payload) in enumerate((risk.message, back.message), start=1):
        body = json.loads(payload)
        validator.validate(body)
        CustomerHealthChanged.model_validate(body)
        assert (topic, key, message_id, body["event_id"]) == (
            "loyalty.customer-health",
            "c-42",
            health_message_id("c-42", n),
            message_id,
        )
        assert body["as_of"] == "2026-11-02T12:00:00Z" and body["model_version"] == 0
    assert [json.loads(m[3])["type"] for m in (risk.message, back.message)] == [
        "customer_at_risk",
        "customer_recovered",
    ]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**json.loads(risk.message[3]), "type": "customer_churned"})


@pytest.mark.parametrize("customer_id", ["c-42", "é-ü-客户", ""])
@pytest.mark.parametrize("transition", [1, 2, 17])
def test_health_message_id_is_the_rfc_4122_uuid5_of_customer_and_transition(customer_id: str, transition: int) -> None:
    assert health_message_id(customer_id, transition) == str(
        uuid.uuid5(HEALTH_NAMESPACE, f"{customer_id}\x1f{transition}")
    )
