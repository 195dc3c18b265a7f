"""Containment end to end: input the system cannot process is set aside (dead-lettered, byte for byte) and
everything after it goes on, in the same partition and the same batch, without any process restarting.

Each test sends the bad input and, after it on the same partition, a valid canary: the canary applied proves the
partition was not stuck behind the bad record. `process_start_time_seconds` read from both services' /metrics
before and after proves the work went on in the same processes (the launcher restarts a child that dies, so a
crash would otherwise look like recovery).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer

from shared.adapters.kafka import partition_for
from shared.wire.messages import Fact, encode
from tests.e2e.probes import (
    DeadLetters,
    Placed,
    Sender,
    assert_no_restart,
    customer,
    headers_of,
    start_times,
    wait_customer,
)
from tests.support import System, TopicReader, purchase, referral, uid, wait_until

PARTITIONS = 3  # TOPIC_PARTITIONS of the e2e system_env
DEAD_LETTER_MAX_BYTES = 2000
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


@pytest.fixture(scope="module")
def system_env(system_env: dict[str, str]) -> dict[str, str]:
    """The e2e system of tests/e2e/conftest.py with a small dead-letter bound (one system for the module: the
    bound only cuts the one oversized letter sent on purpose, every other letter here is far below it) and short
    fetch waits (Tansu holds an empty fetch for the whole wait, hop after hop; the launcher lowers it only for
    the broker it starts itself)."""
    return {**system_env, "DEAD_LETTER_MAX_BYTES": str(DEAD_LETTER_MAX_BYTES), "CONSUMER_FETCH_MAX_WAIT_MS": "100"}


@pytest.fixture(scope="module")
def sender(system: System, system_env: dict[str, str]) -> Iterator[Sender]:
    s = Sender(system_env["KAFKA_BOOTSTRAP_SERVERS"])
    yield s
    s.close()


@pytest.fixture(scope="module")
def letters(system: System, system_env: dict[str, str]) -> Iterator[DeadLetters]:
    d = DeadLetters(system_env["KAFKA_BOOTSTRAP_SERVERS"], system_env["TOPIC_DEAD_LETTER"])
    yield d
    d.close()


@pytest.fixture(scope="module")
def scoring_input(system: System, system_env: dict[str, str]) -> Iterator[TopicReader]:
    reader = TopicReader(system_env["KAFKA_BOOTSTRAP_SERVERS"], system_env["TOPIC_SCORING_INPUT"])
    yield reader
    reader.close()


def rd_conf(system_env: dict[str, str], **extra: Any) -> dict[str, Any]:
    # the embedded broker listens on IPv4 loopback only: librdkafka must not try an IPv6 address first
    return {"bootstrap.servers": system_env["KAFKA_BOOTSTRAP_SERVERS"], "broker.address.family": "v4", **extra}


def wait_orders(system: System, customer_id: str, n: int = 1, *, timeout_s: float = 20.0) -> None:
    wait_customer(system, customer_id, lambda c: c["counts"]["orders"] == n, timeout_s=timeout_s)


def assert_dead_lettered(letter: Any, placed: Placed, code: str) -> dict[str, bytes]:
    """`letter` is `placed`'s original record, unchanged, with `code` and the source headers; its headers."""
    h = headers_of(letter)
    assert h.get("error.code") == code.encode(), (h.get("error.code"), h.get("error.message"))
    assert letter.value == placed.value, "the dead letter's value is not the original bytes"
    if placed.key is not None:
        assert letter.key == placed.key
    assert (h["source.topic"].decode(), int(h["source.partition"]), int(h["source.offset"])) == placed.coords
    assert h.get("error.message"), "error.message is empty"
    return h


def raw_purchase(customer_json: str, *, event_id: str | None = None, at: str = "2026-06-01T10:00:00Z") -> bytes:
    """A purchase whose customer_id is given as JSON text, so escapes such as \\ud800 reach the wire as written."""
    eid = json.dumps(event_id or uid("raw-"))
    return (
        f'{{"event_id": {eid}, "type": "purchase", "customer_id": {customer_json}, "occurred_at": "{at}", '
        f'"amount": "10.00", "currency": "EUR"}}'
    ).encode()


Record = tuple[str, bytes | None, bytes, int | None]  # topic, key, value, partition (None: by key)


def canary_after(system_env: dict[str, str], bad: bytes, *, key: bytes | None) -> tuple[str, list[Record]]:
    """The bad record and then a valid canary, both on the same partition of the purchases topic (by one key, or
    by partition 0 when the bad record has none)."""
    canary = uid("canary-")
    topic = system_env["TOPIC_PURCHASES"]
    partition = None if key is not None else 0
    return canary, [(topic, key, bad, partition), (topic, key, json.dumps(purchase(canary)).encode(), partition)]


# ---------------------------------------------------------------------------------------------------------
# every codec, through librdkafka


def test_every_codec_with_headers_through_librdkafka(
    system: System, system_env: dict[str, str], letters: DeadLetters
) -> None:
    """A shop whose client is librdkafka (the usual one outside Java), one producer per compression codec, with
    record headers: every event is read and every customer's two stage changes are published; read back by a
    librdkafka consumer group, as marketing automation would."""
    before = start_times(system)
    topic = system_env["TOPIC_PURCHASES"]
    customers: dict[str, str] = {}
    delivered: list[Any] = []
    errors: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        (errors if err is not None else delivered).append(err or msg)

    for codec in CODECS:
        # linger: the events of one codec travel together, as one compressed batch per partition
        producer = Producer(rd_conf(system_env, **{"compression.type": codec, "linger.ms": 50, "acks": "all"}))
        try:
            for i in range(3):
                c = uid(f"codec-{codec}-{i}-")
                customers[c] = codec
                event = purchase(c, at="2026-06-01T10:00:00Z", amount="25.00")
                producer.produce(
                    topic,
                    key=c.encode(),
                    value=json.dumps(event).encode(),
                    on_delivery=on_delivery,
                    headers=[
                        ("trace-id", uuid.uuid4().hex.encode()),
                        ("producer", b"librdkafka"),
                        ("codec", codec.encode()),
                        ("empty", b""),
                    ],
                )
            assert producer.flush(30) == 0, f"{codec}: messages left unsent"
        finally:
            producer.close()
    assert not errors, errors
    assert len(delivered) == len(customers)

    consumer = Consumer(
        rd_conf(
            system_env,
            **{
                "group.id": uid("marketing-"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # Tansu holds a JoinGroup for half the session timeout waiting for more members: 23 s with the default
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
            },
        )
    )
    consumer.subscribe([system_env["TOPIC_STAGE_CHANGES"]])
    seen: dict[str, list[tuple[str, str]]] = {c: [] for c in customers}
    problems: list[str] = []

    def all_seen() -> bool:
        msg = consumer.poll(0.5)
        while msg is not None:
            if msg.error():
                problems.append(str(msg.error()))
            else:
                body = json.loads(msg.value())
                if body["customer_id"] in seen:
                    if msg.key() != body["customer_id"].encode():
                        problems.append(f"key {msg.key()!r} of a stage change of {body['customer_id']}")
                    seen[body["customer_id"]].append((body["from_stage"], body["to_stage"]))
            msg = consumer.poll(0)
        return all(len(v) >= 2 for v in seen.values())

    try:
        wait_until(all_seen, timeout_s=60, interval_s=0, what="two stage changes of each librdkafka customer")
    except AssertionError as exc:
        exc.add_note(f"stage changes seen: {seen}")
        raise
    finally:
        consumer.close()
    assert not problems, problems
    want = [("potential", "visitor"), ("visitor", "first_purchase")]
    assert {c: v for c, v in seen.items() if v != want} == {}
    by_source = letters.by_source()
    lettered = [
        (m.topic(), m.partition(), m.offset()) for m in delivered if (m.topic(), m.partition(), m.offset()) in by_source
    ]
    assert lettered == [], "valid librdkafka records were dead-lettered"
    assert_no_restart(system, before)


# ---------------------------------------------------------------------------------------------------------
# regressions: each input once took a service down (or a query), each now a dead letter and nothing else


def test_regression_lone_surrogate_in_customer_id(
    system: System, system_env: dict[str, str], sender: Sender, letters: DeadLetters
) -> None:
    """`"\\ud800"` is a valid JSON escape but no UTF-8 encoding exists for it: the first `.encode()` of the id
    raised in ingest, which died, was restarted, read the same batch and died again."""
    before = start_times(system)
    bad = raw_purchase(f'"sur-{uid()}-\\ud800"')
    canary, records = canary_after(system_env, bad, key=b"surrogate-" + uid().encode())
    placed = sender.send_all(records)
    wait_customer(system, canary)
    assert_dead_lettered(letters.of(placed[0]), placed[0], "invalid_characters")
    assert_no_restart(system, before)


def test_regression_nul_in_customer_id(
    system: System, system_env: dict[str, str], sender: Sender, letters: DeadLetters
) -> None:
    """PostgreSQL text cannot hold NUL: a `\\u0000` in an id failed scoring's whole transaction, for ever."""
    before = start_times(system)
    cid = f"nul-{uid()}"
    bad = raw_purchase(f'"{cid}\\u0000"')
    canary, records = canary_after(system_env, bad, key=cid.encode())
    placed = sender.send_all(records)
    wait_customer(system, canary)
    assert_dead_lettered(letters.of(placed[0]), placed[0], "invalid_characters")
    assert customer(system, cid) is None  # nothing of it applied under a cleaned-up id
    assert_no_restart(system, before)


def test_regression_snappy_batch(system: System, system_env: dict[str, str], letters: DeadLetters) -> None:
    """A snappy-compressed batch (librdkafka's framing) holding a bad record between valid ones, and a canary in
    the next batch: the bad one is dead-lettered, the rest applied."""
    before = start_times(system)
    topic = system_env["TOPIC_PURCHASES"]
    key = uid("snappy-").encode()
    good = [uid("snappy-ok-") for _ in range(3)]
    bad = b"not json: snappy " + uid().encode()
    canary = uid("canary-")
    placed: list[Placed] = []
    errors: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            placed.append(Placed(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value()))

    producer = Producer(rd_conf(system_env, **{"compression.type": "snappy", "linger.ms": 50}))
    try:
        for value in [
            json.dumps(purchase(good[0])).encode(),
            bad,
            json.dumps(purchase(good[1])).encode(),
            json.dumps(purchase(good[2])).encode(),
        ]:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        assert producer.flush(30) == 0
        producer.produce(topic, key=key, value=json.dumps(purchase(canary)).encode(), on_delivery=on_delivery)
        assert producer.flush(30) == 0
    finally:
        producer.close()
    assert not errors, errors
    assert len({p.partition for p in placed}) == 1, "one key, one partition: the canary must come after"

    wait_customer(system, canary)
    for c in good:
        wait_orders(system, c)
    bad_placed = next(p for p in placed if p.value == bad)
    assert_dead_lettered(letters.of(bad_placed), bad_placed, "invalid_json")
    assert_no_restart(system, before)


def test_regression_year_0001_does_not_break_flows(
    system: System, system_env: dict[str, str], sender: Sender, letters: DeadLetters
) -> None:
    """One event of year 0001 put the first weekly bucket before `datetime.min`, and every flows query failed
    from then on: such a timestamp is refused at the door now."""
    before = start_times(system)
    cid = uid("y0001-")
    bad = json.dumps(purchase(cid, at="0001-01-01T00:00:00Z")).encode()
    canary, records = canary_after(system_env, bad, key=cid.encode())
    placed = sender.send_all(records)
    wait_customer(system, canary)
    assert_dead_lettered(letters.of(placed[0]), placed[0], "invalid_timestamp")
    assert customer(system, cid) is None
    for bucket in ("week", "day", "month"):
        r = system.get("/v1/flows", params={"bucket": bucket})
        assert r.status_code == 200, (bucket, r.status_code, r.text[:300])
    assert_no_restart(system, before)


# ---------------------------------------------------------------------------------------------------------
# scoring: a fact the database refuses, an internal fact that is not one


def same_partition_ids(prefix: str, partition: int, n: int) -> list[str]:
    """`n` fresh customer ids whose facts go to scoring-input `partition`."""
    out: list[str] = []
    while len(out) < n:
        c = uid(prefix)
        if partition_for(c.encode(), PARTITIONS) == partition:
            out.append(c)
    return out


def test_a_database_refusal_isolates_one_fact(
    system: System, system_env: dict[str, str], sender: Sender, letters: DeadLetters, scoring_input: TopicReader
) -> None:
    """A real CHECK constraint refuses one customer: the transaction of the record holding that fact fails for a
    data reason. The fact is found (the record split until it is alone), the other facts of the record are
    applied, and the ORIGINAL shop event behind the refused fact is dead-lettered as `processing_failed`."""
    before = start_times(system)
    poison = f"poison-{uid()}"
    p = partition_for(poison.encode(), PARTITIONS)
    # most on the poison's scoring partition (the same record as the refused fact), two elsewhere
    normal = same_partition_ids("iso-", p, 5) + same_partition_ids("iso-", (p + 1) % PARTITIONS, 2)
    friend = same_partition_ids("iso-friend-", p, 1)[0]
    poison_event = purchase(poison, amount="42.00")
    events = [json.dumps(purchase(c)).encode() for c in normal[:3]]
    events.append(json.dumps(poison_event).encode())
    events += [json.dumps(purchase(c)).encode() for c in normal[3:]]
    events.append(json.dumps(referral(normal[0], friend)).encode())
    # one key for all: one shop partition, so one ingest batch and one scoring-input record per partition
    key = uid("burst-").encode()
    with psycopg.connect(system_env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("ALTER TABLE customers ADD CONSTRAINT no_poison CHECK (customer_id NOT LIKE 'poison-%') NOT VALID")
        try:
            placed = sender.send_all([(system_env["TOPIC_PURCHASES"], key, v, None) for v in events])
            for c in normal:
                wait_orders(system, c, timeout_s=30)
            assert wait_customer(system, friend)["stage"] == "visitor"
            # the test proves something only if the refused fact shared its scoring-input record with others
            shared = wait_until(
                lambda: next(
                    (r.value for r in scoring_input.poll() if poison_event["event_id"].encode() in r.value), None
                ),
                what="the scoring-input record of the poison fact",
            )
            assert any(c.encode() in shared for c in normal), "the poison fact travelled alone: nothing to isolate"
            poison_placed = placed[3]
            h = assert_dead_lettered(letters.of(poison_placed, timeout_s=30), poison_placed, "processing_failed")
            assert h.get("error.exception") == b"CheckViolation", h
            assert customer(system, poison) is None
        finally:
            conn.execute("ALTER TABLE customers DROP CONSTRAINT IF EXISTS no_poison")
    assert_no_restart(system, before)


def good_fact(customer_id: str, event_id: str) -> bytes:
    return encode(
        Fact(
            kind="order_placed",
            event_id=event_id,
            role="primary",
            customer_id=customer_id,
            occurred_at=datetime(2026, 6, 1, 10, tzinfo=UTC),
            amount=Decimal("10.00"),
        )
    )


BAD_FACTS = {
    "nul_in_customer_id": {"customer_id": "int-{uid}\x00"},
    "nan_amount": {"amount": "NaN"},
    "negative_amount": {"amount": "-5.00"},
    "non_string_customer_id": {"customer_id": 12345},
}


@pytest.mark.parametrize("bad", list(BAD_FACTS))
def test_a_bad_internal_fact_is_dead_lettered_and_the_rest_applied(
    system: System, system_env: dict[str, str], sender: Sender, letters: DeadLetters, bad: str
) -> None:
    """A record on the internal topic (only a bug or a foreign producer writes such a one) holding one fact that
    breaks the internal rules between good facts: the bad fact is dead-lettered `malformed_internal`, the good
    ones of the same record are applied."""
    before = start_times(system)
    scoring_topic = system_env["TOPIC_SCORING_INPUT"]
    p = PARTITIONS - 1
    first, last = same_partition_ids("int-ok-", p, 2)
    bad_customer = same_partition_ids("int-bad-", p, 1)[0]
    bad_event = uid("int-bad-e-")
    fact: dict[str, Any] = {
        "v": 1,
        "kind": "order_placed",
        "event_id": bad_event,
        "role": "primary",
        "customer_id": bad_customer,
        "occurred_at": "2026-06-01T10:00:00Z",
        "amount": "10.00",
    }
    for name, value in BAD_FACTS[bad].items():
        fact[name] = value.format(uid=uid()) if isinstance(value, str) else value
    value = (
        b"["
        + b",".join([good_fact(first, uid("int-e-")), json.dumps(fact).encode(), good_fact(last, uid("int-e-"))])
        + b"]"
    )
    [placed] = sender.send_all([(scoring_topic, None, value, p)])
    wait_orders(system, first)
    wait_orders(system, last)
    letter = letters.of(placed)
    h = headers_of(letter)
    assert h.get("error.code") == b"malformed_internal", (h.get("error.code"), h.get("error.message"))
    assert bad_event.encode() in (letter.value or b""), "the dead letter does not hold the bad fact"
    assert (h["source.topic"].decode(), int(h["source.partition"]), int(h["source.offset"])) == placed.coords
    named = str(fact["customer_id"])  # 12345 must not have become the customer "12345" either
    if "\x00" not in named:  # (an id with NUL cannot be asked for: it is not in any table to begin with)
        assert customer(system, named) is None, f"the bad fact was applied to {named!r}"
    assert_no_restart(system, before)


# ---------------------------------------------------------------------------------------------------------
# a dead letter too large for the topic


def test_an_oversized_dead_letter_is_truncated(
    system: System, system_env: dict[str, str], sender: Sender, letters: DeadLetters
) -> None:
    """A dead letter over DEAD_LETTER_MAX_BYTES (2000 in this module) goes out as its first 2000 bytes with
    `error.truncated` = the original size: a letter the topic refuses must not block the batch behind it."""
    before = start_times(system)
    size = 10 * 1024
    bad = (b"not json " + uid().encode() + b" " + bytes(range(32, 127)) * 200)[:size]
    assert len(bad) == size
    # no key (a key counts toward the letter's size) and partition 0 for both, so the canary comes after it
    canary, records = canary_after(system_env, bad, key=None)
    placed = sender.send_all(records)
    wait_customer(system, canary)
    letter = letters.of(placed[0])
    h = headers_of(letter)
    assert h.get("error.code") == b"invalid_json", h
    assert h.get("error.truncated") == str(size).encode(), h
    assert letter.value == bad[:DEAD_LETTER_MAX_BYTES]
    assert (h["source.topic"].decode(), int(h["source.partition"]), int(h["source.offset"])) == placed[0].coords
    assert_no_restart(system, before)
