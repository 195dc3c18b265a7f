"""The whole-batch producer (relay, bench shop) against the real broker: every record lands on its partition in
order, each acknowledged before `flush()` returns; a refusal raises, and the producer works again afterwards."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaError, UnknownTopicOrPartitionError

from devstack.embedded import EmbeddedBroker
from shared.adapters.batches import RecordBatchProducer
from shared.adapters.kafka import make_admin, make_batch_producer, partition_for
from shared.settings import Settings
from tests.support import wait_until

Records = dict[int, list[tuple[bytes | None, bytes]]]


def _read_all(bootstrap: str, topic: str, expected: int) -> Records:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"read-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
    )
    got: Records = defaultdict(list)
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


def _send(producer: RecordBatchProducer, topic: str, rows: range, *, null_keys: bool = False) -> Records:
    partitions = len(producer.partitions_for(topic))
    sent: Records = defaultdict(list)
    for i in rows:
        key = f"c-{i % 97}".encode()
        value = b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 50))
        p = partition_for(key, partitions)
        producer.send(topic, key=None if null_keys else key, value=value, partition=p)
        sent[p].append((None if null_keys else key, value))
    return sent


def test_records_land_on_their_partitions_in_order(broker: EmbeddedBroker, settings: Settings) -> None:
    topic = settings.topic_purchases
    # small batches: several requests per partition, each waiting for the one before it
    producer = RecordBatchProducer(client_config={"bootstrap_servers": [broker.bootstrap]}, batch_bytes=4096)
    try:
        sent = _send(producer, topic, range(3000))
        producer.flush()
    finally:
        producer.close()
    assert producer.records == 3000 and producer.requests > settings.topic_partitions  # closed when full
    assert _read_all(broker.bootstrap, topic, 3000) == dict(sent)


def test_settings_producer_writes_null_keys_and_large_records(broker: EmbeddedBroker, settings: Settings) -> None:
    producer = make_batch_producer(settings)
    big = b"y" * (settings.producer_batch_size + 10)  # larger than a batch: it travels alone
    try:
        sent = _send(producer, settings.topic_scoring_input, range(200), null_keys=True)
        producer.send(settings.topic_scoring_input, key=b"big", value=big, partition=0)
        sent[0].append((b"big", big))
        producer.flush()
    finally:
        producer.close()
    assert _read_all(broker.bootstrap, settings.topic_scoring_input, 201) == dict(sent)


def test_a_refused_batch_raises_and_the_producer_recovers(broker: EmbeddedBroker, settings: Settings) -> None:
    producer = make_batch_producer(settings)
    topic = settings.topic_complaints
    try:
        producer.send(topic, key=b"k", value=b"lost", partition=99)  # no such partition
        with pytest.raises(KafkaError):
            producer.flush()
        sent = _send(producer, topic, range(50))
        producer.flush()
    finally:
        producer.close()
    got = _read_all(broker.bootstrap, topic, 50)
    assert got == dict(sent)  # the refused record was dropped with its round, nothing else was


def test_an_unknown_topic_is_an_error_not_created(broker: EmbeddedBroker, settings: Settings) -> None:
    producer = make_batch_producer(settings)
    topic = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.partitions_for(topic)
    finally:
        producer.close()
    admin = make_admin(settings)
    try:
        assert topic not in admin.list_topics()  # asking did not create it with the broker's partition count
    finally:
        admin.close()
