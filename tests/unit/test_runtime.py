"""`shared.runtime.tune_gc`: the young-generation threshold and the frozen start-up objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.runtime import tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_sets_the_young_threshold_and_freezes_what_exists() -> None:
    gc.unfreeze()
    _, gen1, gen2 = gc.get_threshold()
    tune_gc(gen0_threshold=12_345)
    assert gc.get_threshold() == (12_345, gen1, gen2)
    assert gc.get_freeze_count() > 1000  # modules, classes, functions of this process


@pytest.mark.usefixtures("restored_gc")
def test_zero_leaves_python_as_it_is() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    tune_gc(gen0_threshold=0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
