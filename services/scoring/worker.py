"""The scoring consumer loop: poll a batch, run the transaction, commit offsets, wake the relay.

Order of a checkpoint: database commit, then Kafka offset commit. A crash between the two re-delivers the
batch, and the dedupe rows written in the same transaction make the second pass a no-op.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from services.scoring.domain.policy import Policy
from services.scoring.store import BatchOutcome, ConcurrentUpdate, StateCache, process_batch, session
from shared.faults import Faults
from shared.messages import Fact, MalformedFact, decode_record
from shared.metrics import Metrics

log = logging.getLogger(__name__)

_LOGGED_IDS = 20
SHOP_TYPE = {
    "order_placed": "purchase", "order_refunded": "purchase", "referral_made": "referral",
    "complaint_filed": "complaint",
}


class ScoringWorker:
    """Consumes `loyalty.scoring-input` and applies each batch in one transaction."""

    def __init__(self, *, consumer: KafkaConsumer, engine: Engine, policy: Policy, metrics: Metrics,
                 dead_letter: KafkaProducer, dead_letter_topic: str, stage_topic: str, conversion_topic: str,
                 poll_timeout_ms: int, max_records: int, on_commit: Callable[[], None] = lambda: None,
                 faults: Faults | None = None, cache: StateCache | None = None) -> None:
        self.consumer = consumer
        self.engine = engine
        self.policy = policy
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.dead_letter_topic = dead_letter_topic
        self.stage_topic = stage_topic
        self.conversion_topic = conversion_topic
        self.poll_timeout_ms = poll_timeout_ms
        self.max_records = max_records
        self.on_commit = on_commit
        self.faults = faults or Faults()
        # `is None`, not `or`: an empty cache is falsy (len 0), and `or` swapped every new one for a no-op
        self.cache = cache if cache is not None else StateCache(capacity=0)
        self.stopping = threading.Event()
        self._lag_refreshed = 0.0

    def run(self) -> None:
        """Loop until `stopping` is set; the batch in hand is finished first."""
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                batch = self.consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
            except KafkaError as exc:
                # the broker is away (kafka-python raises from the coordinator's metadata refresh): nothing was
                # read, so nothing to rewind; /readyz says "broker" meanwhile, and the process stays up
                self.metrics.batch_retries.labels(service="scoring").inc()
                log.warning("poll failed, retrying: %s", str(exc).splitlines()[0])
                self.stopping.wait(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 5.0)
                continue
            if not batch:
                self._refresh_lag()
                continue
            try:
                self.handle(batch)
                backoff = 0.1
            except (SQLAlchemyError, KafkaError, ConcurrentUpdate) as exc:
                # nothing of this batch is committed; read it again from its first offsets
                self.metrics.batch_retries.labels(service="scoring").inc()
                log.warning("batch failed, will re-read it: %s", str(exc).splitlines()[0])
                self._rewind(batch)
                self.stopping.wait(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 5.0)
            self._refresh_lag()

    def handle(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> BatchOutcome:
        """Apply one poll batch and commit its offsets after the database commit."""
        started = time.monotonic()
        facts: list[Fact] = []
        oldest_ts: list[int] = []  # per partition, the batch's worst case for the latency histogram
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        count = dead = 0
        for tp, records in batch.items():
            if records and records[0].timestamp:
                oldest_ts.append(records[0].timestamp)
            for record in records:
                try:
                    decoded = decode_record(record.value)
                except MalformedFact as exc:
                    self._dead_letter(record, str(exc))
                    dead += 1
                    continue
                facts.extend(decoded)
                count += len(decoded)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        if dead:
            self.dead_letter.flush()  # kept before the offsets move past them
        outcome = self._transact(facts)
        self.faults.point("scoring.after_db_commit")
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # the group rebalanced while we worked: the new owner re-reads these, and dedupe skips them
            log.warning("offset commit failed after a rebalance: %s", exc)
        self._record(outcome, count=count, started=started, oldest_ts=oldest_ts)
        self.on_commit()
        return outcome

    def _transact(self, facts: list[Fact]) -> BatchOutcome:
        attempts = 0
        while True:
            try:
                with session(self.engine) as conn:
                    outcome = process_batch(conn, facts=facts, policy=self.policy, stage_topic=self.stage_topic,
                                            conversion_topic=self.conversion_topic, cache=self.cache)
                self.cache.remember(outcome.written)  # committed: these are the versions in the table now
                return outcome
            except (ConcurrentUpdate, OperationalError, DBAPIError) as exc:
                # a stale cached version is what ConcurrentUpdate means, and after a failed commit nobody knows
                # which versions the table holds: every customer is read from the table again
                self.cache.clear()
                attempts += 1
                if attempts >= 5 or not _retryable(exc):
                    raise
                log.info("transaction conflict, retrying (%d): %s", attempts, str(exc).splitlines()[0])
                time.sleep(0.05 * attempts * (1 + random.random()))
            except BaseException:
                self.cache.clear()
                raise

    def _record(self, outcome: BatchOutcome, *, count: int, started: float, oldest_ts: list[int]) -> None:
        m = self.metrics
        # counted first, then one labels() lookup per series: a lookup per fact was a tenth of scoring's CPU
        events = Counter((SHOP_TYPE[f.kind], "accepted") for f in outcome.accepted if f.role == "primary")
        events.update((SHOP_TYPE[f.kind], "duplicate") for f in outcome.duplicates if f.role == "primary")
        for (event_type, result), n in events.items():
            m.events.labels(service="scoring", type=event_type, outcome=result).inc(n)
        for to_stage, n in Counter(c.to_stage for c in outcome.stage_changes).items():
            m.stage_changes.labels(to_stage=to_stage).inc(n)
        m.batch_duration.labels(service="scoring").observe(time.monotonic() - started)
        m.batch_size.labels(service="scoring").observe(count)
        now = datetime.now(UTC).timestamp()
        latency = m.processing_latency.labels(service="scoring")
        for ts in oldest_ts:
            latency.observe(max(0.0, now - ts / 1000))
        if outcome.accepted or outcome.duplicates:
            # ids, never payloads; capped so a large batch stays one readable line
            log.info("batch applied", extra={
                "accepted": len(outcome.accepted), "duplicates": len(outcome.duplicates),
                "stage_changes": len(outcome.stage_changes),
                "duplicate_event_ids": [f.event_id for f in outcome.duplicates[:_LOGGED_IDS]],
                "entered": [f"{c.customer_id}:{c.to_stage}:{c.cause_event_id}"
                            for c in outcome.stage_changes[:_LOGGED_IDS]],
            })

    def _dead_letter(self, rec: ConsumerRecord, reason: str) -> None:
        """An internal message that does not decode is a bug upstream: keep it, never drop it."""
        headers = [
            ("error.code", b"malformed_internal"), ("error.message", reason.encode()),
            ("source.topic", rec.topic.encode()), ("source.partition", str(rec.partition).encode()),
            ("source.offset", str(rec.offset).encode()),
        ]
        self.dead_letter.send(self.dead_letter_topic, key=rec.key, value=rec.value, headers=headers)
        self.metrics.dead_letters.labels(error_code="malformed_internal").inc()
        log.error("undecodable internal message dead-lettered: %s", reason,
                  extra={"topic": rec.topic, "offset": rec.offset})

    def _rewind(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            if records and tp in self.consumer.assignment():
                self.consumer.seek(tp, records[0].offset)

    def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_refreshed < 5:
            return
        self._lag_refreshed = now
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        try:
            ends = self.consumer.end_offsets(assigned)
        except KafkaError as exc:
            log.debug("lag refresh failed: %s", exc)
            return
        for tp in assigned:
            position = self.consumer.position(tp)
            self.metrics.consumer_lag.labels(service="scoring", topic=tp.topic, partition=str(tp.partition)).set(
                max(0, ends.get(tp, position) - position))


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ConcurrentUpdate):
        return True
    # deadlock_detected, serialization_failure: the same batch succeeds on a second try
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code in ("40P01", "40001")
