"""Customer lists: keyset pages as JSON-ready dicts, and the whole list as CSV.

Lists are keyset-paged in one of two orders, each total (customer_id breaks every tie, and it never changes and
is never deleted), so a walk neither repeats nor skips a row while the data underneath changes:

    customer_id   ascending: each filter combination is served by an index ending in customer_id (migrations
                  0001, 0002, 0005)
    index         the stored loyalty index (the focus as of the customer's last event, contract section 16),
                  highest first, no stored index last, ties in customer_id order: the key (-index, customer_id)
                  of `ix_customers_index_order` (migration 0005)

A customer whose key changes while a walk is under way (a new event moves their index) is listed where the
key stands when its page is read: it may be met twice or not at all, as a customer who climbs may leave a
rung's list; every customer whose key stays put is listed exactly once.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, NamedTuple, TypeVar

from sqlalchemy import Connection, Engine, text

from services.scoring.domain.measures import loyalty, profitability, stability
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import LOYALTY_KINDS, CustomerState, from_text
from shared.wire.text import is_id

CSV_COLUMNS = ("customer_id", "stage", "tier", "sales", "costs", "profit", "stability", *LOYALTY_KINDS)
CSV_CHUNK = 1000
T = TypeVar("T")
K = TypeVar("K")
Order = Literal["customer_id", "index"]
# a keyset position: the last customer_id of the page before, and in index order that row's index too
IndexKey = tuple[int, str]  # (stored index in units of 1e-4, -1 when none; customer_id)


class InvalidCursor(ValueError):
    """A cursor this API cannot have made."""


# ---- cursors and keyset paging ----------------------------------------------------------------------------


def encode_cursor(customer_id: str) -> str:
    """The opaque cursor after `customer_id`: URL-safe base64 of its UTF-8 bytes, without padding."""
    return base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The customer_id a cursor stands for; raises InvalidCursor for anything `encode_cursor` cannot have made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        customer_id = raw.decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("not a cursor of this API") from exc
    # is_id: a cursor naming what no customer can be called (NUL, a control character) never reaches the query
    if not is_id(customer_id) or encode_cursor(customer_id) != cursor:
        raise InvalidCursor("not a cursor of this API")
    return customer_id


def encode_index_cursor(key: IndexKey) -> str:
    """The opaque cursor after `key` in index order: `<units>.<the customer_id's cursor>`.

    A "." never occurs in a customer_id cursor, so neither kind of cursor passes for the other.
    """
    units, customer_id = key
    return f"{units}.{encode_cursor(customer_id)}"


def decode_index_cursor(cursor: str) -> IndexKey:
    """The key an index-order cursor stands for; raises InvalidCursor for anything the API cannot have made."""
    units_text, dot, rest = cursor.partition(".")
    try:
        units = int(units_text)
    except ValueError:
        units = None
    if not dot or units is None or not -1 <= units <= 10_000 or str(units) != units_text:
        raise InvalidCursor("not a cursor of this API for sort=index")
    return units, decode_cursor(rest)


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Which customers a list holds; None = any. `develop` matches the stored focus (NULL matches nothing)."""

    stage: str | None = None
    tier: str | None = None
    develop: str | None = None
    health: str | None = None  # the stored status: at_risk or active


class ListedRow(NamedTuple):
    """One customer of a list: the state and the stored focus (None until the customer's first write under it)."""

    state: CustomerState
    develop: str | None
    loyalty_index: Decimal | None

    def index_key(self) -> IndexKey:
        index = self.loyalty_index
        return (-1 if index is None else int(index.scaleb(4)), self.state.customer_id)


_INDEX_ORDER = "(-coalesce(loyalty_index, -1))"  # the expression ix_customers_index_order is built on


def page_query(
    flt: ListFilter, *, after: str | IndexKey | None, limit: int, order: Order = "customer_id"
) -> tuple[str, dict[str, object]]:
    """SQL and parameters of one keyset page, in `order`, after the position `after` (None = from the start).

    Only the conditions in use are written out (no `:x IS NULL OR` tricks), so the planner sees each
    combination plainly and walks the matching index: (stage, tier, customer_id), (stage, customer_id),
    (tier, customer_id), (develop, customer_id), (health_status, customer_id), the primary key, or for
    sort=index the index order, reading about `limit` rows.
    """
    where: list[str] = []
    params: dict[str, object] = {"limit": limit}
    for column in ("stage", "tier", "develop"):
        value = getattr(flt, column)
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if flt.health is not None:
        where.append("health_status = :health")
        params["health"] = flt.health
    if order == "index":
        if after is not None:
            if not isinstance(after, tuple):
                raise TypeError("a sort=index page continues after an IndexKey, not a customer_id")
            units, after_id = after
            # the key of the row before: (-index, customer_id), a missing index counting as -1; numeric, as
            # the index expression is (a float parameter would turn the comparison into a scan)
            where.append(f"({_INDEX_ORDER}, customer_id) > (CAST(:after_key AS numeric), :after)")
            params["after_key"] = Decimal(1) if units < 0 else -Decimal(units).scaleb(-4)
            params["after"] = after_id
        sort = f"{_INDEX_ORDER}, customer_id"
    else:
        if after is not None:
            where.append("customer_id > :after")
            params["after"] = after
        sort = "customer_id"
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    return (
        f"SELECT customer_id, state, develop, loyalty_index FROM customers {clause}ORDER BY {sort} LIMIT :limit"
    ), params


def fetch_page(
    conn: Connection, flt: ListFilter, *, after: str | IndexKey | None, limit: int, order: Order = "customer_id"
) -> list[ListedRow]:
    """Up to `limit` customers matching `flt` after the position `after`, in `order`."""
    sql, params = page_query(flt, after=after, limit=limit, order=order)
    return [ListedRow(from_text(row.state), row.develop, row.loyalty_index) for row in conn.execute(text(sql), params)]


def iter_keyset(fetch: Callable[[K | None], Sequence[T]], *, key: Callable[[T], K], chunk: int) -> Iterator[T]:
    """Every row of a keyset-ordered list, fetched `chunk` at a time with `fetch(after)`, until a short page."""
    after: K | None = None
    while True:
        page = fetch(after)
        yield from page
        if len(page) < chunk:
            return
        after = key(page[-1])


def _row_key(order: Order) -> Callable[[ListedRow], str | IndexKey]:
    return ListedRow.index_key if order == "index" else (lambda row: row.state.customer_id)


# ---- pages ------------------------------------------------------------------------------------------------


def list_item(row: ListedRow, *, policy: Policy, at: datetime) -> dict[str, object]:
    """One customer in a list: rung, loyalty vector, profitability and stability as of `at`; the stored focus.

    `focus` is what the list filters and sorts on, the kind to develop and the index as of the customer's last
    event (GET /v1/customers/{id} gives it as of now); null for a customer not written since it is stored.
    """
    state = row.state
    return {
        "customer_id": state.customer_id,
        "stage": state.stage,
        "loyalty": loyalty(state, at=at, policy=policy).as_dict(),
        "profitability": profitability(state, policy=policy),
        "stability": stability(state, at=at),
        "focus": (
            None
            if row.develop is None or row.loyalty_index is None
            else {"develop": row.develop, "index": float(row.loyalty_index)}
        ),
    }


def customer_page(
    engine: Engine,
    flt: ListFilter,
    *,
    cursor: str | None,
    limit: int,
    policy: Policy,
    at: datetime,
    order: Order = "customer_id",
) -> dict[str, object]:
    """One page of the list in `order` after `cursor` (None = the first page): its items and the next cursor.

    Raises InvalidCursor before touching the database when `cursor` is not one of ours for this order.
    """
    after: str | IndexKey | None = None
    if cursor is not None:
        after = decode_index_cursor(cursor) if order == "index" else decode_cursor(cursor)
    with engine.connect() as conn:
        # one row more than asked tells whether there is a next page without a second query
        rows = fetch_page(conn, flt, after=after, limit=limit + 1, order=order)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = (
            encode_index_cursor(last.index_key()) if order == "index" else encode_cursor(last.state.customer_id)
        )
    return {"items": [list_item(r, policy=policy, at=at) for r in rows], "next": next_cursor}


# ---- CSV --------------------------------------------------------------------------------------------------


def csv_row(state: CustomerState, *, policy: Policy, at: datetime) -> list[object]:
    """One CSV line's values in CSV_COLUMNS order; money as plain 2-place decimals."""
    money = profitability(state, policy=policy)
    kinds = loyalty(state, at=at, policy=policy).as_dict()
    return [
        state.customer_id,
        state.stage,
        money["tier"],
        money["sales"],
        money["costs"],
        money["profit"],
        stability(state, at=at),
        *(kinds[k] for k in LOYALTY_KINDS),
    ]


def csv_rows(
    engine: Engine, flt: ListFilter, *, policy: Policy, at: datetime, order: Order = "customer_id"
) -> Iterator[list[object]]:
    """Every customer matching `flt` in `order` as CSV values, read lazily in keyset chunks of CSV_CHUNK."""

    def fetch(after: str | IndexKey | None) -> list[ListedRow]:
        # a fresh connection per chunk: nothing is held while the client reads at its own pace
        with engine.connect() as conn:
            return fetch_page(conn, flt, after=after, limit=CSV_CHUNK, order=order)

    return (csv_row(r.state, policy=policy, at=at) for r in iter_keyset(fetch, key=_row_key(order), chunk=CSV_CHUNK))


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def csv_cell(value: object) -> object:
    """`value` safe to open in a spreadsheet: text starting with =, +, -, @, a tab or a carriage return gets a
    leading `'`, which spreadsheets show as text and do not run. Numbers, money written as a plain decimal
    (`-30.00`) included, stay numbers: a number is not a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_lines(rows: Iterator[list[object]], *, lines_per_chunk: int = 500) -> Iterator[bytes]:
    """The header and `rows` as UTF-8 CSV, a few hundred lines per chunk (a chunk per row is too chatty);
    every cell passes `csv_cell`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    pending = 0
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
        pending += 1
        if pending >= lines_per_chunk:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
            pending = 0
    yield buf.getvalue().encode()


def csv_name(flt: ListFilter, *, order: Order = "customer_id") -> str:
    """The download's file name, without extension: `customers`, the filter values in use, `by-index` if so sorted."""
    return "-".join(
        [
            "customers",
            *(v for v in (flt.stage, flt.tier, flt.develop, flt.health) if v),
            *(["by-index"] if order == "index" else []),
        ]
    )
