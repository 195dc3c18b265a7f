"""Process-level helpers of the services: GC tuning, retry back-off, children that die with their parent."""

from __future__ import annotations

import ctypes
import gc
import random
import signal

_PR_SET_PDEATHSIG = 1  # prctl(2)


class Backoff:
    """Exponential back-off with jitter between retries of one failing step: 0.1 s doubling up to 5 s.

    Jitter (each delay drawn from [d, 2d)) keeps several instances that failed together (the broker or the
    database went away) from retrying in lockstep when it comes back.
    """

    def __init__(self, *, initial_s: float = 0.1, cap_s: float = 5.0) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self._next = initial_s

    def next_delay(self) -> float:
        """The delay before the next retry; each call doubles the base, up to the cap."""
        delay = self._next * (1 + random.random())
        self._next = min(self._next * 2, self.cap_s)
        return delay

    def reset(self) -> None:
        """The step succeeded: the next failure starts from the initial delay again."""
        self._next = self.initial_s


def tune_gc(*, gen0_threshold: int) -> None:
    """Freeze what start-up built and run the young-generation collector every `gen0_threshold` allocations.

    A batch allocates tens of thousands of short-lived objects (facts, decimals, datetimes, states) that
    reference counting frees; with Python's default of 700, the cycle collector ran every few dozen facts and
    kept scanning (and promoting) the batch still in hand. Frozen objects (modules, settings, clients) are
    never scanned again. 0 leaves Python's defaults.
    """
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def die_with_parent() -> None:
    """Run in a child before exec: it gets SIGTERM when the thread that started it dies, even by kill -9."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        return  # not Linux: a signal to the process group still reaches every child
