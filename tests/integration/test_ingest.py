"""Ingest against the real broker: facts and dead letters out, offsets committed only after the hand-on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.future import Future
from kafka.structs import OffsetAndMetadata

from devstack.embedded import EmbeddedBroker, free_port
from services.ingest.app import create_app
from services.ingest.pipeline import Pipeline
from shared.adapters.kafka import make_producer, partition_for
from shared.adapters.metrics import Metrics
from shared.settings import Settings
from shared.wire.messages import Fact
from tests.facts import decode_record
from tests.support import wait_until as support_wait_until

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
WHEN = "2026-01-15T10:00:00+01:00"


def wait_until(check: Callable[[], T | None], *, timeout_s: float = 30.0, what: str = "condition") -> T:
    """tests.support.wait_until with this module's longer default deadline."""
    return support_wait_until(check, timeout_s=timeout_s, interval_s=0.05, what=what)


class Reader:
    """Everything on one topic from the beginning, without a consumer group.

    With `facts=True` each item is (record, fact), one per fact, for the scoring-input topic whose records
    carry one fact or an array of them.
    """

    def __init__(self, bootstrap: str, topic: str, *, facts: bool = False) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        parts = wait_until(lambda: self.consumer.partitions_for_topic(topic), what=f"metadata of {topic}")
        self.partitions = len(parts)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.facts = facts
        self.records: list[Any] = []

    def read(self) -> list[Any]:
        for batch in self.consumer.poll(timeout_ms=100, max_records=10000).values():
            if self.facts:
                self.records.extend((rec, fact) for rec in batch for fact in decode_record(rec.value))
            else:
                self.records.extend(batch)
        return self.records

    def wait_for(self, count: int, *, timeout_s: float = 30.0) -> list[Any]:
        return wait_until(
            lambda: self.records if len(self.read()) >= count else None, timeout_s=timeout_s, what=f"{count} records"
        )

    def close(self) -> None:
        self.consumer.close()


class Shop:
    """Sends raw messages to the shop topics and remembers where each landed."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)

    def send(self, topic: str, value: bytes | None, *, key: bytes | None = None, partition: int | None = None) -> Any:
        return self.producer.send(topic, value=value, key=key, partition=partition).get(timeout=10)

    def close(self) -> None:
        self.producer.close(5)


def event(kind: str, **fields: Any) -> dict[str, Any]:
    eid = fields.pop("event_id", f"{kind[0]}-{uuid.uuid4().hex[:8]}")
    base: dict[str, Any] = {
        "event_id": eid,
        "type": kind,
        "customer_id": f"c-{uuid.uuid4().hex[:8]}",
        "occurred_at": WHEN,
    }
    if kind == "purchase":
        base.update(amount="19.99", currency="EUR")
    if kind == "referral":
        base.update(referred_customer_id=f"c-{uuid.uuid4().hex[:8]}")
    return {**base, **fields}


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture
def shop(broker: EmbeddedBroker) -> Iterator[Shop]:
    s = Shop(broker.bootstrap)
    yield s
    s.close()


@pytest.fixture
def readers(settings: Settings) -> Iterator[tuple[Reader, Reader]]:
    facts = Reader(settings.kafka_bootstrap_servers, settings.topic_scoring_input, facts=True)
    dead = Reader(settings.kafka_bootstrap_servers, settings.topic_dead_letter)
    yield facts, dead
    facts.close()
    dead.close()


class Running:
    """A pipeline in a background thread, stopped the way SIGTERM stops it."""

    def __init__(self, settings: Settings, *, producer: KafkaProducer | None = None) -> None:
        self.metrics = Metrics(service="ingest")
        self.pipeline = Pipeline(settings=settings, metrics=self.metrics, producer=producer)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.pipeline.run(self.stop_event)
        except BaseException as exc:  # surfaced by stop(), so a crash fails the test
            self.error = exc
            raise

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "pipeline did not stop"
        self.pipeline.close()
        assert self.error is None, self.error

    def sample(self, name: str, labels: dict[str, str]) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def start_ingest(settings: Settings) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(**kwargs: Any) -> Running:
        running = Running(settings, **kwargs)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode("utf-8") for k, v in record.headers}


# ------------------------------------------------------------------------------------------------------

BAD: list[tuple[str, bytes | None, str]] = [
    ("not-json", b"this is not json", "invalid_json"),
    (
        "nan",
        b'{"event_id":"n-1","type":"purchase","customer_id":"c","occurred_at":"2026-01-01T00:00:00Z",'
        b'"amount":NaN,"currency":"EUR"}',
        "invalid_json",
    ),
    ("tombstone", None, "invalid_json"),
    ("latin-1", '{"event_id":"é"}'.encode("latin-1"), "invalid_encoding"),
    ("array", b"[1,2,3]", "not_an_object"),
    ("too-large", j(event("purchase", pad="x" * 70000)), "too_large"),
    ("missing", j({k: v for k, v in event("purchase").items() if k != "customer_id"}), "missing_field"),
    ("bad-field", j(event("purchase", refund="yes")), "invalid_field"),
    ("unknown-type", j(event("purchase", type="coupon")), "unknown_type"),
    ("negative", j(event("purchase", amount=-5)), "invalid_amount"),
    ("non-numeric", j(event("purchase", amount="lots")), "invalid_amount"),
    ("currency", j(event("purchase", currency="USD")), "wrong_currency"),
    ("self-referral", j(event("referral", customer_id="same", referred_customer_id="same")), "self_referral"),
    ("naive-ts", j(event("complaint", occurred_at="2026-01-01T10:00:00")), "invalid_timestamp"),
    ("future-ts", j(event("complaint", occurred_at="2099-01-01T00:00:00Z")), "future_timestamp"),
]


def test_valid_events_become_facts_and_bad_ones_dead_letters(
    settings: Settings, shop: Shop, readers: tuple[Reader, Reader], start_ingest: Callable[..., Running]
) -> None:
    facts_reader, dead_reader = readers
    running = start_ingest()
    purchase = event("purchase", cost="5.125", order_id="o-1")
    refund = event("purchase", refund=True, amount="4.00")
    referral = event("referral", reward_cost=3)
    complaint = event("complaint", severity="high")
    # the type decides, not the topic: a referral and a complaint on the purchases topic too
    stray = event("referral")
    valid = [
        (settings.topic_purchases, purchase),
        (settings.topic_purchases, refund),
        (settings.topic_referrals, referral),
        (settings.topic_complaints, complaint),
        (settings.topic_purchases, stray),
    ]
    for topic, ev in valid:
        shop.send(topic, j(ev), key=b"shop-key")

    # poison first, then good events behind it on the same partition: they must still get through
    sent_bad: dict[str, tuple[Any, bytes | None, str]] = {}
    for name, value, code in BAD:
        meta = shop.send(settings.topic_purchases, value, key=f"bad-{name}".encode(), partition=0)
        sent_bad[name] = (meta, value, code)
    after = [event("purchase", customer_id=f"after-{i}") for i in range(3)]
    for ev in after:
        shop.send(settings.topic_purchases, j(ev), key=None, partition=0)
    unkeyed_bad = shop.send(settings.topic_complaints, b"{}", key=None, partition=1)

    expected_facts = 1 + 1 + 2 + 1 + 2 + len(after)
    fact_records = facts_reader.wait_for(expected_facts)
    dead_records = dead_reader.wait_for(len(BAD) + 1)

    def home(customer_id: str) -> int:
        """The partition a record keyed by this customer gets: every fact of a customer must be there."""
        return partition_for(customer_id.encode("utf-8"), facts_reader.partitions)

    facts: dict[tuple[str, str], tuple[int, Fact]] = {}
    for rec, fact in fact_records:
        assert rec.partition == home(fact.customer_id)
        assert fact.ingested_at is not None
        assert set(fact.source) == {"topic", "partition", "offset"}
        facts[(fact.event_id, fact.role)] = (rec.partition, fact)
    assert len(facts) == expected_facts == len(fact_records)

    key, fact = facts[(purchase["event_id"], "primary")]
    assert key == home(purchase["customer_id"])
    assert (fact.kind, fact.customer_id, str(fact.amount), str(fact.cost), fact.order_id) == (
        "order_placed",
        purchase["customer_id"],
        "19.99",
        "5.125",
        "o-1",
    )
    assert fact.source["topic"] == settings.topic_purchases
    assert fact.occurred_at.isoformat() == "2026-01-15T09:00:00+00:00"
    assert facts[(refund["event_id"], "primary")][1].kind == "order_refunded"
    for ref in (referral, stray):
        made_key, made = facts[(ref["event_id"], "primary")]
        got_key, got = facts[(ref["event_id"], "referred")]
        assert (made.kind, made_key) == ("referral_made", home(ref["customer_id"]))
        assert (got.kind, got_key) == ("referral_received", home(ref["referred_customer_id"]))
    assert facts[(complaint["event_id"], "primary")][1].severity == "high"
    for ev in after:
        assert facts[(ev["event_id"], "primary")][0] == home(ev["customer_id"])

    by_key = {rec.key: rec for rec in dead_records}
    assert len(by_key) == len(BAD) + 1
    for name, (meta, value, code) in sent_bad.items():
        rec = by_key[f"bad-{name}".encode()]
        assert rec.value == value  # the original bytes, unchanged (None stays None)
        h = headers_of(rec)
        assert set(h) == {"error.code", "error.message", "source.topic", "source.partition", "source.offset"}
        assert h["error.code"] == code, (name, h)
        assert h["error.message"]
        assert (h["source.topic"], h["source.partition"], h["source.offset"]) == (
            meta.topic,
            str(meta.partition),
            str(meta.offset),
        )
    unkeyed = by_key[None]
    assert headers_of(unkeyed)["error.code"] == "missing_field"
    assert headers_of(unkeyed)["source.offset"] == str(unkeyed_bad.offset)

    # counted in the metrics once the batches are committed
    wait_until(
        lambda: (
            running.sample("loyalty_events_total", {"service": "ingest", "type": "purchase", "outcome": "accepted"})
            == 5
        ),
        what="accepted purchases counted",
    )
    assert running.sample("loyalty_events_total", {"service": "ingest", "type": "referral", "outcome": "accepted"}) == 2
    assert running.sample("loyalty_events_total", {"service": "ingest", "type": "unknown", "outcome": "rejected"}) >= 5
    assert running.sample("loyalty_dead_letters_total", {"error_code": "invalid_amount"}) == 2
    assert running.sample("loyalty_dead_letters_total", {"error_code": "missing_field"}) == 2
    assert running.sample("loyalty_batch_size_messages_count", {"service": "ingest"}) >= 1
    # one observation per partition of each batch (its oldest record), so at most one per record
    observed = running.sample("loyalty_processing_latency_seconds_count", {"service": "ingest"})
    assert 1 <= observed <= len(valid) + len(BAD) + len(after) + 1
    assert observed <= running.sample("loyalty_batch_size_messages_count", {"service": "ingest"}) * 9
    running.stop()


def test_offsets_are_committed_after_the_hand_on(
    settings: Settings, shop: Shop, readers: tuple[Reader, Reader], start_ingest: Callable[..., Running]
) -> None:
    facts_reader, dead_reader = readers
    first = start_ingest()
    batch = [event("purchase") for _ in range(20)]
    for ev in batch:
        shop.send(settings.topic_purchases, j(ev))
    shop.send(settings.topic_referrals, b"garbage", key=b"g")
    facts_reader.wait_for(len(batch))
    dead_reader.wait_for(1)
    # the commit follows the flush within the same batch; the metrics are counted after the commit
    wait_until(
        lambda: (
            first.sample("loyalty_events_total", {"service": "ingest", "type": "purchase", "outcome": "accepted"}) == 20
        ),
        what="batch committed",
    )
    first.stop()

    # same group again: nothing is re-delivered, only what is new
    second = start_ingest()
    marker = event("complaint")
    shop.send(settings.topic_complaints, j(marker))
    wait_until(lambda: any(f.event_id == marker["event_id"] for _, f in facts_reader.read()), what="marker handed on")
    second.stop()
    event_ids = [f.event_id for _, f in facts_reader.read()]
    assert sorted(event_ids) == sorted([ev["event_id"] for ev in batch] + [marker["event_id"]])
    assert len(dead_reader.read()) == 1

    # the group's committed offsets are the end of every shop partition that got messages
    probe = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.ingest_group_id, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(t, p) for t in settings.shop_topics for p in probe.partitions_for_topic(t) or ()]
        committed = {tp: probe.committed(tp) for tp in tps}
    finally:
        probe.close(autocommit=False)
    ends = _ends_by_reading(settings.kafka_bootstrap_servers, tps, total=len(batch) + 2)
    for tp in tps:
        assert (committed[tp] or 0) == ends.get(tp, 0), tp


def _ends_by_reading(bootstrap: str, tps: list[TopicPartition], *, total: int) -> dict[TopicPartition, int]:
    """Last offset + 1 of each partition, found by reading every record.

    The test broker (Tansu) can report a partition's end offset as the start of its last record batch + 1,
    so `end_offsets` is not trusted here.
    """
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    ends: dict[TopicPartition, int] = {}
    try:
        reader.assign(tps)
        reader.seek_to_beginning(*tps)

        def read_all() -> bool:
            for tp, records in reader.poll(timeout_ms=200).items():
                ends[tp] = records[-1].offset + 1
            return sum(ends.values()) >= total

        wait_until(read_all, what=f"{total} records read back")
    finally:
        reader.close()
    return ends


class FlakyProducer:
    """A real producer whose first send of the run fails in the way named."""

    def __init__(self, real: KafkaProducer, mode: str) -> None:
        self.real = real
        self.mode = mode
        self.failed = False

    def send(self, topic: str, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            if self.mode == "raise":
                raise KafkaTimeoutError("metadata not available (injected)")
            future = Future()
            future.failure(KafkaError("delivery failed (injected)"))
            return future
        return self.real.send(topic, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize("mode", ["raise", "failed-future"])
def test_a_failed_send_retries_the_batch_and_skips_nothing(
    settings: Settings, shop: Shop, readers: tuple[Reader, Reader], start_ingest: Callable[..., Running], mode: str
) -> None:
    facts_reader, _ = readers
    # queue the events before the group joins, so they come as one batch and the first send fails
    batch = [event("purchase") for _ in range(10)]
    for ev in batch:
        shop.send(settings.topic_purchases, j(ev), partition=0)
    flaky = FlakyProducer(make_producer(settings), mode)
    running = start_ingest(producer=flaky)
    wait_until(
        lambda: {f.event_id for _, f in facts_reader.read()} >= {e["event_id"] for e in batch},
        what="every event after the retry",
    )
    assert flaky.failed
    assert running.sample("loyalty_batch_retries_total", {"service": "ingest"}) >= 1
    wait_until(
        lambda: (
            running.sample("loyalty_events_total", {"service": "ingest", "type": "purchase", "outcome": "accepted"})
            == 10
        ),
        what="counted once",
    )
    running.stop()


def test_a_batch_goes_out_as_one_record_per_partition_each_on_its_customers_partition(
    settings: Settings, shop: Shop, readers: tuple[Reader, Reader], start_ingest: Callable[..., Running]
) -> None:
    facts_reader, _ = readers
    # queued before the group joins, so the first poll returns them all as one batch
    batch = [event("purchase") for _ in range(60)] + [event("referral") for _ in range(20)]
    for ev in batch:
        shop.send(settings.topic_purchases, j(ev), partition=0)
    running = start_ingest()
    got = wait_until(
        lambda: (lambda items: items if len(items) >= 100 else None)(facts_reader.read()), what="100 facts"
    )
    running.stop()
    assert len(got) == 100
    records = {(rec.partition, rec.offset): rec for rec, _ in got}
    assert len(records) <= facts_reader.partitions  # 100 facts, at most one record per partition
    for rec, fact in got:
        assert rec.partition == partition_for(fact.customer_id.encode("utf-8"), facts_reader.partitions)
    # within a record, facts keep the order of the shop's offsets
    for rec in records.values():
        offsets = [f.source["offset"] for r, f in got if r is rec]
        assert offsets == sorted(offsets)


# ------------------------------------------------------------------------------------------------------
# corners a real shop producer cannot make: driven with stand-ins for the Kafka clients


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, Any]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.tps: set[TopicPartition] = set()

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def assignment(self) -> set[TopicPartition]:
        return self.tps


class FakeProducer:
    """Checks what kafka-python checks, and acknowledges everything at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Future:
        if value is None and key is None:
            raise ValueError("Need at least one: key or value")
        self.sent.append((topic, key, value, headers or []))
        future = Future()
        future.success(None)
        return future

    def flush(self, timeout: float | None = None) -> None:
        return None

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))


def record(topic: str, partition: int, offset: int, value: bytes | None, key: bytes | None = None) -> Any:
    return ConsumerRecord(topic, partition, -1, offset, int(time.time() * 1000), 0, key, value, [], None, -1, -1, -1)


def test_poison_corners_are_dead_lettered_and_committed(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    consumer, producer = FakeConsumer(), FakeProducer()
    pipeline = Pipeline(settings=settings, metrics=Metrics(service="ingest"), consumer=consumer, producer=producer)
    tp = TopicPartition(settings.topic_purchases, 2)
    consumer.tps = {tp}
    good = event("purchase")
    batch = {
        tp: [
            record(tp.topic, 2, 40, None, None),  # neither key nor value
            record(tp.topic, 2, 41, b"\x00" * 10, b"k"),
            record(tp.topic, 2, 42, j(good), None),
        ]
    }
    result = pipeline.process(batch)
    assert (result.records, result.facts, result.rejected, result.committed) == (3, 1, 2, True)
    dead = [s for s in producer.sent if s[0] == settings.topic_dead_letter]
    assert [(key, value) for _, key, value, _ in dead] == [(b"", None), (b"k", b"\x00" * 10)]
    assert dict(dead[0][3])["source.offset"] == b"40"
    assert consumer.commits == [{tp: OffsetAndMetadata(43, "", -1)}]


def test_a_bug_in_validation_dead_letters_instead_of_stopping(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.ingest.pipeline as module

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(module, "validate", broken)
    settings = make_settings()
    consumer, producer = FakeConsumer(), FakeProducer()
    pipeline = Pipeline(settings=settings, metrics=Metrics(service="ingest"), consumer=consumer, producer=producer)
    tp = TopicPartition(settings.topic_referrals, 0)
    result = pipeline.process({tp: [record(tp.topic, 0, 7, j(event("referral")), b"k")]})
    assert result.committed and result.rejected == 1
    [(topic, _, _, headers)] = producer.sent
    assert topic == settings.topic_dead_letter
    assert dict(headers)["error.code"] == b"processing_failed"
    assert dict(headers)["error.exception"] == b"RuntimeError"


def test_a_record_whose_facts_cannot_be_encoded_is_dead_lettered_whole_and_the_batch_goes_on(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A referral yields two facts; the second raising must not leave the first handed on alone."""
    import services.ingest.pipeline as module

    real = module.encode

    def failing_for_c2(fact: Any, **kwargs: Any) -> bytes:
        if fact.customer_id == "c-2":
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")
        return real(fact, **kwargs)

    monkeypatch.setattr(module, "encode", failing_for_c2)
    settings = make_settings()
    consumer, producer = FakeConsumer(), FakeProducer()
    pipeline = Pipeline(settings=settings, metrics=Metrics(service="ingest"), consumer=consumer, producer=producer)
    tp = TopicPartition(settings.topic_referrals, 0)
    bad = j(event("referral", customer_id="c-1", referred_customer_id="c-2"))
    good = j(event("purchase", customer_id="c-3"))
    result = pipeline.process({tp: [record(tp.topic, 0, 7, bad, b"k"), record(tp.topic, 0, 8, good, b"k")]})
    assert (result.records, result.facts, result.rejected, result.committed) == (2, 1, 1, True)
    dead = [s for s in producer.sent if s[0] == settings.topic_dead_letter]
    assert [(key, value) for _, key, value, _ in dead] == [(b"k", bad)]
    assert dict(dead[0][3])["error.exception"] == b"UnicodeEncodeError"
    handed_on = [f for s in producer.sent if s[0] == settings.topic_scoring_input for f in decode_record(s[2])]
    assert [f.customer_id for f in handed_on] == ["c-3"]
    assert consumer.commits == [{tp: OffsetAndMetadata(9, "", -1)}]


def test_a_dead_letter_over_the_limit_is_cut_with_its_size_in_a_header(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(dead_letter_max_bytes=2000)
    consumer, producer = FakeConsumer(), FakeProducer()
    pipeline = Pipeline(settings=settings, metrics=Metrics(service="ingest"), consumer=consumer, producer=producer)
    tp = TopicPartition(settings.topic_purchases, 0)
    huge = b"x" * 100_000
    result = pipeline.process({tp: [record(tp.topic, 0, 3, huge, b"key")]})
    assert result.committed and result.rejected == 1
    [(_, key, value, headers)] = producer.sent
    assert key == b"key" and value == huge[:1997]
    assert dict(headers)["error.truncated"] == b"100000"
    assert dict(headers)["error.code"] == b"too_large"


# ------------------------------------------------------------------------------------------------------
# HTTP, and the real `python -m services.ingest`


def test_readyz_names_the_broker_when_it_is_unreachable(make_settings: Callable[..., Settings]) -> None:
    dead = make_settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    client = TestClient(create_app(settings=dead, metrics=Metrics(service="ingest")))
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["unreachable"] == ["broker"]
    # the reason is about reaching the broker, not a client that cannot even be configured
    assert "Configuration" not in body["checks"]["broker"], body


def test_readyz_is_ok_with_the_broker_up(settings: Settings) -> None:
    client = TestClient(create_app(settings=settings, metrics=Metrics(service="ingest")))
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"broker": "ok"}


def _env(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TOPIC_", "DATABASE_"))}
    for name in (
        "kafka_bootstrap_servers",
        "topic_purchases",
        "topic_referrals",
        "topic_complaints",
        "topic_stage_changes",
        "topic_dead_letter",
        "topic_scoring_input",
        "ingest_group_id",
        "topic_partitions",
        "consumer_poll_timeout_ms",
        "log_format",
    ):
        env[name.upper()] = str(getattr(settings, name))
    env["INGEST_PORT"] = str(port)
    env["HTTP_HOST"] = "127.0.0.1"
    # ingest needs no database: prove it by giving it none
    env["DATABASE_URL"] = ""
    return env


def test_the_service_process_end_to_end(
    settings: Settings, shop: Shop, readers: tuple[Reader, Reader], tmp_path: Path
) -> None:
    facts_reader, dead_reader = readers
    port = free_port()
    log_path = tmp_path / "ingest.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.ingest"],
            cwd=ROOT,
            env=_env(settings, port),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def get(path: str) -> httpx.Response | None:
            try:
                return httpx.get(base + path, timeout=5)
            except httpx.TransportError:
                return None

        health = wait_until(lambda: get("/healthz"), what="/healthz")
        assert health.status_code == 200
        ready = wait_until(lambda: get("/readyz"), what="/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"broker": "ok"}

        good = event("purchase")
        shop.send(settings.topic_purchases, j(good))
        shop.send(settings.topic_purchases, j(event("purchase", currency="GBP", event_id="bad-gbp")), key=b"k1")
        facts_reader.wait_for(1)
        dead_reader.wait_for(1)

        def metrics_show_both() -> str | None:
            response = get("/metrics")
            text = response.text if response is not None else ""
            wanted = (
                'loyalty_events_total{outcome="accepted",service="ingest",type="purchase"} 1.0',
                'loyalty_events_total{outcome="rejected",service="ingest",type="purchase"} 1.0',
                'loyalty_dead_letters_total{error_code="wrong_currency"} 1.0',
            )
            return text if all(w in text for w in wanted) else None

        text = wait_until(metrics_show_both, what="metrics of both events")
        assert "loyalty_processing_latency_seconds_bucket" in text
        assert "loyalty_batch_duration_seconds_count" in text
        lag = wait_until(
            lambda: "loyalty_consumer_lag_messages{" in ((get("/metrics") or httpx.Response(500)).text),
            timeout_s=15,
            what="consumer lag per partition",
        )
        assert lag

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    log_text = log_path.read_text()
    assert "bad-gbp" in log_text  # rejections are logged with their event id
    assert "ingest stopped" in log_text
