"""POST /v1/prospects (contract section 12): a CSV or NDJSON file of prospects, read as a stream.

The body is never held whole: each piece the server receives is cut into lines at once, the lines into rows,
and every `CHUNK_ROWS` accepted rows are written (`prospects_sql.write_chunk`, one transaction each) before
more is read, so memory holds one chunk and one partial line. A bad line is reported with its number and the
others go on. A body over `IMPORT_MAX_BYTES` is refused with 413: at once when its Content-Length says so,
else when the limit is passed, after writing the rows of the lines that ended before it.

Lines are numbered as in a text editor: the first line of the body is 1 (in a CSV file, the header).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from services.scoring.http_common import ApiContext, ApiError
from services.scoring.prospects_sql import Prospect, Template, write_chunk
from services.scoring.schemas import ErrorOut, ImportOut
from shared.wire.events import EARLIEST, parse_rfc3339
from shared.wire.text import MAX_ID, is_id

CHUNK_ROWS: Final = 10_000
MAX_LISTED: Final = 1_000
COLUMNS: Final = ("customer_id", "source", "occurred_at")
CSV, NDJSON = "text/csv", "application/x-ndjson"


class ImportRefused(ValueError):
    """The body as a whole cannot be imported (an unknown header); nothing of it was written."""


def _check_id(value: Any, name: str) -> str:
    if not is_id(value):
        if type(value) is not str:
            raise ValueError(f"{name} must be a string")
        raise ValueError(f"{name} must be 1-{MAX_ID} characters without control characters")
    return str(value)


class RowReader:
    """Lines in, prospects out: the rows of one body, fed piece by piece, with the bad lines and duplicates."""

    def __init__(self, media: str, *, now: datetime, latest: datetime) -> None:
        self.media, self.now, self.latest = media, now, latest
        self.columns: tuple[int, int | None, int | None] | None = None  # customer_id, source, occurred_at
        self.line = 0
        self.rows: dict[str, Prospect] = {}  # the chunk being gathered: a customer once
        self.rejected: list[dict[str, object]] = []
        self.rejected_total = 0
        self.width = 0
        self._tail = b""

    def feed(self, data: bytes) -> None:
        """Take the complete lines of `data` (with what is left of the last piece)."""
        parts = (self._tail + data).split(b"\n")
        self._tail = parts.pop()
        for raw in parts:
            self._line(raw)

    def finish(self) -> None:
        """The body ended: its last line need not end with a newline."""
        if self._tail:
            tail, self._tail = self._tail, b""
            self._line(tail)

    def take(self) -> list[Prospect]:
        rows, self.rows = list(self.rows.values()), {}
        return rows

    def _reject(self, error: str) -> None:
        self.rejected_total += 1
        if len(self.rejected) < MAX_LISTED:
            self.rejected.append({"line": self.line, "error": error})

    def _line(self, raw: bytes) -> None:
        self.line += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            return  # a blank line (the end of many files) is no row
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            self._reject(f"not UTF-8: invalid byte at position {exc.start}")
            return
        if self.media == CSV and self.columns is None:
            self._header(text)
            return
        try:
            customer_id, source, occurred = self._csv(text) if self.media == CSV else self._json(text)
            row = Prospect(
                _check_id(customer_id, "customer_id"),
                self._moment(occurred),
                None if source is None else _check_id(source, "source"),
            )
        except ValueError as exc:
            self._reject(str(exc))
            return
        if row.customer_id in self.rows:
            self._reject(f"duplicate: customer {row.customer_id!r} is on an earlier line")
            return
        self.rows[row.customer_id] = row

    def _header(self, text: str) -> None:
        names = [name.strip().lower() for name in next(csv.reader([text]))]
        unknown = [n for n in names if n not in COLUMNS]
        if unknown or len(set(names)) != len(names) or "customer_id" not in names:
            raise ImportRefused(
                f"the CSV header must name customer_id and may name source and occurred_at, each once, in any "
                f"order; got {text[:200]!r}"
            )
        self.width = len(names)
        self.columns = (
            names.index("customer_id"),
            names.index("source") if "source" in names else None,
            names.index("occurred_at") if "occurred_at" in names else None,
        )

    def _csv(self, text: str) -> tuple[Any, Any, Any]:
        cells = next(csv.reader([text]))
        if len(cells) != self.width:
            raise ValueError(f"{len(cells)} cells where the header names {self.width}")
        assert self.columns is not None
        id_at, source_at, occurred_at = self.columns
        # an empty cell is a value left out: the row takes no source, or the moment of the import
        source = cells[source_at] if source_at is not None and cells[source_at] else None
        occurred = cells[occurred_at] if occurred_at is not None and cells[occurred_at] else None
        return cells[id_at], source, occurred

    def _json(self, text: str) -> tuple[Any, Any, Any]:
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {str(exc)[:120]}") from exc
        if type(raw) is not dict:
            raise ValueError("a line must be one JSON object")
        if "customer_id" not in raw:
            raise ValueError("customer_id is required")
        return raw["customer_id"], raw.get("source"), raw.get("occurred_at")

    def _moment(self, value: Any) -> datetime:
        if value is None:
            return self.now
        if type(value) is not str:
            raise ValueError("occurred_at must be an RFC 3339 string")
        try:
            at = parse_rfc3339(value)
        except ValueError as exc:
            raise ValueError(f"occurred_at: {exc}") from exc
        if at < EARLIEST or at > self.latest:
            raise ValueError("occurred_at must lie between 1970-01-01 and 24 hours from now")
        return at


def _media(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (CSV, NDJSON):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the prospects as {CSV} or {NDJSON}, not {media or 'no content type'!r}",
        )
    return media


def prospects_router(*, ctx: ApiContext, admin: Callable[..., None]) -> APIRouter:
    """POST /v1/prospects, for admin tokens only."""
    router = APIRouter()
    limit = ctx.settings.import_max_bytes
    skew = timedelta(hours=ctx.settings.max_future_skew_hours)

    @router.post(
        "/v1/prospects",
        response_model=ImportOut,
        tags=["workspace"],
        dependencies=[Depends(admin)],
        responses={
            400: {"model": ErrorOut},
            401: {"model": ErrorOut},
            403: {"model": ErrorOut},
            413: {"model": ErrorOut},
            415: {"model": ErrorOut},
            200: {
                "description": "What was imported.",
                "content": {CSV: {"schema": {"type": "string"}}, NDJSON: {"schema": {"type": "string"}}},
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    CSV: {
                        "schema": {
                            "type": "string",
                            "description": "A header `customer_id[,source][,occurred_at]` (any order), a row a line.",
                        }
                    },
                    NDJSON: {
                        "schema": {
                            "type": "string",
                            "description": 'A JSON object a line: {"customer_id", "source"?, "occurred_at"?}.',
                        }
                    },
                },
            }
        },
    )
    async def import_prospects(request: Request) -> JSONResponse:
        """Prospects from a CSV or NDJSON file, streamed: each customer not known yet is added on `potential`.

        Idempotent per customer: a known customer is left as it is and counted in `existing`, so a retried or
        repeated file adds nobody twice. A row without `occurred_at` takes the moment of the import. A bad line
        is listed in `rejected` with its line number (the first 1,000) and the others go on. A body over
        IMPORT_MAX_BYTES is refused with 413, before reading when Content-Length says so; a streamed body that
        passes the limit keeps the rows of the lines before it, and the 413 answer counts them.
        """
        media = _media(request)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "payload_too_large", f"the import is larger than IMPORT_MAX_BYTES ({limit} bytes)")
        now = datetime.now(UTC)
        reader = RowReader(media, now=now, latest=now + skew)
        template = Template.of(ctx.policy, now)
        counts = {"imported": 0, "existing": 0}
        received = 0

        async def write() -> None:
            rows = reader.take()
            new = await run_in_threadpool(write_chunk, ctx.engine, rows, template)
            counts["imported"] += new
            counts["existing"] += len(rows) - new

        try:
            async for piece in request.stream():
                received += len(piece)
                if received > limit:
                    reader.feed(piece[: len(piece) - (received - limit)])  # the lines that ended before the limit
                    await write()
                    raise ApiError(
                        413,
                        "payload_too_large",
                        f"the import passed IMPORT_MAX_BYTES ({limit} bytes) at line {reader.line + 1}; "
                        f"the lines before it were imported: {counts['imported']} imported, "
                        f"{counts['existing']} existing",
                        extra=dict(counts),
                    )
                reader.feed(piece)
                if len(reader.rows) >= CHUNK_ROWS:
                    await write()
            reader.finish()
        except ImportRefused as exc:
            raise ApiError(400, "invalid_header", str(exc)) from exc
        if reader.line == 0 or (media == CSV and reader.columns is None):
            raise ApiError(400, "empty_body", "the import has no lines; send a header and rows")
        await write()
        return JSONResponse({**counts, "rejected": reader.rejected, "rejected_total": reader.rejected_total})

    return router
