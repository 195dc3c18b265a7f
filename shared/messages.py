"""The internal topic between ingest and scoring (`loyalty.scoring-input`), partitioned by customer id.

Ingest turns each valid shop event into one or two of these facts (past-tense names); scoring's relay
adds `referral_converted` facts for cross-customer effects. Each fact is deduplicated by
(`event_id`, `role`): `role` tells apart the several facts one shop event yields, so a shop's own
`event_id` can never collide with a derived one.

Wire form of a fact: one compact UTF-8 JSON object; money as decimal strings; times as RFC 3339 UTC.
A record value is a JSON array of facts (ingest: one record per partition per poll batch; the relay: one per
partition per pass for the conversions), sent to the partition a record keyed by each fact's customer id
would get, so a customer's facts still share one partition and keep their order; `decode_record` also takes
a single fact object, as records written before that change hold. Per-record
client cost dominated both services, so batching facts into one record halves what Kafka costs per event.
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

Kind = Literal[
    "order_placed", "order_refunded", "referral_made", "referral_received", "referral_converted",
    "complaint_filed",
]
Role = Literal["primary", "referred", "converted"]

KINDS: frozenset[str] = frozenset(
    ("order_placed", "order_refunded", "referral_made", "referral_received", "referral_converted",
     "complaint_filed")
)
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
    # spelled out field by field: a generic loop over fields() cost twice as much, dataclasses.asdict 4x
    out: dict[str, Any] = {"v": WIRE_VERSION, "kind": fact.kind, "event_id": fact.event_id, "role": fact.role,
                           "customer_id": fact.customer_id, "occurred_at": fact.occurred_at}
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


def decode(data: bytes) -> Fact:
    """The single fact in `data`; raises MalformedFact on anything else."""
    facts = decode_record(data)
    if len(facts) != 1 or data[:1] == b"[":
        raise MalformedFact("expected one fact, got an array")
    return facts[0]


def decode_record(data: bytes | None) -> list[Fact]:
    """The facts in one record value (one object or an array of them); raises MalformedFact on anything else."""
    try:
        raw = orjson.loads(data)  # type: ignore[arg-type]  # None raises a TypeError, reported below
    except (TypeError, ValueError) as exc:
        raise MalformedFact(f"{type(exc).__name__}: {exc}") from exc
    if isinstance(raw, list):
        if not raw:
            raise MalformedFact("empty array of facts")
        return [_fact(item) for item in raw]
    return [_fact(raw)]


def _fact(raw: Any) -> Fact:
    try:
        if raw.get("v") != WIRE_VERSION or raw.get("kind") not in KINDS:
            raise MalformedFact(f"unknown version or kind: {raw.get('v')!r} {raw.get('kind')!r}")
        return Fact(
            kind=raw["kind"],
            event_id=raw["event_id"],
            role=raw["role"],
            customer_id=raw["customer_id"],
            occurred_at=_parse_ts(raw["occurred_at"]),
            amount=_ZERO if (amount := raw.get("amount")) is None else Decimal(amount),
            cost=_ZERO if (cost := raw.get("cost")) is None else Decimal(cost),
            discount=_ZERO if (discount := raw.get("discount")) is None else Decimal(discount),
            order_id=raw.get("order_id"),
            other_customer_id=raw.get("other_customer_id"),
            severity=raw.get("severity"),
            resolved=bool(raw.get("resolved", False)),
            source=raw.get("source", {}),
            ingested_at=_parse_stamp(raw["ingested_at"]) if raw.get("ingested_at") else None,
        )
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        if isinstance(exc, MalformedFact):
            raise
        raise MalformedFact(f"{type(exc).__name__}: {exc}") from exc
