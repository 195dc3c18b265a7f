"""The event-to-fact mapping, once: what each valid shop event means for the ladder (contract sections 2 and 12).

Both validation paths end here: the models' (`to_facts`) and the quick one of `shared.wire.validation`, which
calls the per-type builders with the values it checked by hand.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from shared.wire.events import ComplaintEvent, ProspectEvent, PurchaseEvent, ReferralEvent, ShopEvent, TouchEvent
from shared.wire.messages import Fact


def purchase_facts(
    event_id: str,
    customer_id: str,
    at: datetime,
    *,
    amount: Decimal,
    cost: Decimal,
    discount: Decimal,
    refund: bool,
    order_id: str | None,
) -> list[Fact]:
    return [
        Fact(
            kind="order_refunded" if refund else "order_placed",
            event_id=event_id,
            role="primary",
            customer_id=customer_id,
            occurred_at=at,
            amount=amount,
            cost=cost,
            discount=discount,
            order_id=order_id,
        )
    ]


def referral_facts(event_id: str, customer_id: str, at: datetime, *, referred: str, reward_cost: Decimal) -> list[Fact]:
    return [
        Fact(
            kind="referral_made",
            event_id=event_id,
            role="primary",
            customer_id=customer_id,
            occurred_at=at,
            other_customer_id=referred,
            cost=reward_cost,
        ),
        Fact(
            kind="referral_received",
            event_id=event_id,
            role="referred",
            customer_id=referred,
            occurred_at=at,
            other_customer_id=customer_id,
        ),
    ]


def complaint_facts(
    event_id: str, customer_id: str, at: datetime, *, severity: str, resolved: bool, handling_cost: Decimal
) -> list[Fact]:
    return [
        Fact(
            kind="complaint_filed",
            event_id=event_id,
            role="primary",
            customer_id=customer_id,
            occurred_at=at,
            cost=handling_cost,
            severity=severity,
            resolved=resolved,
        )
    ]


def prospect_facts(event_id: str, customer_id: str, at: datetime, *, source: str | None) -> list[Fact]:
    return [
        Fact(
            kind="prospect_listed",
            event_id=event_id,
            role="primary",
            customer_id=customer_id,
            occurred_at=at,
            lead_source=source,
        )
    ]


def touch_facts(event_id: str, customer_id: str, at: datetime, *, channel: str, direction: str) -> list[Fact]:
    return [
        Fact(
            kind="touch_made",
            event_id=event_id,
            role="primary",
            customer_id=customer_id,
            occurred_at=at,
            channel=channel,
            direction=direction,
        )
    ]


def to_facts(event: ShopEvent) -> list[Fact]:
    """The internal facts of a valid shop event (without `source`/`ingested_at`, which ingest adds)."""
    e = event
    if isinstance(e, PurchaseEvent):
        return purchase_facts(
            e.event_id,
            e.customer_id,
            e.occurred_at,
            amount=e.amount,
            cost=e.cost,
            discount=e.discount,
            refund=e.refund,
            order_id=e.order_id,
        )
    if isinstance(e, ReferralEvent):
        return referral_facts(
            e.event_id, e.customer_id, e.occurred_at, referred=e.referred_customer_id, reward_cost=e.reward_cost
        )
    if isinstance(e, ComplaintEvent):
        return complaint_facts(
            e.event_id,
            e.customer_id,
            e.occurred_at,
            severity=e.severity,
            resolved=e.resolved,
            handling_cost=e.handling_cost,
        )
    if isinstance(e, ProspectEvent):
        return prospect_facts(e.event_id, e.customer_id, e.occurred_at, source=e.source)
    if isinstance(e, TouchEvent):
        return touch_facts(e.event_id, e.customer_id, e.occurred_at, channel=e.channel, direction=e.direction)
    raise TypeError(f"not a shop event: {type(event).__name__}")
