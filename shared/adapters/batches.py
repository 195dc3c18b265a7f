"""A producer that writes whole record batches: one produce request per full batch, acks=all, errors raised.

kafka-python's `KafkaProducer.send` spends several times more Python per record (accumulator, a future per
record, the sender thread) than appending to a record batch with kafka-python's own `MemoryRecordsBuilder`.
The relay writes one record per stage change, so the difference shows in scoring's CPU (docs/performance.md).

`RecordBatchProducer` keeps one open batch per partition. A batch goes out when it is full or at `flush()`,
which returns only once the broker acknowledged every request (acks=all) and raises a `KafkaError` for any
refusal or timeout. At most `in_flight` requests are unacknowledged, and at most one per partition, so the
records of a partition reach the log in the order they were sent even when a request fails and the caller
sends everything again.
After an error the producer drops what it had open and refreshes its metadata before the next send: the
caller (the relay) rolls back and repeats the whole pass, so nothing half-sent is ever counted.

Used by the outbox relay (`services/scoring/relay.py`) and by the bench's stand-in for the shop. It speaks
to kafka-python's network client and protocol classes directly (kafka-python is pinned to 3.0.x in
pyproject.toml); `tests/integration/test_batches.py` reads every record back through a consumer.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import errors as Errors
from kafka.future import Future
from kafka.net.compat import KafkaNetClient
from kafka.protocol.producer import ProduceRequest
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

_MAGIC = 2  # record batch format v2 (Kafka >= 0.11)
COMPRESSION = {None: 0, "none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


class RecordBatchProducer:
    """Appends records to one batch per partition and sends each full batch as one produce request."""

    def __init__(
        self,
        *,
        client_config: dict[str, Any],
        compression: str | None = "lz4",
        batch_bytes: int = 1 << 20,
        timeout_ms: int = 15_000,
        in_flight: int = 5,
        client_id: str = "loyalty-relay",
    ) -> None:
        if compression not in COMPRESSION:
            raise ValueError(f"unknown compression {compression!r}; one of {sorted(map(str, COMPRESSION))}")
        self._codec = COMPRESSION[compression]
        self._batch_bytes = batch_bytes
        self._timeout_ms = timeout_ms
        self._in_flight = in_flight
        self._client = KafkaNetClient(
            **client_config,
            client_id=client_id,
            request_timeout_ms=timeout_ms,
            max_in_flight_requests_per_connection=in_flight,
        )
        # never create a topic by asking for it: it would get the broker's partition count, not ours
        self._client.cluster.config["allow_auto_create_topics"] = False
        self._client.check_version(timeout_ms=timeout_ms)  # bootstraps: connects and learns the brokers
        self._open: dict[TopicPartition, MemoryRecordsBuilder] = {}
        self._pending: dict[TopicPartition, Future] = {}  # at most one unacknowledged request per partition
        self._stale = False
        self.records = 0
        self.requests = 0

    def partitions_for(self, topic: str) -> set[int]:
        """The partitions of `topic`; raises `UnknownTopicOrPartitionError` for a topic the broker lacks."""
        cluster = self._client.cluster
        partitions = cluster.partitions_for_topic(topic)
        if partitions is None or self._stale:
            future = cluster.add_topic(topic)
            if future.is_done:  # tracked already (add_topic answers at once): ask for fresh metadata
                future = cluster.request_update()
            self._wait(future, what=f"metadata of {topic}")
            self._stale = False
            partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise Errors.UnknownTopicOrPartitionError(f"topic {topic} has no partitions")
        return set(partitions)

    def send(self, topic: str, *, key: bytes | None, value: bytes, partition: int) -> None:
        """Add one record (timestamped now); sends the partition's batch when it is full."""
        tp = TopicPartition(topic, partition)
        now_ms = int(time.time() * 1000)
        builder = self._open.get(tp)
        if builder is None:
            builder = self._open[tp] = MemoryRecordsBuilder(_MAGIC, self._codec, self._batch_bytes)
        if builder.append(now_ms, key, value) is None:
            self._send(tp, self._open.pop(tp))
            builder = self._open[tp] = MemoryRecordsBuilder(_MAGIC, self._codec, self._batch_bytes)
            builder.append(now_ms, key, value)  # the first record of a batch always fits, whatever its size
        self.records += 1

    def flush(self, timeout: float | None = None) -> None:
        """Send every open batch and wait until the broker acknowledged all of them; raises on any error.

        `timeout` is there for KafkaProducer's signature; each request has `timeout_ms` of its own.
        """
        try:
            for tp in list(self._open):
                self._send(tp, self._open.pop(tp))
            while self._pending:
                tp = next(iter(self._pending))
                self._complete(tp, self._pending.pop(tp))
        except Errors.KafkaError:
            self._reset()
            raise

    def close(self, timeout: float | None = None) -> None:
        """Drop anything unsent and close the connections; `flush()` first to keep it."""
        self._open.clear()
        self._pending.clear()
        self._client.close()

    def _reset(self) -> None:
        """After a failure: nothing of this round counts, and the leaders may have moved."""
        self._open.clear()
        self._pending.clear()
        self._stale = True
        self._client.cluster.request_update()

    def _leader(self, tp: TopicPartition) -> int:
        if self._stale:
            self.partitions_for(tp.topic)
        leader = self._client.cluster.leader_for_partition(tp)
        if leader is None:
            self.partitions_for(tp.topic)
            leader = self._client.cluster.leader_for_partition(tp)
        if leader is None:
            raise Errors.UnknownTopicOrPartitionError(f"{tp.topic}/{tp.partition} is not a partition")
        if leader < 0:
            raise Errors.LeaderNotAvailableError(f"no leader for {tp.topic}/{tp.partition}")
        return int(leader)

    def _send(self, tp: TopicPartition, builder: MemoryRecordsBuilder) -> None:
        try:
            builder.close()
            previous = self._pending.pop(tp, None)
            if previous is not None:
                self._complete(tp, previous)  # one request per partition in flight: order survives a retry
            while len(self._pending) >= self._in_flight:  # and at most `in_flight` in all, oldest first
                oldest = next(iter(self._pending))
                self._complete(oldest, self._pending.pop(oldest))
            node = self._leader(tp)
            request = ProduceRequest(
                transactional_id=None,
                acks=-1,
                timeout_ms=self._timeout_ms,
                topic_data=[
                    ProduceRequest.TopicProduceData(
                        name=tp.topic,
                        partition_data=[
                            ProduceRequest.TopicProduceData.PartitionProduceData(
                                index=tp.partition, records=builder.buffer()
                            )
                        ],
                    )
                ],
                min_version=3,
                max_version=9,
            )
            self._client.await_ready(node, timeout_ms=self._timeout_ms)
            self._pending[tp] = self._client.send(node, request)
            self.requests += 1
        except Errors.KafkaError:
            self._reset()
            raise

    def _wait(self, future: Future, *, what: str) -> Any:
        self._client.poll(timeout_ms=self._timeout_ms, future=future)
        if not future.is_done:
            raise Errors.KafkaTimeoutError(f"no answer in {self._timeout_ms} ms: {what}")
        if future.failed():
            raise future.exception
        return future.value

    def _complete(self, tp: TopicPartition, future: Future) -> None:
        response = self._wait(future, what=f"produce to {tp.topic}/{tp.partition}")
        for topic in response.responses:
            for part in topic.partition_responses:
                if part.error_code:
                    raise Errors.for_code(part.error_code)(f"{topic.name}/{part.index}")
