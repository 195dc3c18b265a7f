"""docs/security.md: every row of the OWASP API Top 10 table names tests that exist, and every item is there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"


def table_rows() -> list[list[str]]:
    lines = DOC.read_text(encoding="utf-8").split("## OWASP API Security Top 10 (2023)", 1)[1].splitlines()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("| API")]
    return rows


def test_the_table_has_the_ten_items_in_order() -> None:
    assert [row[0].split()[0] for row in table_rows()] == [f"API{i}:2023" for i in range(1, 11)]


def test_every_row_names_tests_that_exist() -> None:
    for item, does, tests in table_rows():
        assert does, item
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", tests)
        assert named, f"{item} names no test"
        for path, name in named:
            source = (ROOT / path).read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{item}: {path}::{name} does not exist"


def test_the_idempotency_window_is_stated_where_operators_read() -> None:
    for doc in ("docs/security.md", "docs/guarantees.md", "docs/runbook.md"):
        assert "DEDUPE_RETENTION_DAYS" in (ROOT / doc).read_text(encoding="utf-8"), doc
