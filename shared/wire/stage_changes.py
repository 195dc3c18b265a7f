"""The `loyalty.stage-changes` message: what marketing automation receives when a customer enters a rung."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

StageName = Literal["potential", "visitor", "first_purchase", "regular", "advocate"]
TierName = Literal["profitable", "middling", "unprofitable"]
KindName = Literal["financial", "procedural", "contact", "evaluative", "consultative"]


class LoyaltyVector(BaseModel):
    """Five numbers in [0, 1] (formulas: docs/loyalty.md)."""

    financial: float = Field(ge=0, le=1)
    procedural: float = Field(ge=0, le=1)
    contact: float = Field(ge=0, le=1)
    evaluative: float = Field(ge=0, le=1)
    consultative: float = Field(ge=0, le=1)


class Profitability(BaseModel):
    """Exact money as 2-place decimal strings; profit = sales - costs."""

    sales: str = Field(pattern=r"^-?\d+\.\d{2}$", examples=["300.00"])
    costs: str = Field(pattern=r"^-?\d+\.\d{2}$", examples=["180.00"])
    profit: str = Field(pattern=r"^-?\d+\.\d{2}$", examples=["120.00"])
    tier: TierName = Field(description="profitable: profit >= 100.00; unprofitable: profit < 0; else middling.")


class Focus(BaseModel):
    """Which kind of loyalty to encourage and which to develop, under the shop's focus (docs/loyalty.md)."""

    encourage: KindName = Field(
        description="The kind with the highest score (ties: financial, procedural, contact, evaluative, consultative)."
    )
    develop: KindName = Field(
        description="On potential, visitor and first_purchase the lowest of contact, "
        "evaluative and consultative; above, the largest weight x (1 - score). "
        "Same tie order."
    )
    action: str = Field(max_length=500, description="The policy's suggested action for `develop`.")
    index: float = Field(ge=0, le=1, description="The weighted mean of the five scores, 4 places.")


class StageChanged(BaseModel):
    """A customer entered a rung. Key = customer_id; one message per rung entered, in ladder order."""

    model_config = ConfigDict(title="StageChanged", extra="forbid")

    event_id: str = Field(description="Stable and unique for (customer_id, to_stage); the same on any re-publish.")
    type: Literal["stage_changed"]
    schema_version: Literal[1]
    customer_id: str = Field(min_length=1, max_length=128)
    from_stage: StageName
    to_stage: StageName
    occurred_at: datetime = Field(description="occurred_at of the event that caused the change (RFC 3339, UTC).")
    cause_event_id: str = Field(description="event_id of that event.")
    reason: str = Field(examples=["3 orders in 2 months"])
    loyalty: LoyaltyVector
    profitability: Profitability
    # optional in the schema (and never null): it came within schema_version 1, so a consumer must not require it
    focus: Focus | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "As of `occurred_at`, under the shop's focus (policy). Not required: schema_version 1 messages may lack it."
        ),
    )
