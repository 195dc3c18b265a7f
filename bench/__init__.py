"""The benchmark (`make bench`) and the synthetic shop (`make demo`).

Nothing here is imported by the services: `bench.generator` makes realistic shop event streams,
`bench.demo` feeds a running system with one, `bench.run` measures the system against two baselines
(`bench.naive` is the one-transaction-per-event baseline; bench/run.py lists the modules of the measurement).
"""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    """A progress line on stderr: stdout is the table's."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
