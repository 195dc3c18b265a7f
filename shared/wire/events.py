"""The shop's events (contract sections 2 and 3): their fields and rules, the error codes, and the facts they yield.

`shared.wire.validation.validate()` is the gate that applies these rules to the raw bytes of one message.

The Pydantic models are the single description of the fields: they validate, and they generate the JSON
Schemas published in the AsyncAPI document. Money comes as a JSON number or a decimal string and is kept as
an exact `Decimal` (JSON is parsed with `parse_float=Decimal`, so no binary float ever touches it).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, NoReturn

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.wire.messages import CHANNELS, DIRECTIONS
from shared.wire.text import BAD_TEXT, MAX_ID


class ErrorCode(StrEnum):
    """Why a message was rejected; the `error.code` header of a dead letter. A closed set."""

    TOO_LARGE = "too_large"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_AMOUNT = "invalid_amount"
    WRONG_CURRENCY = "wrong_currency"
    SELF_REFERRAL = "self_referral"
    INVALID_TIMESTAMP = "invalid_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    # an id holding a character PostgreSQL, UTF-8 or a CSV cell cannot carry as it is (see `BAD_TEXT`)
    INVALID_CHARACTERS = "invalid_characters"
    # containment: handling the record raised something no rule foresaw (the `error.exception` header
    # names the exception's class); the record is set aside so that the ones after it go on
    PROCESSING_FAILED = "processing_failed"
    # scoring's own check of the internal topic: only a bug or a foreign producer writes such a fact
    MALFORMED_INTERNAL = "malformed_internal"


EVENT_TYPES: Final = ("purchase", "referral", "complaint", "prospect", "touch")

# Money at or above this is a producer bug (or an attack on the sums), not a sale.
MAX_MONEY: Final = Decimal("1e15")
# `amount` is money paid: cents at most. Other money fields may be finer, but 12 places below 1e15 keep
# every sum exact within Decimal's default 28-digit precision.
AMOUNT_PLACES: Final = 2
MONEY_PLACES: Final = 12
MAX_STRING: Final = MAX_ID
# Digits a money literal may spell (sign, point and exponent included): 1e15 with 12 places needs 28, so 40
# refuses nothing real while a 60,000-digit number never reaches Decimal arithmetic or the stored state.
MAX_MONEY_CHARS: Final = 40
# Nothing the shop records happened before this. Without a floor, one year-0001 event put the first week
# bucket before datetime.min, and every flows query failed from then on.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


_NUMBER_STRING = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one message cannot be accepted; `event_type`/`event_id` are what could be read, for metrics and logs."""

    code: ErrorCode
    message: str
    event_type: str = "unknown"
    event_id: str | None = None
    exception: str | None = None  # with PROCESSING_FAILED: the class of what was raised


# ---------------------------------------------------------------------------------------------------------
# field types


def _fail(code: ErrorCode, message: str) -> NoReturn:
    raise PydanticCustomError(code.value, message)


def _decimal_places(value: Decimal) -> int:
    """Digits after the point that carry value: 1.500 has 1, 1E+3 has 0."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -exponent - trailing_zeros)


# the everyday shape of money ("19.99", "0", "1250.5"): no sign, no exponent, no leading zero, below 1e15 and
# within the places; such a string needs no further check (a property test holds this against the full one)
_PLACES: Final = {places: _ONE.scaleb(-places) for places in (AMOUNT_PLACES, MONEY_PLACES)}
_PLAIN_MONEY: Final = {
    places: re.compile(rf"(?:0|[1-9][0-9]{{0,14}})(?:\.[0-9]{{1,{places}}})?", re.ASCII)
    for places in (AMOUNT_PLACES, MONEY_PLACES)
}


def parse_money(value: Any, places: int) -> Decimal:
    """An exact non-negative decimal from a JSON number or a decimal string; never a bool or a float."""
    if type(value) is str and _PLAIN_MONEY[places].fullmatch(value) is not None:
        number = Decimal(value)
        return number if number else _ZERO
    return _checked_money(value, places)


def _checked_money(value: Any, places: int) -> Decimal:
    """`_money` with every check spelled out; names what is wrong."""
    if isinstance(value, bool):  # bool is an int subclass: `true` must not become 1
        _fail(ErrorCode.INVALID_AMOUNT, "must be a number, not a boolean")
    if isinstance(value, Decimal):
        number = value
        if len(number.as_tuple().digits) > MAX_MONEY_CHARS:
            _fail(ErrorCode.INVALID_AMOUNT, f"must have at most {MAX_MONEY_CHARS} digits")
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        if len(value) > MAX_MONEY_CHARS:
            _fail(ErrorCode.INVALID_AMOUNT, f"must be at most {MAX_MONEY_CHARS} characters")
        if _NUMBER_STRING.fullmatch(value) is None:
            _fail(ErrorCode.INVALID_AMOUNT, "must be a decimal number or a string holding one")
        number = Decimal(value)
    else:
        _fail(ErrorCode.INVALID_AMOUNT, f"must be a decimal number, got {json_kind(value)}")
    if not number.is_finite():
        _fail(ErrorCode.INVALID_AMOUNT, "must be finite")
    if number < 0:
        _fail(ErrorCode.INVALID_AMOUNT, "must be >= 0")
    if number >= MAX_MONEY:
        _fail(ErrorCode.INVALID_AMOUNT, "must be < 1e15")
    if number.is_zero():
        return _ZERO  # also turns -0 and 0E+3 into a plain 0
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int):  # pragma: no cover - only NaN/Infinity have a letter here
        _fail(ErrorCode.INVALID_AMOUNT, "must be finite")
    if exponent < -places and _decimal_places(number) > places:
        _fail(ErrorCode.INVALID_AMOUNT, f"must have at most {places} decimal places")
    if exponent > 0:
        number = number.quantize(_ONE)  # 1E+3 -> 1000: plain notation on the wire
    elif exponent < -places:
        number = number.quantize(_PLACES[places])  # 1.5000 -> 1.50: the zeros beyond `places` carry nothing
    return number


def parse_amount(value: Any) -> Decimal:
    return parse_money(value, AMOUNT_PLACES)


def parse_other_money(value: Any) -> Decimal:
    return parse_money(value, MONEY_PLACES)


def json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def parse_rfc3339(value: str) -> datetime:
    """The UTC instant of an RFC 3339 date-time with an offset; raises ValueError on anything else."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("not an RFC 3339 date-time with a UTC offset (e.g. 2026-06-01T12:00:00Z)")
    fraction, zulu, off_h, off_m = match.group(7, 8, 10, 11)
    if (fraction is None or len(fraction) <= 6) and (zulu or (off_h <= "23" and off_m <= "59")):
        # the C parser, much faster, for the shape the regex vouched for (it would take a 60-minute offset);
        # whatever it refuses goes on to the field by field parse, which says why
        with contextlib.suppress(ValueError, OverflowError):
            return datetime.fromisoformat(value).astimezone(UTC)
    return _rfc3339_fields(match)


def _rfc3339_fields(match: re.Match[str]) -> datetime:
    """The UTC instant of an `_RFC3339` match, field by field; raises ValueError with the reason."""
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if zulu:
        tz = UTC
    else:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError("UTC offset out of range")
        delta = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-delta if sign == "-" else delta)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz)
        return local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid date-time: {exc}") from exc


def _timestamp(value: Any, info: ValidationInfo) -> datetime:
    """An aware UTC datetime from an RFC 3339 string; checked against `now` when the context gives one."""
    if not isinstance(value, str):
        _fail(ErrorCode.INVALID_TIMESTAMP, f"must be an RFC 3339 string, got {json_kind(value)}")
    try:
        instant = parse_rfc3339(value)
    except ValueError as exc:
        _fail(ErrorCode.INVALID_TIMESTAMP, str(exc))
    if instant < EARLIEST:
        _fail(ErrorCode.INVALID_TIMESTAMP, "is before 1970-01-01T00:00:00Z")
    context = info.context
    if context is not None:
        latest: datetime = context["latest"]
        if instant > latest:
            _fail(ErrorCode.FUTURE_TIMESTAMP, f"is more than {context['skew_hours']} hours in the future")
    return instant


def _currency(value: Any, info: ValidationInfo) -> str:
    """The currency code, which must be the base currency when the context names one."""
    if not isinstance(value, str):
        _fail(ErrorCode.INVALID_FIELD, f"must be a 3-letter currency code, got {json_kind(value)}")
    context = info.context
    if context is not None and value != context["base_currency"]:
        _fail(ErrorCode.WRONG_CURRENCY, f"must be the base currency {context['base_currency']}, got {value[:16]!r}")
    return value


_MONEY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1e15},
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"},
    ]
}

Amount = Annotated[Decimal, PlainValidator(parse_amount), WithJsonSchema(_MONEY_SCHEMA)]
Money = Annotated[Decimal, PlainValidator(parse_other_money), WithJsonSchema(_MONEY_SCHEMA)]
Timestamp = Annotated[datetime, PlainValidator(_timestamp), WithJsonSchema({"type": "string", "format": "date-time"})]
Currency = Annotated[str, PlainValidator(_currency), WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$"})]


def _clean_text(value: Any) -> Any:
    """Refuses a string with a character of `BAD_TEXT`; runs before pydantic's own string check, which would
    call a lone surrogate merely an invalid string."""
    bad = BAD_TEXT.search(value) if type(value) is str else None
    if bad is not None:
        _fail(
            ErrorCode.INVALID_CHARACTERS,
            f"holds {bad.group()!a} at position {bad.start()}: control characters and lone surrogates are not allowed",
        )
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STRING), BeforeValidator(_clean_text)]


# ---------------------------------------------------------------------------------------------------------
# the events


class ShopEvent(BaseModel):
    """Fields every shop event carries."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    event_id: Id = Field(description="Idempotency key, 1-128 characters: the same event_id counts once.")
    customer_id: Id = Field(description="The customer the event is about, 1-128 characters.")
    occurred_at: Timestamp = Field(
        description="When it happened: RFC 3339 with a UTC offset ('Z' or +hh:mm), "
        "at most 24 hours (MAX_FUTURE_SKEW_HOURS) in the future."
    )


class PurchaseEvent(ShopEvent):
    """An order the customer placed, or with `refund: true` money paid back to them."""

    model_config = ConfigDict(title="Purchase", json_schema_extra={"additionalProperties": True})

    type: Literal["purchase"] = Field(description="The kind of event.")
    amount: Amount = Field(
        description="Money the customer paid (or was paid back on a refund); >= 0, at most 2 decimal "
        "places, a JSON number or a decimal string."
    )
    currency: Currency = Field(
        description="ISO 4217 code; must be the system's base currency (BASE_CURRENCY, default EUR)."
    )
    cost: Money = Field(default=Decimal(0), description="What the sale (or the refund) cost the company; >= 0.")
    discount: Money = Field(
        default=Decimal(0), description="Price reduction the customer got; 0 means a full-price order."
    )
    refund: bool = Field(default=False, description="True when this is money paid back, not an order.")
    order_id: Id | None = Field(default=None, description="The shop's order reference, if any.")


class ReferralEvent(ShopEvent):
    """`customer_id` recommended the shop to `referred_customer_id`."""

    model_config = ConfigDict(title="Referral", json_schema_extra={"additionalProperties": True})

    type: Literal["referral"] = Field(description="The kind of event.")
    referred_customer_id: Id = Field(description="The customer who was told, 1-128 characters; not the referrer.")
    reward_cost: Money = Field(default=Decimal(0), description="What the referral reward cost; >= 0.")

    @model_validator(mode="after")
    def _not_self(self) -> ReferralEvent:
        if self.referred_customer_id == self.customer_id:
            _fail(ErrorCode.SELF_REFERRAL, "referred_customer_id equals customer_id")
        return self


class ComplaintEvent(ShopEvent):
    """The customer complained."""

    model_config = ConfigDict(title="Complaint", json_schema_extra={"additionalProperties": True})

    type: Literal["complaint"] = Field(description="The kind of event.")
    severity: Literal["low", "medium", "high"] = Field(default="medium", description="How serious.")
    resolved: bool = Field(default=False, description="Whether the complaint has been settled.")
    handling_cost: Money = Field(default=Decimal(0), description="What handling it cost; >= 0.")


class ProspectEvent(ShopEvent):
    """The shop knows of someone who may not know the shop yet (a lead list, a sign-up): they stand on
    `potential`, and no stage change is announced."""

    model_config = ConfigDict(title="Prospect", json_schema_extra={"additionalProperties": True})

    type: Literal["prospect"] = Field(description="The kind of event.")
    source: Id | None = Field(default=None, description="Where the lead comes from (a list, a form), 1-128 characters.")


Channel = Literal["email", "web", "store", "ad", "call", "other"]
Direction = Literal["outbound", "inbound"]
assert Channel.__args__ == CHANNELS and Direction.__args__ == DIRECTIONS  # type: ignore[attr-defined]


class TouchEvent(ShopEvent):
    """A contact: the customer noticed us (outbound) or came to us (inbound); it makes them a visitor."""

    model_config = ConfigDict(title="Touch", json_schema_extra={"additionalProperties": True})

    type: Literal["touch"] = Field(description="The kind of event.")
    channel: Channel = Field(description="Where the contact happened.")
    direction: Direction = Field(
        description="`outbound`: we reached them and they noticed (an email opened, an ad clicked); "
        "`inbound`: they came to us (a visit, a call). Only inbound touches feed contact loyalty."
    )


EVENT_MODELS: Final[dict[str, type[ShopEvent]]] = {
    "purchase": PurchaseEvent,
    "referral": ReferralEvent,
    "complaint": ComplaintEvent,
    "prospect": ProspectEvent,
    "touch": TouchEvent,
}
