"""Fault schedules for `Harness.run_feed(during=...)`: called between ticks with the feeder's progress, each
returns True once it has nothing left to do."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.chaos.harness import Harness


class Monkey:
    """kill -9 of a random live `kind` process, `kills` times, each once the victim has been up a random while.

    Used as `Harness.run_feed(during=...)`; it is done when all its kills are made.
    """

    def __init__(
        self,
        harness: Harness,
        kind: str,
        *,
        kills: int,
        rng: random.Random,
        uptime: tuple[float, float] = (2.0, 6.0),
        after: float = 0.05,
    ) -> None:
        self.h, self.kind, self.kills, self.rng, self.uptime, self.after = harness, kind, kills, rng, uptime, after
        self.done = 0
        self.next_uptime = rng.uniform(*uptime)

    def __call__(self, progress: float) -> bool:
        if self.done >= self.kills:
            return True
        if progress < self.after:
            return False
        live = [s for s in self.h.of(self.kind) if s.alive() and not s.stopped and not s.paused]
        ripe = [s for s in live if s.uptime >= self.next_uptime]
        if ripe:
            self.rng.choice(ripe).kill()
            self.done += 1
            self.next_uptime = self.rng.uniform(*self.uptime)
        return self.done >= self.kills


class Script:
    """A fault scenario written as a generator, advanced one step per tick: `progress = yield` waits a tick.

    Used as `Harness.run_feed(during=...)`; it is done when the generator returns. Its steps must not block:
    they wait by yielding until their condition holds.
    """

    def __init__(self, scenario: Callable[[], Any]) -> None:
        self.gen = scenario()
        self.finished = False
        next(self.gen)

    def __call__(self, progress: float) -> bool:
        if not self.finished:
            try:
                self.gen.send(progress)
            except StopIteration:
                self.finished = True
        return self.finished
