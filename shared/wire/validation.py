"""The gate between the shop's topics and the system (contract section 3): raw bytes in, facts or a Rejection out.

`validate()` turns the raw bytes of one message into the internal facts of `shared.wire.messages`, or into a
`Rejection` whose code is one of a closed set (`ErrorCode`). It is pure (no I/O, the clock is a parameter)
and never raises on any input.

Two paths give the same answers: a quick one (orjson and hand-written checks) for the plainly valid message,
and a thorough one (the exact Decimal decoder and the Pydantic models of `shared.wire.events`) for everything
else, which also names what is wrong. Property tests hold them side by side.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NoReturn

import orjson
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from shared.wire.event_facts import (
    complaint_facts,
    prospect_facts,
    purchase_facts,
    referral_facts,
    to_facts,
    touch_facts,
)
from shared.wire.events import (
    EARLIEST,
    EVENT_MODELS,
    MAX_STRING,
    ErrorCode,
    Rejection,
    json_kind,
    parse_amount,
    parse_other_money,
    parse_rfc3339,
)
from shared.wire.messages import CHANNELS, DIRECTIONS, Fact
from shared.wire.text import is_id, printable

_ZERO: Final = Decimal(0)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


# Decimal for ints too: exact, and free of the int-conversion digit limit. Built once: json.loads with
# arguments would build a decoder per message.
_DECODER: Final = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant)


_CODES: Final[dict[str, ErrorCode]] = {code.value: code for code in ErrorCode}


def _rejection_from(error: ValidationError, event_type: str, event_id: str | None) -> Rejection:
    """The first problem pydantic found (fields in declaration order), as one of our codes."""
    first = error.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "event"
    kind = first["type"]
    if kind == "missing":
        code, message = ErrorCode.MISSING_FIELD, f"{field} is required"
    else:
        code = _CODES.get(kind, ErrorCode.INVALID_FIELD)
        if code is ErrorCode.SELF_REFERRAL:
            message = first["msg"]
        else:
            message = f"{field}: {first['msg']}"
    return Rejection(code, message, event_type, event_id)


def validate(
    value: bytes | None,
    *,
    base_currency: str,
    max_bytes: int,
    now: datetime,
    max_future_skew_hours: int = 24,
) -> list[Fact] | Rejection:
    """The facts one raw shop message yields, or why it is rejected."""
    if value is None:
        return Rejection(ErrorCode.INVALID_JSON, "message has no value (null/tombstone)")
    if len(value) > max_bytes:
        return Rejection(ErrorCode.TOO_LARGE, f"message is {len(value)} bytes, the limit is {max_bytes}")
    quick = _quick_facts(value, base_currency=base_currency, latest=now + timedelta(hours=max_future_skew_hours))
    if quick is not None:
        return quick
    return _thorough(value, base_currency=base_currency, now=now, max_future_skew_hours=max_future_skew_hours)


def _quick_facts(value: bytes, *, base_currency: str, latest: datetime) -> list[Fact] | None:
    """The facts of a plainly valid message parsed by orjson; None leaves every decision to `_thorough`.

    orjson parses a JSON number with a fraction as a binary float, which `_plain_facts` never accepts as
    money, so an event whose money is a number with a fraction goes the exact (Decimal) way; strings and
    integers are exact either way. Anything orjson refuses (a byte order mark, NaN, a lone surrogate,
    huge numbers) also goes that way and is named there. A property test holds the two paths side by side.
    """
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(raw) is not dict:
        return None
    event_type = raw.get("type")
    if type(event_type) is not str or event_type not in EVENT_MODELS:
        return None
    return _plain_facts(raw, event_type, base_currency=base_currency, latest=latest)


def _thorough(value: bytes, *, base_currency: str, now: datetime, max_future_skew_hours: int) -> list[Fact] | Rejection:
    """`validate` with the exact decoder, for every message `_quick_facts` did not accept."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(ErrorCode.INVALID_ENCODING, f"not UTF-8: invalid byte at position {exc.start}")
    try:
        if text.startswith("\ufeff"):
            raise ValueError("a byte order mark is not allowed")
        raw = _DECODER.decode(text)
    except RecursionError:
        return Rejection(ErrorCode.INVALID_JSON, "not JSON: nested too deeply")
    except ValueError as exc:  # JSONDecodeError, or NaN/Infinity
        return Rejection(ErrorCode.INVALID_JSON, f"not JSON: {str(exc)[:200]}")
    if not isinstance(raw, dict):
        return Rejection(ErrorCode.NOT_AN_OBJECT, f"the message must be a JSON object, got {json_kind(raw)}")

    event_id = raw.get("event_id")
    readable_id = printable(event_id[:MAX_STRING]) if isinstance(event_id, str) else None
    event_type = raw.get("type")
    if event_type is None:
        return Rejection(ErrorCode.MISSING_FIELD, "type is required", "unknown", readable_id)
    if not isinstance(event_type, str):
        return Rejection(
            ErrorCode.INVALID_FIELD, f"type: must be a string, got {json_kind(event_type)}", "unknown", readable_id
        )
    model = EVENT_MODELS.get(event_type)
    if model is None:
        return Rejection(
            ErrorCode.UNKNOWN_TYPE,
            f"type must be one of {', '.join(EVENT_MODELS)}; got {event_type[:32]!r}",
            "unknown",
            readable_id,
        )

    latest = now + timedelta(hours=max_future_skew_hours)
    plain = _plain_facts(raw, event_type, base_currency=base_currency, latest=latest)
    if plain is not None:
        return plain
    context = {"base_currency": base_currency, "latest": latest, "skew_hours": max_future_skew_hours}
    try:
        event = model.model_validate(raw, context=context)
    except ValidationError as exc:
        return _rejection_from(exc, event_type, readable_id)
    except (InvalidOperation, ArithmeticError) as exc:  # defensive: a Decimal corner we did not foresee
        return Rejection(
            ErrorCode.INVALID_AMOUNT, f"not a usable number: {type(exc).__name__}", event_type, readable_id
        )
    return to_facts(event)


_SEVERITIES: Final = frozenset(("low", "medium", "high"))
_CHANNELS: Final = frozenset(CHANNELS)
_DIRECTIONS: Final = frozenset(DIRECTIONS)


def _plain_facts(raw: dict[str, Any], event_type: str, *, base_currency: str, latest: datetime) -> list[Fact] | None:
    """The facts of an event that is plainly valid, checked by hand; None leaves the decision to the models.

    The same rules as the models, for the common case only: it never rejects (the models find and name every
    problem) and it accepts nothing the models would refuse (a property test holds the two side by side).
    Pydantic's validation is the largest single cost of ingest when every message takes it.
    """
    event_id, customer_id, occurred = raw.get("event_id"), raw.get("customer_id"), raw.get("occurred_at")
    if type(event_id) is not str or type(customer_id) is not str or type(occurred) is not str:
        return None
    if not (is_id(event_id) and is_id(customer_id)):
        return None
    try:
        at = parse_rfc3339(occurred)
        if at > latest or at < EARLIEST:
            return None
        if event_type == "purchase":
            refund, order_id = raw.get("refund", False), raw.get("order_id")
            if (
                raw.get("currency") != base_currency
                or type(refund) is not bool
                or (order_id is not None and not is_id(order_id))
                or "amount" not in raw
            ):
                return None
            return purchase_facts(
                event_id,
                customer_id,
                at,
                amount=parse_amount(raw["amount"]),
                cost=parse_other_money(raw.get("cost", _ZERO)),
                discount=parse_other_money(raw.get("discount", _ZERO)),
                refund=refund,
                order_id=order_id,
            )
        if event_type == "referral":
            referred = raw.get("referred_customer_id")
            if type(referred) is not str or not is_id(referred) or referred == customer_id:
                return None
            return referral_facts(
                event_id,
                customer_id,
                at,
                referred=referred,
                reward_cost=parse_other_money(raw.get("reward_cost", _ZERO)),
            )
        if event_type == "complaint":
            severity, resolved = raw.get("severity", "medium"), raw.get("resolved", False)
            if type(severity) is not str or severity not in _SEVERITIES or type(resolved) is not bool:
                return None
            return complaint_facts(
                event_id,
                customer_id,
                at,
                severity=severity,
                resolved=resolved,
                handling_cost=parse_other_money(raw.get("handling_cost", _ZERO)),
            )
        # the new kinds last: the order of the checks above keeps purchases, the bulk, as quick as they were
        if event_type == "touch":
            channel, direction = raw.get("channel"), raw.get("direction")
            if (
                type(channel) is not str
                or channel not in _CHANNELS
                or type(direction) is not str
                or direction not in _DIRECTIONS
            ):
                return None
            return touch_facts(event_id, customer_id, at, channel=channel, direction=direction)
        if event_type == "prospect":
            source = raw.get("source")
            if source is not None and not is_id(source):
                return None
            return prospect_facts(event_id, customer_id, at, source=source)
    except (ValueError, ArithmeticError, PydanticCustomError):
        return None  # the models say what is wrong
    return None
