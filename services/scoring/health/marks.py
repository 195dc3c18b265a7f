"""One customer's health as stored beside its state, and the message when its status changes.

The scoring transaction, the periodic scan and the sweep after a refit all decide a customer's health here, so
the three agree: the status from P(alive) against the policy's threshold, the moment it will fall below it
(`health_due_at`), and a message on every change of status. A customer's first health is a change only when it
is at risk. Each message's id is derived from the customer and the transition number, which is stored in the
same row in the same transaction as the outbox row, so a re-publish carries the same id and there are never two.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson

from services.scoring.domain.health import (
    Model,
    Summary,
    at_risk_from_day,
    expected_orders_90d,
    midnight,
    p_alive,
    status_of,
    summary_of,
)
from services.scoring.domain.state import day_index, utc
from shared.frozen import quick_init
from shared.wire.text import uuid5_text

HEALTH_NAMESPACE = uuid.UUID("0d8c4b6e-5f3a-4c1e-9a77-2b9e51f0c6d4")
_NAMESPACE_BYTES = HEALTH_NAMESPACE.bytes
SCHEMA_VERSION = 1


@quick_init
@dataclass(frozen=True, slots=True)
class HealthMark:
    """What a customer's health was when last written: the part a new assessment depends on."""

    status: str | None = None  # None: no health yet (no order, or never assessed)
    transitions: int = 0
    at_risk_since: datetime | None = None


NO_MARK = HealthMark()


@dataclass(frozen=True, slots=True)
class HealthContext:
    """What deciding health needs besides the customer: the model in force, the threshold, the moment, the topic."""

    model: Model
    at_risk_below: float
    now: datetime
    topic: str

    @property
    def today(self) -> int:
        return day_index(self.now)


@quick_init
@dataclass(frozen=True, slots=True)
class Assessment:
    """A customer's health as of the context's moment, and the outbox row of a change of status (if any)."""

    status: str
    p_alive: float
    due_at: datetime | None
    mark: HealthMark
    message: tuple[str, str, str, bytes] | None  # (message_id, topic, key, payload)


def health_message_id(customer_id: str, transition: int) -> str:
    """The stable id of a customer's `transition`-th status change: `uuid.uuid5(HEALTH_NAMESPACE, ...)`."""
    return uuid5_text(_NAMESPACE_BYTES, f"{customer_id}\x1f{transition}")


def assess(
    *,
    customer_id: str,
    stage: str,
    x: int,
    first_day: int,
    last_day: int,
    last_order_at: datetime,
    mark: HealthMark,
    ctx: HealthContext,
) -> Assessment:
    """The health of a customer with an order, as of `ctx.now`, given what was stored before (`mark`)."""
    s = summary_of(x=x, first_day=first_day, last_day=last_day, as_of_day=ctx.today)
    p = p_alive(ctx.model, s)
    status = status_of(p, at_risk_below=ctx.at_risk_below)
    due: datetime | None = None
    if status == "active":
        day = at_risk_from_day(ctx.model, s, at_risk_below=ctx.at_risk_below)
        due = midnight(day) if day is not None else None
    changed = status != mark.status and not (mark.status is None and status == "active")
    if not changed:
        since = mark.at_risk_since if status == "at_risk" else None
        return Assessment(status, p, due, HealthMark(status, mark.transitions, since), None)
    transition = mark.transitions + 1
    since = ctx.now if status == "at_risk" else None
    message_id = health_message_id(customer_id, transition)
    payload = health_payload(
        message_id=message_id,
        customer_id=customer_id,
        stage=stage,
        status=status,
        p=p,
        summary=s,
        last_order_at=last_order_at,
        ctx=ctx,
    )
    return Assessment(
        status, p, due, HealthMark(status, transition, since), (message_id, ctx.topic, customer_id, payload)
    )


def health_payload(
    *,
    message_id: str,
    customer_id: str,
    stage: str,
    status: str,
    p: float,
    summary: Summary,
    last_order_at: datetime,
    ctx: HealthContext,
) -> bytes:
    """The `loyalty.customer-health` message value (contract section 11)."""
    expected = expected_orders_90d(ctx.model, summary)
    body = {
        "event_id": message_id,
        "type": "customer_at_risk" if status == "at_risk" else "customer_recovered",
        "schema_version": SCHEMA_VERSION,
        "customer_id": customer_id,
        "stage": stage,
        "p_alive": p,
        "expected_orders_90d": expected if math.isfinite(expected) else 0.0,
        "as_of": utc(ctx.now),
        "last_order_at": utc(last_order_at),
        "model_version": ctx.model.version,
    }
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)
