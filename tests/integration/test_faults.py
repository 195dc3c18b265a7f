"""The fast subset of the fault matrix (the whole matrix is `make chaos`, tests/chaos/).

Each test runs ingest and scoring as real processes against the session's PostgreSQL and broker, feeds a realistic
shop stream (duplicates and every kind of poison mixed in), does one kind of harm while the events flow, waits for
the system to settle and compares everything it shows with the oracle (tests/chaos/oracle.py): zero
discrepancies. A few thousand events and one or two kills per test; docs/reliability.md describes the matrix.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from devstack.embedded import EmbeddedBroker
from tests.chaos.faults import Monkey
from tests.chaos.harness import Harness, Outcome

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def harness(request: pytest.FixtureRequest, broker: EmbeddedBroker, database_url: str) -> Iterator[Harness]:
    h = Harness(bootstrap=broker.bootstrap, database_url=database_url, name=f"fast-{request.node.name[5:30]}")
    try:
        yield h
    finally:
        h.close()


def _assert_clean(outcome: Outcome) -> None:
    assert outcome.report.ok, outcome.failure()


def _start(h: Harness, *, ingest_faults: str = "", scoring_faults: str = "", budget: int = 0) -> None:
    ingest = h.add("ingest", faults=ingest_faults, fault_budget=budget if ingest_faults else 0)
    scoring = h.add("scoring", faults=scoring_faults, fault_budget=budget if scoring_faults else 0)
    h.wait_ready(ingest)
    h.wait_ready(scoring)


@pytest.mark.parametrize(
    ("service", "point"),
    [
        ("ingest", "ingest.after_flush"),
        ("scoring", "scoring.after_db_commit"),
        ("scoring", "relay.after_publish"),
    ],
)
def test_fault_point_kills_lose_and_double_nothing(harness: Harness, service: str, point: str) -> None:
    """FAULT_INJECTION SIGKILLs the process at `point` (up to twice; restarted each time): nothing lost or doubled."""
    spec = f"{point}=0.3"
    if service == "ingest":
        _start(harness, ingest_faults=spec, budget=2)
    else:
        _start(harness, scoring_faults=spec, budget=2)
    # paced so that there are dozens of batches (and chances to fire) while events flow
    harness.feed(harness.workload(events=1500, seed=11), rate=250)
    harness.run_feed()
    outcome = harness.finish(point)
    _assert_clean(outcome)
    assert harness.kills >= 1, f"{point} never fired"


def test_random_kill_9_of_scoring(harness: Harness) -> None:
    """kill -9 of the scoring process at a random moment while events flow."""
    _start(harness)
    harness.feed(harness.workload(events=2000, seed=12), rate=250)
    harness.run_feed(during=Monkey(harness, "scoring", kills=1, rng=random.Random(12), uptime=(1.5, 4.0)))
    outcome = harness.finish("kill -9 scoring")
    _assert_clean(outcome)
    assert harness.kills == 1


def test_duplicates_and_replay_from_the_beginning(harness: Harness) -> None:
    """Exact duplicates in the stream, then a second ingest with a new group id re-reads every shop topic: the
    state does not change and no stage change is published twice (dead letters are written again: allowed)."""
    _start(harness)
    harness.feed(harness.workload(events=1500, seed=13, duplicate_rate=0.15), rate=1000)
    harness.run_feed()
    first = harness.finish("duplicates", faults=False)
    _assert_clean(first)
    replay_group = f"ingest-replay-{harness.suffix}"
    harness.add("ingest", env={"INGEST_GROUP_ID": replay_group})
    outcome = harness.finish("duplicates + replay", ingest_groups=[replay_group], republish_allowed=False)
    _assert_clean(outcome)
    assert outcome.report.dead_letter_copies >= len(harness.expected().rejected)  # the replay re-dead-letters


def test_poison_mix_never_stops_the_stream(harness: Harness) -> None:
    """About a third of the stream is bad input of every kind: each is dead-lettered with its code, nothing else
    is affected."""
    _start(harness)
    harness.feed(harness.workload(events=1200, seed=14, poison_sets=12), rate=1000)
    harness.run_feed()
    outcome = harness.finish("poison mix", faults=False)
    _assert_clean(outcome)
    assert len(harness.expected().rejected) >= 360
