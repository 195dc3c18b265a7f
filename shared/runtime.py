"""Process-level tuning for the services' hot loops."""

from __future__ import annotations

import gc


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
