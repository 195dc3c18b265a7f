"""The bulk import's speed (contract section 12: 1,000,000 rows in at most 60 s on the reference machine).

    time_import(scoring_url, rows=N)   -> {"rows", "seconds", "rows_per_s", "answer"}, against a running system
    .venv/bin/python -m bench.prospects_import [--rows 1000000] [--url http://127.0.0.1:8002] [--token T]

`time_import` streams a generated CSV file (customer_id,source,occurred_at; new customers, a tenth of the rows
without occurred_at) to POST /v1/prospects in 1 MiB pieces, so the bench never holds the file either, and
times from the first byte sent to the answer. Without `--url` the module starts a PostgreSQL and the system as
`make run` does, in a scratch folder, and stops them after.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import log

PIECE_BYTES = 1 << 20


def csv_pieces(rows: int, *, prefix: str) -> Iterator[bytes]:
    """A CSV file of `rows` new prospects, in pieces of about PIECE_BYTES."""
    lines = [b"customer_id,source,occurred_at\n"]
    size = len(lines[0])
    for i in range(rows):
        stamp = b"" if i % 10 == 0 else b"2025-%02d-%02dT10:00:00Z" % (1 + i % 12, 1 + i % 28)
        line = b"%s%08d,bench-list-%d,%s\n" % (prefix.encode(), i, i % 5, stamp)
        lines.append(line)
        size += len(line)
        if size >= PIECE_BYTES:
            yield b"".join(lines)
            lines, size = [], 0
    if lines:
        yield b"".join(lines)


def time_import(
    scoring_url: str, *, rows: int, token: str | None = None, prefix: str | None = None, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Import `rows` new prospects into the system at `scoring_url`; how long it took and what it answered."""
    headers = {"content-type": "text/csv"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    tag = prefix if prefix is not None else f"bench-{uuid.uuid4().hex[:6]}-"
    started = time.perf_counter()
    r = httpx.post(
        f"{scoring_url.rstrip('/')}/v1/prospects",
        content=csv_pieces(rows, prefix=tag),
        headers=headers,
        timeout=timeout_s,
    )
    seconds = time.perf_counter() - started
    r.raise_for_status()
    answer = r.json()
    if answer["imported"] != rows:
        raise AssertionError(f"imported {answer['imported']} of {rows}: {str(answer)[:500]}")
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "answer": {k: answer[k] for k in ("imported", "existing", "rejected_total")},
    }


def _standalone(rows: list[int]) -> list[dict[str, Any]]:
    from bench.system import SystemUnderTest
    from devstack.embedded import create_database, start_postgres

    root = Path(tempfile.mkdtemp(prefix="loyalty-import-bench-"))
    pg = start_postgres(root / "pg")
    try:
        sut = SystemUnderTest(
            name="import",
            workdir=root / "import",
            database_url=create_database(pg.url, "bench_import"),
            partitions=6,
            instances=1,
        )
        sut.start()
        try:
            url = f"http://127.0.0.1:{sut.stack.scoring_port}"
            return [time_import(url, rows=n) for n in rows]
        finally:
            sut.stop()
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="rows per import (repeatable); default 1000000")
    parser.add_argument("--url", help="the scoring service of a running system; default: start one")
    parser.add_argument("--token", help="an admin token, when the system has API_TOKENS")
    args = parser.parse_args(argv)
    sizes = args.rows or [1_000_000]
    results = [time_import(args.url, rows=n, token=args.token) for n in sizes] if args.url else _standalone(sizes)
    for result in results:
        log(f"{result['rows']} rows in {result['seconds']} s ({result['rows_per_s']} rows/s): {result['answer']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
