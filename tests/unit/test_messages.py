"""The internal wire format of `loyalty.scoring-input`: one fact or an array of facts per record."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.kafka import partition_for
from shared.wire.messages import (
    CHANNELS,
    DIRECTIONS,
    FACT_KINDS,
    Fact,
    FactRecords,
    MalformedFact,
    decode_facts,
    encode,
    encode_many,
)
from tests.facts import decode, decode_record

_money = st.decimals(min_value=0, max_value=Decimal("1e12"), places=2, allow_nan=False, allow_infinity=False)
# what an id may hold: no controls (Cc: C0, DEL, C1), no lone surrogates (Cs)
_text = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40)
_when = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)

facts = st.builds(
    Fact,
    kind=st.sampled_from(sorted(FACT_KINDS)),
    event_id=_text,
    role=st.sampled_from(["primary", "referred", "converted"]),
    customer_id=_text,
    occurred_at=_when,
    amount=_money,
    cost=_money,
    discount=_money,
    order_id=st.none() | _text,
    other_customer_id=st.none() | _text,
    severity=st.none() | st.sampled_from(["low", "medium", "high"]),
    resolved=st.booleans(),
    source=st.just({})
    | st.fixed_dictionaries({"topic": _text, "partition": st.integers(0, 99), "offset": st.integers(0, 2**40)}),
    ingested_at=st.none() | _when,
    lead_source=st.none() | _text,
).flatmap(
    lambda fact: st.tuples(st.sampled_from(CHANNELS), st.sampled_from(DIRECTIONS)).map(
        # a touch carries a channel and a direction, and no other fact does (decode checks both ways)
        lambda cd: replace(fact, channel=cd[0], direction=cd[1]) if fact.kind == "touch_made" else fact
    )
)


@given(facts)
def test_a_fact_survives_the_wire(fact: Fact) -> None:
    back = decode(encode(fact))
    assert back == fact  # datetimes compare as instants, Decimals by value
    assert back.occurred_at.tzinfo == UTC
    # exact to the digit; a zero, left out of the wire, comes back as plain 0
    assert str(back.amount) == (str(fact.amount) if fact.amount else "0")


@given(st.lists(facts, min_size=1, max_size=20))
def test_an_array_record_holds_the_facts_in_order(batch: list[Fact]) -> None:
    value = encode_many([encode(f) for f in batch])
    assert decode_record(value) == batch


@given(st.lists(st.tuples(st.integers(0, 3), facts), max_size=40), st.integers(150, 2000))
def test_fact_records_keep_each_partitions_facts_in_order_within_the_size(
    added: list[tuple[int, Fact]], max_bytes: int
) -> None:
    packer = FactRecords(max_bytes=max_bytes)
    sent: list[tuple[int, bytes]] = []
    for partition, fact in added:
        full = packer.add(partition, encode(fact))
        if full is not None:
            sent.append((partition, full))
    sent += packer.drain()
    assert packer.drain() == []  # nothing left open
    for partition in range(4):
        encoded = [encode(f) for p, f in added if p == partition]
        values = [v for p, v in sent if p == partition]
        start = 0
        for i, value in enumerate(values):
            # each record is the next run of the partition's facts, byte for byte, in order
            count = len(decode_record(value))
            assert value == encode_many(encoded[start : start + count])
            start += count
            # within the limit unless a lone fact is larger by itself, and closed only when the next did not fit
            assert len(value) <= max_bytes or count == 1
            if i < len(values) - 1:
                assert len(value) + 1 + len(encoded[start]) > max_bytes
        assert start == len(encoded)


def test_fact_records_count_brackets_and_commas() -> None:
    packer = FactRecords(max_bytes=10)
    assert [packer.add(0, part) for part in (b"aa", b"bb", b"cc")] == [None, None, None]  # [aa,bb,cc]: 10 bytes
    assert packer.add(0, b"d") == b"[aa,bb,cc]"  # an eleventh byte would not fit
    assert packer.add(1, b"x" * 20) is None  # a lone fact larger than the limit still travels
    assert packer.drain() == [(0, b"[d]"), (1, b"[" + b"x" * 20 + b"]")]


@given(facts)
def test_source_and_ingested_at_given_to_encode_replace_the_facts_own(fact: Fact) -> None:
    source = {"topic": "shop.purchases", "partition": 2, "offset": 7}
    back = decode(encode(fact, source=source, ingested_at="2026-06-01T12:00:00Z"))
    assert back.source == source
    assert back.ingested_at == datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_defaults_are_left_out_of_the_wire() -> None:
    fact = Fact(
        kind="complaint_filed",
        event_id="e1",
        role="primary",
        customer_id="c1",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert orjson.loads(encode(fact)) == {
        "v": 1,
        "kind": "complaint_filed",
        "event_id": "e1",
        "role": "primary",
        "customer_id": "c1",
        "occurred_at": "2026-01-02T03:04:05Z",
    }


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"[]",
        b"42",
        b"[42]",
        b'{"v": 2, "kind": "order_placed"}',
        b'{"v": 1, "kind": "order_shipped"}',
        b'{"v": 1, "kind": "order_placed"}',
        b'[{"v": 1, "kind": "order_placed", "event_id": "e", "role": "primary", "customer_id": "c",'
        b' "occurred_at": "2026-01-01T00:00:00"}]',  # a naive time
    ],
)
def test_anything_else_is_malformed(value: bytes | None) -> None:
    with pytest.raises(MalformedFact):
        decode_record(value)


_GOOD = {
    "v": 1,
    "kind": "order_placed",
    "event_id": "e",
    "role": "primary",
    "customer_id": "c",
    "occurred_at": "2026-01-01T00:00:00Z",
    "amount": "10.00",
}


@pytest.mark.parametrize(
    "change",
    [
        {"customer_id": "c\u0000"},
        {"customer_id": 42},
        {"customer_id": ""},
        {"customer_id": "c" * 129},
        {"event_id": None},
        {"event_id": "e\n"},
        {"amount": "NaN"},
        {"amount": "-1"},
        {"amount": "Infinity"},
        {"amount": 10.5},
        {"cost": "1e15"},
        {"discount": "1" * 41},
        {"role": "boss"},
        {"severity": "fatal"},
        {"resolved": "yes"},
        {"source": []},
        {"other_customer_id": "\u0085"},
        {"order_id": 7},
    ],
)
def test_a_bad_fact_is_set_aside_and_its_neighbours_kept(change: dict[str, object]) -> None:
    bad = {**_GOOD, "event_id": "bad", **change}
    value = orjson.dumps([_GOOD, bad, {**_GOOD, "event_id": "e2"}])
    facts, rejected = decode_facts(value)
    assert [f.event_id for f in facts] == ["e", "e2"]
    assert len(rejected) == 1 and orjson.loads(rejected[0][0]) == bad and rejected[0][1]
    with pytest.raises(MalformedFact):
        decode_record(value)


def test_decode_wants_exactly_one_fact() -> None:
    one = encode(
        Fact(
            kind="referral_converted",
            event_id="r",
            role="converted",
            customer_id="c",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )
    assert decode(one).kind == "referral_converted"
    with pytest.raises(MalformedFact):
        decode(encode_many([one]))


@pytest.mark.parametrize(
    ("key", "partitions", "expected"),
    [
        # values of the Java client's Utils.murmur2 (toPositive(murmur2(key)) % partitions)
        (b"21", 6, (-973932308 & 0x7FFFFFFF) % 6),
        (b"foobar", 12, (-790332482 & 0x7FFFFFFF) % 12),
        (b"a-little-bit-long-string", 6, (-985981536 & 0x7FFFFFFF) % 6),
    ],
)
def test_partition_for_matches_the_java_clients_partitioner(key: bytes, partitions: int, expected: int) -> None:
    assert partition_for(key, partitions) == expected
