"""Response models of the scoring API and the stage-change message, field for field as the contract says."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

StageName = Literal["potential", "visitor", "first_purchase", "regular", "advocate"]
TierName = Literal["profitable", "middling", "unprofitable"]


class LoyaltyOut(BaseModel):
    """Five numbers in [0, 1]; formulas in docs/loyalty.md."""

    financial: float = Field(ge=0, le=1)
    procedural: float = Field(ge=0, le=1)
    contact: float = Field(ge=0, le=1)
    evaluative: float = Field(ge=0, le=1)
    consultative: float = Field(ge=0, le=1)


class ProfitabilityOut(BaseModel):
    """Exact money as 2-place decimal strings; profit = sales - costs."""

    sales: str = Field(examples=["300.00"])
    costs: str = Field(examples=["180.00"])
    profit: str = Field(examples=["120.00"])
    tier: TierName


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


class TierCounts(BaseModel):
    profitable: int
    middling: int
    unprofitable: int


class StageCount(BaseModel):
    customers: int
    tiers: TierCounts


class StagesOut(BaseModel):
    """GET /v1/stages: customers per rung, and per rung by tier."""

    customers: int
    stages: dict[StageName, StageCount]


class ErrorOut(BaseModel):
    """Every 4xx/5xx body."""

    error: str
    detail: str


class StageChangedMessage(BaseModel):
    """The value of a `loyalty.stage-changes` message (key = customer_id)."""

    model_config = ConfigDict(title="StageChanged")

    event_id: str = Field(description="Stable and unique for (customer_id, to_stage); the same on any re-publish.")
    type: Literal["stage_changed"]
    schema_version: Literal[1]
    customer_id: str
    from_stage: StageName
    to_stage: StageName
    occurred_at: datetime = Field(description="occurred_at of the event that caused the change.")
    cause_event_id: str
    reason: str
    loyalty: LoyaltyOut
    profitability: ProfitabilityOut


class CustomerItemOut(BaseModel):
    """One customer in a list (GET /v1/customers)."""

    customer_id: str
    stage: StageName
    loyalty: LoyaltyOut
    profitability: ProfitabilityOut
    stability: float = Field(ge=0, le=1)


class CustomerListOut(BaseModel):
    """GET /v1/customers: one keyset page, in customer_id order."""

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
    """Customers who entered each rung within one bucket."""

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


class RungPolicyOut(BaseModel):
    rung: StageName
    conditions: dict[str, int] = Field(description="count name -> the number the customer needs (>=).")


class PolicyOut(BaseModel):
    """GET /v1/policy (admin scope): the active policy's rung conditions and tier limits."""

    rungs: list[RungPolicyOut]
    profitable_min: str
    unprofitable_below: str
    activity_horizon_months: int
    loyalty: dict[str, dict[str, float]]
