"""The bench's table and targets (bench/report.py) are a function of the results file alone: rendering a stored
run gives back the table and targets that run printed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from bench.report import RESULTS, table, targets


def load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def test_the_stored_run_renders_to_the_table_it_printed() -> None:
    result = load(RESULTS / "latest.json")
    assert table(result) == result["table"]
    assert targets(result) == result["targets"]


def test_the_table_has_a_header_and_a_row_per_figure() -> None:
    result = load(RESULTS / "latest.json")
    lines = table(result).splitlines()
    assert lines[0].split(" | ")[0].strip() == "metric" and set(lines[1]) <= {"-", "+"}
    metrics = [line.split(" | ")[0].strip() for line in lines[2:]]
    assert metrics[0] == "end-to-end throughput, events/s (6 partitions, 1 scoring)"
    assert "p99 s" in metrics
    assert any(m.startswith("peak RSS ingest") for m in metrics)
    assert len({len(line) for line in lines}) == 1  # every column padded to its width


def test_phases_that_did_not_run_leave_their_rows_out() -> None:
    result = copy.deepcopy(load(RESULTS / "latest.json"))
    for skipped in ("naive", "scaleout", "identical"):
        result.pop(skipped, None)
    result["single"].pop("latency", None)
    result["single"].pop("api_load", None)
    text = table(result)
    assert "naive" not in text and "scale-out" not in text and "p99" not in text
    assert "end-to-end throughput" in text.splitlines()[2]
    assert set(targets(result)) == {"throughput >= 8000 events/s (1 scoring)"}
