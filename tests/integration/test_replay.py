"""Dead-letter replay: `select()` on its own, then `python -m services.ingest.replay` against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from services.ingest.dead_letters import Criteria, select
from services.ingest.pipeline import Pipeline
from services.ingest.replay_cli import build_parser
from shared.adapters.metrics import Metrics
from shared.settings import Settings
from tests.support import TopicReader, wait_until

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------------
# select(): pure


@dataclass(frozen=True)
class Rec:
    """The record fields select() reads."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def rec(
    partition: int,
    offset: int,
    code: str,
    *,
    source: str | None = "shop.purchases",
    at: str = "2026-06-01T12:00:00+00:00",
) -> Rec:
    headers: list[tuple[str, bytes | None]] = [("error.code", code.encode()), ("error.message", b"why")]
    if source is not None:
        headers += [("source.topic", source.encode()), ("source.partition", b"0"), ("source.offset", b"7")]
    return Rec(partition, offset, ms(at), b"key", b"value", headers)


RECORDS = [
    rec(0, 0, "wrong_currency", at="2026-05-31T23:59:59+00:00"),
    rec(0, 1, "invalid_json", source="shop.referrals", at="2026-06-01T00:00:00+00:00"),
    rec(0, 2, "wrong_currency", at="2026-06-01T10:00:00+00:00"),
    rec(1, 0, "wrong_currency", source=None, at="2026-06-02T00:00:00+00:00"),
    rec(1, 1, "too_large", at="2026-06-03T00:00:00+00:00"),
]


def positions(criteria: Criteria) -> list[tuple[int, int]]:
    return [(letter.partition, letter.offset) for letter in select(RECORDS, criteria=criteria)]


def test_select_without_criteria_takes_everything_and_reads_the_headers() -> None:
    letters = list(select(RECORDS, criteria=Criteria()))
    assert [(x.partition, x.offset) for x in letters] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    first = letters[0]
    assert (
        first.error_code,
        first.error_message,
        first.source_topic,
        first.source_partition,
        first.source_offset,
        first.key,
        first.value,
    ) == ("wrong_currency", "why", "shop.purchases", "0", "7", b"key", b"value")
    assert letters[3].source_topic is None


def test_select_by_code_source_time_and_offsets() -> None:
    assert positions(Criteria(error_codes=frozenset({"wrong_currency"}))) == [(0, 0), (0, 2), (1, 0)]
    assert positions(Criteria(error_codes=frozenset({"wrong_currency", "too_large"}))) == [
        (0, 0),
        (0, 2),
        (1, 0),
        (1, 1),
    ]
    assert positions(Criteria(source_topics=frozenset({"shop.referrals"}))) == [(0, 1)]
    # since inclusive, until exclusive
    june_1 = datetime(2026, 6, 1, tzinfo=UTC)
    assert positions(Criteria(since=june_1, until=datetime(2026, 6, 2, tzinfo=UTC))) == [(0, 1), (0, 2)]
    assert positions(Criteria(until=june_1)) == [(0, 0)]
    assert positions(Criteria(partitions=frozenset({1}))) == [(1, 0), (1, 1)]
    # offsets are per partition and inclusive at both ends
    assert positions(Criteria(from_offsets={0: 1}, to_offsets={0: 1})) == [(0, 1), (1, 0), (1, 1)]
    assert positions(
        Criteria(error_codes=frozenset({"wrong_currency"}), from_offsets={0: 1}, partitions=frozenset({0}))
    ) == [(0, 2)]


def test_select_leaves_out_records_without_timestamp_when_a_time_range_is_given() -> None:
    undated = Rec(0, 9, -1, None, b"v", [("error.code", b"invalid_json")])
    assert list(select([undated], criteria=Criteria(since=datetime(2000, 1, 1, tzinfo=UTC)))) == []
    assert len(list(select([undated], criteria=Criteria()))) == 1


# ---------------------------------------------------------------------------------------------------------
# the command against the real broker


def env_of(settings: Settings) -> dict[str, str]:
    """The environment that makes `Settings()` in a subprocess equal `settings`."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[name.upper()] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_replay(settings: Settings, *args: str, timeout_s: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.ingest.replay", *args],
        cwd=ROOT,
        env=env_of(settings),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every record on `topic` now: read until each partition's position reaches the fetch high watermark."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    try:
        parts = wait_until(lambda: consumer.partitions_for_topic(topic), what=f"metadata of {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []

        def caught_up() -> bool:
            for batch in consumer.poll(timeout_ms=100).values():
                records.extend(batch)
            marks = [consumer.highwater(tp) for tp in tps]
            return all(m is not None and consumer.position(tp) >= m for tp, m in zip(tps, marks, strict=True))

        wait_until(caught_up, what=f"the end of {topic}")
        return records
    finally:
        consumer.close()


def contents(settings: Settings) -> dict[str, list[tuple[bytes | None, bytes | None]]]:
    """(key, value) of every record on each shop topic."""
    return {t: [(r.key, r.value) for r in read_all(settings, t)] for t in settings.shop_topics}


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode("utf-8") for k, v in record.headers}


def purchase(currency: str = "EUR") -> bytes:
    return json.dumps(
        {
            "event_id": f"p-{uuid.uuid4().hex[:8]}",
            "type": "purchase",
            "customer_id": "c-1",
            "occurred_at": "2026-01-15T10:00:00Z",
            "amount": "10.00",
            "currency": currency,
        }
    ).encode()


class Ingest:
    """The real ingest pipeline in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.pipeline = Pipeline(settings=settings, metrics=Metrics(service="ingest"))
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.pipeline.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "pipeline did not stop"
        self.pipeline.close()


@dataclass
class Fed:
    """What was fed to ingest: the bad messages by error code, as (topic, key, value)."""

    bad: dict[str, list[tuple[str, bytes | None, bytes]]]
    dead: list[Any]  # the dead letters, read back


@pytest.fixture
def producer(settings: Settings) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=1)
    yield p
    p.close(5)


@pytest.fixture
def ingest(settings: Settings) -> Iterator[Ingest]:
    running = Ingest(settings)
    yield running
    if running.thread.is_alive():
        running.stop()


@pytest.fixture
def dlq(settings: Settings) -> Iterator[TopicReader]:
    reader = TopicReader(settings.kafka_bootstrap_servers, settings.topic_dead_letter)
    yield reader
    reader.close()


@pytest.fixture
def fed(settings: Settings, producer: KafkaProducer, ingest: Ingest, dlq: TopicReader) -> Fed:
    """Two wrong-currency purchases, one non-JSON referral, one array complaint and one good purchase."""
    bad: dict[str, list[tuple[str, bytes | None, bytes]]] = {
        "wrong_currency": [
            (settings.topic_purchases, b"cust-1", purchase("USD")),
            (settings.topic_purchases, b"cust-2", purchase("GBP")),
        ],
        "invalid_json": [(settings.topic_referrals, None, b"{not json")],
        "not_an_object": [(settings.topic_complaints, b"cust-3", b"[1, 2]")],
    }
    for messages in bad.values():
        for topic, key, value in messages:
            producer.send(topic, key=key, value=value)
    producer.send(settings.topic_purchases, key=b"cust-4", value=purchase())
    producer.flush(10)
    dead = wait_until(lambda: dlq.poll() if len(dlq.poll()) >= 4 else None, timeout_s=30, what="4 dead letters")
    assert len(dead) == 4
    return Fed(bad=bad, dead=list(dead))


def test_dry_run_prints_the_summary_and_publishes_nothing(settings: Settings, fed: Fed, ingest: Ingest) -> None:
    ingest.stop()
    before = contents(settings)
    result = run_replay(settings, "--dry-run", "--list")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "read 4, selected 4" in out
    assert "dry run: nothing published (would re-publish 4" in out
    table = {tuple(line.split()) for line in out.splitlines()}
    assert ("wrong_currency", settings.topic_purchases, "2") in table
    assert ("invalid_json", settings.topic_referrals, "1") in table
    assert ("not_an_object", settings.topic_complaints, "1") in table
    assert ("total", "4") in table
    # --list: one line per letter, naming its place on the dead-letter topic
    for letter in fed.dead:
        assert f"{settings.topic_dead_letter}:{letter.partition}:{letter.offset} " in out
    assert contents(settings) == before
    assert len(read_all(settings, settings.topic_dead_letter)) == 4


def test_replay_by_error_code_republishes_the_original_bytes_and_key(
    settings: Settings, fed: Fed, ingest: Ingest, dlq: TopicReader
) -> None:
    before = contents(settings)
    assert len(before[settings.topic_purchases]) == 3

    # the pipeline keeps running: the replayed messages are still wrong, so they are dead-lettered again
    result = run_replay(settings, "--error-code", "wrong_currency")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "read 4, selected 2" in result.stdout
    assert "re-published 2 of 2 to each letter's source.topic" in result.stdout

    purchases = read_all(settings, settings.topic_purchases)
    replayed = [r for r in purchases if r.headers]
    assert len(purchases) == 5 and len(replayed) == 2
    wrong = {(key, value) for _, key, value in fed.bad["wrong_currency"]}
    assert {(r.key, r.value) for r in replayed} == wrong  # bytes and key unchanged
    letters = {(d.key, d.value): d for d in fed.dead}
    for r in replayed:
        origin = letters[(r.key, r.value)]
        assert headers_of(r) == {"replay.of": f"{settings.topic_dead_letter}:{origin.partition}:{origin.offset}"}
    # nothing else was published anywhere
    after = contents(settings)
    assert after[settings.topic_referrals] == before[settings.topic_referrals]
    assert after[settings.topic_complaints] == before[settings.topic_complaints]

    # a re-rejected replay is traceable: its new dead letter points at the copy that carries replay.of
    again = wait_until(lambda: dlq.poll()[4:] if len(dlq.poll()) >= 6 else None, what="2 new dead letters")
    copies = {(r.partition, r.offset) for r in replayed}
    assert {(int(headers_of(d)["source.partition"]), int(headers_of(d)["source.offset"])) for d in again} == copies
    assert {headers_of(d)["error.code"] for d in again} == {"wrong_currency"}


def test_replay_by_time_and_offset_range(settings: Settings, producer: KafkaProducer) -> None:
    """Dead letters written directly, with the pipeline's headers and chosen timestamps, all on partition 0."""
    days = ["2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"]
    values = [f"{{bad {i}".encode() for i in range(3)]
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        headers = [
            ("error.code", b"invalid_json"),
            ("error.message", b"not JSON"),
            ("source.topic", settings.topic_complaints.encode()),
            ("source.partition", b"1"),
            ("source.offset", str(100 + i).encode()),
        ]
        producer.send(
            settings.topic_dead_letter,
            key=f"k{i}".encode(),
            value=value,
            headers=headers,
            partition=0,
            timestamp_ms=ms(day),
        )
    producer.flush(10)
    complaints = TopicReader(settings.kafka_bootstrap_servers, settings.topic_complaints)
    try:
        result = run_replay(settings, "--since", "2026-01-15T00:00:00Z", "--until", "2026-02-15T00:00:00+00:00")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "read 3, selected 1" in result.stdout
        got = wait_until(lambda: complaints.poll() or None, what="the replayed complaint")
        assert [(r.key, r.value) for r in got] == [(b"k1", values[1])]
        assert headers_of(got[0])["replay.of"] == f"{settings.topic_dead_letter}:0:1"

        # an offset range: only offset 2 (reads stop there), sent to an explicit topic
        result = run_replay(
            settings, "--from-offset", "0:2", "--to-offset", "0:2", "--to-topic", settings.topic_referrals
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "read 1, selected 1" in result.stdout
        referrals = TopicReader(settings.kafka_bootstrap_servers, settings.topic_referrals)
        try:
            got = wait_until(lambda: referrals.poll() or None, what="the replayed letter on the referrals topic")
            assert [(r.key, r.value, headers_of(r)) for r in got] == [
                (b"k2", values[2], {"replay.of": f"{settings.topic_dead_letter}:0:2"})
            ]
        finally:
            referrals.close()
        assert len(complaints.poll()) == 1
    finally:
        complaints.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--error-code", "bogus"], "argument --error-code: invalid choice: 'bogus'"),
        (["--since", "2026-06-01T00:00:00"], "has no UTC offset"),
        (["--since", "yesterday"], "not an ISO 8601 date-time"),
        (["--since", "2026-06-02T00:00:00Z", "--until", "2026-06-01T00:00:00Z"], "--until must be later than --since"),
        (["--from-offset", "12"], "expected PARTITION:OFFSET"),
        (["--from-offset", "0:10", "--to-offset", "0:5"], "--to-offset 5 is before --from-offset 10"),
        (["--partition", "1", "--from-offset", "0:3"], "not chosen by --partition"),
        (["--limit", "0"], "must be at least 1"),
        (["--dry-run", "--partition", "7"], "no partition [7]"),
        (["--dry-run", "--to-topic", "no.such.topic"], "--to-topic 'no.such.topic' is not a shop topic"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(settings: Settings, args: list[str], message: str) -> None:
    result = run_replay(settings, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_letters_that_cannot_be_routed_are_reported_and_fail_the_run(
    settings: Settings, producer: KafkaProducer
) -> None:
    """No source.topic header, or a source topic that is not a shop topic: exit 1, and nothing is created."""
    base = [("error.code", b"invalid_json"), ("error.message", b"not JSON")]
    gone = f"gone.{uuid.uuid4().hex[:8]}"
    producer.send(settings.topic_dead_letter, key=b"a", value=b"{", headers=base, partition=0)
    producer.send(
        settings.topic_dead_letter,
        key=b"b",
        value=b"{",
        partition=0,
        headers=[*base, ("source.topic", gone.encode()), ("source.partition", b"0"), ("source.offset", b"1")],
    )
    producer.flush(10)

    dry = run_replay(settings, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would re-publish 0" in dry.stdout
    real = run_replay(settings)
    assert real.returncode == 1, real.stdout + real.stderr
    assert "not re-publishable: 1 (no source.topic header)" in real.stdout
    assert f"not re-publishable: 1 (source.topic is not a shop topic) {gone}" in real.stdout
    assert "re-published 0 of 2" in real.stdout
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        assert gone not in consumer.topics()
    finally:
        consumer.close()


def test_a_header_cannot_send_a_letter_to_a_topic_other_than_the_shop_topics(
    settings: Settings, producer: KafkaProducer
) -> None:
    """Anyone who can write the dead-letter topic writes its headers: a letter whose source.topic names the stage
    changes (or any topic but the three shop topics) is skipped, and --to-topic must name a shop topic."""
    forged = b'{"event_id": "x", "type": "stage_changed", "customer_id": "c-1", "to_stage": "advocate"}'
    headers = [
        ("error.code", b"invalid_json"),
        ("error.message", b"not JSON"),
        ("source.topic", settings.topic_stage_changes.encode()),
        ("source.partition", b"0"),
        ("source.offset", b"1"),
    ]
    producer.send(settings.topic_dead_letter, key=b"c-1", value=forged, headers=headers, partition=0)
    producer.flush(10)
    before = len(read_all(settings, settings.topic_stage_changes))
    result = run_replay(settings)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"not re-publishable: 1 (source.topic is not a shop topic) {settings.topic_stage_changes}" in result.stdout
    refused = run_replay(settings, "--to-topic", settings.topic_stage_changes)
    assert refused.returncode == 2 and "is not a shop topic" in refused.stderr
    assert len(read_all(settings, settings.topic_stage_changes)) == before


def test_a_bad_setting_is_reported_without_the_database_password(settings: Settings) -> None:
    env = {**env_of(settings), "DATABASE_URL": "mysql://loyalty:s3cr3t-pw@db.example/loyalty"}
    result = subprocess.run(
        [sys.executable, "-m", "services.ingest.replay", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "database_url" in result.stderr and "s3cr3t-pw" not in result.stderr + result.stdout


def test_the_help_states_the_dedupe_window() -> None:
    help_text = build_parser().format_help()
    assert "DEDUPE_RETENTION_DAYS" in help_text and "counted again" in help_text
