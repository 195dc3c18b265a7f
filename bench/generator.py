"""A synthetic shop: realistic, deterministic streams of shop events (contract section 2).

    generate(customers=12_000, events=60_000, seed=7) -> list[dict]

The same arguments (and the same `now`) give the same stream, byte for byte. What it models:

- customers arrive over the window (the last ~18 months before `now`), more of them lately (a growing shop);
- each customer has a purchase cadence: one-off, yearly, monthly or weekly, and a typical basket size;
- orders have an amount (money paid), a cost (the margin varies by customer) and, on about a quarter of
  them, a discount; a few percent of orders are refunded later, in part or in full;
- about one customer in six is referred by a customer who arrived before them: the referral comes
  shortly before the referred customer's first own event, so referral chains form (A refers B, B refers C);
- now and then a customer complains, with a severity and a handling cost;
- with `duplicates` > 0 that share of the messages are exact copies of an earlier message, sent again a
  little later (an at-least-once shop).

Every event is valid under the contract: ids are unique (apart from the copies), timestamps are RFC 3339 UTC,
within the window and never after `now`, money has at most 2 decimal places, currency is EUR. The stream is in
time order (copies come shortly after their original). `events` counts every message, copies included.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

WINDOW_DAYS = 540  # ~18 months
CURRENCY = "EUR"
_CENT = Decimal("0.01")

# cadence -> (share of customers, relative activity weight per year, mean days between orders, basket median)
CADENCES: dict[str, tuple[float, float, float, float]] = {
    "one-off": (0.40, 0.4, 0.0, 45.0),
    "yearly": (0.25, 1.5, 300.0, 90.0),
    "monthly": (0.25, 10.0, 30.0, 55.0),
    "weekly": (0.10, 40.0, 7.0, 30.0),
}
REFERRED_SHARE = 0.17  # customers who were told about us by an earlier customer
REFUND_SHARE = 0.03  # of orders
COMPLAINT_SHARE = 0.02  # of a customer's own events after their first
DISCOUNT_SHARE = 0.25  # of orders


@dataclass(frozen=True, slots=True)
class _Customer:
    index: int
    customer_id: str
    arrival: datetime
    cadence: str
    basket: float  # median order amount
    cost_ratio: float  # cost / amount of their orders
    referrer: int | None  # index of the customer who referred them


def customer_id(seed: int, index: int) -> str:
    """The id of the `index`-th customer of the stream of `seed` (seed in it: streams never share customers)."""
    return f"c{seed}-{index:06d}"


def rfc3339(moment: datetime) -> str:
    """`moment` as RFC 3339 UTC with milliseconds: 2026-01-31T09:15:02.123Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def default_now() -> datetime:
    """The current UTC time, floored to the minute: a default `now` that is never in the future."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def _money(value: float) -> str:
    return str(Decimal(repr(max(0.0, value))).quantize(_CENT, rounding=ROUND_HALF_UP))


def _make_customers(rng: random.Random, *, count: int, seed: int, start: datetime, now: datetime) -> list[_Customer]:
    span_s = (now - start).total_seconds()
    names = list(CADENCES)
    shares = [CADENCES[n][0] for n in names]
    # arrival: density grows over the window (sqrt of a uniform skews towards `now`)
    arrivals = sorted(start + timedelta(seconds=span_s * math.sqrt(rng.random()) * 0.995) for _ in range(count))
    out: list[_Customer] = []
    for i, arrival in enumerate(arrivals):
        cadence = rng.choices(names, shares)[0]
        basket = CADENCES[cadence][3] * math.exp(rng.gauss(0.0, 0.5))
        referrer = None
        if i > 0 and rng.random() < REFERRED_SHARE:
            # referred by someone who was already a customer, often a recent one (chains form)
            referrer = max(0, i - 1 - int(rng.expovariate(1 / max(1.0, i / 4))))
        out.append(
            _Customer(
                index=i,
                customer_id=customer_id(seed, i),
                arrival=arrival,
                cadence=cadence,
                basket=basket,
                cost_ratio=rng.uniform(0.45, 0.85),
                referrer=referrer,
            )
        )
    return out


def _budgets(rng: random.Random, people: list[_Customer], *, events: int, now: datetime) -> list[int]:
    """How many messages each customer's story gets: at least one each (while the budget lasts), the rest
    spread by cadence and by how long they have been a customer."""
    budgets = [0] * len(people)
    first = min(events, len(people))
    for i in range(first):
        budgets[i] = 1
    rest = events - first
    if rest > 0 and people:
        weights = [
            CADENCES[c.cadence][1] * max(1.0, (now - c.arrival).total_seconds() / 86400 / 365 * 12) for c in people
        ]
        for i in rng.choices(range(len(people)), weights, k=rest):
            budgets[i] += 1
    return budgets


def _story(
    rng: random.Random, c: _Customer, n: int, people: list[_Customer], *, now: datetime, seed: int
) -> list[tuple[datetime, dict[str, Any]]]:
    """`n` events of customer `c` (a referral of them by their referrer counts as the first), without ids."""
    out: list[tuple[datetime, dict[str, Any]]] = []
    t = c.arrival
    if c.referrer is not None and n > 0:
        referrer = people[c.referrer]
        told = max(referrer.arrival + timedelta(seconds=1), t - timedelta(hours=rng.uniform(1, 24 * 7)))
        if told < t:
            out.append(
                (
                    told,
                    {
                        "type": "referral",
                        "customer_id": referrer.customer_id,
                        "referred_customer_id": c.customer_id,
                        "reward_cost": _money(rng.choice((0.0, 5.0, 10.0))),
                    },
                )
            )
            n -= 1
    if n <= 0:
        return out
    gap_days = CADENCES[c.cadence][2]
    horizon = (now - t).total_seconds()
    # mean gap: the cadence, squeezed when the budget holds more orders than the cadence fits before `now`
    mean_gap_s = gap_days * 86400 if gap_days else horizon / max(1, n)
    mean_gap_s = min(mean_gap_s, horizon / max(1, n)) if horizon > 0 else 0.0
    gaps = [mean_gap_s * rng.uniform(0.5, 1.5) for _ in range(n - 1)]
    total = sum(gaps)
    if total > horizon * 0.98:  # the story must end before `now`: squeeze it
        gaps = [g * horizon * 0.98 / total for g in gaps]
    orders: list[tuple[str, float]] = []  # (order_id, amount) for refunds
    for k in range(n):
        if k > 0:
            t = min(now, t + timedelta(seconds=gaps[k - 1]))
        roll = rng.random()
        if k > 0 and roll < COMPLAINT_SHARE:
            out.append(
                (
                    t,
                    {
                        "type": "complaint",
                        "customer_id": c.customer_id,
                        "severity": rng.choices(("low", "medium", "high"), (5, 4, 1))[0],
                        "resolved": rng.random() < 0.6,
                        "handling_cost": _money(rng.uniform(2, 40)),
                    },
                )
            )
        elif k > 0 and orders and roll < COMPLAINT_SHARE + REFUND_SHARE:
            order_id, paid = rng.choice(orders)
            share = 1.0 if rng.random() < 0.6 else rng.uniform(0.1, 0.9)
            out.append(
                (
                    t,
                    {
                        "type": "purchase",
                        "customer_id": c.customer_id,
                        "refund": True,
                        "order_id": order_id,
                        "amount": _money(paid * share),
                        "cost": _money(rng.uniform(0, 6)),
                        "currency": CURRENCY,
                    },
                )
            )
        else:
            amount = c.basket * math.exp(rng.gauss(0.0, 0.35))
            discount = 0.0
            if rng.random() < DISCOUNT_SHARE:
                discount = amount * rng.choice((0.05, 0.1, 0.15, 0.2, 0.3))
            paid = amount - discount
            order_id = f"o{seed}-{c.index:06d}-{k:04d}"
            orders.append((order_id, float(_money(paid))))
            out.append(
                (
                    t,
                    {
                        "type": "purchase",
                        "customer_id": c.customer_id,
                        "refund": False,
                        "order_id": order_id,
                        "amount": _money(paid),
                        "cost": _money(amount * c.cost_ratio),
                        "discount": _money(discount),
                        "currency": CURRENCY,
                    },
                )
            )
    return out


def generate(
    *, customers: int, events: int, seed: int, now: datetime | None = None, duplicates: float = 0.0
) -> list[dict[str, Any]]:
    """`events` shop messages (copies included) about at most `customers` customers, in time order.

    Deterministic for given arguments; `now` defaults to the current minute (pass it to make the stream
    independent of the clock). `duplicates` (0 to 0.5) is the share of messages that are exact copies of an
    earlier one.
    """
    if customers < 1 or events < 0:
        raise ValueError("customers must be >= 1 and events >= 0")
    if not 0.0 <= duplicates <= 0.5:
        raise ValueError("duplicates must be within 0..0.5")
    now = (now or default_now()).astimezone(UTC)
    start = now - timedelta(days=WINDOW_DAYS)
    rng = random.Random(seed)
    copies = int(events * duplicates)
    originals = events - copies
    people = _make_customers(rng, count=customers, seed=seed, start=start, now=now)
    budgets = _budgets(rng, people, events=originals, now=now)
    timed: list[tuple[datetime, int, dict[str, Any]]] = []
    for c, n in zip(people, budgets, strict=True):
        for moment, body in _story(rng, c, n, people, now=now, seed=seed):
            timed.append((moment, len(timed), body))
    timed.sort(key=lambda item: (item[0], item[1]))
    stream: list[dict[str, Any]] = []
    for k, (moment, _, body) in enumerate(timed):
        prefix = {"purchase": "p", "referral": "r", "complaint": "x"}[body["type"]]
        stream.append({"event_id": f"{prefix}{seed}-{k:07d}", "occurred_at": rfc3339(moment), **body})
    if copies and stream:
        # each copy goes a few messages after its original: the shop re-sent it
        positions = sorted(rng.randrange(len(stream)) for _ in range(copies))
        out: list[dict[str, Any]] = []
        pending: list[tuple[int, dict[str, Any]]] = []
        pi = 0
        for k, event in enumerate(stream):
            out.append(event)
            while pi < len(positions) and positions[pi] == k:
                pending.append((k + 1 + rng.randrange(50), dict(event)))
                pi += 1
            due = [p for p in pending if p[0] <= k]
            pending = [p for p in pending if p[0] > k]
            out.extend(copy for _, copy in due)
        out.extend(copy for _, copy in pending)
        stream = out
    return stream


def summary(stream: list[dict[str, Any]]) -> dict[str, int]:
    """Counts a bench needs to know when the system has applied everything."""
    unique = list({e["event_id"]: e for e in stream}.values())
    ids = {e["event_id"] for e in unique}
    referrals = {e["event_id"] for e in unique if e["type"] == "referral"}
    ordered = {e["customer_id"] for e in unique if e["type"] == "purchase" and not e["refund"]}
    return {
        "messages": len(stream),
        "distinct_events": len(ids),
        "duplicates": len(stream) - len(ids),
        "referrals": len(referrals),
        # a referral converts once the customer it brought places an order, whenever that happens
        "conversions": sum(1 for e in unique if e["type"] == "referral" and e["referred_customer_id"] in ordered),
        "customers": len(
            {e["customer_id"] for e in stream} | {e["referred_customer_id"] for e in stream if e["type"] == "referral"}
        ),
        "orders": sum(1 for e in unique if e["type"] == "purchase" and not e["refund"]),
        "refunds": sum(1 for e in unique if e["type"] == "purchase" and e["refund"]),
        "complaints": sum(1 for e in unique if e["type"] == "complaint"),
    }
