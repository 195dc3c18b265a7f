"""The expensive requests of the scoring API (CSV exports, flows) and how they are kept from starving the
event path, which runs in the same process.

    Gate      at most API_HEAVY_CONCURRENCY of them at once; one more is answered 503 at once, never queued
    Pacer     while the event path is busy, their work together uses at most API_HEAVY_SHARE of the time:
              after a piece of work that took t, the next piece waits t * (1/share - 1)
    Activity  when the event path last committed a batch ("busy" = within the last second)

The pacing is what makes the bound hold: the consumer, the API and the CSV formatting share one interpreter
lock, so a pool and a statement timeout alone cannot stop two exports from taking two thirds of it. When no
events arrive, nothing waits.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from services.scoring.http_common import RETRY_AFTER_S, ApiError

T = TypeVar("T")
BUSY_WITHIN_S = 1.0


class Activity:
    """When the event path last committed a batch."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._at = -math.inf

    def mark(self) -> None:
        self._at = self.clock()

    def busy(self) -> bool:
        """Whether a batch was committed within the last BUSY_WITHIN_S."""
        return self.clock() - self._at < BUSY_WITHIN_S


class Pacer:
    """Runs pieces of expensive work one at a time and, while `busy()`, keeps their share of the time at most
    `share`: after a piece that took t, the next one (of any request) starts t * (1/share - 1) later."""

    def __init__(
        self,
        share: float,
        *,
        busy: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.share, self.busy, self.clock, self.sleep = share, busy, clock, sleep
        self._lock = threading.Lock()
        self._next_at = -math.inf

    def run(self, work: Callable[[], T]) -> T:
        with self._lock:  # one piece at a time, so the share holds for all requests together
            wait = self._next_at - self.clock()
            if wait > 0 and self.busy():
                self.sleep(wait)  # releases the interpreter lock to the event path
            started = self.clock()
            try:
                return work()
            finally:
                self._next_at = self.clock() + (self.clock() - started) * (1 / self.share - 1)


class Slot:
    """One place of a Gate, released once (by `release()`, the end of a `with`, or when it goes away); its
    `run` paces work through the gate's Pacer."""

    def __init__(self, slots: threading.BoundedSemaphore, pacer: Pacer) -> None:
        self._slots: threading.BoundedSemaphore | None = slots
        self._lock = threading.Lock()
        self.run = pacer.run

    def release(self) -> None:
        with self._lock:
            slots, self._slots = self._slots, None
        if slots is not None:
            slots.release()

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


class Gate:
    """At most `size` expensive requests at once in this process; one more is refused at once (503 with
    Retry-After) rather than queued, so a burst of exports cannot pile up behind the event path."""

    def __init__(self, size: int, *, pacer: Pacer | None = None) -> None:
        self._slots = threading.BoundedSemaphore(size)
        self.pacer = pacer or Pacer(1.0, busy=lambda: False)

    def enter(self) -> Slot:
        """A held slot; raises ApiError(503) when every slot is taken."""
        if not self._slots.acquire(blocking=False):
            raise ApiError(
                503,
                "busy",
                "too many exports and flow queries in progress; retry shortly",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        return Slot(self._slots, self.pacer)


class HeldStream:
    """A response body that holds its Slot until the last chunk is sent, the client goes away, or the stream is
    dropped without ever being read (a generator's `finally` would not run in that last case); each chunk is
    made through the slot's pacing."""

    def __init__(self, chunks: Iterator[bytes], slot: Slot) -> None:
        self._chunks, self._slot = chunks, slot

    def __iter__(self) -> HeldStream:
        return self

    def __next__(self) -> bytes:
        try:
            return self._slot.run(lambda: next(self._chunks))
        except BaseException:  # StopIteration included: the stream is over either way
            self._slot.release()
            raise

    def __del__(self) -> None:
        self._slot.release()
