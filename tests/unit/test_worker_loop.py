"""The scoring loop's control flow around the consumer: a broker that is away makes `poll` raise, and the
process must stay up (its /readyz then says "broker") instead of dying with the traceback."""

from __future__ import annotations

from typing import Any

from kafka.errors import KafkaConnectionError

from services.scoring.worker import ScoringWorker
from shared.adapters.metrics import Metrics
from tests.unit.domain_builders import default_policy


class _BrokerAway:
    """A consumer whose first polls fail the way kafka-python's do when the broker refuses connections."""

    def __init__(self, worker_box: list[ScoringWorker], failures: int) -> None:
        self.worker_box, self.failures, self.polls = worker_box, failures, 0

    def poll(self, **_: Any) -> dict[Any, Any]:
        self.polls += 1
        if self.polls <= self.failures:
            raise KafkaConnectionError("111 ECONNREFUSED")
        self.worker_box[0].stopping.set()  # the broker is back: one empty poll, then stop the test's loop
        return {}

    def assignment(self) -> set[Any]:
        return set()


def test_a_failing_poll_is_retried_and_does_not_end_the_loop() -> None:
    box: list[ScoringWorker] = []
    consumer = _BrokerAway(box, failures=3)
    metrics = Metrics(service="scoring")
    worker = ScoringWorker(
        consumer=consumer,
        engine=None,
        policy=default_policy(),
        metrics=metrics,  # type: ignore[arg-type]
        dead_letter=None,
        dead_letter_topic="dl",
        stage_topic="stage",  # type: ignore[arg-type]
        conversion_topic="facts",
        poll_timeout_ms=10,
        max_records=16,
    )
    box.append(worker)
    worker.run()  # returns: before the fix the first KafkaConnectionError escaped and ended the process
    assert consumer.polls == 4
    assert metrics.registry.get_sample_value("loyalty_batch_retries_total", {"service": "scoring"}) == 3
