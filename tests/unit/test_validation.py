"""Shop event validation (contract sections 2 and 3), table-driven; no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from shared.wire.event_facts import to_facts
from shared.wire.events import (
    _RFC3339,
    EVENT_MODELS,
    ErrorCode,
    Rejection,
    _checked_money,
    _rfc3339_fields,
    parse_money,
    parse_rfc3339,
)
from shared.wire.messages import Fact
from shared.wire.validation import _plain_facts, _quick_facts, _thorough, validate

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
MAX_BYTES = 64 * 1024
DROP = object()  # marks a field to leave out


def _ts(delta: timedelta) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


def purchase(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "p-1",
        "type": "purchase",
        "customer_id": "c-1",
        "occurred_at": "2026-06-01T10:00:00Z",
        "amount": "10.50",
        "currency": "EUR",
    }
    return _merge(base, fields)


def referral(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "r-1",
        "type": "referral",
        "customer_id": "c-1",
        "referred_customer_id": "c-2",
        "occurred_at": "2026-06-01T10:00:00Z",
    }
    return _merge(base, fields)


def complaint(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "k-1",
        "type": "complaint",
        "customer_id": "c-1",
        "occurred_at": "2026-06-01T10:00:00Z",
    }
    return _merge(base, fields)


def prospect(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "l-1",
        "type": "prospect",
        "customer_id": "c-1",
        "occurred_at": "2026-06-01T10:00:00Z",
    }
    return _merge(base, fields)


def touch(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "t-1",
        "type": "touch",
        "customer_id": "c-1",
        "occurred_at": "2026-06-01T10:00:00Z",
        "channel": "email",
        "direction": "outbound",
    }
    return _merge(base, fields)


EVENTS = {"purchase": purchase, "referral": referral, "complaint": complaint, "prospect": prospect, "touch": touch}


def _merge(base: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    out = {**base, **fields}
    return {k: v for k, v in out.items() if v is not DROP}


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def check(value: bytes | None) -> list[Fact] | Rejection:
    return validate(value, base_currency="EUR", max_bytes=MAX_BYTES, now=NOW)


def sized(total: int) -> bytes:
    """A valid purchase padded with an unknown field to exactly `total` bytes."""
    empty = raw(purchase(pad=""))
    return raw(purchase(pad="x" * (total - len(empty))))


def _replace_value(obj: dict[str, Any], field: str, literal: str) -> bytes:
    """`obj` as JSON with `field`'s value replaced by a literal that json.dumps would not write."""
    text = json.dumps({**obj, field: "__X__"})
    return text.replace('"__X__"', literal).encode()


# ------------------------------------------------------------------------------------------------------
# rejections: every rule of contract sections 2 and 3

REJECTED: list[Any] = [
    # size
    pytest.param(sized(MAX_BYTES + 1), ErrorCode.TOO_LARGE, id="size-64KiB+1"),
    pytest.param(b" " * (MAX_BYTES * 4), ErrorCode.TOO_LARGE, id="size-256KiB-of-spaces"),
    # no value at all
    pytest.param(None, ErrorCode.INVALID_JSON, id="value-none-tombstone"),
    # encoding
    pytest.param(b"\xff\xfe\x00", ErrorCode.INVALID_ENCODING, id="encoding-garbage-bytes"),
    pytest.param(
        json.dumps(purchase(customer_id="kundé"), ensure_ascii=False).encode("latin-1"),
        ErrorCode.INVALID_ENCODING,
        id="encoding-latin-1",
    ),
    pytest.param(json.dumps(purchase()).encode("utf-16"), ErrorCode.INVALID_ENCODING, id="encoding-utf-16"),
    pytest.param(b'{"event_id": "\xed\xa0\x80"}', ErrorCode.INVALID_ENCODING, id="encoding-utf8-surrogate"),
    # not JSON
    pytest.param(b"", ErrorCode.INVALID_JSON, id="json-empty"),
    pytest.param(b"not json", ErrorCode.INVALID_JSON, id="json-text"),
    pytest.param(b'{"event_id": "p-1",', ErrorCode.INVALID_JSON, id="json-truncated"),
    pytest.param(raw(purchase()) + b"}", ErrorCode.INVALID_JSON, id="json-trailing-garbage"),
    pytest.param(b"{'event_id': 'p-1'}", ErrorCode.INVALID_JSON, id="json-single-quotes"),
    pytest.param(_replace_value(purchase(), "amount", "NaN"), ErrorCode.INVALID_JSON, id="json-NaN-literal"),
    pytest.param(_replace_value(purchase(), "amount", "Infinity"), ErrorCode.INVALID_JSON, id="json-Infinity-literal"),
    pytest.param(
        _replace_value(purchase(), "amount", "-Infinity"), ErrorCode.INVALID_JSON, id="json-minus-Infinity-literal"
    ),
    pytest.param(_replace_value(purchase(), "extra", "NaN"), ErrorCode.INVALID_JSON, id="json-NaN-in-unknown-field"),
    pytest.param("\ufeff".encode() + raw(purchase()), ErrorCode.INVALID_JSON, id="json-byte-order-mark"),
    pytest.param(b"[" * 20000 + b"]" * 20000, ErrorCode.INVALID_JSON, id="json-nested-too-deeply"),
    # not an object
    pytest.param(b"[]", ErrorCode.NOT_AN_OBJECT, id="object-array"),
    pytest.param(raw([purchase()]), ErrorCode.NOT_AN_OBJECT, id="object-array-of-event"),
    pytest.param(b'"purchase"', ErrorCode.NOT_AN_OBJECT, id="object-string"),
    pytest.param(b"42", ErrorCode.NOT_AN_OBJECT, id="object-number"),
    pytest.param(b"null", ErrorCode.NOT_AN_OBJECT, id="object-null"),
    pytest.param(b"true", ErrorCode.NOT_AN_OBJECT, id="object-bool"),
    # missing fields
    pytest.param(raw(purchase(type=DROP)), ErrorCode.MISSING_FIELD, id="missing-type"),
    pytest.param(raw(purchase(event_id=DROP)), ErrorCode.MISSING_FIELD, id="missing-event_id"),
    pytest.param(raw(purchase(customer_id=DROP)), ErrorCode.MISSING_FIELD, id="missing-customer_id"),
    pytest.param(raw(purchase(occurred_at=DROP)), ErrorCode.MISSING_FIELD, id="missing-occurred_at"),
    pytest.param(raw(purchase(amount=DROP)), ErrorCode.MISSING_FIELD, id="missing-amount"),
    pytest.param(raw(purchase(currency=DROP)), ErrorCode.MISSING_FIELD, id="missing-currency"),
    pytest.param(raw(referral(referred_customer_id=DROP)), ErrorCode.MISSING_FIELD, id="missing-referred_customer_id"),
    pytest.param(raw(complaint(event_id=DROP)), ErrorCode.MISSING_FIELD, id="missing-complaint-event_id"),
    pytest.param(b"{}", ErrorCode.MISSING_FIELD, id="missing-everything"),
    # invalid (non-money) fields
    pytest.param(raw(purchase(event_id="")), ErrorCode.INVALID_FIELD, id="field-event_id-empty"),
    pytest.param(raw(purchase(event_id="e" * 129)), ErrorCode.INVALID_FIELD, id="field-event_id-129-chars"),
    pytest.param(raw(purchase(event_id=42)), ErrorCode.INVALID_FIELD, id="field-event_id-number"),
    pytest.param(raw(purchase(event_id=None)), ErrorCode.INVALID_FIELD, id="field-event_id-null"),
    pytest.param(raw(purchase(customer_id="")), ErrorCode.INVALID_FIELD, id="field-customer_id-empty"),
    pytest.param(raw(purchase(customer_id="c" * 129)), ErrorCode.INVALID_FIELD, id="field-customer_id-129-chars"),
    pytest.param(raw(purchase(customer_id=7)), ErrorCode.INVALID_FIELD, id="field-customer_id-number"),
    pytest.param(raw(purchase(customer_id={"id": "c-1"})), ErrorCode.INVALID_FIELD, id="field-customer_id-object"),
    pytest.param(raw(purchase(type=1)), ErrorCode.INVALID_FIELD, id="field-type-number"),
    pytest.param(raw(purchase(refund="true")), ErrorCode.INVALID_FIELD, id="field-refund-string"),
    pytest.param(raw(purchase(refund=1)), ErrorCode.INVALID_FIELD, id="field-refund-number"),
    pytest.param(raw(purchase(refund=None)), ErrorCode.INVALID_FIELD, id="field-refund-null"),
    pytest.param(raw(purchase(order_id=17)), ErrorCode.INVALID_FIELD, id="field-order_id-number"),
    pytest.param(raw(purchase(order_id="")), ErrorCode.INVALID_FIELD, id="field-order_id-empty"),
    pytest.param(raw(purchase(order_id="o" * 129)), ErrorCode.INVALID_FIELD, id="field-order_id-129-chars"),
    pytest.param(raw(purchase(currency=978)), ErrorCode.INVALID_FIELD, id="field-currency-number"),
    pytest.param(
        raw(referral(referred_customer_id="")), ErrorCode.INVALID_FIELD, id="field-referred_customer_id-empty"
    ),
    pytest.param(
        raw(referral(referred_customer_id="r" * 129)),
        ErrorCode.INVALID_FIELD,
        id="field-referred_customer_id-129-chars",
    ),
    pytest.param(
        raw(referral(referred_customer_id=2)), ErrorCode.INVALID_FIELD, id="field-referred_customer_id-number"
    ),
    pytest.param(raw(complaint(severity="critical")), ErrorCode.INVALID_FIELD, id="field-severity-unknown"),
    pytest.param(raw(touch(channel="fax")), ErrorCode.INVALID_FIELD, id="touch-channel-unknown"),
    pytest.param(raw(touch(channel="Email")), ErrorCode.INVALID_FIELD, id="touch-channel-upper-case"),
    pytest.param(raw(touch(channel=DROP)), ErrorCode.MISSING_FIELD, id="touch-channel-missing"),
    pytest.param(raw(touch(direction="sideways")), ErrorCode.INVALID_FIELD, id="touch-direction-unknown"),
    pytest.param(raw(touch(direction=DROP)), ErrorCode.MISSING_FIELD, id="touch-direction-missing"),
    pytest.param(raw(touch(direction=1)), ErrorCode.INVALID_FIELD, id="touch-direction-number"),
    pytest.param(raw(touch(customer_id="x" * 129)), ErrorCode.INVALID_FIELD, id="touch-customer-too-long"),
    pytest.param(raw(touch(occurred_at="2026-06-01T10:00:00")), ErrorCode.INVALID_TIMESTAMP, id="touch-ts-naive"),
    pytest.param(raw(prospect(source="")), ErrorCode.INVALID_FIELD, id="prospect-source-empty"),
    pytest.param(raw(prospect(source="x" * 129)), ErrorCode.INVALID_FIELD, id="prospect-source-too-long"),
    pytest.param(raw(prospect(source=7)), ErrorCode.INVALID_FIELD, id="prospect-source-number"),
    pytest.param(raw(prospect(source="a\nb")), ErrorCode.INVALID_CHARACTERS, id="prospect-source-newline"),
    pytest.param(raw(prospect(event_id=DROP)), ErrorCode.MISSING_FIELD, id="prospect-event_id-missing"),
    pytest.param(raw(prospect(customer_id="")), ErrorCode.INVALID_FIELD, id="prospect-customer-empty"),
    pytest.param(
        raw(prospect(occurred_at="2026-06-17T12:00:00Z")), ErrorCode.FUTURE_TIMESTAMP, id="prospect-ts-future"
    ),
    pytest.param(raw(complaint(severity="HIGH")), ErrorCode.INVALID_FIELD, id="field-severity-upper-case"),
    pytest.param(raw(complaint(severity=3)), ErrorCode.INVALID_FIELD, id="field-severity-number"),
    pytest.param(raw(complaint(resolved="yes")), ErrorCode.INVALID_FIELD, id="field-resolved-string"),
    pytest.param(raw(complaint(resolved=0)), ErrorCode.INVALID_FIELD, id="field-resolved-number"),
    # unknown type
    pytest.param(raw(purchase(type="order")), ErrorCode.UNKNOWN_TYPE, id="type-order"),
    pytest.param(raw(purchase(type="Purchase")), ErrorCode.UNKNOWN_TYPE, id="type-wrong-case"),
    pytest.param(raw(purchase(type="")), ErrorCode.UNKNOWN_TYPE, id="type-empty"),
    pytest.param(raw(purchase(type="stage_changed")), ErrorCode.UNKNOWN_TYPE, id="type-stage_changed"),
    # amounts and other money
    pytest.param(raw(purchase(amount=-1)), ErrorCode.INVALID_AMOUNT, id="amount-negative-int"),
    pytest.param(
        b'{"event_id":"p","type":"purchase","customer_id":"c","occurred_at":"2026-06-01T10:00:00Z",'
        b'"amount":-0.01,"currency":"EUR"}',
        ErrorCode.INVALID_AMOUNT,
        id="amount-negative-number",
    ),
    pytest.param(raw(purchase(amount="-5.00")), ErrorCode.INVALID_AMOUNT, id="amount-negative-string"),
    pytest.param(raw(purchase(amount="abc")), ErrorCode.INVALID_AMOUNT, id="amount-non-numeric-string"),
    pytest.param(raw(purchase(amount="")), ErrorCode.INVALID_AMOUNT, id="amount-empty-string"),
    pytest.param(raw(purchase(amount="1,50")), ErrorCode.INVALID_AMOUNT, id="amount-decimal-comma"),
    pytest.param(raw(purchase(amount=" 1.50")), ErrorCode.INVALID_AMOUNT, id="amount-whitespace"),
    pytest.param(raw(purchase(amount="1_000")), ErrorCode.INVALID_AMOUNT, id="amount-underscores"),
    pytest.param(raw(purchase(amount="€10")), ErrorCode.INVALID_AMOUNT, id="amount-currency-sign"),
    pytest.param(raw(purchase(amount="NaN")), ErrorCode.INVALID_AMOUNT, id="amount-NaN-string"),
    pytest.param(raw(purchase(amount="Infinity")), ErrorCode.INVALID_AMOUNT, id="amount-Infinity-string"),
    pytest.param(raw(purchase(amount="sNaN")), ErrorCode.INVALID_AMOUNT, id="amount-sNaN-string"),
    pytest.param(raw(purchase(amount=True)), ErrorCode.INVALID_AMOUNT, id="amount-bool-true"),
    pytest.param(raw(purchase(amount=False)), ErrorCode.INVALID_AMOUNT, id="amount-bool-false"),
    pytest.param(raw(purchase(amount=None)), ErrorCode.INVALID_AMOUNT, id="amount-null"),
    pytest.param(raw(purchase(amount=[10])), ErrorCode.INVALID_AMOUNT, id="amount-array"),
    pytest.param(raw(purchase(amount={"value": 10})), ErrorCode.INVALID_AMOUNT, id="amount-object"),
    pytest.param(
        _replace_value(purchase(), "amount", "1.005"), ErrorCode.INVALID_AMOUNT, id="amount-3-decimal-places-number"
    ),
    pytest.param(raw(purchase(amount="0.001")), ErrorCode.INVALID_AMOUNT, id="amount-3-decimal-places-string"),
    pytest.param(raw(purchase(amount="1e-3")), ErrorCode.INVALID_AMOUNT, id="amount-exponent-3-places"),
    pytest.param(_replace_value(purchase(), "amount", "1e15"), ErrorCode.INVALID_AMOUNT, id="amount-1e15"),
    pytest.param(raw(purchase(amount="1000000000000000")), ErrorCode.INVALID_AMOUNT, id="amount-1e15-string"),
    pytest.param(
        _replace_value(purchase(), "amount", "1e400"), ErrorCode.INVALID_AMOUNT, id="amount-1e400-beyond-float"
    ),
    pytest.param(
        _replace_value(purchase(), "amount", "9" * 5000), ErrorCode.INVALID_AMOUNT, id="amount-5000-digit-integer"
    ),
    pytest.param(raw(purchase(cost=-1)), ErrorCode.INVALID_AMOUNT, id="cost-negative"),
    pytest.param(raw(purchase(cost="free")), ErrorCode.INVALID_AMOUNT, id="cost-non-numeric"),
    pytest.param(raw(purchase(cost=True)), ErrorCode.INVALID_AMOUNT, id="cost-bool"),
    pytest.param(raw(purchase(cost="0." + "1" * 13)), ErrorCode.INVALID_AMOUNT, id="cost-13-decimal-places"),
    pytest.param(raw(purchase(discount="-0.5")), ErrorCode.INVALID_AMOUNT, id="discount-negative"),
    pytest.param(_replace_value(purchase(), "discount", "1e16"), ErrorCode.INVALID_AMOUNT, id="discount-absurd"),
    pytest.param(raw(referral(reward_cost=-5)), ErrorCode.INVALID_AMOUNT, id="reward_cost-negative"),
    pytest.param(raw(referral(reward_cost="NaN")), ErrorCode.INVALID_AMOUNT, id="reward_cost-NaN-string"),
    pytest.param(raw(complaint(handling_cost=-0.01)), ErrorCode.INVALID_AMOUNT, id="handling_cost-negative"),
    pytest.param(raw(complaint(handling_cost=False)), ErrorCode.INVALID_AMOUNT, id="handling_cost-bool"),
    # currency
    pytest.param(raw(purchase(currency="USD")), ErrorCode.WRONG_CURRENCY, id="currency-USD"),
    pytest.param(raw(purchase(currency="eur")), ErrorCode.WRONG_CURRENCY, id="currency-lower-case"),
    pytest.param(raw(purchase(currency="")), ErrorCode.WRONG_CURRENCY, id="currency-empty"),
    pytest.param(raw(purchase(currency="EURO")), ErrorCode.WRONG_CURRENCY, id="currency-4-letters"),
    pytest.param(raw(purchase(currency="€")), ErrorCode.WRONG_CURRENCY, id="currency-symbol"),
    # self-referral
    pytest.param(raw(referral(referred_customer_id="c-1")), ErrorCode.SELF_REFERRAL, id="self-referral"),
    # timestamps
    pytest.param(raw(purchase(occurred_at="2026-06-01T10:00:00")), ErrorCode.INVALID_TIMESTAMP, id="ts-no-offset"),
    pytest.param(
        raw(purchase(occurred_at="2026-06-01T10:00:00.123")), ErrorCode.INVALID_TIMESTAMP, id="ts-no-offset-fraction"
    ),
    pytest.param(raw(purchase(occurred_at="2026-06-01")), ErrorCode.INVALID_TIMESTAMP, id="ts-date-only"),
    pytest.param(raw(purchase(occurred_at="2026-06-01T10:00Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-no-seconds"),
    pytest.param(
        raw(purchase(occurred_at="2026-06-01T10:00:00+0200")), ErrorCode.INVALID_TIMESTAMP, id="ts-offset-without-colon"
    ),
    pytest.param(
        raw(purchase(occurred_at="2026-06-01T10:00:00+02")), ErrorCode.INVALID_TIMESTAMP, id="ts-offset-hours-only"
    ),
    pytest.param(
        raw(purchase(occurred_at="2026-06-01T10:00:00+24:00")), ErrorCode.INVALID_TIMESTAMP, id="ts-offset-out-of-range"
    ),
    pytest.param(raw(purchase(occurred_at="20260601T100000Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-basic-iso-format"),
    pytest.param(raw(purchase(occurred_at="2026-13-01T10:00:00Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-month-13"),
    pytest.param(raw(purchase(occurred_at="2026-02-30T10:00:00Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-february-30"),
    pytest.param(raw(purchase(occurred_at="2026-06-01T25:00:00Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-hour-25"),
    pytest.param(
        raw(purchase(occurred_at="2026-06-01T10:00:00.Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-empty-fraction"
    ),
    pytest.param(
        raw(purchase(occurred_at=" 2026-06-01T10:00:00Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-leading-space"
    ),
    pytest.param(
        raw(purchase(occurred_at="2026-06-01T10:00:00Z\n")), ErrorCode.INVALID_TIMESTAMP, id="ts-trailing-newline"
    ),
    pytest.param(
        raw(purchase(occurred_at="\uff12\uff10\uff12\uff16-06-01T10:00:00Z")),
        ErrorCode.INVALID_TIMESTAMP,
        id="ts-non-ascii-digits",
    ),
    pytest.param(raw(purchase(occurred_at="yesterday")), ErrorCode.INVALID_TIMESTAMP, id="ts-words"),
    pytest.param(raw(purchase(occurred_at="")), ErrorCode.INVALID_TIMESTAMP, id="ts-empty"),
    pytest.param(raw(purchase(occurred_at=1780000000)), ErrorCode.INVALID_TIMESTAMP, id="ts-epoch-number"),
    pytest.param(raw(purchase(occurred_at=None)), ErrorCode.INVALID_TIMESTAMP, id="ts-null"),
    pytest.param(
        raw(purchase(occurred_at="0001-01-01T00:00:00+01:00")),
        ErrorCode.INVALID_TIMESTAMP,
        id="ts-before-year-1-in-utc",
    ),
    pytest.param(raw(purchase(occurred_at=_ts(timedelta(hours=25)))), ErrorCode.FUTURE_TIMESTAMP, id="ts-25h-future"),
    pytest.param(
        raw(purchase(occurred_at=_ts(timedelta(hours=24, seconds=1)))),
        ErrorCode.FUTURE_TIMESTAMP,
        id="ts-24h-and-1s-future",
    ),
    pytest.param(raw(referral(occurred_at="2099-01-01T00:00:00Z")), ErrorCode.FUTURE_TIMESTAMP, id="ts-referral-2099"),
    pytest.param(
        raw(complaint(occurred_at="2026-06-17T12:00:00+02:00")),
        ErrorCode.FUTURE_TIMESTAMP,
        id="ts-complaint-future-with-offset",
    ),
    # the floor: nothing the shop records happened before 1970
    pytest.param(raw(purchase(occurred_at="0001-01-01T00:00:00Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-year-1"),
    pytest.param(raw(purchase(occurred_at="1969-12-31T23:59:59Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-1969"),
    pytest.param(
        raw(purchase(occurred_at="1970-01-01T00:30:00+01:00")), ErrorCode.INVALID_TIMESTAMP, id="ts-1969-in-utc"
    ),
    pytest.param(
        raw(referral(occurred_at="1900-01-01T00:00:00.5Z")), ErrorCode.INVALID_TIMESTAMP, id="ts-referral-1900"
    ),
    # characters an id cannot carry: written as JSON escapes, so the bytes are valid UTF-8 JSON
    *[
        pytest.param(raw(purchase(**{name: f"x{char}y"})), ErrorCode.INVALID_CHARACTERS, id=f"{name}-{label}")
        for name in ("customer_id", "event_id", "order_id")
        for char, label in (
            ("\x00", "nul"),
            ("\ud800", "lone-high-surrogate"),
            ("\udfff", "lone-low-surrogate"),
            ("\n", "newline"),
            ("\t", "tab"),
            ("\x1b", "escape"),
            ("\x7f", "del"),
            ("\x85", "c1-next-line"),
        )
    ],
    pytest.param(raw(referral(referred_customer_id="c\x00")), ErrorCode.INVALID_CHARACTERS, id="referred-nul"),
    pytest.param(
        b'{"event_id":"e","type":"purchase","customer_id":"x\\ud800y","occurred_at":'
        b'"2026-06-01T10:00:00Z","amount":"1","currency":"EUR"}',
        ErrorCode.INVALID_CHARACTERS,
        id="lone-surrogate-escape-as-sent",
    ),
    # money bounded in digits as well as value
    pytest.param(raw(purchase(amount="1." + "0" * 39)), ErrorCode.INVALID_AMOUNT, id="amount-41-characters"),
    pytest.param(
        _replace_value(purchase(), "amount", "1." + "0" * 40), ErrorCode.INVALID_AMOUNT, id="amount-41-digit-number"
    ),
    pytest.param(
        _replace_value(purchase(), "cost", "0." + "0" * 60000 + "1"), ErrorCode.INVALID_AMOUNT, id="cost-60000-digits"
    ),
]


@pytest.mark.parametrize(("value", "code"), REJECTED)
def test_bad_input_is_rejected_with_its_code(value: bytes | None, code: ErrorCode) -> None:
    result = check(value)
    assert isinstance(result, Rejection), result
    assert result.code is code, result.message
    assert result.message  # precise and non-empty: it becomes the error.message header
    result.message.encode("utf-8")


def test_rejection_carries_what_could_be_read_for_metrics_and_logs() -> None:
    result = check(raw(purchase(event_id="p-77", amount=-3)))
    assert result == Rejection(ErrorCode.INVALID_AMOUNT, "amount: must be >= 0", "purchase", "p-77")
    unknown = check(raw(purchase(type="coupon", event_id="x-1")))
    assert isinstance(unknown, Rejection)
    assert (unknown.event_type, unknown.event_id) == ("unknown", "x-1")


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        pytest.param(raw(purchase(amount=DROP)), "amount", id="missing-names-field"),
        pytest.param(raw(purchase(currency="USD")), "EUR", id="currency-names-base"),
        pytest.param(raw(purchase(amount="1.005")), "2 decimal places", id="places-named"),
        pytest.param(raw(purchase(occurred_at=_ts(timedelta(hours=25)))), "24 hours", id="future-names-limit"),
        pytest.param(sized(MAX_BYTES + 1), str(MAX_BYTES), id="size-names-limit"),
        pytest.param(raw(purchase(type="coupon")), "coupon", id="type-names-value"),
    ],
)
def test_messages_are_precise(value: bytes, needle: str) -> None:
    result = check(value)
    assert isinstance(result, Rejection)
    assert needle in result.message


def test_error_codes_are_the_closed_set() -> None:
    assert {c.value for c in ErrorCode} == {
        "too_large",
        "invalid_encoding",
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_field",
        "unknown_type",
        "invalid_amount",
        "wrong_currency",
        "self_referral",
        "invalid_timestamp",
        "future_timestamp",
        "invalid_characters",
        "processing_failed",
        "malformed_internal",
    }


@pytest.mark.parametrize("text", ["é", "Ωmega", "客户-42", "🙂", "a b", "\u200f", "\ufeff", "\U0010fffd"])
def test_ids_keep_every_printable_character(text: str) -> None:
    facts = check(raw(purchase(customer_id=text, event_id=text)))
    assert isinstance(facts, list), facts
    assert facts[0].customer_id == text
    facts[0].customer_id.encode("utf-8")  # always encodable once accepted


def test_rejection_ids_are_printable_for_logs() -> None:
    result = check(raw(purchase(event_id="e\x00\n1", customer_id="x\x00")))
    assert isinstance(result, Rejection)
    assert result.event_id == "e\\x00\\n1"


@pytest.mark.parametrize(("literal", "expected"), [("1.5000", "1.50"), ("2.000000", "2.00"), ("0.10", "0.10")])
def test_amounts_lose_only_the_zeros_past_two_places(literal: str, expected: str) -> None:
    facts = check(raw(purchase(amount=literal)))
    assert isinstance(facts, list), facts
    assert str(facts[0].amount) == expected


def test_the_floor_itself_is_accepted() -> None:
    facts = check(raw(purchase(occurred_at="1970-01-01T00:00:00Z")))
    assert isinstance(facts, list), facts


# ------------------------------------------------------------------------------------------------------
# accepted events and the facts they yield


def facts_of(value: bytes) -> list[Fact]:
    result = check(value)
    assert not isinstance(result, Rejection), result
    return result


def test_purchase_with_defaults() -> None:
    [fact] = facts_of(raw(purchase()))
    assert fact == Fact(
        kind="order_placed",
        event_id="p-1",
        role="primary",
        customer_id="c-1",
        occurred_at=datetime(2026, 6, 1, 10, tzinfo=UTC),
        amount=Decimal("10.50"),
    )
    assert (fact.cost, fact.discount, fact.order_id) == (Decimal(0), Decimal(0), None)
    assert fact.source == {} and fact.ingested_at is None  # the pipeline adds these


def test_purchase_with_every_field() -> None:
    [fact] = facts_of(raw(purchase(amount=99.99, cost="40.125", discount=10, order_id="o-9")))
    assert (fact.amount, fact.cost, fact.discount, fact.order_id) == (
        Decimal("99.99"),
        Decimal("40.125"),
        Decimal(10),
        "o-9",
    )


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        pytest.param('"10.50"', Decimal("10.50"), id="string"),
        pytest.param('"10"', Decimal(10), id="string-int"),
        pytest.param("10.5", Decimal("10.5"), id="number"),
        pytest.param("10", Decimal(10), id="int"),
        pytest.param("0", Decimal(0), id="zero"),
        pytest.param("-0", Decimal(0), id="minus-zero"),
        pytest.param("0.1", Decimal("0.1"), id="exact-not-binary-float"),
        pytest.param("1.500", Decimal("1.5"), id="trailing-zeros-beyond-2-places"),
        pytest.param("1e3", Decimal(1000), id="exponent"),
        pytest.param('"2.5E+2"', Decimal(250), id="string-exponent"),
        pytest.param("999999999999999.99", Decimal("999999999999999.99"), id="just-below-1e15"),
    ],
)
def test_amount_forms(literal: str, expected: Decimal) -> None:
    [fact] = facts_of(_replace_value(purchase(), "amount", literal))
    assert fact.amount == expected
    assert "E" not in str(fact.amount)  # plain notation on the wire


def test_cost_keeps_more_places_exactly() -> None:
    [fact] = facts_of(raw(purchase(cost="0.123456789012", discount="0.001")))
    assert str(fact.cost) == "0.123456789012"
    assert str(fact.discount) == "0.001"


def test_refund() -> None:
    [fact] = facts_of(raw(purchase(refund=True, amount="5.00", cost=1)))
    assert (fact.kind, fact.role, fact.amount, fact.cost) == ("order_refunded", "primary", Decimal("5.00"), Decimal(1))


def test_explicit_refund_false_is_an_order() -> None:
    [fact] = facts_of(raw(purchase(refund=False)))
    assert fact.kind == "order_placed"


def test_referral_yields_two_facts() -> None:
    made, received = facts_of(raw(referral(reward_cost="2.50")))
    when = datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert made == Fact(
        kind="referral_made",
        event_id="r-1",
        role="primary",
        customer_id="c-1",
        occurred_at=when,
        other_customer_id="c-2",
        cost=Decimal("2.50"),
    )
    assert received == Fact(
        kind="referral_received",
        event_id="r-1",
        role="referred",
        customer_id="c-2",
        occurred_at=when,
        other_customer_id="c-1",
    )
    assert made.dedupe_key != received.dedupe_key


def test_referral_default_reward_cost() -> None:
    made, _ = facts_of(raw(referral()))
    assert made.cost == Decimal(0)


def test_complaint_with_defaults() -> None:
    [fact] = facts_of(raw(complaint()))
    assert (fact.kind, fact.role, fact.severity, fact.resolved, fact.cost) == (
        "complaint_filed",
        "primary",
        "medium",
        False,
        Decimal(0),
    )


@pytest.mark.parametrize("severity", ["low", "medium", "high"])
def test_complaint_fields(severity: str) -> None:
    [fact] = facts_of(raw(complaint(severity=severity, resolved=True, handling_cost="12.345")))
    assert (fact.severity, fact.resolved, fact.cost) == (severity, True, Decimal("12.345"))


def test_unknown_fields_are_ignored() -> None:
    extra = {"channel": "web", "nested": {"a": [1, 2, {"b": None}]}, "amount_eur": "x", "version": 7}
    assert facts_of(raw(purchase(**extra))) == facts_of(raw(purchase()))


def test_null_order_id_is_absent() -> None:
    [fact] = facts_of(raw(purchase(order_id=None)))
    assert fact.order_id is None


@pytest.mark.parametrize(
    ("stamp", "utc"),
    [
        pytest.param("2026-06-01T10:00:00+02:00", datetime(2026, 6, 1, 8, tzinfo=UTC), id="plus-02:00"),
        pytest.param("2026-06-01T10:00:00-05:30", datetime(2026, 6, 1, 15, 30, tzinfo=UTC), id="minus-05:30"),
        pytest.param("2026-06-01T00:30:00+01:00", datetime(2026, 5, 31, 23, 30, tzinfo=UTC), id="crosses-month"),
        pytest.param("2026-06-01T10:00:00Z", datetime(2026, 6, 1, 10, tzinfo=UTC), id="Z"),
        pytest.param("2026-06-01t10:00:00z", datetime(2026, 6, 1, 10, tzinfo=UTC), id="lower-case-t-z"),
        pytest.param("2026-06-01T10:00:00-00:00", datetime(2026, 6, 1, 10, tzinfo=UTC), id="minus-zero-offset"),
        pytest.param("2026-06-01T10:00:00.5Z", datetime(2026, 6, 1, 10, 0, 0, 500000, tzinfo=UTC), id="fraction"),
        pytest.param(
            "2026-06-01T10:00:00.123456789+00:00",
            datetime(2026, 6, 1, 10, 0, 0, 123456, tzinfo=UTC),
            id="nanoseconds-truncated",
        ),
    ],
)
def test_timestamps_become_utc(stamp: str, utc: datetime) -> None:
    [fact] = facts_of(raw(purchase(occurred_at=stamp)))
    assert fact.occurred_at == utc
    assert fact.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "ahead",
    [
        pytest.param(timedelta(hours=23), id="23h"),
        pytest.param(timedelta(hours=24), id="exactly-24h"),
        pytest.param(timedelta(days=-3650), id="ten-years-ago"),
    ],
)
def test_timestamps_up_to_24h_ahead_are_accepted(ahead: timedelta) -> None:
    facts_of(raw(purchase(occurred_at=_ts(ahead))))


def test_future_skew_is_a_parameter() -> None:
    value = raw(purchase(occurred_at=_ts(timedelta(hours=2))))
    result = validate(value, base_currency="EUR", max_bytes=MAX_BYTES, now=NOW, max_future_skew_hours=1)
    assert isinstance(result, Rejection) and result.code is ErrorCode.FUTURE_TIMESTAMP


def test_exactly_64_KiB_is_accepted() -> None:
    value = sized(MAX_BYTES)
    assert len(value) == MAX_BYTES
    facts_of(value)
    assert len(sized(MAX_BYTES + 1)) == MAX_BYTES + 1


def test_base_currency_is_a_parameter() -> None:
    result = validate(raw(purchase(currency="SEK")), base_currency="SEK", max_bytes=MAX_BYTES, now=NOW)
    assert not isinstance(result, Rejection)
    assert isinstance(check(raw(purchase(currency="SEK"))), Rejection)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("c", id="1-char"),
        pytest.param("c" * 128, id="128-chars"),
        pytest.param("ü" * 128, id="128-multibyte-chars"),
        pytest.param("kunde/42 ünïcödé ✓", id="unicode"),
    ],
)
def test_string_lengths_count_characters(text: str) -> None:
    [fact] = facts_of(raw(purchase(customer_id=text, event_id=text)))
    assert fact.customer_id == text


def test_prospect_and_touch_yield_their_facts() -> None:
    [listed] = facts_of(raw(prospect(source="fair-2026")))
    assert (listed.kind, listed.role, listed.customer_id, listed.lead_source) == (
        "prospect_listed",
        "primary",
        "c-1",
        "fair-2026",
    )
    [plain] = facts_of(raw(prospect()))
    assert plain.lead_source is None
    [touched] = facts_of(raw(touch(channel="call", direction="inbound")))
    assert (touched.kind, touched.channel, touched.direction) == ("touch_made", "call", "inbound")


@pytest.mark.parametrize("kind", ["purchase", "referral", "complaint"])
def test_type_decides_the_kind(kind: str) -> None:
    # there is no topic parameter at all: the same bytes mean the same thing on any shop topic
    event = {"purchase": purchase, "referral": referral, "complaint": complaint}[kind]()
    facts = facts_of(raw(event))
    assert {f.kind for f in facts} <= {"order_placed", "referral_made", "referral_received", "complaint_filed"}


def test_parse_rfc3339_rejects_naive() -> None:
    with pytest.raises(ValueError):
        parse_rfc3339("2026-06-01T10:00:00")


_stamps = st.builds(
    lambda d, t, frac, off: f"{d}{t}{frac}{off}",
    st.dates(min_value=datetime(1, 1, 1).date()).map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}"),
    st.tuples(st.sampled_from("Tt"), st.integers(0, 24), st.integers(0, 60), st.integers(0, 60)).map(
        lambda x: f"{x[0]}{x[1]:02d}:{x[2]:02d}:{x[3]:02d}"
    ),
    st.just("") | st.from_regex(r"\.[0-9]{1,9}", fullmatch=True),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+23:59", "+24:00", "-12:60"]),
)


@given(_stamps)
def test_parse_rfc3339_agrees_with_the_field_by_field_parse(stamp: str) -> None:
    """The fast path (datetime.fromisoformat) never accepts or yields anything the full parse would not."""
    match = _RFC3339.fullmatch(stamp)
    assert match is not None
    try:
        expected: datetime | str = _rfc3339_fields(match)
    except ValueError:
        expected = "rejected"
    try:
        got: datetime | str = parse_rfc3339(stamp)
    except ValueError:
        got = "rejected"
    assert got == expected
    if isinstance(got, datetime):
        assert got.tzinfo == UTC


# ------------------------------------------------------------------------------------------------------
# schema and robustness


@pytest.mark.parametrize("kind", sorted(EVENT_MODELS))
def test_models_publish_a_described_schema(kind: str) -> None:
    schema = EVENT_MODELS[kind].model_json_schema()
    assert schema["properties"]["type"]["const"] == kind
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{kind}.{name} has no description"
    assert {"event_id", "customer_id", "occurred_at", "type"} <= set(schema["required"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes(value: bytes) -> None:
    assert isinstance(check(value), list | Rejection)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "event_id": _json_values | st.text(max_size=5),
            "type": st.sampled_from(["purchase", "referral", "complaint"]),
            "customer_id": _json_values | st.text(max_size=5),
            "referred_customer_id": _json_values,
            "occurred_at": _json_values | st.just("2026-06-01T10:00:00Z"),
            "amount": _json_values,
            "currency": _json_values | st.just("EUR"),
            "refund": _json_values,
            "severity": _json_values,
            "cost": _json_values,
            "resolved": _json_values,
            "handling_cost": _json_values,
        },
    )
)
def test_never_raises_on_arbitrary_events(event: dict[str, Any]) -> None:
    result = check(raw(event))
    if isinstance(result, Rejection):
        assert result.code in ErrorCode
    else:
        assert all(f.occurred_at.tzinfo is not None for f in result)


# ------------------------------------------------------------------------------------------------------
# the hand-checked fast path against the models

_field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**16),
    st.text(max_size=3),
    st.sampled_from(
        [
            "",
            "x" * 128,
            "x" * 129,
            "EUR",
            "USD",
            "eur",
            "c-1",
            "c-2",
            "low",
            "medium",
            "high",
            "urgent",
            "email",
            "web",
            "fax",
            "Email",
            "inbound",
            "outbound",
            "10.50",
            "-1",
            "1e3",
            "1.005",
            "0.001",
            "NaN",
            "Infinity",
            "1e15",
            "10.5.1",
            "2026-06-01T10:00:00Z",
            "2026-06-16T13:00:00Z",
            "2026-06-01T10:00:00",
            "2026-13-01T10:00:00Z",
            "2026-06-01T10:00:00+24:00",
            "2026-06-01t10:00:00z",
        ]
    ),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_fields = st.sampled_from(
    [
        "event_id",
        "customer_id",
        "occurred_at",
        "amount",
        "currency",
        "cost",
        "discount",
        "refund",
        "order_id",
        "referred_customer_id",
        "reward_cost",
        "severity",
        "resolved",
        "handling_cost",
        "source",
        "channel",
        "direction",
    ]
)


@settings(max_examples=400)
@given(st.sampled_from(sorted(EVENTS)), st.dictionaries(_fields, _field_values | st.just(DROP), max_size=4))
def test_the_fast_path_accepts_only_what_the_models_accept_and_yields_the_same_facts(
    kind: str, changes: dict[str, Any]
) -> None:
    event = EVENTS[kind](**changes)
    latest = NOW + timedelta(hours=24)
    fast = _plain_facts(event, kind, base_currency="EUR", latest=latest)
    model = EVENT_MODELS[kind]
    try:
        slow: list[Fact] | None = to_facts(
            model.model_validate(event, context={"base_currency": "EUR", "latest": latest, "skew_hours": 24})
        )
    except ValidationError:
        slow = None
    if fast is not None:
        assert fast == slow
        assert [str(f.amount) for f in fast] == [str(f.amount) for f in slow or []]  # the same digits, too


@pytest.mark.parametrize(
    "event",
    [
        purchase(),
        purchase(refund=True, cost="1.25", discount=0, order_id="o"),
        referral(reward_cost=2),
        complaint(severity="high", resolved=True, handling_cost="3.5"),
        prospect(),
        prospect(source="fair-2026"),
        touch(channel="web", direction="inbound"),
    ],
)
def test_plain_valid_events_take_the_fast_path(event: dict[str, Any]) -> None:
    assert _plain_facts(event, event["type"], base_currency="EUR", latest=NOW + timedelta(hours=24)) is not None


# ------------------------------------------------------------------------------------------------------
# the orjson front door against the exact decoder, on message bytes


class Token(str):
    """A JSON number written as is, e.g. `19.99`, `1e3`, `-0` or a 30-digit integer."""


def _render(value: Any) -> str:
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else "NaN"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_render(v) for v in value) + "]"
    return json.dumps(value)


_number_tokens = st.sampled_from(
    [
        "1.0",
        "19.99",
        "0.10",
        "1e3",
        "1E+2",
        "-0",
        "0",
        "10",
        "1.005",
        "-1",
        "123456789012345678901234567890",
        "1e400",
        "0.000000000000000000001",
    ]
).map(Token)


@settings(max_examples=400)
@given(
    st.sampled_from(sorted(EVENTS)),
    st.dictionaries(_fields, _field_values | _number_tokens | st.just(DROP), max_size=4),
    st.sampled_from(["", "\ufeff", "dup", "pad"]),
)
def test_the_orjson_front_door_accepts_only_what_the_exact_path_accepts_with_the_same_facts(
    kind: str, changes: dict[str, Any], twist: str
) -> None:
    event = EVENTS[kind](**changes)
    text = _render(event)
    if twist == "\ufeff":
        text = "\ufeff" + text
    elif twist == "dup":  # a repeated key: the last one counts on both paths
        text = text[:-1] + ',"customer_id":"c-dup"}'
    elif twist == "pad":
        text = text[:-1] + ',"extra":[1.5,{"deep":1e300}]}'
    value = text.encode()
    latest = NOW + timedelta(hours=24)
    quick = _quick_facts(value, base_currency="EUR", latest=latest)
    exact = _thorough(value, base_currency="EUR", now=NOW, max_future_skew_hours=24)
    if quick is not None:
        assert quick == exact
        assert isinstance(exact, list)
        assert [(str(f.amount), str(f.cost), str(f.discount)) for f in quick] == [
            (str(f.amount), str(f.cost), str(f.discount)) for f in exact
        ]  # the same digits, too


_MONEY_FIELDS = {
    "purchase": ["amount", "cost", "discount"],
    "referral": ["reward_cost"],
    "complaint": ["handling_cost"],
}


@settings(max_examples=200)
@given(st.sampled_from(["purchase", "referral", "complaint"]), st.data())
def test_money_written_as_a_json_number_comes_out_with_the_same_digits(kind: str, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(_MONEY_FIELDS[kind]))
    number = data.draw(_number_tokens | st.decimals(min_value=0, max_value=10**6, places=3).map(str).map(Token))
    event = {"purchase": purchase, "referral": referral, "complaint": complaint}[kind](**{name: number})
    value = _render(event).encode()
    quick = _quick_facts(value, base_currency="EUR", latest=NOW + timedelta(hours=24))
    exact = _thorough(value, base_currency="EUR", now=NOW, max_future_skew_hours=24)
    if quick is not None:
        assert isinstance(exact, list)
        assert [(str(f.amount), str(f.cost)) for f in quick] == [(str(f.amount), str(f.cost)) for f in exact]


@pytest.mark.parametrize(
    "value", [b'{"type":"purchase","amount":19.99}', "\ufeff{}".encode(), b"[]", b"{", b'{"type":"nope"}']
)
def test_the_front_door_leaves_numbers_with_a_fraction_and_oddities_to_the_exact_path(value: bytes) -> None:
    assert _quick_facts(value, base_currency="EUR", latest=NOW) is None


def test_plain_valid_messages_take_the_front_door() -> None:
    value = raw(purchase(amount="19.99", cost=2, discount="0.50"))
    assert _quick_facts(value, base_currency="EUR", latest=NOW + timedelta(hours=24)) == check(value)


# ------------------------------------------------------------------------------------------------------
# the everyday money shape against the fully checked parse

_money_strings = st.one_of(
    st.decimals(min_value=0, max_value=10**16, places=3).map(str),
    st.from_regex(r"\A-?[0-9]{1,17}(\.[0-9]{0,14})?([eE][+-]?[0-9]{1,2})?\Z"),
    st.sampled_from(
        [
            "0",
            "00",
            "0.0",
            "0.00",
            "007",
            "1.",
            ".5",
            "1.005",
            "999999999999999",
            "1000000000000000",
            "999999999999999.99",
            "1e3",
            "-0",
            "+1",
            " 1",
            "1 ",
            "1_000",
            "\u0661",
        ]
    ),
    st.text(max_size=6),
)


@settings(max_examples=600)
@given(_money_strings, st.sampled_from([2, 12]))
def test_the_everyday_money_shape_parses_as_the_full_check_does(value: str, places: int) -> None:
    def outcome(parse: Any) -> tuple[str, str]:
        try:
            return ("ok", str(parse(value, places)))
        except PydanticCustomError as exc:
            return ("rejected", exc.message())

    assert outcome(parse_money) == outcome(_checked_money)
