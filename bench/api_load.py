"""API load against the event path: the same throughput phase with and without concurrent CSV exports.

The HTTP API runs in the scoring process beside the consumer, with its own bounded resources (API_POOL_SIZE,
API_STATEMENT_TIMEOUT_MS, API_HEAVY_CONCURRENCY; docs/security.md). This phase shows what is left of the
event path's throughput while `exports` clients (8 by default) download the whole customer list as CSV
over and over, each retrying after `Retry-After` when the service answers 503 `busy`. The target: at most
10 % slower than the same phase without them.

    from bench.api_load import exports_during, slowdown
    loaded = exports_during(scoring_url=..., run=lambda: <a throughput phase over fresh events>)
    result["api_load"] = {**loaded, **slowdown(baseline_events_per_s, loaded["phase"]["events_per_s"])}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

EXPORTS = 8
TARGET_SLOWDOWN = 0.10


@dataclass
class ExportClient:
    """One client downloading the CSV export in a loop until stopped; counts what it got."""

    url: str
    headers: dict[str, str]
    stop: threading.Event
    completed: int = 0
    refused: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: list[float] = field(default_factory=list)

    def run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    with client.stream("GET", self.url, headers={"Accept": "text/csv", **self.headers}) as r:
                        if r.status_code == 503:
                            self.refused += 1
                            # the service said when to come back; waiting on the event ends it at once on stop
                            self.stop.wait(float(r.headers.get("retry-after", "1")))
                            continue
                        if r.status_code != 200:
                            self.failed += 1
                            self.stop.wait(1.0)
                            continue
                        for chunk in r.iter_bytes():
                            self.bytes += len(chunk)
                    self.completed += 1
                    self.seconds.append(time.perf_counter() - started)
                except httpx.HTTPError:
                    self.failed += 1
                    self.stop.wait(1.0)


def exports_during(
    *, scoring_url: str, run: Callable[[], dict[str, Any]], exports: int = EXPORTS, token: str | None = None
) -> dict[str, Any]:
    """`run()` (a throughput phase: it returns its result, with `events_per_s`) while `exports` clients
    download `GET /v1/customers` as CSV in a loop; the phase's result and what the exports got."""
    stop = threading.Event()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    clients = [
        ExportClient(url=f"{scoring_url.rstrip('/')}/v1/customers", headers=headers, stop=stop) for _ in range(exports)
    ]
    threads = [threading.Thread(target=c.run, name=f"csv-export-{i}", daemon=True) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    try:
        phase = run()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=130)
    durations = sorted(s for c in clients for s in c.seconds)
    return {
        "exports": exports,
        "phase": phase,
        "exports_completed": sum(c.completed for c in clients),
        "exports_refused_503": sum(c.refused for c in clients),
        "exports_failed": sum(c.failed for c in clients),
        "export_mib": round(sum(c.bytes for c in clients) / 2**20, 1),
        "export_seconds_p50": round(durations[len(durations) // 2], 2) if durations else None,
    }


def slowdown(baseline_events_per_s: float, loaded_events_per_s: float) -> dict[str, Any]:
    """How much slower the event path was under the exports, against the target."""
    share = 1.0 - loaded_events_per_s / baseline_events_per_s if baseline_events_per_s > 0 else float("nan")
    return {
        "baseline_events_per_s": baseline_events_per_s,
        "loaded_events_per_s": loaded_events_per_s,
        "slowdown": round(share, 3),
        "target_slowdown": TARGET_SLOWDOWN,
        "met": share <= TARGET_SLOWDOWN,
    }
