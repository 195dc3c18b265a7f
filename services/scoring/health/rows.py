"""The health columns of a customer row, as the scoring transaction writes them with the rest of the row.

One upsert writes a customer's state and health together (a second statement would write every row twice).
Arrays travel in binary (`shared.adapters.pgarrays`), which has no nulls: a customer without an order sends
sentinels that the statement turns into nulls (`NULLIF`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.scoring.domain.policy import Policy
from services.scoring.domain.state import CustomerState
from services.scoring.health.marks import Assessment, HealthContext, HealthMark, assess
from shared.adapters.pgarrays import BigIntArray, DoubleArray, TextArray
from shared.frozen import quick_init

NO_DAY = -(2**62)  # the sentinel of "no order day" in a bigint[]; no real day is anywhere near it
DEFAULT_HEALTH_TOPIC = "loyalty.customer-health"

# (column, SQL type of its array, how the value is read from the array element `u.<name>`)
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("last_order_at", "timestamptz[]", "{v}"),
    ("order_first_day", "bigint[]", f"NULLIF({{v}}, {NO_DAY})::integer"),
    ("order_last_day", "bigint[]", f"NULLIF({{v}}, {NO_DAY})::integer"),
    ("order_day_count", "bigint[]", "NULLIF({v}, 0)::integer"),
    ("health_status", "text[]", "NULLIF({v}, '')"),
    ("p_alive", "float8[]", "NULLIF({v}, 'NaN')"),
    ("health_as_of", "timestamptz[]", "{v}"),
    ("health_model_version", "bigint[]", "NULLIF({v}, -1)::integer"),
    ("at_risk_since", "timestamptz[]", "{v}"),
    ("health_due_at", "timestamptz[]", "{v}"),
    ("health_transitions", "bigint[]", "{v}::integer"),
)


@quick_init
@dataclass(frozen=True, slots=True)
class HealthColumns:
    """One customer's health columns; `assessment` is None for a customer without an order."""

    last_order_at: datetime | None
    first_day: int
    last_day: int
    day_count: int
    assessment: Assessment | None
    as_of: datetime | None
    model_version: int
    transitions: int

    @staticmethod
    def upsert_fragments() -> dict[str, str]:
        """The pieces of the scoring upsert that write the health columns."""
        names = [f"h_{column}" for column, _, _ in _COLUMNS]
        return {
            "health_columns": ", ".join(column for column, _, _ in _COLUMNS),
            "health_values": ", ".join(read.format(v=name) for (_, _, read), name in zip(_COLUMNS, names, strict=True)),
            "health_arrays": ", ".join(
                f"%({name})b::{kind}" for (_, kind, _), name in zip(_COLUMNS, names, strict=True)
            ),
            "health_names": ", ".join(names),
            "health_updates": ", ".join(f"{column} = excluded.{column}" for column, _, _ in _COLUMNS),
        }


def prior_context(policy: Policy, *, now: datetime | None = None, topic: str = DEFAULT_HEALTH_TOPIC) -> HealthContext:
    """The policy's priors as of `now` (default: the wall clock): what is in force before any fit."""
    return HealthContext(
        model=policy.health.prior_model,
        at_risk_below=policy.health.at_risk_below,
        now=now or datetime.now(UTC),
        topic=topic,
    )


def health_of(state: CustomerState, mark: HealthMark, *, ctx: HealthContext) -> HealthColumns:
    """The health columns of `state` as of `ctx.now`, after `mark` (what the row held)."""
    days = state.order_days
    if not days or state.last_order_at is None:
        return HealthColumns(None, NO_DAY, NO_DAY, 0, None, None, -1, mark.transitions)
    first, last = min(days), max(days)
    result = assess(
        customer_id=state.customer_id,
        stage=state.stage,
        x=len(days) - 1,
        first_day=first,
        last_day=last,
        last_order_at=state.last_order_at,
        mark=mark,
        ctx=ctx,
    )
    return HealthColumns(
        state.last_order_at, first, last, len(days), result, ctx.now, ctx.model.version, result.mark.transitions
    )


def health_params(rows: list[HealthColumns]) -> dict[str, Any]:
    """The upsert's health array parameters, in the order of its customers."""
    nan = float("nan")
    assessed = [h.assessment for h in rows]
    return {
        "h_last_order_at": [h.last_order_at for h in rows],
        "h_order_first_day": BigIntArray([h.first_day for h in rows]),
        "h_order_last_day": BigIntArray([h.last_day for h in rows]),
        "h_order_day_count": BigIntArray([h.day_count for h in rows]),
        "h_health_status": TextArray([a.status if a is not None else "" for a in assessed]),
        "h_p_alive": DoubleArray([a.p_alive if a is not None else nan for a in assessed]),
        "h_health_as_of": [h.as_of for h in rows],
        "h_health_model_version": BigIntArray([h.model_version for h in rows]),
        "h_at_risk_since": [a.mark.at_risk_since if a is not None else None for a in assessed],
        "h_health_due_at": [a.due_at if a is not None else None for a in assessed],
        "h_health_transitions": BigIntArray([h.transitions for h in rows]),
    }
