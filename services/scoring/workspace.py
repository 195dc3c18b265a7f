"""The marketing workspace (contract section 9): campaign lists, what moves a customer up, flows, and /ui.

    GET /v1/customers?stage=&tier=&develop=&health=&sort=&limit=&after=
                                                   one keyset page (JSON), or the whole list (Accept: text/csv)
    GET /v1/customers/{customer_id}/next-rung      the next rung's conditions, from the ladder's own rulebook
    GET /v1/flows?since=&until=&bucket=            customers entering each rung per day, week or month (UTC)
    GET /v1/funnel?cohort=&since=&until=           per cohort of first-seen customers, how many reached each rung
    GET /ui                                        one HTML page over the endpoints above (static, no build step)

The answers come from `services.scoring.read` (paging and CSV in `read.lists`, flows in `read.flows`); this
module only routes and maps what the queries refuse to a status code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from services.scoring.heavy import Gate, HeldStream
from services.scoring.http_common import ApiContext, ApiError, CustomerId, Moment, not_found
from services.scoring.read.customers import customer_next_rung
from services.scoring.read.flows import BucketName, InvalidRange, flows
from services.scoring.read.funnel import CohortName, funnel
from services.scoring.read.lists import (
    InvalidCursor,
    ListFilter,
    Order,
    csv_lines,
    csv_name,
    csv_rows,
    customer_page,
)
from services.scoring.schemas import CustomerListOut, ErrorOut, FlowsOut, FunnelOut, NextRungOut
from shared.wire.customer_health import HealthStatus
from shared.wire.stage_changes import KindName, StageName, TierName

STATIC_DIR = Path(__file__).parent / "static"


def wants_csv(request: Request) -> bool:
    """Whether the client asked for CSV with `Accept: text/csv` (browsers never send it unasked)."""
    return "text/csv" in request.headers.get("accept", "").lower()


def workspace_router(*, ctx: ApiContext, read: Callable[..., None], gate: Gate) -> APIRouter:
    """Section 9's endpoints; `read` is the dependency that checks a token may read (section 10), `gate` bounds
    the CSV exports and flow queries in flight (503 when full)."""
    router = APIRouter()
    v1 = APIRouter(dependencies=[Depends(read)], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})

    @v1.get(
        "/v1/customers",
        response_model=CustomerListOut,
        tags=["workspace"],
        responses={
            400: {"model": ErrorOut},
            422: {"model": ErrorOut},
            503: {"model": ErrorOut},
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "A page as JSON, or with `Accept: text/csv` the whole list as CSV.",
            },
        },
    )
    def list_customers(
        request: Request,
        stage: Annotated[StageName | None, Query(description="Only customers on this rung.")] = None,
        tier: Annotated[TierName | None, Query(description="Only customers in this profitability tier.")] = None,
        develop: Annotated[
            KindName | None,
            Query(
                description=(
                    "Only customers whose kind to develop is this one (the focus stored as of their last event)."
                )
            ),
        ] = None,
        sort: Annotated[
            Order,
            Query(
                description=(
                    "`customer_id` (ascending), or `index`: the stored loyalty index, highest first, ties in "
                    "customer_id order, customers with no stored index last."
                )
            ),
        ] = "customer_id",
        health: Annotated[
            HealthStatus | None,
            Query(description="Only customers whose health status is this (customers without an order have none)."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Page size (JSON only).")] = 100,
        after: Annotated[str | None, Query(description="The `next` cursor of the previous page (JSON only).")] = None,
    ) -> Any:
        """Customers by rung, tier and kind to develop, in customer_id or index order: a page of JSON, or the
        whole list as CSV.

        Paging is keyset paging (the cursor names the sort key of the last row of the page before; a cursor
        of one `sort` is refused by the other), so across the pages of one walk no customer appears twice and
        none is skipped: every customer that matches the filter and keeps its sort key while the walk goes on
        is on exactly one page. Customers created while paging show up on a later page if they sort after the
        cursor. A customer whose rung, tier or focus changes between two pages is listed where it stands when
        its page is read: it may leave a filtered list (it climbed) or join it, and with `sort=index` a new
        event moves it up or down the order. `develop` and the index are the focus stored as of each customer's
        last event (GET /v1/customers/{customer_id} gives it as of now); a customer with no event since the
        focus is stored matches no `develop=` and sorts last.
        With `Accept: text/csv` the whole list streams as CSV in the same order (`limit` and `after` do not
        apply), read in keyset chunks of 1,000, each its own short query, so a slow download holds no connection.
        """
        flt = ListFilter(stage=stage, tier=tier, develop=develop, health=health)
        at = datetime.now(UTC)
        if wants_csv(request):
            return _csv_response(ctx, flt, at=at, order=sort, gate=gate)
        try:
            return customer_page(ctx.engine, flt, cursor=after, limit=limit, policy=ctx.policy, at=at, order=sort)
        except InvalidCursor as exc:
            raise ApiError(400, "invalid_cursor", str(exc)) from exc

    @v1.get(
        "/v1/customers/{customer_id}/next-rung",
        response_model=NextRungOut,
        tags=["workspace"],
        responses={404: {"model": ErrorOut}},
    )
    def get_next_rung(customer_id: CustomerId) -> dict[str, object]:
        """The rung above the customer's and each of its conditions with the customer's value; null on advocate."""
        body = customer_next_rung(ctx.engine, customer_id=customer_id, policy=ctx.policy)
        if body is None:
            raise not_found(customer_id)
        return body

    @v1.get(
        "/v1/flows",
        response_model=FlowsOut,
        response_model_exclude_none=True,
        tags=["workspace"],
        responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    )
    def get_flows(
        since: Annotated[Moment | None, Query(description="From this moment (inclusive); no offset = UTC.")] = None,
        until: Annotated[Moment | None, Query(description="Up to this moment (exclusive); no offset = UTC.")] = None,
        bucket: Annotated[BucketName, Query(description="day, week (starting Monday) or month; UTC.")] = "week",
    ) -> dict[str, object]:
        """Customers entering each rung per bucket, by occurred_at of the cause, in time order.

        Every bucket from the first to the last is listed, empty ones with zeros. Without since/until it
        covers all time, so summing a rung over the buckets (and `earlier`, present when the entries reach back
        more than 10 years) gives the number of customers who reached it. A range is at most 10 years and
        5,000 buckets (422 otherwise).
        """
        try:
            with gate.enter() as slot:
                return slot.run(lambda: flows(ctx.engine, bucket=bucket, since=since, until=until))
        except InvalidRange as exc:
            raise ApiError(422, "invalid_range", str(exc)) from exc

    @v1.get(
        "/v1/funnel",
        response_model=FunnelOut,
        tags=["workspace"],
        responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    )
    def get_funnel(
        cohort: Annotated[CohortName, Query(description="month, or week (starting Monday); UTC.")] = "month",
        since: Annotated[Moment | None, Query(description="First seen from this moment (inclusive).")] = None,
        until: Annotated[Moment | None, Query(description="First seen before this moment (exclusive).")] = None,
    ) -> dict[str, object]:
        """For the customers first seen in each period (the earliest occurred_at of any event naming them), how
        many stand on or above each rung now, in time order, empty periods included. A range is at most 10
        years and 5,000 periods (422 otherwise)."""
        try:
            with gate.enter() as slot:
                return slot.run(lambda: funnel(ctx.engine, cohort=cohort, since=since, until=until))
        except InvalidRange as exc:
            raise ApiError(422, "invalid_range", str(exc)) from exc

    @router.get("/ui", include_in_schema=False)
    def ui() -> FileResponse:
        """The workspace page; open, its data calls carry the token (section 10)."""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    router.include_router(v1)
    return router


def _csv_response(ctx: ApiContext, flt: ListFilter, *, at: datetime, order: Order, gate: Gate) -> Response:
    name = csv_name(flt, order=order)
    # the slot is taken before the 200 goes out (so a full gate can still answer 503) and held to the last line
    chunks = HeldStream(csv_lines(csv_rows(ctx.engine, flt, policy=ctx.policy, at=at, order=order)), gate.enter())
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
