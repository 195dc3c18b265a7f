"""A realistic shop, as raw messages: purchases over several months with and without discounts, refunds,
referrals whose referred customer buys later (or had bought already), complaints, exact duplicates and every
kind of bad input of contract section 3, mixed in.

Deterministic for a seed. Every valid event has its own event_id; a duplicate is an exact copy of the bytes of a
message sent earlier (the same event_id with different content has no defined winner across partitions).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.chaos.oracle import Sent

KINDS = ("purchase", "referral", "complaint")


@dataclass(frozen=True)
class Topics:
    purchase: str
    referral: str
    complaint: str

    def of(self, kind: str) -> str:
        return str(getattr(self, kind))


def _ts(at: datetime, rng: random.Random) -> str:
    """RFC 3339, mostly UTC 'Z', sometimes with an offset (the same instant)."""
    if rng.random() < 0.15:
        offset = timedelta(hours=rng.choice((1, 2, -5)))
        sign = "+" if offset >= timedelta(0) else "-"
        hours = abs(int(offset.total_seconds() // 3600))
        return (at + offset).replace(tzinfo=None).isoformat(timespec="seconds") + f"{sign}{hours:02d}:00"
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _money(rng: random.Random, low: float, high: float) -> Any:
    """A 2-place amount, as a decimal string or a JSON number."""
    cents = rng.randint(int(low * 100), int(high * 100))
    text = f"{cents // 100}.{cents % 100:02d}"
    return text if rng.random() < 0.6 else json.loads(text)  # a float with 2 places round-trips exactly


class Shop:
    """Builds the event stream of one run."""

    def __init__(self, *, seed: int, prefix: str, start: datetime, months: int = 8) -> None:
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.start = start
        self.span = timedelta(days=30 * months)
        self.n_events = 0
        self.n_customers = 0

    def eid(self, kind: str) -> str:
        self.n_events += 1
        return f"{self.prefix}-{kind[0]}{self.n_events}"

    def new_customer(self) -> str:
        self.n_customers += 1
        return f"{self.prefix}-c{self.n_customers}"

    @property
    def latest(self) -> datetime:
        """No event is later than this (well before `now`: the future-timestamp rule must not bite)."""
        return self.start + self.span + timedelta(days=20)

    def clamp(self, at: datetime) -> datetime:
        return at if at <= self.latest else self.latest - timedelta(hours=self.rng.randint(1, 200))

    def when(self, after: datetime | None = None) -> datetime:
        base = after or self.start
        end = self.start + self.span
        if base >= end:
            return self.clamp(base + timedelta(hours=self.rng.randint(1, 48)))
        return base + timedelta(seconds=self.rng.randint(0, int((end - base).total_seconds())))

    def purchase(
        self, cid: str, at: datetime, *, full_price: bool | None = None, refund: bool = False
    ) -> dict[str, Any]:
        rng = self.rng
        full = rng.random() < 0.5 if full_price is None else full_price
        event: dict[str, Any] = {
            "event_id": self.eid("p"),
            "type": "purchase",
            "customer_id": cid,
            "occurred_at": _ts(at, rng),
            "amount": _money(rng, 5, 400),
            "currency": "EUR",
        }
        if rng.random() < 0.8:
            event["cost"] = _money(rng, 1, 150)
        if not full:
            event["discount"] = _money(rng, 1, 60)
        elif rng.random() < 0.3:
            event["discount"] = 0
        if refund:
            event["refund"] = True
        elif rng.random() < 0.2:
            event["refund"] = False
        if rng.random() < 0.5:
            event["order_id"] = f"o-{event['event_id']}"
        if rng.random() < 0.1:
            event["channel"] = rng.choice(("web", "app", "store"))  # unknown fields are ignored
        return event

    def referral(self, cid: str, referred: str, at: datetime) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event_id": self.eid("r"),
            "type": "referral",
            "customer_id": cid,
            "referred_customer_id": referred,
            "occurred_at": _ts(at, self.rng),
        }
        if self.rng.random() < 0.7:
            event["reward_cost"] = _money(self.rng, 1, 20)
        return event

    def complaint(self, cid: str, at: datetime) -> dict[str, Any]:
        rng = self.rng
        event: dict[str, Any] = {
            "event_id": self.eid("k"),
            "type": "complaint",
            "customer_id": cid,
            "occurred_at": _ts(at, rng),
        }
        if rng.random() < 0.7:
            event["severity"] = rng.choice(("low", "medium", "high"))
        if rng.random() < 0.5:
            event["resolved"] = rng.random() < 0.5
        if rng.random() < 0.7:
            event["handling_cost"] = _money(rng, 0, 80)
        return event

    def customer_story(self) -> list[tuple[datetime, dict[str, Any]]]:
        """The events of one customer (and of those they refer)."""
        rng = self.rng
        cid = self.new_customer()
        out: list[tuple[datetime, dict[str, Any]]] = []
        persona = rng.choices(
            ("visitor", "once", "occasional", "regular", "advocate", "refunder"), weights=(8, 22, 20, 22, 18, 10)
        )[0]
        first = self.when()
        if persona == "visitor":
            out.append((first, self.complaint(cid, first)))
        else:
            n_orders = {
                "once": 1,
                "occasional": rng.randint(2, 3),
                "regular": rng.randint(3, 6),
                "advocate": rng.randint(4, 8),
                "refunder": rng.randint(1, 4),
            }[persona]
            at = first
            for i in range(n_orders):
                full = True if persona == "advocate" and rng.random() < 0.8 else None
                out.append((at, self.purchase(cid, at, full_price=full)))
                if persona in ("regular", "advocate") and i < 2:
                    at = self.clamp(at + timedelta(days=rng.randint(20, 70)))  # several calendar months
                elif persona == "occasional":
                    at = self.clamp(at + timedelta(days=rng.randint(0, 5)))
                else:
                    at = self.when(at)
            if persona == "refunder" or rng.random() < 0.06:
                back = self.when(first)
                out.append((back, self.purchase(cid, back, refund=True)))
        if rng.random() < 0.12:
            at = self.when(first)
            out.append((at, self.complaint(cid, at)))
        referrals = rng.randint(1, 3) if persona == "advocate" else (1 if rng.random() < 0.08 else 0)
        for _ in range(referrals):
            at = self.when(first)
            roll = rng.random()
            if roll < 0.55:
                # a new customer who buys later
                friend = self.new_customer()
                out.append((at, self.referral(cid, friend, at)))
                for _ in range(rng.randint(1, 3)):
                    later = self.when(at)
                    out.append((later, self.purchase(friend, later)))
            elif roll < 0.75:
                # a customer who had bought before the referral
                friend = self.new_customer()
                before = at - timedelta(days=rng.randint(1, 40))
                out.append((before, self.purchase(friend, before)))
                out.append((at, self.referral(cid, friend, at)))
            else:
                # told, never bought
                out.append((at, self.referral(cid, self.new_customer(), at)))
        return out


def poison(rng: random.Random, tag: str, topic: str, now: datetime) -> list[Sent]:
    """One of each bad input of contract section 3 (and a few more), each with its own bytes."""
    at = "2026-05-01T10:00:00Z"
    base = {
        "event_id": f"{tag}-x",
        "type": "purchase",
        "customer_id": f"{tag}-pc",
        "occurred_at": at,
        "amount": "10.00",
        "currency": "EUR",
    }

    def obj(**changes: Any) -> bytes:
        body = {**base, **changes, "event_id": f"{tag}-{rng.getrandbits(40):x}"}
        return json.dumps({k: v for k, v in body.items() if v is not _DROP}).encode()

    future = (now + timedelta(days=10)).isoformat(timespec="seconds").replace("+00:00", "Z")
    values: list[bytes | None] = [
        f"not json at all {tag}".encode(),  # not JSON
        b"",  # empty value
        b"\xff\xfe\x00garbage " + tag.encode(),  # not UTF-8
        "\ufeff".encode() + obj(),  # byte order mark
        json.dumps(["purchase", tag]).encode(),  # not an object
        json.dumps(f"a string {tag}").encode(),  # not an object
        obj(padding="x" * 70_000),  # over 64 KiB
        obj(amount=_DROP),  # missing field
        obj(customer_id=_DROP),  # missing field
        obj(type=_DROP),  # missing type
        obj(customer_id=12345),  # wrong field type
        json.dumps({**base, "event_id": "e" * 129 + tag}).encode(),  # id too long
        obj(customer_id=""),  # id too short
        obj(refund="yes"),  # wrong field type
        obj(type="gift"),  # unknown type
        obj(amount="-5.00"),  # negative amount
        obj(amount=-1),  # negative amount
        obj(amount="ten euros"),  # non-numeric amount
        obj(amount=True),  # boolean amount
        obj(amount="10.001"),  # 3 decimal places
        obj(amount="NaN"),  # NaN as a string
        obj(amount="__NAN__").replace(b'"__NAN__"', b"NaN"),  # NaN as a JSON literal
        obj(amount="__INF__").replace(b'"__INF__"', b"Infinity"),  # Infinity
        obj(currency="USD"),  # wrong currency
        obj(type="referral", referred_customer_id=f"{tag}-pc"),  # self-referral
        obj(occurred_at="2026-05-01T10:00:00"),  # timestamp without offset
        obj(occurred_at="yesterday"),  # not a timestamp
        obj(occurred_at=future),  # in the future
        obj(type="complaint", severity="apocalyptic"),  # wrong enum
        None,  # tombstone (no value)
    ]
    out = []
    for i, value in enumerate(values):
        key = f"{tag}-k{i}".encode() if value is None or rng.random() < 0.5 else None
        out.append(Sent(topic=topic, key=key, value=value))
    return out


class _Drop:
    pass


_DROP: Any = _Drop()


def generate(
    *,
    events: int,
    seed: int,
    prefix: str,
    topics: Topics,
    now: datetime,
    duplicate_rate: float = 0.03,
    poison_sets: int | None = None,
    start: datetime | None = None,
) -> list[Sent]:
    """About `events` shop messages (valid events in a jittered time order, exact duplicates, poison)."""
    rng = random.Random(seed)
    # eight months of history ending well before `now`
    first = start or (now - timedelta(days=300)).replace(hour=0, minute=0, second=0, microsecond=0)
    shop = Shop(seed=seed, prefix=prefix, start=first)
    n_poison_sets = poison_sets if poison_sets is not None else max(1, events // 1000)
    n_poison = 30 * n_poison_sets
    n_valid = max(1, int((events - n_poison) / (1 + duplicate_rate)))
    stories: list[tuple[datetime, dict[str, Any]]] = []
    while len(stories) < n_valid:
        stories.extend(shop.customer_story())
    stories = stories[:n_valid]  # a cut story is still a valid story
    # send order: by time with heavy jitter, so plenty of events (referral vs purchase, too) arrive out of order
    stories.sort(key=lambda s: s[0] + timedelta(days=rng.uniform(-25, 25)))
    sent: list[Sent] = []
    for _, event in stories:
        kind = event["type"]
        topic = topics.of(kind) if rng.random() < 0.95 else topics.of(rng.choice(KINDS))  # any kind on any topic
        key = event["customer_id"].encode() if rng.random() < 0.8 else None
        sent.append(Sent(topic=topic, key=key, value=json.dumps(event).encode()))
    # exact duplicates: right after the original, or much later
    for _ in range(events - n_poison - len(sent)):
        i = rng.randrange(len(sent))
        j = min(len(sent), i + 1) if rng.random() < 0.3 else rng.randint(i + 1, len(sent))
        sent.insert(j, sent[i])
    for k in range(n_poison_sets):
        for msg in poison(rng, f"{prefix}-bad{k}", topics.of(rng.choice(KINDS)), now):
            sent.insert(rng.randint(0, len(sent)), msg)
    # a duplicate of a poison message is dead-lettered twice: that is not a fault
    if n_poison_sets:
        sent.insert(rng.randint(0, len(sent)), sent[rng.randrange(len(sent))])
    return sent


# ---------------------------------------------------------------------------------------------------------
# poison pills: one bad record at a chosen position of a batch of valid ones

# a NUL or a lone surrogate in an id and a year-0001 timestamp each once took a service (or every flows query) down;
# invalid JSON is the plain case next to them. Each is a dead letter now.
POISON_PILLS = ("nul_id", "lone_surrogate_id", "invalid_json", "year_0001")
PILL_ID_FIELDS = ("customer_id", "event_id", "referred_customer_id", "order_id")


def poison_pill(kind: str, tag: str, *, id_field: str = "customer_id") -> bytes:
    """The bytes of one pill of `kind`; the id kinds spoil `id_field` (a referral carries referred_customer_id)."""
    at = "2026-05-01T10:00:00Z"
    event: dict[str, Any] = {
        "event_id": f"{tag}-e",
        "type": "purchase",
        "customer_id": f"{tag}-c",
        "occurred_at": at,
        "amount": "10.00",
        "currency": "EUR",
        "order_id": f"{tag}-o",
    }
    if id_field == "referred_customer_id":
        event = {
            "event_id": f"{tag}-e",
            "type": "referral",
            "customer_id": f"{tag}-c",
            "referred_customer_id": f"{tag}-r",
            "occurred_at": at,
        }
    if kind == "nul_id":
        event[id_field] += "\x00"
    elif kind == "lone_surrogate_id":
        event[id_field] += "\ud800"  # json.dumps writes it as the escape \ud800: valid JSON, no UTF-8 for it
    elif kind == "year_0001":
        event["occurred_at"] = "0001-01-01T00:00:00Z"
    elif kind == "invalid_json":
        return json.dumps(event).encode()[:-9]
    else:
        raise ValueError(kind)
    return json.dumps(event).encode()


def batch_with_pill(
    *,
    size: int,
    position: int,
    kind: str,
    seed: int,
    prefix: str,
    topic: str,
    now: datetime,
    id_field: str = "customer_id",
) -> list[Sent]:
    """`size` messages for one partition (one key, one topic: the whole batch reaches ingest as one poll): valid
    events of a realistic shop with the pill of `kind` at index `position`."""
    shop = Shop(
        seed=seed, prefix=prefix, start=(now - timedelta(days=300)).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    events: list[dict[str, Any]] = []
    while len(events) < size - 1:
        events.extend(event for _, event in shop.customer_story())
    values = [json.dumps(event).encode() for event in events[: size - 1]]
    values.insert(position, poison_pill(kind, f"{prefix}-pill", id_field=id_field))
    key = f"{prefix}-batch".encode()
    return [Sent(topic=topic, key=key, value=value) for value in values]
