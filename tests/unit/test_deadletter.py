"""The dead-letter record (pure): headers, the size bound, and which failures scoring isolates."""

from __future__ import annotations

import psycopg
import pytest
from kafka.errors import KafkaConnectionError
from sqlalchemy.exc import OperationalError

from services.scoring.store import ConcurrentUpdate
from services.scoring.worker import is_data_error
from shared.wire.deadletter import dead_letter, shrunk


def test_the_five_contract_headers_and_the_exception() -> None:
    letter = dead_letter(
        key=b"k",
        value=b"{}",
        code="processing_failed",
        message="boom \ud800 \x00",
        topic="shop.purchases",
        partition=2,
        offset=41,
        max_bytes=10_000,
        exception="ValueError",
    )
    headers = dict(letter.headers)
    assert [name for name, _ in letter.headers] == [
        "error.code",
        "error.message",
        "source.topic",
        "source.partition",
        "source.offset",
        "error.exception",
    ]
    assert headers["error.message"] == b"boom \\ud800 \\x00"  # printable, whatever the exception said
    assert (headers["source.partition"], headers["source.offset"]) == (b"2", b"41")
    assert letter.value == b"{}" and "error.truncated" not in headers


def test_a_letter_over_the_bound_keeps_its_first_bytes_and_says_how_large_it_was() -> None:
    letter = dead_letter(
        key=b"kk", value=b"a" * 5000, code="too_large", message="m", topic="t", partition=0, offset=0, max_bytes=1024
    )
    assert letter.value == b"a" * 1022 and dict(letter.headers)["error.truncated"] == b"5000"


def test_a_record_with_neither_key_nor_value_gets_an_empty_key() -> None:
    letter = dead_letter(
        key=None, value=None, code="invalid_json", message="m", topic="t", partition=0, offset=0, max_bytes=1024
    )
    assert (letter.key, letter.value) == (b"", None)


def test_shrunk_cuts_to_1_kib_once() -> None:
    letter = dead_letter(
        key=b"k", value=b"b" * 4000, code="c", message="m", topic="t", partition=0, offset=0, max_bytes=1_000_000
    )
    small = shrunk(letter)
    assert small is not None and small.value == b"b" * 1023 and dict(small.headers)["error.truncated"] == b"4000"
    assert shrunk(small) is None


@pytest.mark.parametrize(
    ("exc", "data"),
    [
        (psycopg.errors.CharacterNotInRepertoire("invalid byte sequence"), True),
        (psycopg.errors.CheckViolation("no_poison"), True),
        (psycopg.errors.NumericValueOutOfRange("out of range"), True),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), True),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), True),
        (ValueError("a fact the domain cannot take"), True),
        (psycopg.errors.SerializationFailure("conflict"), False),
        (psycopg.errors.AdminShutdown("terminating connection"), False),
        (psycopg.OperationalError("connection lost"), False),
        (OperationalError("SELECT 1", {}, Exception("server closed the connection")), False),
        (KafkaConnectionError("broker away"), False),
        (ConcurrentUpdate("moved on"), False),
        (ConnectionResetError(), False),
        (MemoryError(), False),
    ],
)
def test_what_scoring_isolates_and_what_it_retries(exc: BaseException, data: bool) -> None:
    assert is_data_error(exc) is data
