"""What the scoring transaction writes to the outbox: stage-change messages (contract sections 5 and 16) with
their stable ids, and the referral conversions that travel back to the referrer's partition as facts."""

from __future__ import annotations

import uuid

import orjson

from services.scoring.domain.focus import Focus, focus
from services.scoring.domain.ladder import ReferralConverted, StageChanged
from services.scoring.domain.measures import Loyalty, loyalty, profitability
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import CustomerState, utc
from shared.wire.messages import Fact
from shared.wire.text import uuid5_text

# every stage change id is derived from (customer, rung): a re-publish carries the same id, and there can
# never be two ids for one customer and rung
STAGE_CHANGE_NAMESPACE = uuid.UUID("6f1c1d52-3b0e-4a53-9d1e-7c1f0a5c2b11")
SCHEMA_VERSION = 1


_NAMESPACE_BYTES = STAGE_CHANGE_NAMESPACE.bytes


def stage_change_id(customer_id: str, to_stage: str) -> str:
    """The stable event id of a customer's entry onto a rung: `uuid.uuid5(STAGE_CHANGE_NAMESPACE, ...)`."""
    return uuid5_text(_NAMESPACE_BYTES, f"{customer_id}\x1f{to_stage}")


def conversion_message_id(referral_event_id: str) -> str:
    """The outbox id of the conversion fact one referral yields."""
    return f"conversion:{referral_event_id}"


# what a stage-change message says of the customer: loyalty, profitability, focus (each as its JSON object)
Measures = tuple[dict[str, float], dict[str, str], dict[str, object]]


def measures_of(state: CustomerState, scores: Loyalty, focused: Focus, *, policy: Policy) -> Measures:
    """The measures a stage-change message carries, from a loyalty vector and focus already computed."""
    return scores.as_dict(), profitability(state, policy=policy), focused.as_dict()


def stage_change_payload(
    change: StageChanged,
    state: CustomerState,
    *,
    policy: Policy,
    measures: Measures | None = None,
    event_id: str | None = None,
) -> bytes:
    """The `loyalty.stage-changes` message value (contract sections 5 and 16), measured at the change's moment.

    `measures` = (loyalty, profitability, focus) when the caller has them already.
    """
    if measures is None:
        scores = loyalty(state, at=change.occurred_at, policy=policy)
        measures = measures_of(state, scores, focus(scores, state.stage, policy.focus), policy=policy)
    loyalty_now, money_now, focus_now = measures
    body = {
        "event_id": event_id or stage_change_id(change.customer_id, change.to_stage),
        "type": "stage_changed",
        "schema_version": SCHEMA_VERSION,
        "customer_id": change.customer_id,
        "from_stage": change.from_stage,
        "to_stage": change.to_stage,
        "occurred_at": utc(change.occurred_at),  # RFC 3339 with "Z", written by orjson (OPT_UTC_Z)
        "cause_event_id": change.cause_event_id,
        "reason": change.reason,
        "loyalty": loyalty_now,
        "profitability": money_now,
        "focus": focus_now,
    }
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def conversion_fact(change: ReferralConverted) -> Fact:
    return Fact(
        kind="referral_converted",
        event_id=change.referral_event_id,
        role="converted",
        customer_id=change.referrer_id,
        occurred_at=change.occurred_at,
        other_customer_id=change.referred_customer_id,
    )
