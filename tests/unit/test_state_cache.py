"""The scoring worker's cache of committed customer states: bounded, least recently written out first."""

from __future__ import annotations

from services.scoring.cache import StateCache
from services.scoring.domain.state import CustomerState
from tests.unit.domain_builders import at, default_policy, order, run


def _state(customer_id: str) -> CustomerState:
    state, _ = run([order(f"e-{customer_id}", at(2026, 1, 5))], default_policy())
    return state


def test_remembers_what_was_written_and_its_version() -> None:
    cache = StateCache(capacity=10)
    a = _state("c-1")
    cache.remember({"c-1": (a, 3)})
    assert cache.get("c-1") == (a, 3)
    assert cache.get("c-2") is None
    cache.remember({"c-1": (a, 4)})
    assert cache.get("c-1") == (a, 4) and len(cache) == 1


def test_evicts_the_least_recently_written_beyond_capacity() -> None:
    cache = StateCache(capacity=2)
    s = _state("c")
    cache.remember({"a": (s, 1), "b": (s, 1)})
    cache.remember({"a": (s, 2)})  # a is now the most recent
    cache.remember({"c": (s, 1)})
    assert len(cache) == 2
    assert cache.get("b") is None and cache.get("a") == (s, 2) and cache.get("c") == (s, 1)


def test_capacity_zero_keeps_nothing_and_clear_forgets_all() -> None:
    s = _state("c")
    off = StateCache(capacity=0)
    off.remember({"a": (s, 1)})
    assert off.get("a") is None and len(off) == 0
    on = StateCache(capacity=5)
    on.remember({"a": (s, 1), "b": (s, 1)})
    on.clear()
    assert len(on) == 0 and on.get("a") is None
