"""Keyset paging pieces of the workspace: cursors, the page query, chunked iteration, CSV lines."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.read.lists import (
    CSV_COLUMNS,
    ListFilter,
    csv_cell,
    csv_lines,
    decode_cursor,
    encode_cursor,
    iter_keyset,
    page_query,
)


# any id an event may carry: no control characters (Cc) and no lone surrogates (Cs)
@given(st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=128))
def test_a_cursor_round_trips_any_customer_id(customer_id: str) -> None:
    cursor = encode_cursor(customer_id)
    assert decode_cursor(cursor) == customer_id
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor


# "AA" is "\x00" and "YQo" is "a\n": valid base64 of what no customer id can hold
@pytest.mark.parametrize("cursor", ["", "%%%", "A", "_w", "Zm9v=", "Zm9v\n", "AA", "YQo", encode_cursor("x" * 129)])
def test_a_cursor_this_api_cannot_have_made_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(cursor)


@pytest.mark.parametrize("flt, after, where", [
    (ListFilter(), None, ""),
    (ListFilter(stage="regular"), None, "WHERE stage = :stage "),
    (ListFilter(tier="middling"), "c-1", "WHERE tier = :tier AND customer_id > :after "),
    (ListFilter(stage="regular", tier="middling"), "c-1",
     "WHERE stage = :stage AND tier = :tier AND customer_id > :after "),
])
def test_the_page_query_writes_only_the_conditions_in_use(flt: ListFilter, after: str | None, where: str) -> None:
    sql, params = page_query(flt, after=after, limit=8)
    assert sql == f"SELECT customer_id, state FROM customers {where}ORDER BY customer_id LIMIT :limit"
    assert params["limit"] == 8
    assert params.get("stage") == flt.stage and params.get("tier") == flt.tier and params.get("after") == after


@pytest.mark.parametrize("total", [0, 1, 2, 3, 5, 6, 7])
def test_keyset_iteration_reads_every_row_once_in_chunks(total: int) -> None:
    rows = [f"c-{i:03d}" for i in range(total)]
    calls: list[str | None] = []

    def fetch(after: str | None) -> list[str]:
        calls.append(after)
        start = 0 if after is None else rows.index(after) + 1
        return rows[start:start + 3]

    assert list(iter_keyset(fetch, key=lambda r: r, chunk=3)) == rows
    assert len(calls) == total // 3 + 1  # a short (possibly empty) page ends it
    assert calls[0] is None


def test_keyset_iteration_sees_rows_added_behind_the_cursor_once() -> None:
    rows = ["a", "b", "c", "d"]

    def fetch(after: str | None) -> list[str]:
        if after == "b":
            rows.insert(0, "0")  # a new row before the cursor: not read again, nothing repeated
            rows.append("e")  # a new row after it: read
        return [r for r in sorted(rows) if after is None or r > after][:2]

    assert list(iter_keyset(fetch, key=lambda r: r, chunk=2)) == ["a", "b", "c", "d", "e"]


def test_csv_lines_are_a_header_and_rows_in_chunks() -> None:
    rows = ([f"c{i}", "regular", "middling", "1.00", "0.50", "0.50", 0.25, 0, 0.1, 0.2, 0.3, 0.4] for i in range(7))
    chunks = list(csv_lines(rows, lines_per_chunk=3))
    assert len(chunks) == 3  # 3 + 3 + the last row (with the header in the first)
    parsed = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert parsed[0] == list(CSV_COLUMNS)
    assert len(parsed) == 8 and parsed[1][:6] == ["c0", "regular", "middling", "1.00", "0.50", "0.50"]


def test_csv_lines_quote_awkward_ids() -> None:
    rows = iter([['say "hi", ok', "visitor", "middling", "0.00", "0.00", "0.00", 0, 0, 0, 0, 0, 0]])
    parsed = list(csv.reader(io.StringIO(b"".join(csv_lines(rows)).decode())))
    assert parsed[1][0] == 'say "hi", ok'


@pytest.mark.parametrize("cell, written", [
    ("=HYPERLINK(\"http://evil\")", "'=HYPERLINK(\"http://evil\")"),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("c-42", "c-42"),
    ("a=b", "a=b"),
    ("-30.00", "-30.00"),  # money: a number, not a formula
    ("-7", "-7"),
    (-0.5, -0.5),
])
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(cell: object, written: object) -> None:
    assert csv_cell(cell) == written
    rows = iter([[cell, "visitor", "middling", "0.00", "0.00", "-30.00", 0, 0, 0, 0, 0, 0]])
    parsed = list(csv.reader(io.StringIO(b"".join(csv_lines(rows)).decode(), newline="")))
    assert parsed[1][0] == str(written) and parsed[1][5] == "-30.00"
