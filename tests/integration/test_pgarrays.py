"""The one-pass array parameters (shared/adapters/pgarrays.py) against the real PostgreSQL: what goes in comes back."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest

from shared.adapters.db import make_engine
from shared.adapters.pgarrays import BigIntArray, BytesArray, SmallIntArray, TextArray


def test_every_array_type_round_trips_through_the_engines_connections(database_url: str) -> None:
    engine = make_engine(database_url)  # registers the dumpers on each connection it opens
    params = {
        "text": TextArray(["plain", "é€ 中文 😀", "", "quote ' and \" and \\ and {,}", "NULL"]),
        "bytes": BytesArray([b"\x00\xff\x10", b"", b"{}"]),
        "small": SmallIntArray([0, 4, -1, 32767, -32768]),
        "big": BigIntArray([1, -2, 2**40, 2**63 - 1, -(2**63)]),
        "money": TextArray(["1.5", "1E+2", "-0.01", "123456789012345678901234567890.123456789"]),
        "empty": TextArray([]),
    }
    with engine.connect() as conn:
        pg = conn.connection.driver_connection
        with pg.cursor(binary=True) as cur:  # type: ignore[union-attr]
            cur.execute(
                "SELECT %(text)b::text[], %(bytes)b::bytea[], %(small)b::smallint[], %(big)b::bigint[], "
                "%(money)b::text[]::numeric[], %(empty)b::text[], cardinality(%(empty)b::text[])",
                params,
            )
            row = cur.fetchone()
    assert row is not None
    text, raw, small, big, money, empty, size = row
    assert text == params["text"] and "NULL" in text  # the string, never a null
    assert raw == params["bytes"]
    assert small == params["small"] and big == params["big"]
    assert money == [
        Decimal("1.5"),
        Decimal("100"),
        Decimal("-0.01"),
        Decimal("123456789012345678901234567890.123456789"),
    ]
    assert empty == [] and size == 0


def test_a_value_out_of_range_fails_loudly_instead_of_wrapping(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        pg = conn.connection.driver_connection
        with pg.cursor(binary=True) as cur, pytest.raises(struct.error):  # type: ignore[union-attr]
            cur.execute("SELECT %(v)b::smallint[]", {"v": SmallIntArray([1, 40000])})
