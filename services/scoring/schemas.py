"""Response models of the scoring API, field for field as the contract says."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# every 4xx/5xx body of both services, defined beside the handlers they share
from shared.adapters.http import ErrorOut as ErrorOut
from shared.wire.customer_health import HealthModelName, HealthStatus
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


class HealthOut(BaseModel):
    """A customer's health as of `as_of` (contract section 11); null for a customer without an order."""

    status: HealthStatus = Field(description="at_risk where p_alive is below the policy's at_risk_below.")
    p_alive: float = Field(ge=0, le=1, description="The probability that the customer is still an active buyer.")
    expected_orders_90d: float = Field(ge=0, description="The model's expected orders in the next 90 days.")
    as_of: datetime = Field(description="When it was computed; its UTC day is the as-of day of T.")
    model_version: int = Field(ge=0, description="The health model version used (0 = the policy's priors).")
    x: int = Field(ge=0, description="Distinct UTC days with an order, minus 1.")
    t_x_weeks: float = Field(ge=0, description="Weeks from the first order's day to the last order's day.")
    T_weeks: float = Field(ge=0, description="Weeks from the first order's day to the as-of day.")
    at_risk_since: datetime | None = Field(description="as_of of the change to at_risk; null while active.")


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
    health: HealthOut | None


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
    develop: KindCounts = Field(
        description=(
            "Customers of the rung by the kind to develop, from the focus stored as of each customer's last event; "
            "a customer with no stored focus yet is in no count."
        )
    )
    at_risk: int = Field(description="Customers on the rung whose health is at_risk.")


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
    focus: StoredFocusOut | None = Field(
        description=(
            "The stored focus, as of the customer's last event; null for a customer with no event since it is "
            "stored. GET /v1/customers/{customer_id} gives the focus as of now."
        )
    )


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
    start: str = Field(
        description="First day of the bucket, YYYY-MM-DD (UTC; weeks start on Monday).", examples=["2026-06-01"]
    )
    entered: EnteredOut


class FlowsOut(BaseModel):
    """GET /v1/flows: entries per rung per bucket, in time order, empty buckets included."""

    bucket: Literal["day", "week", "month"]
    series: list[FlowBucketOut]
    earlier: EnteredOut | None = Field(
        default=None,
        description="Only without `since`, when the entries reach back further than 10 years: the "
        "entries before the first bucket, so that buckets plus these add up to all.",
    )


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
    health: HealthPolicyOut


class HealthParamsOut(BaseModel):
    r: float = Field(gt=0)
    alpha: float = Field(gt=0, description="In weeks.")
    a: float = Field(gt=0)
    b: float = Field(gt=0)


class HealthPolicyOut(BaseModel):
    """The policy's `[health]` table."""

    model: HealthModelName
    at_risk_below: float
    min_customers: int
    prior: HealthParamsOut


class HealthModelOut(BaseModel):
    """GET /v1/health/model: the model in force (version 0 = the policy's priors, before any fit)."""

    version: int
    model: HealthModelName
    params: HealthParamsOut
    customers: int = Field(description="Customers with an order the fit was made on (0 for the priors).")
    log_likelihood: float | None = Field(description="Of the fit; null for the priors.")
    fitted_at: datetime | None = Field(description="null for the priors.")


class BacktestIn(BaseModel):
    """POST /v1/health/backtest."""

    model_config = ConfigDict(extra="forbid")

    cutoff: datetime = Field(description="RFC 3339; the calibration is every order day up to the cutoff's UTC day.")
    horizon_days: int = Field(default=273, ge=1, le=3650, description="The holdout: days after the cutoff's day.")
    model: HealthModelName = "mbg_nbd"


class FrequencyRowOut(BaseModel):
    x: int | Literal["7+"] = Field(description="Repeat orders (order days - 1) in the calibration period.")
    customers: int
    predicted: float = Field(description="Mean predicted repeat orders per customer in the holdout.")
    actual: float = Field(description="Mean actual repeat orders (order days) per customer in the holdout.")


class BacktestOut(BaseModel):
    """The fit on the calibration period and its forecast against what happened in the holdout."""

    model: HealthModelName
    cutoff: datetime
    horizon_days: int
    customers: int
    params: HealthParamsOut
    log_likelihood: float
    predicted_repeat_orders: float
    actual_repeat_orders: int
    by_frequency: list[FrequencyRowOut]


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
    start: str = Field(
        description="First day of the cohort's period, YYYY-MM-DD (UTC; weeks start on Monday).",
        examples=["2026-06-01"],
    )
    customers: int = Field(description="Customers first seen in the period (the earliest event naming them).")
    reached: ReachedOut


class FunnelOut(BaseModel):
    """GET /v1/funnel: per cohort of first-seen customers, how many stand on or above each rung now."""

    cohort: Literal["month", "week"]
    rows: list[CohortOut]


PolicyOut.model_rebuild()
