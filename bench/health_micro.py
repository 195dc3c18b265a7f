"""What health adds to the scoring transaction per customer, in microseconds (`python -m bench.health_micro`).

The transaction assesses every customer with an order it writes: the order days' summary, P(alive), the day
P(alive) will cross the threshold, the mark, and the upsert's extra array elements; the state text also carries
the order days. Each is timed alone on customers drawn from the bench's generator, and the whole of it against
`ladder.apply` of one order, the domain work every order already costs.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.scoring.__main__ import DEFAULT_POLICY
from services.scoring.domain.health import at_risk_from_day, p_alive, summary_of
from services.scoring.domain.ladder import apply
from services.scoring.domain.policy import Policy, parse_policy
from services.scoring.domain.state import CustomerState, from_text, to_text
from services.scoring.health.marks import NO_MARK
from services.scoring.health.rows import health_of, health_params, prior_context
from shared.wire.messages import Fact


def default_policy() -> Policy:
    return parse_policy(DEFAULT_POLICY.read_text(encoding="utf-8"))


def _customers(n: int) -> list[CustomerState]:
    """`n` customers with 1 to 6 orders each, a few weeks apart."""
    policy = default_policy()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    states: list[CustomerState] = []
    for c in range(n):
        state = None
        for k in range(1 + c % 6):
            fact = Fact(
                kind="order_placed",
                event_id=f"e{c}-{k}",
                role="primary",
                customer_id=f"c{c}",
                occurred_at=start + timedelta(days=37 * k + c % 200),
                amount=Decimal("20.00"),
            )
            state, _ = apply(state, fact, policy=policy)
        assert state is not None
        states.append(state)
    return states


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    policy = default_policy()
    states = _customers(args.customers)
    # as of a moment when about half of them are still active (those get a due moment computed)
    ctx = prior_context(policy, now=datetime(2025, 10, 1, tzinfo=UTC))
    model, threshold = ctx.model, ctx.at_risk_below
    summaries = [
        summary_of(
            x=len(s.order_days) - 1, first_day=min(s.order_days), last_day=max(s.order_days), as_of_day=ctx.today
        )
        for s in states
    ]
    texts = [to_text(s) for s in states]
    bare = [replace(s, order_days=frozenset(), last_order_at=None) for s in states]
    order = Fact(
        kind="order_placed",
        event_id="next",
        role="primary",
        customer_id="c",
        amount=Decimal("20.00"),
        occurred_at=datetime(2026, 5, 30, tzinfo=UTC),
    )

    def per_customer(fn: Callable[[], Any]) -> float:
        runs = timeit.repeat(fn, number=1, repeat=args.repeat)
        return min(runs) / len(states) * 1e6

    # what each row holds after its first assessment: the steady state, where most batches find no change
    marks = [a.mark for a in (health_of(s, NO_MARK, ctx=ctx).assessment for s in states) if a is not None]
    pairs = list(zip(states, marks, strict=True))
    changes = sum(1 for s in states if (h := health_of(s, NO_MARK, ctx=ctx).assessment) and h.message)
    print(
        f"{len(states)} customers, {changes} at risk on their first assessment (those build a message), "
        f"the others active (those get a due moment)"
    )
    rows = {
        "p_alive (closed form)": per_customer(lambda: [p_alive(model, s) for s in summaries]),
        "at-risk day (closed form, checked)": per_customer(
            lambda: [at_risk_from_day(model, s, at_risk_below=threshold) for s in summaries]
        ),
        "health_of, no change of status": per_customer(lambda: [health_of(s, m, ctx=ctx) for s, m in pairs]),
        "health_of + upsert arrays, no change": per_customer(
            lambda: health_params([health_of(s, m, ctx=ctx) for s, m in pairs])
        ),
        "health_of, first assessment (messages)": per_customer(
            lambda: [health_of(s, NO_MARK, ctx=ctx) for s in states]
        ),
        "to_text + from_text of the state": per_customer(lambda: [from_text(to_text(s)) for s in states]),
        "  the same without the order days [reference]": per_customer(lambda: [from_text(to_text(s)) for s in bare]),
        "apply(one order) [reference]": per_customer(lambda: [apply(s, order, policy=policy) for s in states]),
        "from_text [reference]": per_customer(lambda: [from_text(t) for t in texts]),
    }
    width = max(map(len, rows))
    for name, us in rows.items():
        print(f"{name:<{width}}  {us:6.2f} us/customer")


if __name__ == "__main__":
    main()
