"""The ingest loop: consume shop events, validate, hand on facts or dead letters, then commit.

Per poll batch: every record is validated; valid ones become facts on the scoring-input topic, rejected
ones go to the dead-letter topic unchanged. Facts travel in one record per partition per batch (see
`shared.wire.messages`), on the partition a record keyed by the fact's customer id would get, so one customer's
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

from shared.adapters.kafka import DeadLetterWriter, LagReporter, make_consumer, make_producer, partition_for
from shared.adapters.metrics import Metrics
from shared.faults import Faults
from shared.runtime import Backoff
from shared.settings import Settings
from shared.wire.deadletter import dead_letter
from shared.wire.events import ErrorCode, Rejection
from shared.wire.messages import FACT_EVENT_TYPE, FactRecords, encode
from shared.wire.validation import validate

log = logging.getLogger(__name__)

SERVICE = "ingest"
FLUSH_TIMEOUT_S = 30.0
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

    def __init__(
        self,
        *,
        settings: Settings,
        metrics: Metrics,
        consumer: KafkaConsumer | None = None,
        producer: KafkaProducer | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.consumer = consumer or make_consumer(
            settings, group_id=settings.ingest_group_id, topics=settings.shop_topics
        )
        self.producer = producer or make_producer(settings)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.faults = Faults(settings.fault_injection)
        self._latency = metrics.processing_latency.labels(service=SERVICE)
        self._batch_duration = metrics.batch_duration.labels(service=SERVICE)
        self._batch_size = metrics.batch_size.labels(service=SERVICE)
        self._retries = metrics.batch_retries.labels(service=SERVICE)
        self._lag = LagReporter(self.consumer, metrics.consumer_lag, service=SERVICE)
        self._backoff = Backoff()

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process batches until `stop` is set; the batch in hand is always finished (and committed) first."""
        poll_ms = self.settings.consumer_poll_timeout_ms
        max_records = self.settings.consumer_max_poll_records
        log.info(
            "ingest pipeline started",
            extra={"topics": list(self.settings.shop_topics), "group_id": self.settings.ingest_group_id},
        )
        while not stop.is_set():
            try:
                batch: Batch = self.consumer.poll(timeout_ms=poll_ms, max_records=max_records)
                if batch:
                    result = self.process(batch)
                    if result.handed_on:
                        self._backoff.reset()
                    else:
                        stop.wait(self._backoff.next_delay())
                self._lag.refresh()
            except KafkaError as exc:
                # the broker is away or the group is rebalancing: nothing was committed, so nothing is lost
                log.warning("kafka error in the ingest loop; retrying: %s", exc, exc_info=True)
                self._retries.inc()
                stop.wait(self._backoff.next_delay())
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
        futures: list[FutureRecordMetadata] = []
        stamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")  # once per batch, not per fact
        counts: Counter[tuple[str, str]] = Counter()
        dead: Counter[str] = Counter()
        rejections: list[str] = []
        records = facts_sent = 0
        # one record per partition, at most the producer's batch size so it stays far below the broker's
        # message size limit (a fact is at most max_message_bytes)
        records_out = FactRecords(max_bytes=settings.producer_batch_size)
        letters = DeadLetterWriter(self.producer, settings.topic_dead_letter, flush_timeout_s=FLUSH_TIMEOUT_S)
        try:
            partitions = len(self.producer.partitions_for(scoring_topic))
            for tp, recs in batch.items():
                for rec in recs:
                    records += 1
                    result = self._handle(rec, now, partitions=partitions, stamp=stamp)
                    if isinstance(result, Rejection):
                        letter = dead_letter(
                            key=rec.key,
                            value=rec.value,
                            code=result.code.value,
                            message=result.message,
                            topic=tp.topic,
                            partition=tp.partition,
                            offset=rec.offset,
                            max_bytes=settings.dead_letter_max_bytes,
                            exception=result.exception,
                        )
                        letters.send(letter)
                        counts[(result.event_type, "rejected")] += 1
                        dead[result.code.value] += 1
                        if len(rejections) < MAX_LOGGED_REJECTIONS:
                            rejections.append(
                                f"{result.event_id or '-'} ({result.code.value}) at "
                                f"{tp.topic}/{tp.partition}@{rec.offset}"
                            )
                        continue
                    event_type, encoded = result
                    for p, value in encoded:
                        full = records_out.add(p, value)
                        if full is not None:
                            futures.append(send(scoring_topic, value=full, partition=p))
                    facts_sent += len(encoded)
                    counts[(event_type, "accepted")] += 1
            for p, value in records_out.drain():
                futures.append(send(scoring_topic, value=value, partition=p))
            self.producer.flush(timeout=FLUSH_TIMEOUT_S)
            if not letters.delivered(flush=False):
                return self._retry(batch, records)
        except KafkaError as exc:
            # a send that raised (no metadata, buffer full) or a flush that timed out: retry the whole batch
            log.warning("sending batch failed: %s", exc)
            return self._retry(batch, records)
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            log.warning(
                "%d of %d sends failed (first: %r); batch will be retried",
                len(failed),
                len(futures),
                failed[0].exception,
            )
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
            # a measurable share of ingest's CPU
            if recs and recs[0].timestamp is not None and recs[0].timestamp >= 0:
                self._latency.observe(max(0.0, acked - recs[0].timestamp / 1000))
        self._batch_size.observe(records)
        self._batch_duration.observe(time.monotonic() - started)
        rejected = sum(dead.values())
        if rejected:
            # one line per batch, not per message: a flood of bad input must not flood the logs
            log.info(
                "batch of %d records: %d dead-lettered: %s%s",
                records,
                rejected,
                "; ".join(rejections),
                " ..." if rejected > len(rejections) else "",
                extra={"dead_letters": dict(dead)},
            )
        return BatchResult(records, facts_sent, rejected, handed_on=True, committed=True)

    def _handle(
        self, rec: ConsumerRecord, now: datetime, *, partitions: int, stamp: str
    ) -> tuple[str, list[tuple[int, bytes]]] | Rejection:
        """One record's event type and encoded facts with their partitions, or why it goes to the dead letters.

        Containment: whatever handling one record raises, that record is dead-lettered as `processing_failed`
        and the batch goes on. Before, one unforeseen exception (a lone surrogate reaching `.encode()`) ended
        the process, and the restarted one read the same batch and died again. Every fact of the record is
        encoded before any is handed on, so a record is either handed on whole or dead-lettered whole.
        """
        settings = self.settings
        try:
            result = validate(
                rec.value,
                base_currency=settings.base_currency,
                max_bytes=settings.max_message_bytes,
                now=now,
                max_future_skew_hours=settings.max_future_skew_hours,
            )
            if isinstance(result, Rejection):
                return result
            source = {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset}
            encoded = [
                (
                    partition_for(fact.customer_id.encode("utf-8"), partitions),
                    encode(fact, source=source, ingested_at=stamp),
                )
                for fact in result
            ]
            return FACT_EVENT_TYPE[result[0].kind], encoded
        except Exception as exc:
            log.error(
                "handling %s/%d@%d raised %s; dead-lettering it",
                rec.topic,
                rec.partition,
                rec.offset,
                type(exc).__name__,
                exc_info=True,
            )
            return Rejection(
                ErrorCode.PROCESSING_FAILED,
                f"processing failed: {type(exc).__name__}: {exc}",
                exception=type(exc).__name__,
            )

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
