"""The bench's shop producer: the shop's records, encoded in the clock, written as whole record batches.

A shop runs its producer on its own machines; in the bench it shares the two cores with the system under
test. kafka-python's `KafkaProducer.send` costs 40-60 µs of Python per record here (accumulator, futures,
the sender thread), a sixth of the whole pipeline's CPU per event, which the bench would charge to the system.
`BatchWriter` writes the same records (key, value, partition, timestamp, lz4, acks=all) with less client
work: each record is appended to a record batch with kafka-python's own `MemoryRecordsBuilder` (~5 µs), and a
full batch goes out as one produce request, at most `in_flight` of them unacknowledged. Nothing is pre-built:
the encoding happens while the clock runs, as the shop's would. `flush()` waits for every acknowledgement and
raises on any error, so a run never counts an event the broker did not take.

It uses kafka-python's network client and protocol classes directly (pinned in pyproject.toml);
`tests/integration/test_bench_shop.py` reads the records back through a consumer.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaProducer
from kafka import errors as Errors
from kafka.net.compat import KafkaNetClient
from kafka.protocol.producer import ProduceRequest
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

_LZ4 = 3  # the record batch attribute of lz4
_MAGIC = 2


class BatchWriter:
    """Appends records per partition and sends each full batch as one produce request (acks=all)."""

    def __init__(self, bootstrap: str, *, batch_bytes: int = 1 << 20, in_flight: int = 4,
                 timeout_ms: int = 30_000) -> None:
        # a KafkaProducer only to learn the partitions and their leaders the way every client does
        self._meta = KafkaProducer(bootstrap_servers=bootstrap, metrics_enabled=False)
        self._client = KafkaNetClient(bootstrap_servers=bootstrap.split(","), client_id="bench-shop")
        self._client.check_version(timeout_ms=timeout_ms)  # bootstraps: connects and learns the brokers
        self._batch_bytes = batch_bytes
        self._in_flight = in_flight
        self._timeout_ms = timeout_ms
        self._open: dict[TopicPartition, MemoryRecordsBuilder] = {}
        self._leaders: dict[TopicPartition, int] = {}
        self._pending: list[Any] = []
        self.records = 0
        self.requests = 0

    # the part of KafkaProducer's interface the bench uses, so either can be the shop's producer

    def partitions_for(self, topic: str) -> set[int]:
        """The partitions of `topic`."""
        return set(self._meta.partitions_for(topic))

    def send(self, topic: str, *, key: bytes | None, value: bytes, partition: int) -> None:
        """Add one record; sends the partition's batch when it is full."""
        tp = TopicPartition(topic, partition)
        builder = self._open.get(tp)
        now_ms = int(time.time() * 1000)
        if builder is None:
            builder = self._open[tp] = MemoryRecordsBuilder(_MAGIC, _LZ4, self._batch_bytes)
        if builder.append(now_ms, key, value) is None:
            self._send(tp, self._open.pop(tp))
            builder = self._open[tp] = MemoryRecordsBuilder(_MAGIC, _LZ4, self._batch_bytes)
            if builder.append(now_ms, key, value) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit a {self._batch_bytes}-byte batch")
        self.records += 1

    def flush(self, timeout: float | None = None) -> None:
        """Send every open batch and wait until the broker acknowledged all of them; raises on any error.

        `timeout` is accepted for KafkaProducer's signature; each request has `timeout_ms` of its own.
        """
        for tp in list(self._open):
            self._send(tp, self._open.pop(tp))
        while self._pending:
            self._complete(self._pending.pop(0))

    def close(self, timeout: float | None = None) -> None:
        """Flush, then close both clients (`timeout` as for `flush`)."""
        try:
            self.flush()
        finally:
            self._client.close()
            self._meta.close(5)

    def _leader(self, tp: TopicPartition) -> int:
        leader = self._leaders.get(tp)
        if leader is None:
            self._meta.partitions_for(tp.topic)  # waits for the topic's metadata
            found = self._meta._metadata.leader_for_partition(tp)
            if found is None or found < 0:
                raise Errors.LeaderNotAvailableError(f"no leader for {tp}")
            leader = self._leaders[tp] = found
        return leader

    def _send(self, tp: TopicPartition, builder: MemoryRecordsBuilder) -> None:
        builder.close()
        node = self._leader(tp)
        request = ProduceRequest(
            transactional_id=None, acks=-1, timeout_ms=self._timeout_ms,
            topic_data=[ProduceRequest.TopicProduceData(name=tp.topic, partition_data=[
                ProduceRequest.TopicProduceData.PartitionProduceData(index=tp.partition,
                                                                     records=builder.buffer())])],
            min_version=3, max_version=9,
        )
        while len(self._pending) >= self._in_flight:
            self._complete(self._pending.pop(0))
        self._client.await_ready(node, timeout_ms=self._timeout_ms)
        self._pending.append(self._client.send(node, request))
        self.requests += 1

    def _complete(self, future: Any) -> None:
        self._client.poll(timeout_ms=self._timeout_ms, future=future)
        if not future.is_done:
            raise Errors.KafkaTimeoutError("no produce response in time")
        if future.failed():
            raise future.exception
        for topic in future.value.responses:
            for part in topic.partition_responses:
                if part.error_code:
                    raise Errors.for_code(part.error_code)(f"{topic.name}/{part.index}")
