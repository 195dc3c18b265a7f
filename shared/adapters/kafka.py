"""Kafka client factories with the settings every component of the system shares."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.partitioner.default import murmur2
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import TopicPartition
from prometheus_client import Gauge

from shared.adapters.batches import RecordBatchProducer
from shared.settings import Settings
from shared.wire.deadletter import DeadLetter, shrunk

log = logging.getLogger(__name__)
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


def _security(settings: Settings) -> dict[str, Any]:
    """Connection options shared by producers, consumers and the admin client."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, f"kafka_{key}")
        if value:
            opts[key] = value
    return opts


@functools.lru_cache(maxsize=65536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as in the Java client) gives a record with `key`."""
    # cached (bounded): kafka-python's murmur2 is pure Python, and customers recur batch after batch
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def make_producer(settings: Settings, *, ordered: bool = False, **overrides: Any) -> KafkaProducer:
    """A batching producer with acks=all; `ordered` keeps one request in flight so retries cannot reorder."""
    opts: dict[str, Any] = {
        **_security(settings),
        "acks": "all",
        "linger_ms": settings.producer_linger_ms,
        "batch_size": settings.producer_batch_size,
        "compression_type": settings.producer_compression or None,
        "retries": 10,
        "retry_backoff_ms": 200,
        "request_timeout_ms": 15000,
        "max_request_size": 4 * 1024 * 1024,
    }
    if ordered:
        opts["max_in_flight_requests_per_connection"] = 1
    opts.update(overrides)
    return KafkaProducer(**opts)


def make_batch_producer(settings: Settings, *, client_id: str = "loyalty-relay") -> RecordBatchProducer:
    """A whole-batch producer (acks=all, one request per partition in flight) for the relay's many small records."""
    return RecordBatchProducer(
        client_config=_security(settings),
        compression=settings.producer_compression or None,
        batch_bytes=settings.producer_batch_size,
        client_id=client_id,
    )


def make_consumer(settings: Settings, *, group_id: str, topics: Iterable[str], **overrides: Any) -> KafkaConsumer:
    """A group consumer that never auto-commits; the caller commits after its effects are durable."""
    opts: dict[str, Any] = {
        **_security(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.consumer_session_timeout_ms,
        "heartbeat_interval_ms": settings.consumer_heartbeat_interval_ms,
        "max_poll_records": settings.consumer_max_poll_records,
        "max_poll_interval_ms": settings.consumer_max_poll_interval_ms,
        "fetch_max_wait_ms": settings.consumer_fetch_max_wait_ms,
        "fetch_max_bytes": 32 * 1024 * 1024,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "request_timeout_ms": 30000,
    }
    opts.update(overrides)
    consumer = KafkaConsumer(**opts)
    consumer.subscribe(list(topics))
    return consumer


def make_reader(settings: Settings) -> KafkaConsumer:
    """A consumer outside any group (for tools that assign partitions themselves): joins nothing, commits nothing."""
    return KafkaConsumer(
        **_security(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
        request_timeout_ms=30000,
    )


class RecordFetcher:
    """Reads single records back by topic, partition and offset: the original event of a fact that scoring
    isolates, so that its dead letter carries the shop's bytes. Rare, so one reader, created on first use."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._reader: KafkaConsumer | None = None

    def fetch(self, topic: str, partition: int, offset: int) -> ConsumerRecord | None:
        """The record at `offset`, or None when it is gone (retention) or not read within the timeout."""
        if self._reader is None:
            self._reader = make_reader(self.settings)
        tp = TopicPartition(topic, partition)
        reader = self._reader
        reader.assign([tp])
        reader.seek(tp, offset)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            for record in reader.poll(timeout_ms=500, max_records=1).get(tp, []):
                return record if record.offset == offset else None  # compacted or deleted: not the one
        log.warning("record %s/%d@%d could not be read back within %.0fs", topic, partition, offset, self.timeout_s)
        return None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


class LagReporter:
    """Sets the consumer-lag gauge of every partition assigned to `consumer`, at most every `every_s` seconds,
    and drops the samples of partitions that moved to another member (a stale sample would show a lag no one
    is working on)."""

    def __init__(self, consumer: KafkaConsumer, gauge: Gauge, *, service: str, every_s: float = 5.0) -> None:
        self.consumer = consumer
        self.gauge = gauge
        self.service = service
        self.every_s = every_s
        self._at = 0.0
        self._partitions: set[TopicPartition] = set()

    def refresh(self) -> None:
        if time.monotonic() - self._at < self.every_s:
            return
        self._at = time.monotonic()
        assigned = set(self.consumer.assignment())
        for tp in self._partitions - assigned:
            try:
                self.gauge.remove(self.service, tp.topic, str(tp.partition))
            except KeyError:
                log.debug("no lag sample to remove for %s", tp)
        self._partitions = assigned
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
            self.gauge.labels(service=self.service, topic=tp.topic, partition=str(tp.partition)).set(
                max(0, end - position)
            )


class DeadLetterWriter:
    """Sends letters on the caller's producer and tells, after a flush, whether every one is on the topic.

    A letter the broker refuses as too large is sent again cut to 1 KiB; any other failure is the caller's to
    retry (its batch is read again, so the letters are written at least once).
    """

    def __init__(self, producer: KafkaProducer, topic: str, *, flush_timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s
        self._pending: list[tuple[FutureRecordMetadata, DeadLetter]] = []

    def send(self, letter: DeadLetter) -> None:
        self._pending.append((self._send(letter), letter))

    def _send(self, letter: DeadLetter) -> FutureRecordMetadata:
        try:
            return self.producer.send(self.topic, key=letter.key, value=letter.value, headers=letter.headers)
        except MessageSizeTooLargeError:
            # refused before it left: larger than the producer's own request limit
            smaller = shrunk(letter)
            if smaller is None:
                raise
            return self.producer.send(self.topic, key=smaller.key, value=smaller.value, headers=smaller.headers)

    def delivered(self, *, flush: bool = True) -> bool:
        """True when every letter sent since the last call is on the topic; forgets them either way."""
        pending, self._pending = self._pending, []
        if not pending:
            return True
        if flush:
            self.producer.flush(timeout=self.flush_timeout_s)
        resent = []
        for future, letter in pending:
            if future.succeeded():
                continue
            smaller = shrunk(letter) if isinstance(future.exception, _TOO_LARGE) else None
            if smaller is None:
                log.warning("a dead letter was not delivered: %r", future.exception)
                return False
            resent.append(self._send(smaller))
        if resent:
            self.producer.flush(timeout=self.flush_timeout_s)
            if not all(f.succeeded() for f in resent):
                log.warning("a dead letter cut to 1 KiB was still not delivered")
                return False
        return True


def make_admin(settings: Settings) -> KafkaAdminClient:
    """An admin client for topic management and readiness checks."""
    return KafkaAdminClient(**_security(settings), request_timeout_ms=10000)


def ensure_topics(
    settings: Settings, topics: Iterable[str] | None = None, *, partitions: int | None = None, timeout_s: float = 30.0
) -> None:
    """Create the topics that do not exist yet, with an explicit partition count (never broker defaults)."""
    wanted = list(topics if topics is not None else settings.all_topics)
    count = partitions or settings.topic_partitions
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = make_admin(settings)
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("broker not reachable yet (%s); retrying", exc)
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t, count, settings.topic_replication_factor) for t in missing])
            except TopicAlreadyExistsError:
                log.info("topics created concurrently by another process: %s", missing)
            log.info("created topics %s with %d partitions", missing, count)
    finally:
        admin.close()


def broker_reachable(settings: Settings, *, timeout_s: float = 2.0) -> str | None:
    """None when the broker answers a metadata request, else the reason it does not."""
    try:
        # bootstrap_timeout_ms: without it a dead broker holds the readiness probe for kafka-python's 30 s default
        admin = KafkaAdminClient(
            **_security(settings), request_timeout_ms=int(timeout_s * 1000), bootstrap_timeout_ms=int(timeout_s * 1000)
        )
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"; the reason is reported
        return f"{type(exc).__name__}: {exc}"
    try:
        admin.list_topics()
        return None
    except Exception as exc:  # noqa: BLE001 - reported to the readiness probe
        return f"{type(exc).__name__}: {exc}"
    finally:
        admin.close()
