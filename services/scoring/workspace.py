"""The marketing workspace (contract section 9): campaign lists, what moves a customer up, flows, and /ui.

    GET /v1/customers?stage=&tier=&limit=&after=   one keyset page (JSON), or the whole list (Accept: text/csv)
    GET /v1/customers/{customer_id}/next-rung      the next rung's conditions, from the ladder's own rulebook
    GET /v1/flows?since=&until=&bucket=            customers entering each rung per day, week or month (UTC)
    GET /ui                                        one HTML page over the endpoints above (static, no build step)

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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlalchemy import Connection, text

from services.scoring.api import ApiContext, ApiError, load_customer
from services.scoring.domain.ladder import next_rung
from services.scoring.domain.measures import KINDS, loyalty, profitability, stability
from services.scoring.domain.state import STAGES, CustomerState, from_text
from services.scoring.schemas import (
    CustomerListOut,
    ErrorOut,
    FlowsOut,
    NextRungOut,
)
from shared.stage_changes import StageName, TierName

STATIC_DIR = Path(__file__).parent / "static"
BucketName = Literal["day", "week", "month"]
# rungs a customer can enter: nobody ever enters `potential`, they start there
ENTERED_RUNGS = STAGES[1:]
CSV_COLUMNS = ("customer_id", "stage", "tier", "sales", "costs", "profit", "stability", *KINDS)
CSV_CHUNK = 1000
MAX_BUCKETS = 10_000
T = TypeVar("T")


# ---- cursors and keyset paging ----------------------------------------------------------------------------

def encode_cursor(customer_id: str) -> str:
    """The opaque cursor after `customer_id`: URL-safe base64 of its UTF-8 bytes, without padding."""
    return base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The customer_id a cursor stands for; raises ValueError for anything `encode_cursor` cannot have made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        customer_id = raw.decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not a cursor of this API") from exc
    if not customer_id or encode_cursor(customer_id) != cursor:
        raise ValueError("not a cursor of this API")
    return customer_id


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Which customers a list holds; None = any."""

    stage: str | None = None
    tier: str | None = None


def page_query(flt: ListFilter, *, after: str | None, limit: int) -> tuple[str, dict[str, object]]:
    """SQL and parameters of one keyset page, ascending customer_id.

    Only the conditions in use are written out (no `:x IS NULL OR` tricks), so the planner sees each
    combination plainly and walks the matching index: (stage, tier, customer_id), (stage, customer_id),
    (tier, customer_id) or the primary key, reading `limit` rows and no more.
    """
    where: list[str] = []
    params: dict[str, object] = {"limit": limit}
    if flt.stage is not None:
        where.append("stage = :stage")
        params["stage"] = flt.stage
    if flt.tier is not None:
        where.append("tier = :tier")
        params["tier"] = flt.tier
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


# ---- items and CSV rows -----------------------------------------------------------------------------------

def list_item(state: CustomerState, *, ctx: ApiContext, at: datetime) -> dict[str, object]:
    """One customer in a list: rung, loyalty vector, profitability and stability as of `at`."""
    return {
        "customer_id": state.customer_id,
        "stage": state.stage,
        "loyalty": loyalty(state, at=at, policy=ctx.policy).as_dict(),
        "profitability": profitability(state, policy=ctx.policy),
        "stability": stability(state, at=at),
    }


def csv_row(state: CustomerState, *, ctx: ApiContext, at: datetime) -> list[object]:
    """One CSV line's values in CSV_COLUMNS order; money as plain 2-place decimals."""
    money = profitability(state, policy=ctx.policy)
    kinds = loyalty(state, at=at, policy=ctx.policy).as_dict()
    return [state.customer_id, state.stage, money["tier"], money["sales"], money["costs"], money["profit"],
            stability(state, at=at), *(kinds[k] for k in KINDS)]


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


def wants_csv(request: Request) -> bool:
    """Whether the client asked for CSV with `Accept: text/csv` (browsers never send it unasked)."""
    return "text/csv" in request.headers.get("accept", "").lower()


# ---- flows ------------------------------------------------------------------------------------------------

def bucket_of(moment: datetime, bucket: str) -> date:
    """The first day (UTC) of the bucket holding `moment`; weeks start on Monday, as date_trunc('week')."""
    day = moment.astimezone(UTC).date()
    if bucket == "day":
        return day
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_bucket(start: date, bucket: str) -> date:
    """The first day of the bucket after the one starting on `start`."""
    if bucket == "day":
        return start + timedelta(days=1)
    if bucket == "week":
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def bucket_starts(first: date, last: date, bucket: str) -> list[date]:
    """Every bucket start from `first` to `last`, both included; raises ValueError past MAX_BUCKETS."""
    starts: list[date] = []
    current = first
    while current <= last:
        if len(starts) >= MAX_BUCKETS:
            raise ValueError(f"more than {MAX_BUCKETS} {bucket} buckets; use a longer bucket or a shorter range")
        starts.append(current)
        current = next_bucket(current, bucket)
    return starts


def flow_series(counts: dict[tuple[date, str], int], *, bucket: str, since: datetime | None,
                until: datetime | None) -> list[dict[str, object]]:
    """Buckets in time order with every rung's entries, empty buckets included.

    The series covers the bucket of `since` (else of the first entry) to the bucket of the last instant before
    `until` (else of the last entry), so a chart's x axis is evenly spaced and an empty week shows as zero.
    """
    data_starts = sorted({start for start, _ in counts})
    first = bucket_of(since, bucket) if since is not None else (data_starts[0] if data_starts else None)
    last = (bucket_of(until - timedelta(microseconds=1), bucket) if until is not None
            else (data_starts[-1] if data_starts else None))
    if first is None or last is None:
        return []
    return [{"start": start.isoformat(), "entered": {r: counts.get((start, r), 0) for r in ENTERED_RUNGS}}
            for start in bucket_starts(first, last, bucket)]


def as_utc(moment: datetime | None) -> datetime | None:
    """`moment` in UTC; a moment without an offset is read as UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def load_flows(ctx: ApiContext, *, bucket: str, since: datetime | None,
               until: datetime | None) -> dict[tuple[date, str], int]:
    """Entries per (bucket start, rung) from stage_history, by occurred_at of the cause, in UTC."""
    where, params = ["to_stage <> 'potential'"], {"bucket": bucket}
    if since is not None:
        where.append("occurred_at >= :since")
        params["since"] = since  # type: ignore[assignment]
    if until is not None:
        where.append("occurred_at < :until")
        params["until"] = until  # type: ignore[assignment]
    # AT TIME ZONE 'UTC' first: the buckets are UTC days whatever the session's TimeZone is
    sql = ("SELECT date_trunc(:bucket, occurred_at AT TIME ZONE 'UTC') AS start, to_stage, count(*) AS n "
           f"FROM stage_history WHERE {' AND '.join(where)} GROUP BY 1, 2")
    with ctx.engine.connect() as conn:
        return {(row.start.date(), row.to_stage): int(row.n) for row in conn.execute(text(sql), params)}


# ---- the router -------------------------------------------------------------------------------------------

def _customer_or_404(ctx: ApiContext, customer_id: str) -> CustomerState:
    found = load_customer(ctx, customer_id=customer_id)
    if found is None:
        raise ApiError(404, "not_found", f"no customer {customer_id!r}")
    return found[0]


def workspace_router(*, ctx: ApiContext, read: Callable[..., None]) -> APIRouter:
    """Section 9's endpoints; `read` is the dependency that checks a token may read (section 10)."""
    router = APIRouter()
    v1 = APIRouter(dependencies=[Depends(read)], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})

    @v1.get("/v1/customers", response_model=CustomerListOut, tags=["workspace"],
            responses={400: {"model": ErrorOut}, 422: {"model": ErrorOut},
                       200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "A page as JSON, or with `Accept: text/csv` the whole list as CSV."}})
    def list_customers(
        request: Request,
        stage: Annotated[StageName | None, Query(description="Only customers on this rung.")] = None,
        tier: Annotated[TierName | None, Query(description="Only customers in this profitability tier.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Page size (JSON only).")] = 100,
        after: Annotated[str | None, Query(description="The `next` cursor of the previous page (JSON only).")] = None,
    ) -> Any:
        """Customers by rung and tier, in customer_id order: a page of JSON, or the whole list as CSV.

        Paging is keyset paging on customer_id (the cursor names the last id of the page before), so across
        the pages of one walk no customer appears twice and none is skipped: every customer that matches the
        filter when its page is read is on exactly one page. Customers created while paging show up on a later
        page if their id sorts after the cursor. A customer whose rung or tier changes between two pages is
        listed where it stands when its page is read: it may leave a filtered list (it climbed) or join it.
        With `Accept: text/csv` the whole filtered list streams as CSV (`limit` and `after` do not apply),
        read in keyset chunks of 1,000, each its own short query, so a slow download holds no connection.
        """
        flt = ListFilter(stage=stage, tier=tier)
        at = datetime.now(UTC)
        if wants_csv(request):
            return _csv_response(ctx, flt, at=at)
        start: str | None = None
        if after is not None:
            try:
                start = decode_cursor(after)
            except ValueError as exc:
                raise ApiError(400, "invalid_cursor", str(exc)) from exc
        with ctx.engine.connect() as conn:
            # one row more than asked tells whether there is a next page without a second query
            states = fetch_page(conn, flt, after=start, limit=limit + 1)
        more = len(states) > limit
        states = states[:limit]
        return {
            "items": [list_item(s, ctx=ctx, at=at) for s in states],
            "next": encode_cursor(states[-1].customer_id) if more else None,
        }

    @v1.get("/v1/customers/{customer_id}/next-rung", response_model=NextRungOut, tags=["workspace"],
            responses={404: {"model": ErrorOut}})
    def get_next_rung(customer_id: str) -> dict[str, object]:
        """The rung above the customer's and each of its conditions with the customer's value; null on advocate."""
        state = _customer_or_404(ctx, customer_id)
        rung, conds = next_rung(state, policy=ctx.policy)
        return {
            "stage": state.stage,
            "next_stage": rung,
            "conditions": [{"name": c.name, "have": c.have, "need": c.need, "met": c.met} for c in conds],
        }

    @v1.get("/v1/flows", response_model=FlowsOut, tags=["workspace"],
            responses={400: {"model": ErrorOut}, 422: {"model": ErrorOut}})
    def get_flows(
        since: Annotated[datetime | None, Query(description="From this moment (inclusive); no offset = UTC.")] = None,
        until: Annotated[datetime | None, Query(description="Up to this moment (exclusive); no offset = UTC.")] = None,
        bucket: Annotated[BucketName, Query(description="day, week (starting Monday) or month; UTC.")] = "week",
    ) -> dict[str, object]:
        """Customers entering each rung per bucket, by occurred_at of the cause, in time order.

        Every bucket from the first to the last is listed, empty ones with zeros. Without since/until it
        covers all time, so summing a rung over the buckets gives the number of customers who reached it.
        """
        lo, hi = as_utc(since), as_utc(until)
        if lo is not None and hi is not None and lo >= hi:
            raise ApiError(400, "invalid_range", "since must be before until")
        counts = load_flows(ctx, bucket=bucket, since=lo, until=hi)
        try:
            series = flow_series(counts, bucket=bucket, since=lo, until=hi)
        except ValueError as exc:
            raise ApiError(400, "invalid_range", str(exc)) from exc
        return {"bucket": bucket, "series": series}

    @router.get("/ui", include_in_schema=False)
    def ui() -> FileResponse:
        """The workspace page; open, its data calls carry the token (section 10)."""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    router.include_router(v1)
    return router


def _csv_response(ctx: ApiContext, flt: ListFilter, *, at: datetime) -> Response:
    def fetch(after: str | None) -> list[CustomerState]:
        # a fresh connection per chunk: nothing is held while the client reads at its own pace
        with ctx.engine.connect() as conn:
            return fetch_page(conn, flt, after=after, limit=CSV_CHUNK)

    rows = (csv_row(s, ctx=ctx, at=at)
            for s in iter_keyset(fetch, key=lambda s: s.customer_id, chunk=CSV_CHUNK))
    name = "-".join(["customers", *(v for v in (flt.stage, flt.tier) if v)])
    return StreamingResponse(csv_lines(rows), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
