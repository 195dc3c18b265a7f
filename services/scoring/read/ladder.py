"""The ladder as a whole: how many customers stand on each rung, and the rules that put them there."""

from __future__ import annotations

from sqlalchemy import Engine, text

from services.scoring.domain.measures import TIERS
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import LOYALTY_KINDS, STAGES


def stage_counts(engine: Engine) -> dict[str, object]:
    """Customers per rung, per rung by tier, and per rung by the kind to develop; every key present, zeros included.

    One GROUP BY over the stored columns. `develop` counts the stored focus (as of each customer's last event),
    so a customer not written since it is stored is in `customers` and `tiers` but in no `develop` count.
    """
    with engine.connect() as conn:
        counts = [
            (r.stage, r.tier, r.develop, int(r.n), int(r.at_risk))
            for r in conn.execute(
                text(
                    "SELECT stage, tier, develop, count(*) AS n, "
                    "count(*) FILTER (WHERE health_status = 'at_risk') AS at_risk "
                    "FROM customers GROUP BY stage, tier, develop"
                )
            )
        ]
    stages = {
        stage: {
            "customers": sum(n for s, _, _, n, _ in counts if s == stage),
            "tiers": {t: sum(n for s, tt, _, n, _ in counts if s == stage and tt == t) for t in TIERS},
            "develop": {k: sum(n for s, _, d, n, _ in counts if s == stage and d == k) for k in LOYALTY_KINDS},
            "at_risk": sum(r for s, _, _, _, r in counts if s == stage),
        }
        for stage in STAGES
    }
    return {"customers": sum(n for _, _, _, n, _ in counts), "stages": stages}


def policy_view(policy: Policy) -> dict[str, object]:
    """The GET /v1/policy body: rung conditions, tier limits, loyalty constants and the focus of `policy`."""
    return {
        "rungs": [{"rung": rung, "conditions": dict(conds)} for rung, conds in policy.rungs],
        "profitable_min": str(policy.profitable_min),
        "unprofitable_below": str(policy.unprofitable_below),
        "activity_horizon_months": policy.activity_horizon_months,
        "loyalty": {
            kind: {"half_life_days": p.half_life_days, "scale": p.scale, "extra": p.extra} for kind, p in policy.kinds
        },
        "focus": {
            "weights": {k: float(w) for k, w in zip(LOYALTY_KINDS, policy.focus.weights, strict=True)},
            "actions": dict(zip(LOYALTY_KINDS, policy.focus.actions, strict=True)),
        },
        "health": {
            "model": policy.health.model,
            "at_risk_below": policy.health.at_risk_below,
            "min_customers": policy.health.min_customers,
            "prior": policy.health.prior.as_dict(),
        },
    }
