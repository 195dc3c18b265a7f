"""Fixtures of the fault matrix and its summary table (printed at the end, written to test-artifacts/chaos-table.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from devstack.embedded import EmbeddedBroker
from tests.chaos.harness import ARTIFACTS, Harness, Outcome

ROWS = pytest.StashKey[list[Outcome]]()
TABLE = ARTIFACTS / "chaos-table.md"


@pytest.fixture(scope="session")
def chaos_table(request: pytest.FixtureRequest) -> list[Outcome]:
    """Every run of the session, for the table."""
    return request.config.stash.setdefault(ROWS, [])


@pytest.fixture
def make_harness(
    request: pytest.FixtureRequest, broker: EmbeddedBroker, database_url: str
) -> Iterator[Callable[..., Harness]]:
    """A harness on the session's broker and this test's fresh database (or the ones given)."""
    made: list[Harness] = []

    def factory(*, bootstrap: str | None = None, url: str | None = None, **kw: object) -> Harness:
        name = request.node.name.removeprefix("test_")[:28]
        h = Harness(bootstrap=bootstrap or broker.bootstrap, database_url=url or database_url, name=name, **kw)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


def render(rows: list[Outcome]) -> str:
    lines = [
        "| fault | events | faults injected | discrepancies | seconds |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.fault} | {r.events} | {r.faults_injected} | {len(r.report.discrepancies)} | {r.seconds:.0f} |"
        )
    lines.append(
        f"| **total** | **{sum(r.events for r in rows)}** | **{sum(r.faults_injected for r in rows)}** | "
        f"**{sum(len(r.report.discrepancies) for r in rows)}** | {sum(r.seconds for r in rows):.0f} |"
    )
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    table = render(rows)
    terminalreporter.section("chaos table")
    terminalreporter.write_line(table)
    notes = "\n".join(f"- {r.fault}: {'; '.join(r.notes)}" for r in rows)
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(
        f"# Chaos run {datetime.now(UTC).isoformat(timespec='seconds')}\n\n"
        "Command: `.venv/bin/pytest -m chaos tests/chaos` (`make chaos`)\n\n"
        f"{table}\n\n## Notes per run\n\n{notes}\n"
    )
    terminalreporter.write_line(f"(written to {TABLE})")
