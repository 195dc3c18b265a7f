"""The internal topic between ingest and scoring (`loyalty.scoring-input`), partitioned by customer id.

Ingest turns each valid shop event into one or two of these facts (past-tense names); scoring's relay
adds `referral_converted` facts for cross-customer effects. Each fact is deduplicated by
(`event_id`, `role`): `role` tells apart the several facts one shop event yields, so a shop's own
`event_id` can never collide with a derived one.

Wire form of a fact: one compact UTF-8 JSON object; money as decimal strings; times as RFC 3339 UTC.
A record value is a JSON array of facts (ingest: one record per partition per poll batch; the relay: one per
partition per pass for the conversions), sent to the partition a record keyed by each fact's customer id
would get, so a customer's facts still share one partition and keep their order; `decode_facts` also takes
a single fact object, as records written before that change hold. Per-record
client cost dominated both services, so facts travel many to a record (docs/performance.md).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson

from shared.frozen import quick_init
from shared.wire.text import MAX_ID, is_id, printable

Kind = Literal[
    "order_placed",
    "order_refunded",
    "referral_made",
    "referral_received",
    "referral_converted",
    "complaint_filed",
    "prospect_listed",
    "touch_made",
]
Role = Literal["primary", "referred", "converted"]

# the shop event type each fact kind comes from, for the metrics of events by type
FACT_EVENT_TYPE: dict[str, str] = {
    "order_placed": "purchase",
    "order_refunded": "purchase",
    "referral_made": "referral",
    "referral_received": "referral",
    "referral_converted": "referral",
    "complaint_filed": "complaint",
    "prospect_listed": "prospect",
    "touch_made": "touch",
}
FACT_KINDS: frozenset[str] = frozenset(FACT_EVENT_TYPE)
ROLES: frozenset[str] = frozenset(("primary", "referred", "converted"))
# touches (contract section 12): closed sets, checked again when scoring decodes a fact
CHANNELS: tuple[str, ...] = ("email", "web", "store", "ad", "call", "other")
DIRECTIONS: tuple[str, ...] = ("outbound", "inbound")
WIRE_VERSION = 1
_ZERO = Decimal(0)


@quick_init
@dataclass(frozen=True, slots=True)
class Fact:
    """One fact about one customer, as carried on the internal topic."""

    kind: Kind
    event_id: str
    role: Role
    customer_id: str
    occurred_at: datetime
    # purchases
    amount: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)
    order_id: str | None = None
    # referrals: the other party, and the referral's own event id for conversions
    other_customer_id: str | None = None
    # complaints
    severity: str | None = None
    resolved: bool = False
    # touches: channel and direction; prospects: the shop's `source` of the lead (named apart from `source`
    # below, which says where ingest read the event)
    channel: str | None = None
    direction: str | None = None
    lead_source: str | None = None
    # where the shop event was read, for logs and tracing
    source: dict[str, Any] = field(default_factory=dict)
    ingested_at: datetime | None = None

    @property
    def dedupe_key(self) -> tuple[str, str]:
        """What makes this fact count once."""
        return (self.event_id, self.role)


def encode(fact: Fact, *, source: dict[str, Any] | None = None, ingested_at: str | None = None) -> bytes:
    """The wire bytes of `fact`; `source` and `ingested_at` (RFC 3339), when given, replace the fact's own.

    Defaults (zero money, None, False, an empty source) are left out; `decode` restores them.
    """
    # spelled out field by field: a generic loop over fields(), or dataclasses.asdict, costs several times more
    out: dict[str, Any] = {
        "v": WIRE_VERSION,
        "kind": fact.kind,
        "event_id": fact.event_id,
        "role": fact.role,
        "customer_id": fact.customer_id,
        "occurred_at": fact.occurred_at,
    }
    if fact.amount:
        out["amount"] = str(fact.amount)
    if fact.cost:
        out["cost"] = str(fact.cost)
    if fact.discount:
        out["discount"] = str(fact.discount)
    if fact.order_id is not None:
        out["order_id"] = fact.order_id
    if fact.other_customer_id is not None:
        out["other_customer_id"] = fact.other_customer_id
    if fact.severity is not None:
        out["severity"] = fact.severity
    if fact.resolved:
        out["resolved"] = True
    if fact.channel is not None:
        out["channel"] = fact.channel
    if fact.direction is not None:
        out["direction"] = fact.direction
    if fact.lead_source is not None:
        out["lead_source"] = fact.lead_source
    where = fact.source if source is None else source
    if where:
        out["source"] = where
    stamp: str | datetime | None = fact.ingested_at if ingested_at is None else ingested_at
    if stamp is not None:
        out["ingested_at"] = stamp
    return orjson.dumps(out, option=orjson.OPT_UTC_Z)  # datetimes as RFC 3339, UTC as "Z"


class MalformedFact(ValueError):
    """An internal message that does not decode; only a bug or a foreign producer makes one."""


def _parse_ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise MalformedFact(f"naive timestamp {value!r}")
    return parsed.astimezone(UTC)


# one stamp per ingest batch: the same few strings over and over
_parse_stamp = functools.lru_cache(maxsize=256)(_parse_ts)


def encode_many(encoded: Sequence[bytes]) -> bytes:
    """One record value holding the already encoded facts `encoded`, in order."""
    return b"[" + b",".join(encoded) + b"]"


class FactRecords:
    """Encoded facts gathered into record values: one open record per partition, each at most `max_bytes`.

    Ingest (per poll batch) and the relay (per pass) both hand facts on this way. `add` returns the
    partition's record when the new fact would not fit in it (send it: the fact opens the next one); `drain`
    returns the records still open. A single fact larger than `max_bytes` travels alone.
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._open: dict[int, list[bytes]] = {}
        self._size: dict[int, int] = {}  # bytes of the record value so far: brackets and commas included

    def add(self, partition: int, encoded: bytes) -> bytes | None:
        """Add one encoded fact to `partition`'s record; the full record value to send first, if any."""
        facts = self._open.get(partition)
        if facts is None:
            self._open[partition] = [encoded]
            self._size[partition] = len(encoded) + 2
            return None
        if self._size[partition] + len(encoded) + 1 > self.max_bytes:
            full = encode_many(facts)
            self._open[partition] = [encoded]
            self._size[partition] = len(encoded) + 2
            return full
        facts.append(encoded)
        self._size[partition] += len(encoded) + 1
        return None

    def drain(self) -> list[tuple[int, bytes]]:
        """The records still open, as (partition, value), and none open after."""
        out = [(partition, encode_many(facts)) for partition, facts in self._open.items()]
        self._open.clear()
        self._size.clear()
        return out


def decode_facts(data: bytes | None) -> tuple[list[Fact], list[tuple[bytes, str]]]:
    """The good facts of one record value, and each bad one as (its JSON bytes, why).

    Scoring checks what it reads instead of trusting its producer: one bad fact is set aside and the others of
    its record (other customers' facts among them) still apply. A record that is not JSON at all, or an empty
    array, raises MalformedFact as a whole.
    """
    try:
        raw = orjson.loads(data)  # type: ignore[arg-type]  # None raises a TypeError, reported below
    except (TypeError, ValueError) as exc:
        raise MalformedFact(f"{type(exc).__name__}: {exc}") from exc
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise MalformedFact("empty array of facts")
    facts: list[Fact] = []
    bad: list[tuple[bytes, str]] = []
    for item in items:
        try:
            facts.append(_fact(item))
        except MalformedFact as exc:
            bad.append((orjson.dumps(item), str(exc)))
    return facts, bad


_SEVERITIES = frozenset(("low", "medium", "high"))
_CHANNELS = frozenset(CHANNELS)
_DIRECTIONS = frozenset(DIRECTIONS)
_MAX_MONEY = Decimal("1e15")


def _id(raw: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = raw.get(name)
    if value is None and optional:
        return None
    if not is_id(value):
        raise MalformedFact(
            f"{name} is not an id (a string of 1-{MAX_ID} characters without control characters "
            f"or lone surrogates): {printable(repr(value))[:80]}"
        )
    return value


def _money(raw: dict[str, Any], name: str) -> Decimal:
    value = raw.get(name)
    if value is None:
        return _ZERO
    if type(value) is not str or len(value) > 40:
        raise MalformedFact(f"{name} is not a decimal string: {printable(repr(value))[:80]}")
    number = Decimal(value)
    if not number.is_finite() or number < 0 or number >= _MAX_MONEY:
        raise MalformedFact(f"{name} is not finite, non-negative money below 1e15: {value}")
    return number


def _fact(raw: Any) -> Fact:
    try:
        if raw.get("v") != WIRE_VERSION or raw.get("kind") not in FACT_KINDS:
            raise MalformedFact(f"unknown version or kind: {raw.get('v')!r} {raw.get('kind')!r}")
        if raw.get("role") not in ROLES:
            raise MalformedFact(f"unknown role: {raw.get('role')!r}")
        severity = raw.get("severity")
        if severity is not None and severity not in _SEVERITIES:
            raise MalformedFact(f"unknown severity: {severity!r}")
        channel, direction = raw.get("channel"), raw.get("direction")
        if raw["kind"] == "touch_made" and (channel not in _CHANNELS or direction not in _DIRECTIONS):
            raise MalformedFact(f"a touch needs a known channel and direction: {channel!r} {direction!r}")
        if raw["kind"] != "touch_made" and (channel is not None or direction is not None):
            raise MalformedFact("only a touch has a channel and a direction")
        resolved = raw.get("resolved", False)
        source = raw.get("source", {})
        if type(resolved) is not bool or type(source) is not dict:
            raise MalformedFact("resolved must be a boolean and source an object")
        return Fact(
            kind=raw["kind"],
            event_id=_id(raw, "event_id"),
            role=raw["role"],
            customer_id=_id(raw, "customer_id"),
            occurred_at=_parse_ts(raw["occurred_at"]),
            amount=_money(raw, "amount"),
            cost=_money(raw, "cost"),
            discount=_money(raw, "discount"),
            order_id=_id(raw, "order_id", optional=True),
            other_customer_id=_id(raw, "other_customer_id", optional=True),
            severity=severity,
            resolved=resolved,
            channel=channel,
            direction=direction,
            lead_source=_id(raw, "lead_source", optional=True),
            source=source,
            ingested_at=_parse_stamp(raw["ingested_at"]) if raw.get("ingested_at") else None,
        )
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        if isinstance(exc, MalformedFact):
            raise
        raise MalformedFact(f"{type(exc).__name__}: {exc}") from exc
