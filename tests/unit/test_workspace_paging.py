"""Keyset paging pieces of the workspace: cursors, the page query, chunked iteration, CSV lines."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.read.lists import (
    CSV_COLUMNS,
    InvalidCursor,
    ListFilter,
    csv_cell,
    csv_lines,
    csv_name,
    decode_cursor,
    decode_index_cursor,
    encode_cursor,
    encode_index_cursor,
    iter_keyset,
    page_query,
)

SELECT = "SELECT customer_id, state, develop, loyalty_index FROM customers "


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


@pytest.mark.parametrize(
    "flt, after, where",
    [
        (ListFilter(), None, ""),
        (ListFilter(stage="regular"), None, "WHERE stage = :stage "),
        (ListFilter(tier="middling"), "c-1", "WHERE tier = :tier AND customer_id > :after "),
        (
            ListFilter(stage="regular", tier="middling"),
            "c-1",
            "WHERE stage = :stage AND tier = :tier AND customer_id > :after ",
        ),
        (ListFilter(develop="contact"), None, "WHERE develop = :develop "),
        (
            ListFilter(stage="visitor", tier="middling", develop="evaluative"),
            "c-1",
            "WHERE stage = :stage AND tier = :tier AND develop = :develop AND customer_id > :after ",
        ),
    ],
)
def test_the_page_query_writes_only_the_conditions_in_use(flt: ListFilter, after: str | None, where: str) -> None:
    sql, params = page_query(flt, after=after, limit=8)
    assert sql == f"{SELECT}{where}ORDER BY customer_id LIMIT :limit"
    assert params["limit"] == 8
    assert params.get("stage") == flt.stage and params.get("tier") == flt.tier and params.get("after") == after
    assert params.get("develop") == flt.develop


INDEX_ORDER = "ORDER BY (-coalesce(loyalty_index, -1)), customer_id LIMIT :limit"
AFTER_KEY = "((-coalesce(loyalty_index, -1)), customer_id) > (CAST(:after_key AS numeric), :after) "


@pytest.mark.parametrize(
    "flt, after, where, key",
    [
        (ListFilter(), None, "", None),
        (ListFilter(develop="contact"), (4125, "c-1"), f"WHERE develop = :develop AND {AFTER_KEY}", Decimal("-0.4125")),
        (ListFilter(stage="regular"), (10000, "c-1"), f"WHERE stage = :stage AND {AFTER_KEY}", Decimal("-1")),
        (ListFilter(), (0, "c-1"), f"WHERE {AFTER_KEY}", Decimal("0")),
        # no stored index counts as -1, so its key is +1: after every stored index
        (ListFilter(), (-1, "c-1"), f"WHERE {AFTER_KEY}", Decimal("1")),
    ],
)
def test_the_index_page_query_continues_after_the_key_of_the_last_row(
    flt: ListFilter, after: tuple[int, str] | None, where: str, key: Decimal | None
) -> None:
    sql, params = page_query(flt, after=after, limit=8, order="index")
    assert sql == f"{SELECT}{where}{INDEX_ORDER}"
    assert params.get("after_key") == key
    assert isinstance(params.get("after_key", Decimal(0)), Decimal)  # numeric, or the index cannot serve it
    assert params.get("after") == (after[1] if after else None)


def test_an_index_page_cannot_continue_after_a_bare_customer_id() -> None:
    with pytest.raises(TypeError):
        page_query(ListFilter(), after="c-1", limit=8, order="index")


@given(
    st.integers(min_value=-1, max_value=10_000),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=128),
)
def test_an_index_cursor_round_trips(units: int, customer_id: str) -> None:
    cursor = encode_index_cursor((units, customer_id))
    assert decode_index_cursor(cursor) == (units, customer_id)
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)  # a cursor of one order is refused by the other
    with pytest.raises(InvalidCursor):
        decode_index_cursor(encode_cursor(customer_id))


@pytest.mark.parametrize(
    "cursor", ["", ".", "1.", ".YzE", "x.YzE", "-2.YzE", "10001.YzE", "01.YzE", "+1.YzE", "1.5.YzE", " 1.YzE", "1.%%%"]
)
def test_an_index_cursor_this_api_cannot_have_made_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_index_cursor(cursor)


def test_the_csv_name_says_the_filters_and_the_order() -> None:
    assert csv_name(ListFilter()) == "customers"
    assert csv_name(ListFilter(stage="regular", tier="middling")) == "customers-regular-middling"
    assert csv_name(ListFilter(stage="regular", develop="contact"), order="index") == (
        "customers-regular-contact-by-index"
    )


@pytest.mark.parametrize("total", [0, 1, 2, 3, 5, 6, 7])
def test_keyset_iteration_reads_every_row_once_in_chunks(total: int) -> None:
    rows = [f"c-{i:03d}" for i in range(total)]
    calls: list[str | None] = []

    def fetch(after: str | None) -> list[str]:
        calls.append(after)
        start = 0 if after is None else rows.index(after) + 1
        return rows[start : start + 3]

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


@pytest.mark.parametrize(
    "cell, written",
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
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
    ],
)
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(cell: object, written: object) -> None:
    assert csv_cell(cell) == written
    rows = iter([[cell, "visitor", "middling", "0.00", "0.00", "-30.00", 0, 0, 0, 0, 0, 0]])
    parsed = list(csv.reader(io.StringIO(b"".join(csv_lines(rows)).decode(), newline="")))
    assert parsed[1][0] == str(written) and parsed[1][5] == "-30.00"
