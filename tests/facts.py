"""Strict decoding of the internal topic for tests: every fact must decode, or MalformedFact."""

from __future__ import annotations

from shared.wire.messages import Fact, MalformedFact, decode_facts


def decode_record(data: bytes | None) -> list[Fact]:
    """The facts of one record value; raises MalformedFact when the record or any fact of it is bad."""
    facts, bad = decode_facts(data)
    if bad:
        raise MalformedFact(bad[0][1])
    return facts


def decode(data: bytes) -> Fact:
    """The single fact of a record written as one object (not an array)."""
    facts = decode_record(data)
    if len(facts) != 1 or data[:1] == b"[":
        raise MalformedFact("expected one fact, got an array")
    return facts[0]
