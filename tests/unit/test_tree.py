"""The tree itself: no merge conflict left in any source or document (a page with one fails to load at all)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.M)
FOLDERS = ("services", "shared", "devstack", "bench", "tools", "tests", "docs", "deploy")
SUFFIXES = {".py", ".js", ".css", ".html", ".md", ".toml", ".json", ".yaml", ".yml", ".ini", ".mako", ".txt"}


def test_no_file_holds_a_conflict_marker() -> None:
    files = [p for folder in FOLDERS for p in (ROOT / folder).rglob("*") if p.suffix in SUFFIXES and p.is_file()]
    files += [ROOT / "Makefile", ROOT / "README.md", ROOT / "pyproject.toml"]
    assert len(files) > 100
    offenders = [str(p.relative_to(ROOT)) for p in files if MARKER.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
