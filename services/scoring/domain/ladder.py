"""The ladder's whole rulebook: how one fact changes one customer, and which rungs that enters.

    apply(state, fact, policy) -> (state, changes)

Pure: no database, broker or web imports. Every rung condition is `count >= threshold` over counts that
only grow, so a rung once met stays met, and the final rung and the set of rungs entered do not depend on
the order events arrive in. A customer never steps down.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from services.scoring.domain.policy import Policy
from services.scoring.domain.state import (
    RANK,
    STAGES,
    CustomerState,
    MonthActivity,
    PendingReferral,
    month_index,
)
from shared.messages import Fact


@dataclass(frozen=True, slots=True)
class StageChanged:
    """A customer entered `to_stage`."""

    customer_id: str
    from_stage: str
    to_stage: str
    occurred_at: datetime
    cause_event_id: str
    reason: str


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
        return [Condition("known", 1, 1)]
    if rung == "potential":
        return []
    return [Condition(name, state.count(name), need) for name, need in policy.conditions_of(rung)]


def reached_rung(state: CustomerState, *, policy: Policy) -> str:
    """The highest rung whose conditions, and those of every rung below it, hold."""
    reached = "visitor"  # a customer exists from their first event, and so knows us
    for rung in STAGES[RANK["first_purchase"]:]:
        if not all(c.met for c in conditions(state, rung, policy=policy)):
            break
        reached = rung
    return reached


def _reason(state: CustomerState, rung: str, *, policy: Policy) -> str:
    if rung == "visitor":
        return "first event: knows us"
    conds = conditions(state, rung, policy=policy)
    if {c.name for c in conds} == {"orders", "order_months"}:
        return f"{state.orders} orders in {len(state.order_months)} months"  # the contract's own wording
    return ", ".join(f"{c.have} {c.name.replace('_', ' ')}" for c in conds) or rung


def new_customer(customer_id: str, at: datetime) -> CustomerState:
    """A customer not seen before: on `potential`, about to step onto `visitor`."""
    return CustomerState(customer_id=customer_id, stage="potential", stage_entered_at=at,
                         first_seen_at=at, last_event_at=at)


def _add_activity(state: CustomerState, at: datetime, delta: MonthActivity, *, policy: Policy) -> CustomerState:
    """Add `delta` to the month of `at`, keeping only the horizon before the newest month.

    Both the add and the cut are decided from the set of months alone, so any arrival order ends
    with the same buckets.
    """
    month = month_index(at)
    buckets = dict(state.activity)
    newest = max([month, *buckets])
    cutoff = newest - policy.activity_horizon_months
    if month > cutoff:
        buckets[month] = buckets.get(month, MonthActivity()).plus(delta)
    kept = tuple(sorted((m, a) for m, a in buckets.items() if m > cutoff))
    return replace(state, activity=kept)


def _conversion(pending: PendingReferral, referred: str) -> ReferralConverted:
    return ReferralConverted(referrer_id=pending.referrer_id, referred_customer_id=referred,
                             referral_event_id=pending.referral_event_id, occurred_at=pending.occurred_at)


def _count(state: CustomerState, fact: Fact, *, policy: Policy) -> tuple[CustomerState, list[Change]]:
    """The counts, sums and buckets after `fact`, and any cross-customer effect it causes."""
    at = fact.occurred_at
    effects: list[Change] = []
    s = replace(state, first_seen_at=min(state.first_seen_at, at), last_event_at=max(state.last_event_at, at))
    if fact.kind == "order_placed":
        first_order = s.orders == 0
        s = replace(
            s,
            orders=s.orders + 1,
            full_price_orders=s.full_price_orders + (1 if fact.discount == 0 else 0),
            sales=s.sales + fact.amount,
            costs=s.costs + fact.cost,
            order_months=s.order_months | {month_index(at)},
        )
        s = _add_activity(s, at, MonthActivity(orders=1, order_value=fact.amount), policy=policy)
        if first_order and s.pending_referrals:
            effects.extend(_conversion(p, s.customer_id) for p in sorted(
                s.pending_referrals, key=lambda p: p.referral_event_id))
            s = replace(s, pending_referrals=frozenset())
    elif fact.kind == "order_refunded":
        # a refund never undoes a rung: it moves money and procedural loyalty only
        s = replace(s, refunds=s.refunds + 1, sales=s.sales - fact.amount, costs=s.costs + fact.cost)
        s = _add_activity(s, at, MonthActivity(refunds=1), policy=policy)
    elif fact.kind == "referral_made":
        s = replace(s, referrals_made=s.referrals_made + 1, costs=s.costs + fact.cost)
        s = _add_activity(s, at, MonthActivity(referrals=1), policy=policy)
    elif fact.kind == "referral_received":
        pending = PendingReferral(referral_event_id=fact.event_id, referrer_id=fact.other_customer_id or "",
                                  occurred_at=at)
        if s.orders > 0:
            effects.append(_conversion(pending, s.customer_id))
        else:
            s = replace(s, pending_referrals=s.pending_referrals | {pending})
    elif fact.kind == "referral_converted":
        s = replace(s, referrals_converted=s.referrals_converted + 1)
        s = _add_activity(s, at, MonthActivity(conversions=1), policy=policy)
    elif fact.kind == "complaint_filed":
        s = replace(s, complaints=s.complaints + 1, costs=s.costs + fact.cost)
        s = _add_activity(s, at, MonthActivity(complaints=1), policy=policy)
    else:
        raise ValueError(f"unknown fact kind {fact.kind!r}")
    return s, effects


def apply(state: CustomerState | None, fact: Fact, *, policy: Policy) -> tuple[CustomerState, list[Change]]:
    """The customer's state after `fact`, the rungs it entered (in ladder order) and its cross-customer effects."""
    before = state if state is not None else new_customer(fact.customer_id, fact.occurred_at)
    after, effects = _count(before, fact, policy=policy)
    target = reached_rung(after, policy=policy)
    changes: list[Change] = []
    for rank in range(RANK[before.stage] + 1, RANK[target] + 1):
        to_stage = STAGES[rank]
        changes.append(StageChanged(
            customer_id=after.customer_id, from_stage=STAGES[rank - 1], to_stage=to_stage,
            occurred_at=fact.occurred_at, cause_event_id=fact.event_id,
            reason=_reason(after, to_stage, policy=policy),
        ))
    if changes:
        after = replace(after, stage=target, stage_entered_at=fact.occurred_at)
    return after, [*changes, *effects]


def next_rung(state: CustomerState, *, policy: Policy) -> tuple[str | None, list[Condition]]:
    """The rung above the customer's and its conditions with their values; (None, []) on the top rung."""
    rank = RANK[state.stage]
    if rank + 1 >= len(STAGES):
        return None, []
    rung = STAGES[rank + 1]
    # the rungs below are met already (they stand on them), so only the next rung's own conditions remain
    return rung, conditions(state, rung, policy=policy)
