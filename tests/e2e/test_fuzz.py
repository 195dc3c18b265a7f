"""Property test through the running system: whatever the shop sends, each record is either dead-lettered byte
for byte with the code the validation rules give it, or applied; the system keeps consuming after every example,
and no process restarts. The strategies and the judgement are in tests/e2e/fuzzing.py.

FUZZ_EXAMPLES sets the number of generated examples (default 60, about a minute; `make chaos` runs 2000 in
tests/chaos/test_fuzz_chaos.py).
"""

from __future__ import annotations

import pytest

from tests.e2e.fuzzing import examples_from_env, fuzz_system_env, run_fuzz
from tests.support import System


@pytest.fixture(scope="module")
def system_env(system_env: dict[str, str]) -> dict[str, str]:
    return fuzz_system_env(system_env)


def test_whatever_the_shop_sends_is_dead_lettered_or_applied(system: System, system_env: dict[str, str]) -> None:
    run_fuzz(system, system_env, examples=examples_from_env(60))
