"""The scoring consumer loop: poll a batch, run the transaction, commit offsets, wake the relay.

Order of a checkpoint: database commit, then Kafka offset commit. A crash between the two re-delivers the
batch, and the dedupe rows written in the same transaction make the second pass a no-op.

What is retried and what is isolated (docs/guarantees.md, "Containment"):

- Infrastructure (the broker or the database away, a lost connection, a conflict with another instance): the
  batch is read again with exponential back-off, for as long as it takes. Nothing of it is skipped.
- Data (a fact PostgreSQL refuses: SQLSTATE classes 22 and 23; or one the domain or the encoding raises on):
  the batch is split in halves, each half its own transaction, until the fact is alone. The others are
  applied (a half that already committed is a no-op when read again: dedupe by event id and role), and
  that fact's original shop event, re-read by its `source` topic, partition and offset, is dead-lettered
  as `processing_failed`. Before, one NUL in an id crash-looped scoring on the same record for every
  customer of that record.
- An internal fact that does not decode or fails its checks is dead-lettered as `malformed_internal`; the
  other facts of its record apply.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from services.scoring.cache import StateCache
from services.scoring.domain.policy import Policy
from services.scoring.health.models import ModelSource
from services.scoring.store import BatchOutcome, ConcurrentUpdate, process_batch
from services.scoring.unit_of_work import session
from shared.adapters.kafka import DeadLetterWriter, LagReporter, RecordFetcher
from shared.adapters.metrics import Metrics
from shared.faults import Faults
from shared.runtime import Backoff
from shared.wire.deadletter import DeadLetter, dead_letter
from shared.wire.events import ErrorCode
from shared.wire.messages import FACT_EVENT_TYPE, Fact, MalformedFact, decode_facts, encode
from shared.wire.text import printable

log = logging.getLogger(__name__)

_LOGGED_IDS = 20
# infrastructure failures of a batch: read it again after a back-off, however long the outage lasts
INFRASTRUCTURE_ERRORS = (SQLAlchemyError, psycopg.Error, KafkaError, ConcurrentUpdate, OSError)


class ScoringWorker:
    """Consumes `loyalty.scoring-input` and applies each batch in one transaction."""

    def __init__(
        self,
        *,
        consumer: KafkaConsumer,
        engine: Engine,
        policy: Policy,
        metrics: Metrics,
        dead_letter: KafkaProducer,
        dead_letter_topic: str,
        stage_topic: str,
        conversion_topic: str,
        poll_timeout_ms: int,
        max_records: int,
        on_commit: Callable[[], None] = lambda: None,
        faults: Faults | None = None,
        cache: StateCache | None = None,
        originals: RecordFetcher | None = None,
        dead_letter_max_bytes: int = 1_000_000,
        health: ModelSource | None = None,
    ) -> None:
        self.consumer = consumer
        self.engine = engine
        self.policy = policy
        self.metrics = metrics
        self.stage_topic = stage_topic
        self.conversion_topic = conversion_topic
        self.poll_timeout_ms = poll_timeout_ms
        self.max_records = max_records
        self.on_commit = on_commit
        self.faults = faults or Faults()
        # `is None`, not `or`: an empty cache is falsy (len 0), and `or` swapped every new one for a no-op
        self.cache = cache if cache is not None else StateCache(capacity=0)
        self.originals = originals
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.health = health
        self.letters = DeadLetterWriter(dead_letter, dead_letter_topic) if dead_letter is not None else None
        self.stopping = threading.Event()
        self._lag = LagReporter(consumer, metrics.consumer_lag, service="scoring")
        self._isolated: set[tuple[str, int, int]] = set()  # this batch's original events dead-lettered

    def run(self) -> None:
        """Loop until `stopping` is set; the batch in hand is finished first."""
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                batch = self.consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
            except KafkaError as exc:
                # the broker is away (kafka-python raises from the coordinator's metadata refresh): nothing was
                # read, so nothing to rewind; /readyz says "broker" meanwhile, and the process stays up
                self.metrics.batch_retries.labels(service="scoring").inc()
                log.warning("poll failed, retrying: %s", str(exc).splitlines()[0])
                self.stopping.wait(backoff.next_delay())
                continue
            if not batch:
                self._lag.refresh()
                continue
            try:
                self.handle(batch)
                backoff.reset()
            except INFRASTRUCTURE_ERRORS as exc:
                # nothing of this batch is committed; read it again from its first offsets
                self.metrics.batch_retries.labels(service="scoring").inc()
                log.warning("batch failed, will re-read it: %s", str(exc).splitlines()[0])
                self._rewind(batch)
                self.stopping.wait(backoff.next_delay())
            self._lag.refresh()

    def handle(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> BatchOutcome:
        """Apply one poll batch and commit its offsets after the database commit."""
        started = time.monotonic()
        facts: list[Fact] = []
        oldest_ts: list[int] = []  # per partition, the batch's worst case for the latency histogram
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        count = 0
        self._isolated.clear()
        for tp, records in batch.items():
            if records and records[0].timestamp:
                oldest_ts.append(records[0].timestamp)
            for record in records:
                try:
                    decoded, bad = decode_facts(record.value)
                except MalformedFact as exc:
                    self._malformed(record, record.value, str(exc))
                    continue
                for value, reason in bad:
                    self._malformed(record, value, reason)
                facts.extend(decoded)
                count += len(decoded)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        outcome = self._apply(facts)
        if self.letters is not None and not self.letters.delivered():
            # kept before the offsets move past them; the batch is read again and its letters re-sent
            raise KafkaError("dead letters were not delivered")
        self.faults.point("scoring.after_db_commit")
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # the group rebalanced while we worked: the new owner re-reads these, and dedupe skips them
            log.warning("offset commit failed after a rebalance: %s", exc)
        self._record(outcome, count=count, started=started, oldest_ts=oldest_ts)
        self.on_commit()
        return outcome

    def _apply(self, facts: list[Fact]) -> BatchOutcome:
        """`_transact`, isolating a fact that fails for a data reason (see the module's docstring)."""
        try:
            return self._transact(facts)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(facts) == 1:
                self._isolate(facts[0], exc)
                return BatchOutcome()
            log.warning(
                "a batch of %d facts failed for a data reason (%s); splitting it to find the fact",
                len(facts),
                type(exc).__name__,
            )
            mid = len(facts) // 2
            outcome = self._apply(facts[:mid])
            rest = self._apply(facts[mid:])
            outcome.accepted += rest.accepted
            outcome.duplicates += rest.duplicates
            outcome.stage_changes += rest.stage_changes
            outcome.conversions += rest.conversions
            outcome.written.update(rest.written)
            outcome.marks.update(rest.marks)
            outcome.health_changes += rest.health_changes
            return outcome

    def _transact(self, facts: list[Fact]) -> BatchOutcome:
        attempts = 0
        while True:
            try:
                # health as of now under the model in force (the policy's priors when no source is given)
                health = self.health.context() if self.health is not None else None
                with session(self.engine) as conn:
                    outcome = process_batch(
                        conn,
                        facts=facts,
                        policy=self.policy,
                        stage_topic=self.stage_topic,
                        conversion_topic=self.conversion_topic,
                        cache=self.cache,
                        health=health,
                    )
                # committed: these are the versions (and health) in the table now
                self.cache.remember(outcome.written, outcome.marks)
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
        # counted first, then one labels() lookup per series: prometheus_client's lookup is too slow to do per fact
        events = Counter((FACT_EVENT_TYPE[f.kind], "accepted") for f in outcome.accepted if f.role == "primary")
        events.update((FACT_EVENT_TYPE[f.kind], "duplicate") for f in outcome.duplicates if f.role == "primary")
        for (event_type, result), n in events.items():
            m.events.labels(service="scoring", type=event_type, outcome=result).inc(n)
        for to_stage, n in Counter(c.to_stage for c in outcome.stage_changes).items():
            m.stage_changes.labels(to_stage=to_stage).inc(n)
        if outcome.health_changes:
            m.health_changes.labels(cause="order").inc(outcome.health_changes)
        m.batch_duration.labels(service="scoring").observe(time.monotonic() - started)
        m.batch_size.labels(service="scoring").observe(count)
        now = datetime.now(UTC).timestamp()
        latency = m.processing_latency.labels(service="scoring")
        for ts in oldest_ts:
            latency.observe(max(0.0, now - ts / 1000))
        if outcome.accepted or outcome.duplicates:
            # ids, never payloads; capped so a large batch stays one readable line
            log.info(
                "batch applied",
                extra={
                    "accepted": len(outcome.accepted),
                    "duplicates": len(outcome.duplicates),
                    "stage_changes": len(outcome.stage_changes),
                    "duplicate_event_ids": [f.event_id for f in outcome.duplicates[:_LOGGED_IDS]],
                    "entered": [
                        f"{c.customer_id}:{c.to_stage}:{c.cause_event_id}" for c in outcome.stage_changes[:_LOGGED_IDS]
                    ],
                },
            )

    def _malformed(self, rec: ConsumerRecord, value: bytes | None, reason: str) -> None:
        """An internal record or fact that does not decode is a bug upstream: keep it, never drop it."""
        self._send_letter(
            dead_letter(
                key=rec.key,
                value=value,
                code=ErrorCode.MALFORMED_INTERNAL.value,
                message=reason,
                topic=rec.topic,
                partition=rec.partition,
                offset=rec.offset,
                max_bytes=self.dead_letter_max_bytes,
            ),
            ErrorCode.MALFORMED_INTERNAL,
        )
        log.error(
            "undecodable internal fact dead-lettered: %s",
            printable(reason),
            extra={"topic": rec.topic, "offset": rec.offset},
        )

    def _isolate(self, fact: Fact, exc: Exception) -> None:
        """Dead-letter the original shop event of `fact`, which PostgreSQL or the domain refused on its own."""
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        message = f"processing failed: {type(exc).__name__}: {first_line}"
        source = fact.source
        topic, partition, offset = source.get("topic"), source.get("partition"), source.get("offset")
        log.error(
            "fact %s/%s of customer %s refused for a data reason (%s); dead-lettering its event",
            printable(fact.event_id),
            fact.role,
            printable(fact.customer_id),
            type(exc).__name__,
            exc_info=exc,
        )
        original = None
        if isinstance(topic, str) and isinstance(partition, int) and isinstance(offset, int):
            if (topic, partition, offset) in self._isolated:
                return  # a referral's other fact: its event is dead-lettered once
            self._isolated.add((topic, partition, offset))
            if self.originals is not None:
                original = self.originals.fetch(topic, partition, offset)
        if original is not None:
            key, value, where = original.key, original.value, (original.topic, original.partition, original.offset)
        else:
            # no source (a conversion), or the shop's record is gone: the fact is what is left of the event
            key, value = fact.customer_id.encode("utf-8", "backslashreplace"), encode(fact)
            message += " (original unavailable)"
            where = (
                topic if isinstance(topic, str) else self.conversion_topic,
                partition if isinstance(partition, int) else -1,
                offset if isinstance(offset, int) else -1,
            )
        letter = dead_letter(
            key=key,
            value=value,
            code=ErrorCode.PROCESSING_FAILED.value,
            message=message,
            topic=where[0],
            partition=where[1],
            offset=where[2],
            max_bytes=self.dead_letter_max_bytes,
            exception=type(exc).__name__,
        )
        self._send_letter(letter, ErrorCode.PROCESSING_FAILED)

    def _send_letter(self, letter: DeadLetter, code: ErrorCode) -> None:
        if self.letters is None:
            raise RuntimeError("this worker has no dead-letter producer")
        self.letters.send(letter)
        self.metrics.dead_letters.labels(error_code=code.value).inc()

    def _rewind(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            if records and tp in self.consumer.assignment():
                self.consumer.seek(tp, records[0].offset)


def is_data_error(exc: BaseException) -> bool:
    """Whether `exc` says the facts are at fault, not the infrastructure (see the module's docstring).

    PostgreSQL's data exceptions (SQLSTATE class 22: a NUL in text, a value out of range) and integrity
    violations (23: a CHECK, a NOT NULL) are; so is any other exception raised in Python while applying the
    facts (a ValueError, a TypeError, a UnicodeError). A lost connection, a conflict, the broker away and
    running out of memory are not.
    """
    sqlstate = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate[:2] in ("22", "23")
    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError, DataError, IntegrityError)):
        return True  # refused by the driver before it reached the server: the same classes, no SQLSTATE
    if isinstance(exc, (*INFRASTRUCTURE_ERRORS, MemoryError)):
        return False
    return isinstance(exc, Exception)


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ConcurrentUpdate):
        return True
    # deadlock_detected, serialization_failure: the same batch succeeds on a second try
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code in ("40P01", "40001")
