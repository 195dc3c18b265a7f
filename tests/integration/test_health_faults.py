"""A kill -9 in the middle of the sweep after a refit loses and doubles nothing.

The same customers are brought to a new model version twice, on two copies of one database: once in a process
that is SIGKILLed at the `health.before_commit` fault point again and again (and started again each time), once
without faults. Both end with every customer on the new version and the same status changes in the outbox, one
row per change, each with its stable id.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime

from sqlalchemy import text

from devstack.embedded import EmbeddedPostgres, create_database
from services.scoring.domain.health import Params
from services.scoring.health.marks import health_message_id
from services.scoring.health.models import save_model
from services.scoring.store import process_batch
from services.scoring.unit_of_work import session
from shared.adapters.db import make_engine
from tests.cdnow import purchases
from tests.integration.test_health_store import POLICY, _ctx
from tests.support import ROOT, uid
from tests.unit.domain_builders import order

NOW = datetime(1998, 3, 1, 12, tzinfo=UTC)
SWEEP = """
import sys
from datetime import datetime
from services.scoring.domain.policy import parse_policy
from services.scoring.health.models import ModelSource
from services.scoring.health.scan import sweep
from shared.adapters.db import make_engine
from shared.faults import Faults
url, spec, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
engine = make_engine(url)
source = ModelSource(engine, policy=parse_policy(""), topic="health", ttl_s=0)
sweep(engine, source.context(now), batch=150, faults=Faults(spec))
"""


def _sweep_until_done(url: str, spec: str) -> int:
    """Run the sweep in a process until one run ends by itself; the number of runs that were killed."""
    kills = 0
    while True:
        done = subprocess.run(
            [sys.executable, "-c", SWEEP, url, spec, NOW.isoformat()], cwd=ROOT, timeout=120, check=False
        )
        if done.returncode == 0:
            return kills
        assert done.returncode == -9, f"the sweep failed for another reason: {done.returncode}"
        kills += 1
        assert kills < 200, "the sweep never finished"


def _outcome(url: str) -> tuple[dict[str, tuple[str, int]], list[tuple[str, str]]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        customers = {
            r.customer_id: (r.health_status, r.health_transitions, r.health_model_version)
            for r in conn.execute(
                text("SELECT customer_id, health_status, health_transitions, health_model_version FROM customers")
            )
        }
        messages = [
            (r.key, r.message_id)
            for r in conn.execute(text("SELECT key, message_id FROM outbox WHERE topic = 'health' ORDER BY id"))
        ]
    engine.dispose()
    assert {v for _, _, v in customers.values()} == {1}, "every customer on the new model"
    return {c: (s, n) for c, (s, n, _) in customers.items()}, messages


def test_a_sweep_killed_again_and_again_ends_where_an_unharmed_one_does(
    pg: EmbeddedPostgres, database_url: str
) -> None:
    engine = make_engine(database_url)
    facts = [
        order(f"cd-{i}", datetime(d.year, d.month, d.day, 12, tzinfo=UTC), customer=c)
        for i, (c, d, _) in enumerate(purchases())
        if d <= date(1997, 12, 31)
    ]
    for i in range(0, len(facts), 3000):
        with session(engine) as conn:
            process_batch(
                conn,
                facts=facts[i : i + 3000],
                policy=POLICY,
                stage_topic="stage",
                conversion_topic="facts",
                health=_ctx(NOW),
            )
    with session(engine) as conn:
        # a model under which P(alive) is far lower than under the priors: many customers change status
        save_model(
            conn,
            kind="mbg_nbd",
            params=Params(r=0.3, alpha=3.0, a=2.0, b=1.0),
            customers=2357,
            log_likelihood=-1.0,
            fitted_at=NOW,
        )
    engine.dispose()
    name = database_url.rpartition("/")[2]
    copy = create_database(pg.url, f"t_{uid()}", template=name)

    kills = _sweep_until_done(database_url, "health.before_commit=0.4")
    assert kills >= 1
    assert _sweep_until_done(copy, "") == 0
    harmed, harmed_messages = _outcome(database_url)
    clean, clean_messages = _outcome(copy)
    assert harmed == clean
    assert sorted(harmed_messages) == sorted(clean_messages)
    assert len(harmed_messages) == len(set(harmed_messages)) > 100
    # one row per status change, with the ids of transitions 1..n of each customer
    expected = sorted((c, health_message_id(c, k)) for c, (_, n) in clean.items() for k in range(1, n + 1))
    assert sorted(harmed_messages) == expected
