"""Writes the published contracts from the project's own models: AsyncAPI 3 for every topic, OpenAPI for both
services. `make contracts` writes them; the tests fail when the committed files and the models drift apart.

    python -m tools.export_contracts          # write docs/contracts/*.json
    python -m tools.export_contracts --check  # exit 1 if any committed file differs from what the models give
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema
from sqlalchemy import create_engine

from services.ingest.app import create_app as create_ingest_app
from services.scoring.__main__ import DEFAULT_POLICY
from services.scoring.api import create_app as create_scoring_app
from services.scoring.domain.policy import parse_policy
from services.scoring.http_common import ApiContext
from shared.adapters.metrics import Metrics
from shared.settings import Settings
from shared.wire.customer_health import CustomerHealthChanged
from shared.wire.events import (
    ComplaintEvent,
    ErrorCode,
    ProspectEvent,
    PurchaseEvent,
    ReferralEvent,
    TouchEvent,
)
from shared.wire.stage_changes import StageChanged

OUT = Path(__file__).resolve().parents[1] / "docs" / "contracts"
VERSION = "1.0.0"


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [
            (m, "validation")
            for m in (
                PurchaseEvent,
                ReferralEvent,
                ComplaintEvent,
                ProspectEvent,
                TouchEvent,
                StageChanged,
                CustomerHealthChanged,
            )
        ],
        ref_template="#/components/schemas/{model}",
    )
    return dict(sorted(top["$defs"].items()))


def _key(description: str) -> dict[str, Any]:
    return {"kafka": {"key": {"type": "string", "description": description}, "bindingVersion": "0.5.0"}}


def asyncapi(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic in the contract."""
    shop_messages = {
        "purchase": {"$ref": "#/components/messages/Purchase"},
        "referral": {"$ref": "#/components/messages/Referral"},
        "complaint": {"$ref": "#/components/messages/Complaint"},
        "prospect": {"$ref": "#/components/messages/Prospect"},
        "touch": {"$ref": "#/components/messages/Touch"},
    }
    shop_note = (
        "The `type` field decides what an event is, so any of the five kinds may be sent to any of the "
        "three shop topics. Fields not named in the schema are ignored. A message that breaks a rule goes "
        "to the dead-letter topic."
    )
    channels: dict[str, Any] = {
        name: {"address": address, "title": address, "description": shop_note, "messages": shop_messages}
        for name, address in (
            ("shopPurchases", settings.topic_purchases),
            ("shopReferrals", settings.topic_referrals),
            ("shopComplaints", settings.topic_complaints),
        )
    }
    channels["stageChanges"] = {
        "address": settings.topic_stage_changes,
        "title": settings.topic_stage_changes,
        "description": "Every rung a customer enters, once per (customer, rung), in ladder order per customer.",
        "messages": {"stageChanged": {"$ref": "#/components/messages/StageChanged"}},
    }
    channels["customerHealth"] = {
        "address": settings.topic_customer_health,
        "title": settings.topic_customer_health,
        "description": "Every change of a customer's health status (at risk, recovered), once per (customer, "
        "transition number), in order per customer. A customer's first health is announced only "
        "when it is at risk.",
        "messages": {"customerHealthChanged": {"$ref": "#/components/messages/CustomerHealthChanged"}},
    }
    channels["deadLetter"] = {
        "address": settings.topic_dead_letter,
        "title": settings.topic_dead_letter,
        "description": "Rejected input: the original value bytes and key, unchanged, with the reason in headers.",
        "messages": {"deadLetter": {"$ref": "#/components/messages/DeadLetter"}},
    }
    operations = {
        f"receive{name[0].upper()}{name[1:]}": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": f"The system consumes {channels[name]['address']} (consumer group of ingest).",
        }
        for name in ("shopPurchases", "shopReferrals", "shopComplaints")
    }
    operations["sendStageChanged"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/stageChanges"},
        "summary": "Published by the outbox relay after the state that caused it is committed.",
    }
    operations["sendCustomerHealthChanged"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/customerHealth"},
        "summary": "Published by the outbox relay after the health change is committed (by an order, the periodic "
        "scan or a refit).",
    }
    operations["sendDeadLetter"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/deadLetter"},
        "summary": "Published by ingest for every message that breaks a rule of the contract.",
    }
    messages = {
        **{
            title: {
                "name": title.lower(),
                "title": title,
                "contentType": "application/json",
                "payload": {"$ref": f"#/components/schemas/{title}Event"},
                "bindings": _key("Optional; the system does its own keying."),
            }
            for title in ("Purchase", "Referral", "Complaint", "Prospect", "Touch")
        },
        "StageChanged": {
            "name": "stage_changed",
            "title": "Stage changed",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/StageChanged"},
            "bindings": _key("customer_id"),
        },
        "CustomerHealthChanged": {
            "name": "customer_health_changed",
            "title": "Customer health changed",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/CustomerHealthChanged"},
            "bindings": _key("customer_id"),
        },
        "DeadLetter": {
            "name": "dead_letter",
            "title": "Dead letter",
            "contentType": "application/octet-stream",
            "payload": {"description": "The original message value, byte for byte (it may not even be JSON)."},
            "headers": {
                "type": "object",
                "required": ["error.code", "error.message", "source.topic", "source.partition", "source.offset"],
                "properties": {
                    "error.code": {
                        "type": "string",
                        "enum": sorted(c.value for c in ErrorCode),
                        "description": "Why it was rejected (a closed set).",
                    },
                    "error.message": {"type": "string", "description": "A human-readable explanation."},
                    "source.topic": {"type": "string"},
                    "source.partition": {"type": "string", "pattern": "^[0-9]+$"},
                    "source.offset": {"type": "string", "pattern": "^[0-9]+$"},
                },
            },
            "bindings": _key("The original key, unchanged (absent when the original had none)."),
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Loyalty ladder",
            "version": VERSION,
            "description": "Shop events in; every rung a customer enters and every change of their health "
            "out; rejected input kept aside. "
            "Topic names are the defaults; each is a setting (TOPIC_*).",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "Any Apache Kafka cluster (KAFKA_BOOTSTRAP_SERVERS).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": _schemas(), "messages": messages},
    }


def openapi_documents(settings: Settings) -> dict[str, dict[str, Any]]:
    """The OpenAPI documents of both services, as FastAPI builds them from the response models."""
    engine = create_engine("postgresql+psycopg://contracts@localhost/contracts")  # never connects
    policy = parse_policy(DEFAULT_POLICY.read_text(encoding="utf-8"))
    scoring = create_scoring_app(
        ctx=ApiContext(engine=engine, policy=policy, settings=settings), metrics=Metrics(service="scoring")
    )
    ingest = create_ingest_app(settings=settings, metrics=Metrics(service="ingest"))
    return {"openapi-scoring.json": scoring.openapi(), "openapi-ingest.json": ingest.openapi()}


def documents() -> dict[str, str]:
    """File name -> exact text of every published contract."""
    settings = Settings(database_url="", kafka_bootstrap_servers="localhost:9092")
    docs: dict[str, Any] = {"asyncapi.json": asyncapi(settings), **openapi_documents(settings)}
    return {name: json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n" for name, doc in docs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, text in documents().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} — run `make contracts`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
