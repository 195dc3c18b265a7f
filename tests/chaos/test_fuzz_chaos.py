"""The fuzz property of tests/e2e/test_fuzz.py at chaos volume (`make chaos`): 2000 generated examples by default
(FUZZ_EXAMPLES sets it, FUZZ_SEED repeats a run's draw), through one system started as `make run` starts it."""

from __future__ import annotations

import pytest

from devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from tests.e2e import conftest as e2e
from tests.e2e.conftest import system  # noqa: F401 - the e2e system fixture, here on this module's system_env
from tests.e2e.fuzzing import examples_from_env, fuzz_system_env, run_fuzz
from tests.support import System

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def system_env(pg: EmbeddedPostgres, broker: EmbeddedBroker, migrated_template: str) -> dict[str, str]:
    # the e2e fixture's own builder (its database and topic names), with the fuzz run's settings
    return fuzz_system_env(e2e.system_env.__wrapped__(pg, broker, migrated_template))


def test_whatever_the_shop_sends_is_dead_lettered_or_applied_at_chaos_volume(
    system: System,  # noqa: F811 - the imported fixture, requested by name
    system_env: dict[str, str],
) -> None:
    run_fuzz(system, system_env, examples=examples_from_env(2000))
