"""The bench's lean shop producer writes exactly the records a KafkaProducer would: same partitions, order, keys,
values and headers-free records, each acknowledged before `flush()` returns."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaError

from bench.shop import BatchWriter
from shared.embedded import EmbeddedBroker
from shared.kafka import partition_for
from shared.settings import Settings
from tests.support import wait_until


def _read_all(bootstrap: str, topic: str, expected: int) -> dict[int, list[tuple[bytes | None, bytes]]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=f"read-{uuid.uuid4().hex[:8]}", enable_auto_commit=False)
    got: dict[int, list[tuple[bytes | None, bytes]]] = defaultdict(list)
    try:
        def drained() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    got[r.partition].append((r.key, r.value))
            return sum(map(len, got.values())) >= expected
        wait_until(drained, timeout_s=60, interval_s=0, what=f"{expected} records on {topic}")
    finally:
        consumer.close()
    return dict(got)


def test_records_land_on_their_partitions_in_order(broker: EmbeddedBroker, settings: Settings) -> None:
    topic = settings.topic_purchases
    # small batches: several requests per partition, several in flight
    writer = BatchWriter(broker.bootstrap, batch_bytes=4096, in_flight=3)
    partitions = len(writer.partitions_for(topic))
    sent: dict[int, list[tuple[bytes | None, bytes]]] = defaultdict(list)
    for i in range(3000):
        key = f"c-{i % 97}".encode()
        value = b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 50))
        p = partition_for(key, partitions)
        writer.send(topic, key=key, value=value, partition=p)
        sent[p].append((key, value))
    writer.close()
    assert writer.records == 3000 and writer.requests > partitions  # batches were closed when full
    assert _read_all(broker.bootstrap, topic, 3000) == dict(sent)


def test_a_refused_batch_raises_instead_of_being_counted(broker: EmbeddedBroker, settings: Settings) -> None:
    writer = BatchWriter(broker.bootstrap)
    try:
        writer.send(settings.topic_purchases, key=b"k", value=b"v", partition=99)  # no such partition
        with pytest.raises(KafkaError):
            writer.flush()
    finally:
        writer._client.close()
        writer._meta.close(5)
