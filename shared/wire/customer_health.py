"""The `loyalty.customer-health` message: a customer's health status changed (contract section 11)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.wire.stage_changes import StageName

HealthStatus = Literal["active", "at_risk"]
HealthModelName = Literal["mbg_nbd", "bg_nbd"]


class CustomerHealthChanged(BaseModel):
    """A customer turned at risk, or recovered. Key = customer_id; one message per status change."""

    model_config = ConfigDict(title="CustomerHealthChanged", extra="forbid")

    event_id: str = Field(
        description="Stable and unique for (customer_id, transition number); the same on any re-publish."
    )
    type: Literal["customer_at_risk", "customer_recovered"]
    schema_version: Literal[1]
    customer_id: str = Field(min_length=1, max_length=128)
    stage: StageName = Field(description="The customer's rung (health never moves it).")
    p_alive: float = Field(ge=0, le=1, description="P(alive) as of `as_of` under the model version named.")
    expected_orders_90d: float = Field(ge=0, description="The model's expected orders in the next 90 days.")
    as_of: datetime = Field(description="When the health was computed (RFC 3339, UTC); its UTC day is the as-of day.")
    last_order_at: datetime = Field(description="occurred_at of the customer's latest order.")
    model_version: int = Field(ge=0, description="The health model version (0 = the policy's priors).")
