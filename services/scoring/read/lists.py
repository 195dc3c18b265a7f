"""Customer lists: keyset pages as JSON-ready dicts, and the whole list as CSV.

Lists are keyset-paged on the primary key `customer_id`, which never changes and is never deleted, so the
order is total and stable while the data underneath changes; each filter combination is served by an index
ending in customer_id (see migrations 0001 and 0002).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine, text

from services.scoring.domain.measures import loyalty, profitability, stability
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import LOYALTY_KINDS, CustomerState, from_text

CSV_COLUMNS = ("customer_id", "stage", "tier", "sales", "costs", "profit", "stability", *LOYALTY_KINDS)
CSV_CHUNK = 1000
T = TypeVar("T")


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
    if not customer_id or encode_cursor(customer_id) != cursor:
        raise InvalidCursor("not a cursor of this API")
    return customer_id


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Which customers a list holds; None = any."""

    stage: str | None = None
    tier: str | None = None
    health: str | None = None  # the stored status: at_risk or active


def page_query(flt: ListFilter, *, after: str | None, limit: int) -> tuple[str, dict[str, object]]:
    """SQL and parameters of one keyset page, ascending customer_id.

    Only the conditions in use are written out (no `:x IS NULL OR` tricks), so the planner sees each
    combination plainly and walks the matching index: (stage, tier, customer_id), (stage, customer_id),
    (tier, customer_id), (health_status, customer_id) or the primary key, reading `limit` rows and no more.
    """
    where: list[str] = []
    params: dict[str, object] = {"limit": limit}
    if flt.stage is not None:
        where.append("stage = :stage")
        params["stage"] = flt.stage
    if flt.tier is not None:
        where.append("tier = :tier")
        params["tier"] = flt.tier
    if flt.health is not None:
        where.append("health_status = :health")
        params["health"] = flt.health
    if after is not None:
        where.append("customer_id > :after")
        params["after"] = after
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    return f"SELECT customer_id, state FROM customers {clause}ORDER BY customer_id LIMIT :limit", params


def fetch_page(conn: Connection, flt: ListFilter, *, after: str | None, limit: int) -> list[CustomerState]:
    """Up to `limit` customers matching `flt` with customer_id after `after`, in customer_id order."""
    sql, params = page_query(flt, after=after, limit=limit)
    return [from_text(row.state) for row in conn.execute(text(sql), params)]


def iter_keyset(fetch: Callable[[str | None], Sequence[T]], *, key: Callable[[T], str],
                chunk: int) -> Iterator[T]:
    """Every row of a keyset-ordered list, fetched `chunk` at a time with `fetch(after)`, until a short page."""
    after: str | None = None
    while True:
        page = fetch(after)
        yield from page
        if len(page) < chunk:
            return
        after = key(page[-1])


# ---- pages ------------------------------------------------------------------------------------------------

def list_item(state: CustomerState, *, policy: Policy, at: datetime) -> dict[str, object]:
    """One customer in a list: rung, loyalty vector, profitability and stability as of `at`."""
    return {
        "customer_id": state.customer_id,
        "stage": state.stage,
        "loyalty": loyalty(state, at=at, policy=policy).as_dict(),
        "profitability": profitability(state, policy=policy),
        "stability": stability(state, at=at),
    }


def customer_page(engine: Engine, flt: ListFilter, *, cursor: str | None, limit: int, policy: Policy,
                  at: datetime) -> dict[str, object]:
    """One page of the list after `cursor` (None = the first page): its items and the next page's cursor.

    Raises InvalidCursor before touching the database when `cursor` is not one of ours.
    """
    after = decode_cursor(cursor) if cursor is not None else None
    with engine.connect() as conn:
        # one row more than asked tells whether there is a next page without a second query
        states = fetch_page(conn, flt, after=after, limit=limit + 1)
    more = len(states) > limit
    states = states[:limit]
    return {
        "items": [list_item(s, policy=policy, at=at) for s in states],
        "next": encode_cursor(states[-1].customer_id) if more else None,
    }


# ---- CSV --------------------------------------------------------------------------------------------------

def csv_row(state: CustomerState, *, policy: Policy, at: datetime) -> list[object]:
    """One CSV line's values in CSV_COLUMNS order; money as plain 2-place decimals."""
    money = profitability(state, policy=policy)
    kinds = loyalty(state, at=at, policy=policy).as_dict()
    return [state.customer_id, state.stage, money["tier"], money["sales"], money["costs"], money["profit"],
            stability(state, at=at), *(kinds[k] for k in LOYALTY_KINDS)]


def csv_rows(engine: Engine, flt: ListFilter, *, policy: Policy, at: datetime) -> Iterator[list[object]]:
    """Every customer matching `flt` as CSV values, read lazily in keyset chunks of CSV_CHUNK."""
    def fetch(after: str | None) -> list[CustomerState]:
        # a fresh connection per chunk: nothing is held while the client reads at its own pace
        with engine.connect() as conn:
            return fetch_page(conn, flt, after=after, limit=CSV_CHUNK)

    return (csv_row(s, policy=policy, at=at)
            for s in iter_keyset(fetch, key=lambda s: s.customer_id, chunk=CSV_CHUNK))


def csv_lines(rows: Iterator[list[object]], *, lines_per_chunk: int = 500) -> Iterator[bytes]:
    """The header and `rows` as UTF-8 CSV, a few hundred lines per chunk (a chunk per row is too chatty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    pending = 0
    for row in rows:
        writer.writerow(row)
        pending += 1
        if pending >= lines_per_chunk:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
            pending = 0
    yield buf.getvalue().encode()


def csv_name(flt: ListFilter) -> str:
    """The download's file name, without extension: `customers`, then the filter values in use."""
    return "-".join(["customers", *(v for v in (flt.stage, flt.tier, flt.health) if v)])
