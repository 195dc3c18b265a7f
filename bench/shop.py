"""The shop's side of the bench: the generated stream as Kafka messages, and the producers that send them."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaProducer

from shared.adapters.batches import RecordBatchProducer
from shared.adapters.kafka import partition_for
from shared.settings import Settings

Message = tuple[str, bytes, bytes]  # topic, key, value


def to_messages(stream: list[dict[str, Any]], settings: Settings) -> list[Message]:
    topics = {
        "purchase": settings.topic_purchases,
        "referral": settings.topic_referrals,
        "complaint": settings.topic_complaints,
    }
    return [
        (topics[e["type"]], e["customer_id"].encode(), json.dumps(e, separators=(",", ":")).encode()) for e in stream
    ]


def shop_producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    opts: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 1 << 20,
        "compression_type": "lz4",
        "max_request_size": 8 << 20,
        "metrics_enabled": False,
    }
    opts.update(overrides)
    return KafkaProducer(**opts)


def shop_batches(bootstrap: str) -> RecordBatchProducer:
    """The shop's records as whole lz4 record batches (shared/adapters/batches.py): ~10 µs a record, not 40-55."""
    return RecordBatchProducer(
        client_config={"bootstrap_servers": bootstrap.split(",")},
        compression="lz4",
        batch_bytes=1 << 20,
        timeout_ms=30_000,
        client_id="bench-shop",
    )


def with_partitions(
    producer: KafkaProducer | RecordBatchProducer, messages: list[Message]
) -> list[tuple[str, bytes, bytes, int]]:
    """Each message with the partition the shop's partitioner would pick: the shop's cost, paid before a clock."""
    counts = {t: len(producer.partitions_for(t)) for t in {m[0] for m in messages}}
    return [(topic, key, value, partition_for(key, counts[topic])) for topic, key, value in messages]


def last_ids(messages: list[Message], n: int = 500) -> list[str]:
    """The event ids of the last `n` distinct events sent: when they are applied, the end is near."""
    tail: list[str] = []
    for _, _, value in reversed(messages[-4 * n :]):
        event_id = json.loads(value)["event_id"]
        if event_id not in tail:
            tail.append(event_id)
    return tail[:n]
