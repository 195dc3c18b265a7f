"""Dead letters against the real broker: one that a limit refuses is cut, never retried for ever."""

from __future__ import annotations

from kafka.structs import TopicPartition

from shared.adapters.kafka import DeadLetterWriter, make_producer, make_reader
from shared.settings import Settings
from shared.wire.deadletter import dead_letter
from tests.support import wait_until


def _letters(settings: Settings) -> list[object]:
    reader = make_reader(settings)
    try:
        tps = [TopicPartition(settings.topic_dead_letter, p) for p in range(settings.topic_partitions)]
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        seen: list[object] = []
        return wait_until(
            lambda: seen.extend(r for rs in reader.poll(timeout_ms=200).values() for r in rs) or seen,
            what="the dead letter",
        )
    finally:
        reader.close()


def test_a_letter_over_the_producers_request_limit_is_sent_cut_to_1_kib(settings: Settings) -> None:
    producer = make_producer(settings, max_request_size=8000)
    try:
        writer = DeadLetterWriter(producer, settings.topic_dead_letter)
        letter = dead_letter(
            key=b"k",
            value=b"v" * 50_000,
            code="too_large",
            message="m",
            topic="shop.purchases",
            partition=1,
            offset=7,
            max_bytes=1_000_000,
        )
        assert dict(letter.headers).get("error.truncated") is None  # within DEAD_LETTER_MAX_BYTES
        writer.send(letter)
        assert writer.delivered()
    finally:
        producer.close(5)
    [record] = _letters(settings)
    headers = dict(record.headers)  # type: ignore[attr-defined]
    assert record.key == b"k" and record.value == b"v" * 1023  # type: ignore[attr-defined]
    assert headers["error.truncated"] == b"50000"
    assert headers["source.offset"] == b"7" and headers["error.code"] == b"too_large"
