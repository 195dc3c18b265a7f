"""Response models of the scoring API, field for field as the contract says."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

# every 4xx/5xx body of both services, defined beside the handlers they share
from shared.adapters.http import ErrorOut as ErrorOut
from shared.wire.stage_changes import Focus, KindName, LoyaltyVector, Profitability, StageName

# one definition of the rung names, tiers, loyalty vector, money block and focus: the stage-change message's
LoyaltyOut = LoyaltyVector
ProfitabilityOut = Profitability
FocusOut = Focus


class CountsOut(BaseModel):
    orders: int
    refunds: int
    full_price_orders: int
    referrals_made: int
    referrals_converted: int = Field(description="How many of the customers this one referred have placed an order.")
    complaints: int


class HistoryEntry(BaseModel):
    from_stage: StageName
    to_stage: StageName
    occurred_at: datetime
    cause_event_id: str
    reason: str


class CustomerOut(BaseModel):
    """GET /v1/customers/{customer_id}."""

    customer_id: str
    stage: StageName
    stage_entered_at: datetime
    loyalty: LoyaltyOut
    profitability: ProfitabilityOut
    stability: float = Field(ge=0, le=1, description="Share of the last 12 calendar months (UTC) with an order.")
    counts: CountsOut
    first_seen_at: datetime
    last_event_at: datetime
    history: list[HistoryEntry]
    focus: FocusOut = Field(description="As of now (loyalty fades), under the policy's focus weights and actions.")


class TierCounts(BaseModel):
    profitable: int
    middling: int
    unprofitable: int


class KindCounts(BaseModel):
    """Customers per loyalty kind."""

    financial: int
    procedural: int
    contact: int
    evaluative: int
    consultative: int


class StageCount(BaseModel):
    customers: int
    tiers: TierCounts
    develop: KindCounts = Field(description=(
        "Customers of the rung by the kind to develop, from the focus stored as of each customer's last event; "
        "a customer with no stored focus yet is in no count."))


class StagesOut(BaseModel):
    """GET /v1/stages: customers per rung, per rung by tier, and per rung by the kind to develop."""

    customers: int
    stages: dict[StageName, StageCount]


class StoredFocusOut(BaseModel):
    """The focus a list filters (`develop=`) and sorts (`sort=index`) on: as of the customer's last event."""

    develop: KindName
    index: float = Field(ge=0, le=1)

class CustomerItemOut(BaseModel):
    """One customer in a list (GET /v1/customers)."""

    customer_id: str
    stage: StageName
    loyalty: LoyaltyOut
    profitability: ProfitabilityOut
    stability: float = Field(ge=0, le=1)
    focus: StoredFocusOut | None = Field(description=(
        "The stored focus, as of the customer's last event; null for a customer with no event since it is "
        "stored. GET /v1/customers/{customer_id} gives the focus as of now."))


class CustomerListOut(BaseModel):
    """GET /v1/customers: one keyset page, in customer_id order or with sort=index by the stored index."""

    items: list[CustomerItemOut]
    next: str | None = Field(description="Opaque cursor for `after=` to get the next page; null on the last page.")


class ConditionOut(BaseModel):
    """One condition of a rung: the customer's count against the policy's threshold."""

    name: str = Field(examples=["full_price_orders"])
    have: int
    need: int
    met: bool


class NextRungOut(BaseModel):
    """GET /v1/customers/{customer_id}/next-rung."""

    stage: StageName
    next_stage: StageName | None = Field(description="null on advocate, the top rung.")
    conditions: list[ConditionOut]


class EnteredOut(BaseModel):
    """Customers who entered each rung within one bucket (`potential`: those first seen in it)."""

    potential: int
    visitor: int
    first_purchase: int
    regular: int
    advocate: int


class FlowBucketOut(BaseModel):
    start: str = Field(description="First day of the bucket, YYYY-MM-DD (UTC; weeks start on Monday).",
                       examples=["2026-06-01"])
    entered: EnteredOut


class FlowsOut(BaseModel):
    """GET /v1/flows: entries per rung per bucket, in time order, empty buckets included."""

    bucket: Literal["day", "week", "month"]
    series: list[FlowBucketOut]
    earlier: EnteredOut | None = Field(
        default=None, description="Only without `since`, when the entries reach back further than 10 years: the "
                                  "entries before the first bucket, so that buckets plus these add up to all.")


class RungPolicyOut(BaseModel):
    rung: StageName
    conditions: dict[str, int] = Field(description="count name -> the number the customer needs (>=).")


class FocusPolicyOut(BaseModel):
    """The shop's focus: a weight per kind (>= 0, at least one > 0) and a suggested action per kind."""

    weights: dict[KindName, float]
    actions: dict[KindName, str]


class PolicyOut(BaseModel):
    """GET /v1/policy (admin scope): the active policy's rung conditions, tier limits, loyalty constants, focus."""

    rungs: list[RungPolicyOut]
    profitable_min: str
    unprofitable_below: str
    activity_horizon_months: int
    loyalty: dict[str, dict[str, float]]
    focus: FocusPolicyOut


class RejectedLineOut(BaseModel):
    line: int = Field(description="The line's number as a text editor shows it (a CSV header is line 1).")
    error: str


class ImportOut(BaseModel):
    """POST /v1/prospects: what the import did."""

    imported: int = Field(description="Customers added on `potential`.")
    existing: int = Field(description="Rows whose customer was known already (left as they are).")
    rejected: list[RejectedLineOut] = Field(description="Bad lines, the first 1,000.")
    rejected_total: int = Field(description="All bad lines, listed or not.")


class ReachedOut(BaseModel):
    """Customers of a cohort standing on or above each rung now."""

    visitor: int
    first_purchase: int
    regular: int
    advocate: int


class CohortOut(BaseModel):
    start: str = Field(description="First day of the cohort's period, YYYY-MM-DD (UTC; weeks start on Monday).",
                       examples=["2026-06-01"])
    customers: int = Field(description="Customers first seen in the period (the earliest event naming them).")
    reached: ReachedOut


class FunnelOut(BaseModel):
    """GET /v1/funnel: per cohort of first-seen customers, how many stand on or above each rung now."""

    cohort: Literal["month", "week"]
    rows: list[CohortOut]
