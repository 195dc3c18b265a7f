"""The ladder's whole rulebook: how one fact changes one customer, and which rungs that enters.

    apply(state, fact, policy) -> (state, changes)

Pure: no database, broker or web imports. Every rung condition is `count >= threshold` over counts that
only grow, so a rung once met stays met, and the final rung and the set of rungs entered do not depend on
the order events arrive in. A customer never steps down.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from services.scoring.domain.policy import Policy
from services.scoring.domain.state import (
    RANK,
    STAGES,
    CustomerState,
    MonthActivity,
    PendingReferral,
    day_index,
    month_index,
)
from shared.frozen import quick_init
from shared.wire.messages import Fact


@quick_init
@dataclass(frozen=True, slots=True)
class StageChanged:
    """A customer entered `to_stage`."""

    customer_id: str
    from_stage: str
    to_stage: str
    occurred_at: datetime
    cause_event_id: str
    reason: str


@quick_init
@dataclass(frozen=True, slots=True)
class ReferralConverted:
    """A customer someone referred placed an order: the referrer's consultative loyalty counts it."""

    referrer_id: str
    referred_customer_id: str
    referral_event_id: str
    occurred_at: datetime


Change = StageChanged | ReferralConverted


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of a rung: the customer's value of a count against what the rung needs."""

    name: str
    have: int
    need: int

    @property
    def met(self) -> bool:
        return self.have >= self.need


def conditions(state: CustomerState, rung: str, *, policy: Policy) -> list[Condition]:
    """The conditions of `rung` under `policy` with `state`'s values (visitor needs only to be known)."""
    if rung == "visitor":
        return [Condition("known", int(state.known), 1)]
    if rung == "potential":
        return []
    return [Condition(name, state.count(name), need) for name, need in policy.conditions_of(rung)]


def reached_rung(state: CustomerState, *, policy: Policy, standing_on: str = "potential") -> str:
    """The highest rung whose conditions, and those of every rung between it and `standing_on`, hold.

    Any event but a prospect listing tells that the customer knows us, so `visitor` is reached unless the
    shop has only listed them. The rungs up to `standing_on` count as met, as they are for `next_rung`: a
    customer never steps down.
    """
    if RANK[standing_on] < RANK["visitor"] and not state.known:
        return standing_on
    reached = standing_on if RANK[standing_on] > RANK["visitor"] else "visitor"
    for rung in STAGES[RANK[reached] + 1 :]:
        for name, need in policy.conditions_of(rung):
            if state.count(name) < need:
                return reached
        reached = rung
    return reached


def _reason(state: CustomerState, rung: str, fact: Fact, *, policy: Policy) -> str:
    if rung == "visitor":
        return f"first touch: {fact.channel}" if fact.kind == "touch_made" else "first event: knows us"
    conds = conditions(state, rung, policy=policy)
    if {c.name for c in conds} == {"orders", "order_months"}:
        # the contract's own wording: "3 orders in 2 months"
        return f"{_counted(state.orders, 'orders')} in {_counted(len(state.order_months), 'months')}"
    return ", ".join(_counted(c.have, c.name.replace("_", " ")) for c in conds) or rung


@functools.lru_cache(maxsize=1024)  # a handful of (count, noun) pairs recur in every reason
def _counted(n: int, plural: str) -> str:
    """'1 order', '3 orders', '1 referral made', '2 full price orders'."""
    if n == 1:
        words = plural.split(" ")
        noun = next((i for i in range(len(words) - 1, -1, -1) if words[i].endswith("s")), None)
        if noun is not None:
            words[noun] = words[noun][:-1]
        return f"1 {' '.join(words)}"
    return f"{n} {plural}"


def new_customer(customer_id: str, at: datetime) -> CustomerState:
    """A customer not seen before: on `potential`, and onto `visitor` with any event but a prospect listing."""
    return CustomerState(
        customer_id=customer_id, stage="potential", stage_entered_at=at, first_seen_at=at, last_event_at=at, known=False
    )


def _with_activity(
    activity: tuple[tuple[int, MonthActivity], ...], at: datetime, delta: MonthActivity, *, policy: Policy
) -> tuple[tuple[int, MonthActivity], ...]:
    """`activity` with `delta` added to the month of `at`, keeping only the horizon before the newest month.

    Both the add and the cut are decided from the set of months alone, so any arrival order ends
    with the same buckets.
    """
    month = month_index(at)
    if activity:
        newest = activity[-1][0]
        if newest == month:
            # the common case, an event in the newest month: nothing falls out of the horizon
            return (*activity[:-1], (month, activity[-1][1].plus(delta)))
        if month > newest and policy.activity_horizon_months > 0:
            # the next common case, a new newest month: append it, and the months it pushes out of the
            # horizon are a prefix (the buckets are in month order)
            cutoff = month - policy.activity_horizon_months
            first = 0
            while first < len(activity) and activity[first][0] <= cutoff:
                first += 1
            return (*activity[first:], (month, delta))
    buckets = dict(activity)
    newest = max(month, activity[-1][0]) if activity else month
    cutoff = newest - policy.activity_horizon_months
    if month > cutoff:
        current = buckets.get(month)
        buckets[month] = current.plus(delta) if current is not None else delta
    return tuple(sorted((m, a) for m, a in buckets.items() if m > cutoff))


def _conversion(pending: PendingReferral, referred: str) -> ReferralConverted:
    return ReferralConverted(
        referrer_id=pending.referrer_id,
        referred_customer_id=referred,
        referral_event_id=pending.referral_event_id,
        occurred_at=pending.occurred_at,
    )


_ACTIVITY = {
    "order_placed": None,  # depends on the amount
    "order_refunded": MonthActivity(refunds=1),
    "referral_made": MonthActivity(referrals=1),
    "referral_converted": MonthActivity(conversions=1),
    "complaint_filed": MonthActivity(complaints=1),
    "prospect_listed": None,
    "touch_made": None,  # depends on the direction
}
_INBOUND = MonthActivity(inbound_touches=1)


def _count(state: CustomerState, fact: Fact, *, policy: Policy) -> tuple[CustomerState, list[Change]]:
    """The counts, sums and buckets after `fact`, and any cross-customer effect it causes (one state built)."""
    at = fact.occurred_at
    kind = fact.kind
    effects: list[Change] = []
    orders, refunds, full_price = state.orders, state.refunds, state.full_price_orders
    referrals_made, referrals_converted, complaints = state.referrals_made, state.referrals_converted, state.complaints
    touches = state.touches
    sales, costs = state.sales, state.costs
    order_months, pending = state.order_months, state.pending_referrals
    order_days, last_order_at = state.order_days, state.last_order_at
    delta = _ACTIVITY.get(kind)
    if kind == "order_placed":
        if orders == 0 and pending:
            effects.extend(
                _conversion(p, state.customer_id) for p in sorted(pending, key=lambda p: p.referral_event_id)
            )
            pending = frozenset()
        orders += 1
        if fact.discount == 0:
            full_price += 1
        sales += fact.amount
        costs += fact.cost
        month = month_index(at)
        if month not in order_months:
            order_months = order_months | {month}
        day = day_index(at)
        if day not in order_days:
            order_days = order_days | {day}
        if last_order_at is None or at > last_order_at:
            last_order_at = at
        delta = MonthActivity(orders=1, order_value=fact.amount)
    elif kind == "order_refunded":
        # a refund never undoes a rung: it moves money and procedural loyalty only
        refunds += 1
        sales -= fact.amount
        costs += fact.cost
    elif kind == "referral_made":
        referrals_made += 1
        costs += fact.cost
    elif kind == "referral_received":
        referral = PendingReferral(
            referral_event_id=fact.event_id, referrer_id=fact.other_customer_id or "", occurred_at=at
        )
        if orders > 0:
            effects.append(_conversion(referral, state.customer_id))
        else:
            pending = pending | {referral}
    elif kind == "referral_converted":
        referrals_converted += 1
    elif kind == "complaint_filed":
        complaints += 1
        costs += fact.cost
    elif kind == "touch_made":
        touches += 1
        if fact.direction == "inbound":
            delta = _INBOUND
    elif kind == "prospect_listed":
        pass  # the customer exists (first_seen_at below), and nothing else: a listing is not a contact
    else:
        raise ValueError(f"unknown fact kind {kind!r}")
    activity = state.activity if delta is None else _with_activity(state.activity, at, delta, policy=policy)
    after = CustomerState(
        customer_id=state.customer_id,
        stage=state.stage,
        stage_entered_at=state.stage_entered_at,
        first_seen_at=min(state.first_seen_at, at),
        last_event_at=max(state.last_event_at, at),
        orders=orders,
        refunds=refunds,
        full_price_orders=full_price,
        referrals_made=referrals_made,
        referrals_converted=referrals_converted,
        complaints=complaints,
        touches=touches,
        known=state.known or kind != "prospect_listed",
        sales=sales,
        costs=costs,
        order_months=order_months,
        activity=activity,
        pending_referrals=pending,
        order_days=order_days,
        last_order_at=last_order_at,
    )
    return after, effects


def apply(state: CustomerState | None, fact: Fact, *, policy: Policy) -> tuple[CustomerState, list[Change]]:
    """The customer's state after `fact`, the rungs it entered (in ladder order) and its cross-customer effects."""
    before = state if state is not None else new_customer(fact.customer_id, fact.occurred_at)
    after, effects = _count(before, fact, policy=policy)
    target = reached_rung(after, policy=policy, standing_on=before.stage)
    changes: list[Change] = []
    for rank in range(RANK[before.stage] + 1, RANK[target] + 1):
        to_stage = STAGES[rank]
        changes.append(
            StageChanged(
                customer_id=after.customer_id,
                from_stage=STAGES[rank - 1],
                to_stage=to_stage,
                occurred_at=fact.occurred_at,
                cause_event_id=fact.event_id,
                reason=_reason(after, to_stage, fact, policy=policy),
            )
        )
    if changes:
        # spelled out rather than dataclasses.replace, which looks up the fields on every call
        after = CustomerState(
            customer_id=after.customer_id,
            stage=target,
            stage_entered_at=fact.occurred_at,
            first_seen_at=after.first_seen_at,
            last_event_at=after.last_event_at,
            orders=after.orders,
            refunds=after.refunds,
            full_price_orders=after.full_price_orders,
            referrals_made=after.referrals_made,
            referrals_converted=after.referrals_converted,
            complaints=after.complaints,
            touches=after.touches,
            known=after.known,
            sales=after.sales,
            costs=after.costs,
            order_months=after.order_months,
            activity=after.activity,
            pending_referrals=after.pending_referrals,
            order_days=after.order_days,
            last_order_at=after.last_order_at,
        )
    return after, [*changes, *effects]


def next_rung(state: CustomerState, *, policy: Policy) -> tuple[str | None, list[Condition]]:
    """The rung above the customer's and its conditions with their values; (None, []) on the top rung."""
    rank = RANK[state.stage]
    if rank + 1 >= len(STAGES):
        return None, []
    rung = STAGES[rank + 1]
    # the rungs below are met already (they stand on them), so only the next rung's own conditions remain
    return rung, conditions(state, rung, policy=policy)
