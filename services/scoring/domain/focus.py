"""Which kind of loyalty to encourage and which to develop next (contract section 16, seed 003).

    focus(scores, stage, policy.focus) -> Focus(encourage, develop, action, index)

- `encourage`: the kind with the highest score; seed 003 says to encourage the kinds a customer already shows.
- `develop`: on `potential`, `visitor` and `first_purchase`, the lowest of contact, evaluative and consultative
  (seed 003: new customers are moved to those first; financial and procedural loyalty come more easily after);
  on the rungs above, the kind with the largest weighted gap `weight x (1 - score)`: what the shop values
  most and the customer shows least.
- `action`: the policy's suggested action for `develop`.
- `index`: the weighted mean of the five scores, in [0, 1], 4 places.

Every tie goes to the kind first in LOYALTY_KINDS order (financial, procedural, contact, evaluative,
consultative). Scores have 4 places and weights are exact decimals, so all of it is computed in whole numbers
(scores in units of 1e-4, weights as `FocusPolicy.units`): a tie is exact, never a float rounding accident.
Pure: the caller decides the moment the scores are taken at.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.scoring.domain.measures import Loyalty
from services.scoring.domain.policy import FocusPolicy
from services.scoring.domain.state import LOYALTY_KINDS
from shared.frozen import quick_init

# the rungs below `regular`: customers the seed says to move to contact, evaluative and consultative first
NEW_CUSTOMER_STAGES = frozenset({"potential", "visitor", "first_purchase"})
FIRST_KINDS = ("contact", "evaluative", "consultative")
_ONE = 10_000  # a score of 1.0 in units of 1e-4


@quick_init
@dataclass(frozen=True, slots=True)
class Focus:
    """What to do with one customer's loyalty profile."""

    encourage: str
    develop: str
    action: str
    index: float

    def as_dict(self) -> dict[str, object]:
        return {"encourage": self.encourage, "develop": self.develop, "action": self.action, "index": self.index}


def _first_max(values: tuple[int, ...]) -> int:
    """Position of the largest value, the earliest on a tie."""
    best = 0
    for i in range(1, len(values)):
        if values[i] > values[best]:
            best = i
    return best


def focus(scores: Loyalty, stage: str, policy: FocusPolicy) -> Focus:
    """The focus of a customer on `stage` whose loyalty vector is `scores` (the policy's weights and actions)."""
    # five kinds spelled out, not loops over zips: this runs for every customer a batch writes
    q = (
        round(scores.financial * _ONE),
        round(scores.procedural * _ONE),
        round(scores.contact * _ONE),
        round(scores.evaluative * _ONE),
        round(scores.consultative * _ONE),
    )
    u0, u1, u2, u3, u4 = policy.units
    if stage in NEW_CUSTOMER_STAGES:
        # the lowest of contact (2), evaluative (3) and consultative (4), the earliest on a tie
        develop = 2 if q[2] <= q[3] and q[2] <= q[4] else (3 if q[3] <= q[4] else 4)
    else:
        develop = _first_max(
            (u0 * (_ONE - q[0]), u1 * (_ONE - q[1]), u2 * (_ONE - q[2]), u3 * (_ONE - q[3]), u4 * (_ONE - q[4]))
        )
    total = u0 + u1 + u2 + u3 + u4  # > 0: the policy refuses all-zero weights
    weighted = u0 * q[0] + u1 * q[1] + u2 * q[2] + u3 * q[3] + u4 * q[4]
    # weighted / total in units of 1e-4, rounded half up in whole numbers (exact, and the same on every machine)
    index = (2 * weighted + total) // (2 * total)
    return Focus(LOYALTY_KINDS[_first_max(q)], LOYALTY_KINDS[develop], policy.actions[develop], index / _ONE)


def index_units(result: Focus) -> int:
    """`result.index` in units of 1e-4 (0..10000), the form the customers table stores."""
    return round(result.index * _ONE)
