"""The ladder as a whole: how many customers stand on each rung, and the rules that put them there."""

from __future__ import annotations

from sqlalchemy import Engine, text

from services.scoring.domain.measures import TIERS
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import STAGES


def stage_counts(engine: Engine) -> dict[str, object]:
    """Customers per rung and per rung by tier; every rung and tier present, zeros included."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT stage, tier, count(*) AS n, "
                                 "count(*) FILTER (WHERE health_status = 'at_risk') AS at_risk "
                                 "FROM customers GROUP BY stage, tier")).all()
    counts = {(r.stage, r.tier): int(r.n) for r in rows}
    at_risk = {(r.stage, r.tier): int(r.at_risk) for r in rows}
    stages = {
        stage: {
            "customers": sum(n for (s, _), n in counts.items() if s == stage),
            "tiers": {t: counts.get((stage, t), 0) for t in TIERS},
            "at_risk": sum(n for (s, _), n in at_risk.items() if s == stage),
        }
        for stage in STAGES
    }
    return {"customers": sum(counts.values()), "stages": stages}


def policy_view(policy: Policy) -> dict[str, object]:
    """The GET /v1/policy body: rung conditions, tier limits and loyalty constants of `policy`."""
    return {
        "rungs": [{"rung": rung, "conditions": dict(conds)} for rung, conds in policy.rungs],
        "profitable_min": str(policy.profitable_min),
        "unprofitable_below": str(policy.unprofitable_below),
        "activity_horizon_months": policy.activity_horizon_months,
        "loyalty": {kind: {"half_life_days": p.half_life_days, "scale": p.scale, "extra": p.extra}
                    for kind, p in policy.kinds},
        "health": {"model": policy.health.model, "at_risk_below": policy.health.at_risk_below,
                   "min_customers": policy.health.min_customers, "prior": policy.health.prior.as_dict()},
    }
