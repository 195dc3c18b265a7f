"""A customer's state: only counts, exact sums and sets, so that adding events commutes exactly.

Nothing here depends on the time of reading; decayed scores are computed from the month buckets when
someone asks (see `measures.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from shared.frozen import quick_init

STAGES: tuple[str, ...] = ("potential", "visitor", "first_purchase", "regular", "advocate")
RANK: dict[str, int] = {stage: i for i, stage in enumerate(STAGES)}
# the five kinds of loyalty (brief §3), in the order the wire, the CSV and the radar list them
LOYALTY_KINDS: tuple[str, ...] = ("financial", "procedural", "contact", "evaluative", "consultative")


def utc(value: datetime) -> datetime:
    """`value` in UTC (itself when it is already: facts arrive in UTC, and astimezone() builds a new object)."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def month_index(moment: datetime) -> int:
    """Months since year 0 of the UTC calendar month of `moment`."""
    at = utc(moment)
    return at.year * 12 + at.month - 1


_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()


def day_index(moment: datetime) -> int:
    """Days since 1970-01-01 of the UTC calendar day of `moment` (the health model counts whole UTC days)."""
    return utc(moment).toordinal() - _EPOCH_ORDINAL


def month_start(index: int) -> datetime:
    """The first instant (UTC) of month `index`."""
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


@quick_init
@dataclass(frozen=True, slots=True)
class MonthActivity:
    """What a customer did in one calendar month; the loyalty formulas decay these."""

    orders: int = 0
    order_value: Decimal = Decimal(0)
    refunds: int = 0
    complaints: int = 0
    referrals: int = 0
    conversions: int = 0
    # touches the customer made themselves (a visit, a call): contact loyalty counts them, outbound ones not
    inbound_touches: int = 0

    def plus(self, other: MonthActivity) -> MonthActivity:
        """The element-wise sum."""
        return MonthActivity(
            orders=self.orders + other.orders,
            order_value=self.order_value + other.order_value,
            refunds=self.refunds + other.refunds,
            complaints=self.complaints + other.complaints,
            referrals=self.referrals + other.referrals,
            conversions=self.conversions + other.conversions,
            inbound_touches=self.inbound_touches + other.inbound_touches,
        )

    @property
    def contacts(self) -> int:
        """Interactions of any kind."""
        return self.orders + self.refunds + self.complaints + self.referrals + self.inbound_touches


@quick_init
@dataclass(frozen=True, slots=True)
class PendingReferral:
    """A referral of this customer that converts when they place their first order."""

    referral_event_id: str
    referrer_id: str
    occurred_at: datetime


@quick_init
@dataclass(frozen=True, slots=True)
class CustomerState:
    """Everything the ladder knows about one customer."""

    customer_id: str
    stage: str
    stage_entered_at: datetime
    first_seen_at: datetime
    last_event_at: datetime
    orders: int = 0
    refunds: int = 0
    full_price_orders: int = 0
    referrals_made: int = 0
    referrals_converted: int = 0
    complaints: int = 0
    touches: int = 0
    # false only for a customer the shop has listed as a prospect and nothing else: they stay on `potential`
    known: bool = True
    sales: Decimal = Decimal(0)
    costs: Decimal = Decimal(0)
    order_months: frozenset[int] = frozenset()
    # month index -> activity; only the last `activity_horizon_months` before the newest month are kept
    activity: tuple[tuple[int, MonthActivity], ...] = ()
    pending_referrals: frozenset[PendingReferral] = field(default_factory=frozenset)
    # the UTC days with an order (`day_index`), and the latest order's moment: the health model's x, t_x and T
    # come from the set, so duplicates and the order of arrival change nothing
    order_days: frozenset[int] = frozenset()
    last_order_at: datetime | None = None

    @property
    def profit(self) -> Decimal:
        return self.sales - self.costs

    def count(self, name: str) -> int:
        """The monotone count `name` (see policy.MONOTONE_COUNTS)."""
        if name == "order_months":
            return len(self.order_months)
        value = getattr(self, name)
        assert isinstance(value, int)
        return value


def _ts(value: datetime) -> str:
    return utc(value).isoformat()


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def to_json(state: CustomerState) -> dict[str, Any]:
    """A JSON-ready dict of `state` (money as strings, exact)."""
    return _document(state, _ts)


def _document(state: CustomerState, stamp: Callable[[datetime], Any]) -> dict[str, Any]:
    return {
        "v": 1,
        "customer_id": state.customer_id,
        "stage": state.stage,
        "stage_entered_at": stamp(state.stage_entered_at),
        "first_seen_at": stamp(state.first_seen_at),
        "last_event_at": stamp(state.last_event_at),
        "orders": state.orders,
        "refunds": state.refunds,
        "full_price_orders": state.full_price_orders,
        "referrals_made": state.referrals_made,
        "referrals_converted": state.referrals_converted,
        "complaints": state.complaints,
        "touches": state.touches,
        "known": state.known,
        "sales": str(state.sales),
        "costs": str(state.costs),
        "order_months": sorted(state.order_months),
        "activity": [
            [m, a.orders, str(a.order_value), a.refunds, a.complaints, a.referrals, a.conversions, a.inbound_touches]
            for m, a in state.activity
        ],
        "pending_referrals": sorted(
            ([p.referral_event_id, p.referrer_id, stamp(p.occurred_at)] for p in state.pending_referrals),
        ),
        "order_days": sorted(state.order_days),
        "last_order_at": stamp(state.last_order_at) if state.last_order_at is not None else None,
    }


def to_text(state: CustomerState) -> str:
    """`to_json` as compact JSON text, the form stored in `customers.state`."""
    # orjson writes a UTC datetime byte for byte as isoformat() does, at a fraction of the cost (a test holds the
    # two side by side); isoformat() was half of the time this took
    return orjson.dumps(_document(state, utc)).decode()


def from_text(raw: str | bytes) -> CustomerState:
    """The state stored as `raw` by `to_text`."""
    return from_json(orjson.loads(raw))


def from_json(raw: dict[str, Any]) -> CustomerState:
    """The state stored as `raw` by `to_json`."""
    return CustomerState(
        customer_id=raw["customer_id"],
        stage=raw["stage"],
        stage_entered_at=_parse_ts(raw["stage_entered_at"]),
        first_seen_at=_parse_ts(raw["first_seen_at"]),
        last_event_at=_parse_ts(raw["last_event_at"]),
        orders=raw["orders"],
        refunds=raw["refunds"],
        full_price_orders=raw["full_price_orders"],
        referrals_made=raw["referrals_made"],
        referrals_converted=raw["referrals_converted"],
        complaints=raw["complaints"],
        # states stored before prospects existed: every one of those customers was known
        touches=raw.get("touches", 0),
        known=raw.get("known", True),
        sales=Decimal(raw["sales"]),
        costs=Decimal(raw["costs"]),
        order_months=frozenset(raw["order_months"]),
        activity=tuple(
            (
                m,
                MonthActivity(
                    orders=o,
                    order_value=Decimal(v),
                    refunds=r,
                    complaints=c,
                    referrals=rf,
                    conversions=cv,
                    inbound_touches=inbound[0] if inbound else 0,
                ),
            )
            for m, o, v, r, c, rf, cv, *inbound in raw["activity"]
        ),
        pending_referrals=frozenset(
            PendingReferral(referral_event_id=e, referrer_id=r, occurred_at=_parse_ts(t))
            for e, r, t in raw["pending_referrals"]
        ),
        # absent from states written before the health model: no order days are known for those
        order_days=frozenset(raw.get("order_days", ())),
        last_order_at=_parse_ts(raw["last_order_at"]) if raw.get("last_order_at") else None,
    )
