"""Fault injection for the fault-tolerance tests: crash the process (SIGKILL, like `kill -9`) at a named point.

Off unless the FAULT_INJECTION setting names points, as `point=probability,...`, e.g.
`scoring.after_db_commit=0.05,relay.after_publish=0.1`. Points:

- `ingest.after_flush`       hand-on and dead letters acknowledged, offsets not committed
- `scoring.after_db_commit`  batch committed in PostgreSQL, offsets not committed
- `relay.after_publish`      outbox rows published, not yet marked
- `health.before_commit`     a health scan or sweep pass written (statuses, outbox rows), not committed
"""

from __future__ import annotations

import contextlib
import os
import random
import signal

POINTS = ("ingest.after_flush", "scoring.after_db_commit", "relay.after_publish", "health.before_commit")


class Faults:
    """Decides, at each named point, whether this process dies now."""

    def __init__(self, spec: str = "", *, also_kill: int | None = None) -> None:
        # the relay runs in a child of the scoring process: a crash point there takes the scoring process
        # down too, as when they were one process, so the service as a whole dies at that line
        self.also_kill = also_kill
        self.odds: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            point, _, chance = item.partition("=")
            if point not in POINTS:
                raise ValueError(f"unknown fault point {point!r}; known: {POINTS}")
            self.odds[point] = float(chance or "1")

    def point(self, name: str) -> None:
        """SIGKILL this process with the configured probability for `name`."""
        chance = self.odds.get(name)
        if chance and random.random() < chance:
            if self.also_kill is not None:
                with contextlib.suppress(ProcessLookupError):  # already gone: only this process is left to kill
                    os.kill(self.also_kill, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
