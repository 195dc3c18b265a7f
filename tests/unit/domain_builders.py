"""Helpers for the pure-domain tests: build facts, load policies, run a list of facts through the ladder.

Money arguments are strings (or Decimals) so that tests state exact values: `order("e1", at(2024, 1, 5), "0.10")`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import strategies as st

import services.scoring
from services.scoring.domain.ladder import Change, ReferralConverted, StageChanged, apply
from services.scoring.domain.policy import Policy, parse_policy
from services.scoring.domain.state import CustomerState
from shared.wire.messages import Fact

CUSTOMER = "c-1"
DEFAULT_POLICY_TEXT = (Path(services.scoring.__file__).parent / "policy.toml").read_text()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Money = str | Decimal | int


def default_policy() -> Policy:
    """The policy shipped beside the scoring package."""
    return parse_policy(DEFAULT_POLICY_TEXT)


def at(year: int, month: int, day: int = 1, hour: int = 0, minute: int = 0) -> datetime:
    """A UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _d(value: Money) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def order(
    event_id: str,
    when: datetime,
    amount: Money = "100.00",
    *,
    cost: Money = 0,
    discount: Money = 0,
    customer: str = CUSTOMER,
) -> Fact:
    """An order (purchase with refund false)."""
    return Fact(
        kind="order_placed",
        event_id=event_id,
        role="primary",
        customer_id=customer,
        occurred_at=when,
        amount=_d(amount),
        cost=_d(cost),
        discount=_d(discount),
    )


def refund(
    event_id: str, when: datetime, amount: Money = "100.00", *, cost: Money = 0, customer: str = CUSTOMER
) -> Fact:
    """A refund (purchase with refund true)."""
    return Fact(
        kind="order_refunded",
        event_id=event_id,
        role="primary",
        customer_id=customer,
        occurred_at=when,
        amount=_d(amount),
        cost=_d(cost),
    )


def referral_made(
    event_id: str, when: datetime, *, referred: str = "friend", reward_cost: Money = 0, customer: str = CUSTOMER
) -> Fact:
    """The referrer's side of a referral: `customer` told `referred` about us."""
    return Fact(
        kind="referral_made",
        event_id=event_id,
        role="primary",
        customer_id=customer,
        occurred_at=when,
        cost=_d(reward_cost),
        other_customer_id=referred,
    )


def referral_received(event_id: str, when: datetime, *, referrer: str = "referrer", customer: str = CUSTOMER) -> Fact:
    """The referred customer's side of a referral: `referrer` told `customer` about us."""
    return Fact(
        kind="referral_received",
        event_id=event_id,
        role="referred",
        customer_id=customer,
        occurred_at=when,
        other_customer_id=referrer,
    )


def referral_converted(event_id: str, when: datetime, *, referred: str = "friend", customer: str = CUSTOMER) -> Fact:
    """The relay's fact for the referrer: the customer they referred (`event_id` = the referral's) has ordered."""
    return Fact(
        kind="referral_converted",
        event_id=event_id,
        role="converted",
        customer_id=customer,
        occurred_at=when,
        other_customer_id=referred,
    )


def complaint(
    event_id: str, when: datetime, *, handling_cost: Money = 0, severity: str = "medium", customer: str = CUSTOMER
) -> Fact:
    """A complaint or claim."""
    return Fact(
        kind="complaint_filed",
        event_id=event_id,
        role="primary",
        customer_id=customer,
        occurred_at=when,
        cost=_d(handling_cost),
        severity=severity,
    )


def prospect(event_id: str, when: datetime, *, source: str | None = None, customer: str = CUSTOMER) -> Fact:
    return Fact(
        kind="prospect_listed",
        event_id=event_id,
        role="primary",
        customer_id=customer,
        occurred_at=when,
        lead_source=source,
    )


def touch(
    event_id: str, when: datetime, *, channel: str = "email", direction: str = "outbound", customer: str = CUSTOMER
) -> Fact:
    return Fact(
        kind="touch_made",
        event_id=event_id,
        role="primary",
        customer_id=customer,
        occurred_at=when,
        channel=channel,
        direction=direction,
    )


def run(
    facts: Iterable[Fact],
    policy: Policy,
    state: CustomerState | None = None,
) -> tuple[CustomerState, list[list[Change]]]:
    """Apply `facts` in order; the final state and the changes of each fact. Needs at least one fact or a state."""
    per_fact: list[list[Change]] = []
    for fact in facts:
        state, changes = apply(state, fact, policy=policy)
        per_fact.append(changes)
    assert state is not None, "run() needs at least one fact or a starting state"
    return state, per_fact


def flat(per_fact: Iterable[list[Change]]) -> list[Change]:
    """All changes, in the order they were produced."""
    return [c for changes in per_fact for c in changes]


def stage_steps(changes: Iterable[Change]) -> list[tuple[str, str]]:
    """(from_stage, to_stage) of the StageChanged among `changes`."""
    return [(c.from_stage, c.to_stage) for c in changes if isinstance(c, StageChanged)]


def conversions(changes: Iterable[Change]) -> list[ReferralConverted]:
    """The ReferralConverted effects among `changes`."""
    return [c for c in changes if isinstance(c, ReferralConverted)]


def without_stage_time(state: CustomerState) -> CustomerState:
    """`state` with stage_entered_at blanked: the one field that legitimately depends on arrival order."""
    return replace(state, stage_entered_at=EPOCH)


def days(n: float) -> timedelta:
    return timedelta(days=n)


# ---- hypothesis: a list of facts about one customer --------------------------------------------------------

START = at(2022, 1, 1)
SPAN_SECONDS = 1200 * 86400  # ~3.3 years: a little over the 36-month activity horizon
_FACT_KINDS = (
    "order_placed",
    "order_placed",
    "order_placed",
    "order_refunded",
    "referral_made",
    "referral_received",
    "referral_converted",
    "complaint_filed",
    "prospect_listed",
    "prospect_listed",
    "touch_made",
    "touch_made",
)
_CHANNELS = ("email", "web", "store", "ad", "call", "other")


def month_start_of(base: datetime, months_after: int) -> datetime:
    """The first instant (UTC) of the month `months_after` months after `base`'s month."""
    index = base.year * 12 + base.month - 1 + months_after
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _moment(shape: int, seconds: int) -> datetime:
    """Anywhere in the span, or exactly at a month start, or the last microsecond before one."""
    if shape == 2:
        return month_start_of(START, seconds % 40)
    if shape == 3:
        return month_start_of(START, 1 + seconds % 39) - timedelta(microseconds=1)
    return START + timedelta(seconds=seconds)


def _cents(n: int) -> Decimal:
    return Decimal(n).scaleb(-2)


def _fact(i: int, raw: tuple[int, int, int, int, int, int]) -> Fact:
    kind_no, shape, seconds, amount, cost, discount = raw
    kind = _FACT_KINDS[kind_no]
    when = _moment(shape, seconds)
    eid = f"e{i:03d}"
    if kind == "order_placed":  # discount drawn in -5000..5000 and floored at 0: full price half the time
        return order(eid, when, _cents(amount), cost=_cents(cost), discount=_cents(max(0, discount)))
    if kind == "order_refunded":
        return refund(eid, when, _cents(amount), cost=_cents(cost // 10))
    if kind == "referral_made":
        return referral_made(eid, when, referred=f"friend-{i}", reward_cost=_cents(cost // 10))
    if kind == "referral_received":
        return referral_received(eid, when, referrer=("r-a", "r-b", "r-c")[amount % 3])
    if kind == "referral_converted":
        return referral_converted(eid, when, referred=f"friend-{i}")
    if kind == "prospect_listed":
        return prospect(eid, when, source=("list-a", None)[amount % 2])
    if kind == "touch_made":
        return touch(eid, when, channel=_CHANNELS[amount % 6], direction=("outbound", "inbound")[cost % 2])
    return complaint(eid, when, handling_cost=_cents(cost // 3))


def customer_facts(max_size: int = 25) -> st.SearchStrategy[list[Fact]]:
    """1..max_size facts about CUSTOMER: varied kinds, ~3.3 years of timestamps, discount 0 or not, distinct ids.

    Amounts stay <= 200.00 so that 25 orders do not saturate financial loyalty for more than a few months.
    Drawn as plain integer tuples (fast to generate and shrink) and mapped to facts.
    """
    raw = st.tuples(
        st.integers(0, len(_FACT_KINDS) - 1),
        st.integers(0, 3),
        st.integers(0, SPAN_SECONDS),
        st.integers(0, 20000),
        st.integers(0, 10000),
        st.integers(-5000, 5000),
    )
    return st.lists(raw, min_size=1, max_size=max_size).map(lambda rows: [_fact(i, r) for i, r in enumerate(rows)])
