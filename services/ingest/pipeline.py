"""The ingest loop: consume shop events, validate, hand on facts or dead letters, then commit.

Per poll batch: every record is validated; valid ones become facts on the scoring-input topic, rejected
ones go to the dead-letter topic unchanged. Facts travel in one record per partition per batch (see
`shared.messages`), on the partition a record keyed by the fact's customer id would get, so one customer's
facts stay in order on one partition. One flush per batch; offsets are committed only after every send of the batch was
acknowledged, so a crash at any point re-delivers rather than loses (scoring dedupes by event id and role).
A failed send never skips: the batch is re-read from its first offsets and sent again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, IllegalStateError, KafkaError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata, TopicPartition

from shared.events import KIND_TYPES, ErrorCode, Rejection, validate
from shared.faults import Faults
from shared.kafka import make_consumer, make_producer, partition_for
from shared.messages import Fact, FactRecords, encode
from shared.metrics import Metrics
from shared.settings import Settings

log = logging.getLogger(__name__)

SERVICE = "ingest"
LAG_REFRESH_S = 5.0
FLUSH_TIMEOUT_S = 30.0
RETRY_BACKOFF_S = 1.0
MAX_LOGGED_REJECTIONS = 20

Batch = dict[TopicPartition, list[ConsumerRecord]]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did; `handed_on` is False when a send failed and the batch will be read again."""

    records: int
    facts: int
    rejected: int
    handed_on: bool
    committed: bool


class Pipeline:
    """One consumer over the three shop topics and one producer to scoring-input and dead-letter."""

    def __init__(self, *, settings: Settings, metrics: Metrics, consumer: KafkaConsumer | None = None,
                 producer: KafkaProducer | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.consumer = consumer or make_consumer(
            settings, group_id=settings.ingest_group_id, topics=settings.shop_topics)
        self.producer = producer or make_producer(settings)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.faults = Faults(settings.fault_injection)
        self._latency = metrics.processing_latency.labels(service=SERVICE)
        self._batch_duration = metrics.batch_duration.labels(service=SERVICE)
        self._batch_size = metrics.batch_size.labels(service=SERVICE)
        self._retries = metrics.batch_retries.labels(service=SERVICE)
        self._lag_at = 0.0
        self._lag_partitions: set[TopicPartition] = set()

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process batches until `stop` is set; the batch in hand is always finished (and committed) first."""
        poll_ms = self.settings.consumer_poll_timeout_ms
        max_records = self.settings.consumer_max_poll_records
        log.info("ingest pipeline started", extra={"topics": list(self.settings.shop_topics),
                                                    "group_id": self.settings.ingest_group_id})
        while not stop.is_set():
            try:
                batch: Batch = self.consumer.poll(timeout_ms=poll_ms, max_records=max_records)
                if batch:
                    result = self.process(batch)
                    if not result.handed_on:
                        stop.wait(RETRY_BACKOFF_S)
                self._refresh_lag()
            except KafkaError as exc:
                # the broker is away or the group is rebalancing: nothing was committed, so nothing is lost
                log.warning("kafka error in the ingest loop; retrying: %s", exc, exc_info=True)
                self._retries.inc()
                stop.wait(RETRY_BACKOFF_S)
        log.info("ingest pipeline stopping")

    def close(self) -> None:
        """Leave the group and flush what is left; safe to call once the loop has returned."""
        try:
            self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as exc:
            # only sends of an uncommitted batch can be pending, so they are re-read on the next start
            log.warning("producer flush on close failed: %s", exc)
        self.producer.close(timeout=FLUSH_TIMEOUT_S)
        self.consumer.close(autocommit=False, timeout_ms=5000)

    # -- one batch -----------------------------------------------------------------------------------------

    def process(self, batch: Batch) -> BatchResult:
        """Validate, send and flush one poll batch, then commit it; on a failed send seek back instead."""
        started = time.monotonic()
        settings = self.settings
        now = self.clock()
        send = self.producer.send
        scoring_topic = settings.topic_scoring_input
        dead_topic = settings.topic_dead_letter
        futures: list[FutureRecordMetadata] = []
        stamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")  # once per batch, not per fact
        counts: Counter[tuple[str, str]] = Counter()
        dead: Counter[str] = Counter()
        rejections: list[str] = []
        records = facts_sent = 0
        # one record per partition, at most the producer's batch size so it stays far below the broker's
        # message size limit (a fact is at most max_message_bytes)
        records_out = FactRecords(max_bytes=settings.producer_batch_size)
        try:
            partitions = len(self.producer.partitions_for(scoring_topic))
            for tp, recs in batch.items():
                for rec in recs:
                    records += 1
                    result = self._validate(rec, now)
                    if isinstance(result, Rejection):
                        # Kafka allows a record with neither key nor value, but a producer cannot send
                        # one: such a dead letter gets an empty key (its value stays null)
                        key = rec.key if rec.key is not None or rec.value is not None else b""
                        futures.append(send(dead_topic, value=rec.value, key=key,
                                            headers=_dead_letter_headers(rec, result)))
                        counts[(result.event_type, "rejected")] += 1
                        dead[result.code.value] += 1
                        if len(rejections) < MAX_LOGGED_REJECTIONS:
                            rejections.append(f"{result.event_id or '-'} ({result.code.value}) at "
                                              f"{tp.topic}/{tp.partition}@{rec.offset}")
                        continue
                    source = {"topic": tp.topic, "partition": tp.partition, "offset": rec.offset}
                    for fact in result:
                        p = partition_for(fact.customer_id.encode("utf-8"), partitions)
                        full = records_out.add(p, encode(fact, source=source, ingested_at=stamp))
                        if full is not None:
                            futures.append(send(scoring_topic, value=full, partition=p))
                        facts_sent += 1
                    counts[(KIND_TYPES[result[0].kind], "accepted")] += 1
            for p, value in records_out.drain():
                futures.append(send(scoring_topic, value=value, partition=p))
            self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as exc:
            # a send that raised (no metadata, buffer full) or a flush that timed out: retry the whole batch
            log.warning("sending batch failed: %s", exc)
            return self._retry(batch, records)
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            log.warning("%d of %d sends failed (first: %r); batch will be retried",
                        len(failed), len(futures), failed[0].exception)
            return self._retry(batch, records)
        acked = time.time()

        offsets = {tp: OffsetAndMetadata(recs[-1].offset + 1, "", -1) for tp, recs in batch.items() if recs}
        self.faults.point("ingest.after_flush")
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # the partitions moved to another member, which re-reads from the last commit: duplicates at
            # worst, and scoring counts each (event_id, role) once
            log.warning("commit failed after a rebalance; the new owner re-reads the batch: %s", exc)
            return BatchResult(records, facts_sent, sum(dead.values()), handed_on=True, committed=False)

        for (event_type, outcome), n in counts.items():
            self.metrics.events.labels(service=SERVICE, type=event_type, outcome=outcome).inc(n)
        for code, n in dead.items():
            self.metrics.dead_letters.labels(error_code=code).inc(n)
        for recs in batch.values():
            # the oldest record of each partition, the batch's worst case: one observation per record was
            # a few percent of ingest's CPU
            if recs and recs[0].timestamp is not None and recs[0].timestamp >= 0:
                self._latency.observe(max(0.0, acked - recs[0].timestamp / 1000))
        self._batch_size.observe(records)
        self._batch_duration.observe(time.monotonic() - started)
        rejected = sum(dead.values())
        if rejected:
            # one line per batch, not per message: a flood of bad input must not flood the logs
            log.info("batch of %d records: %d dead-lettered: %s%s", records, rejected, "; ".join(rejections),
                     " ..." if rejected > len(rejections) else "", extra={"dead_letters": dict(dead)})
        return BatchResult(records, facts_sent, rejected, handed_on=True, committed=True)

    def _validate(self, rec: ConsumerRecord, now: datetime) -> list[Fact] | Rejection:
        """validate() for one record; a bug in it must dead-letter the record, never stop the partition."""
        settings = self.settings
        try:
            return validate(rec.value, base_currency=settings.base_currency,
                            max_bytes=settings.max_message_bytes, now=now,
                            max_future_skew_hours=settings.max_future_skew_hours)
        except Exception as exc:  # a poison message must not block its partition
            log.error("validation raised on %s/%d@%d; dead-lettering it", rec.topic, rec.partition,
                      rec.offset, exc_info=True)
            return Rejection(ErrorCode.INVALID_FIELD, f"unexpected validation failure: {type(exc).__name__}")

    def _retry(self, batch: Batch, records: int) -> BatchResult:
        """Rewind every partition of the batch to its first record so that nothing is skipped."""
        self._retries.inc()
        assigned = self.consumer.assignment()
        for tp, recs in batch.items():
            if recs and tp in assigned:
                try:
                    self.consumer.seek(tp, recs[0].offset)
                except IllegalStateError:
                    # revoked meanwhile: the new owner starts from the last commit, which is before this batch
                    log.info("partition %s revoked before the rewind", tp)
        return BatchResult(records, 0, 0, handed_on=False, committed=False)

    # -- lag -----------------------------------------------------------------------------------------------

    def _refresh_lag(self) -> None:
        """Set consumer_lag for each assigned partition, at most every LAG_REFRESH_S seconds."""
        if time.monotonic() - self._lag_at < LAG_REFRESH_S:
            return
        self._lag_at = time.monotonic()
        assigned = set(self.consumer.assignment())
        gauge = self.metrics.consumer_lag
        for tp in self._lag_partitions - assigned:
            try:
                gauge.remove(SERVICE, tp.topic, str(tp.partition))
            except KeyError:
                log.debug("no lag sample to remove for %s", tp)
        self._lag_partitions = assigned
        if not assigned:
            return
        try:
            ends = self.consumer.end_offsets(list(assigned), timeout_ms=2000)
        except KafkaError as exc:
            # a gauge a few seconds stale is harmless; the next refresh tries again
            log.info("consumer lag not refreshed: %s", exc)
            return
        for tp in assigned:
            try:
                position = self.consumer.position(tp, timeout_ms=1000)
            except IllegalStateError:
                continue  # revoked between assignment() and here
            end = ends.get(tp)
            if position is None or end is None:
                continue
            gauge.labels(service=SERVICE, topic=tp.topic, partition=str(tp.partition)).set(max(0, end - position))


def _dead_letter_headers(rec: ConsumerRecord, rejection: Rejection) -> list[tuple[str, bytes]]:
    """The five headers the contract puts on a dead letter."""
    return [
        ("error.code", rejection.code.value.encode("utf-8")),
        ("error.message", rejection.message.encode("utf-8")),
        ("source.topic", rec.topic.encode("utf-8")),
        ("source.partition", str(rec.partition).encode("utf-8")),
        ("source.offset", str(rec.offset).encode("utf-8")),
    ]
