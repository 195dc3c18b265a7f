"""One customer: its stored state, its rung history, and the views of them the API serves."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, text

from services.scoring.domain.focus import focus
from services.scoring.domain.ladder import next_rung
from services.scoring.domain.measures import loyalty, profitability, stability
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import RANK, CustomerState, from_text
from services.scoring.read.health import customer_health


def load_state(conn: Connection, *, customer_id: str) -> CustomerState | None:
    """A customer's state, or None when unknown."""
    row = conn.execute(text("SELECT state FROM customers WHERE customer_id = :id"), {"id": customer_id}).first()
    return None if row is None else from_text(row.state)


def load_history(conn: Connection, *, customer_id: str) -> list[dict[str, object]]:
    """A customer's rung history, lowest rung first."""
    history = [
        dict(r._mapping)
        for r in conn.execute(
            text(
                "SELECT from_stage, to_stage, occurred_at, cause_event_id, reason FROM stage_history "
                "WHERE customer_id = :id"
            ),
            {"id": customer_id},
        )
    ]
    # by rung, not by time: several rungs entered on one event share a moment
    history.sort(key=lambda h: RANK[str(h["to_stage"])])
    return history


def customer_view(
    state: CustomerState,
    history: list[dict[str, object]],
    *,
    policy: Policy,
    at: datetime,
    health: dict[str, object] | None = None,
) -> dict[str, object]:
    """The GET /v1/customers/{id} body for `state` as of `at`; its focus too is as of `at` (loyalty fades)."""
    scores = loyalty(state, at=at, policy=policy)
    return {
        "customer_id": state.customer_id,
        "stage": state.stage,
        "stage_entered_at": state.stage_entered_at,
        "loyalty": scores.as_dict(),
        "profitability": profitability(state, policy=policy),
        "stability": stability(state, at=at),
        "counts": {
            "orders": state.orders,
            "refunds": state.refunds,
            "full_price_orders": state.full_price_orders,
            "referrals_made": state.referrals_made,
            "referrals_converted": state.referrals_converted,
            "complaints": state.complaints,
        },
        "first_seen_at": state.first_seen_at,
        "last_event_at": state.last_event_at,
        "history": history,
        "focus": focus(scores, state.stage, policy.focus).as_dict(),
        "health": health,
    }


def customer(engine: Engine, *, customer_id: str, policy: Policy, at: datetime) -> dict[str, object] | None:
    """The customer view as of `at`, or None when the customer is unknown."""
    with engine.connect() as conn:
        state = load_state(conn, customer_id=customer_id)
        if state is None:
            return None
        history = load_history(conn, customer_id=customer_id)
        health = customer_health(conn, state, policy=policy, at=at)
    return customer_view(state, history, policy=policy, at=at, health=health)


def next_rung_view(state: CustomerState, *, policy: Policy) -> dict[str, object]:
    """The GET /v1/customers/{id}/next-rung body: the rung above and each condition with the customer's value."""
    rung, conds = next_rung(state, policy=policy)
    return {
        "stage": state.stage,
        "next_stage": rung,
        "conditions": [{"name": c.name, "have": c.have, "need": c.need, "met": c.met} for c in conds],
    }


def customer_next_rung(engine: Engine, *, customer_id: str, policy: Policy) -> dict[str, object] | None:
    """The next-rung view of a customer, or None when the customer is unknown."""
    with engine.connect() as conn:
        state = load_state(conn, customer_id=customer_id)
    return None if state is None else next_rung_view(state, policy=policy)
