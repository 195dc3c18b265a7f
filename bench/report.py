"""The bench's report: the machine it ran on, the table of figures against their baselines, the targets, and
the results files (bench/results/<timestamp>.json and latest.json)."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

TARGET_EVENTS_PER_S = 8000.0
TARGET_P99_S = 1.0
TARGET_NAIVE_RATIO = 8.0

Row = tuple[str, str, str, str]  # metric, ours, baseline, ratio
HEADER: Row = ("metric", "ours", "baseline", "ratio")


def machine() -> dict[str, Any]:
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def table(result: dict[str, Any]) -> str:
    """The results as one table, a section per figure; sections of phases that did not run are left out."""
    return _render(
        [
            *_throughput_rows(result),
            *_scaleout_rows(result),
            *_api_load_rows(result),
            *_catch_up_rows(result),
            *_cpu_rows(result),
            *_latency_rows(result),
            *_memory_rows(result),
        ]
    )


def _throughput_rows(result: dict[str, Any]) -> list[Row]:
    single = result["single"]
    tp = single["throughput"]
    naive = result.get("naive")
    bare = single.get("bare_consumer")
    rows: list[Row] = [
        (
            "end-to-end throughput, events/s (6 partitions, 1 scoring)",
            f"{tp['events_per_s']:,.0f}",
            _naive_cell(naive),
            _ratio(tp["events_per_s"], _naive_rate(naive)),
        ),
        (
            "  same vs. a bare consumer (read + json only), msgs/s",
            f"{tp['events_per_s']:,.0f}",
            f"{bare['msgs_per_s']:,.0f} (bare consumer)" if bare else "-",
            _ratio(tp["events_per_s"], bare["msgs_per_s"] if bare else None),
        ),
        (
            "  time: first send -> all applied, outbox empty, s",
            f"{tp['seconds']:.2f}",
            f"{naive['seconds']:.2f} for {naive['events']} (naive)" if naive else "-",
            "",
        ),
    ]
    return rows + _transactions_row(tp)


def _scaleout_rows(result: dict[str, Any]) -> list[Row]:
    scale = result.get("scaleout")
    if not scale:
        return []
    single = result["single"]
    tp, stp = single["throughput"], scale["throughput"]
    naive = result.get("naive")
    rows: list[Row] = [
        (
            "scale-out throughput, events/s (12 partitions, 2 scoring)",
            f"{stp['events_per_s']:,.0f}",
            f"{tp['events_per_s']:,.0f} (1 scoring)",
            _ratio(stp["events_per_s"], tp["events_per_s"]),
        )
    ]
    if naive:
        rows.append(
            (
                "  same vs. the naive path",
                f"{stp['events_per_s']:,.0f}",
                _naive_cell(naive),
                _ratio(stp["events_per_s"], naive["events_per_s"]),
            )
        )
    rows.extend(_transactions_row(stp))
    if stp.get("cpu_us_per_event_total"):
        rows.append(
            (
                "  CPU per event (all processes), us",
                f"{stp['cpu_us_per_event_total']:,}",
                f"system only (without the shop's producer): {_system_us(stp):,}",
                "",
            )
        )
    rows.append(
        (
            "  results identical to 1 instance (state md5, rung set md5)",
            "yes" if result["identical"] else "NO",
            f"{single['digest']['customers']} customers, {single['digest']['stage_history_rows']} rungs",
            "",
        )
    )
    return rows


def _api_load_rows(result: dict[str, Any]) -> list[Row]:
    load = (result.get("single") or {}).get("api_load")
    if not load:
        return []
    return [
        (
            f"events/s under {load['exports']} concurrent CSV exports (1 scoring)",
            f"{load['loaded_events_per_s']:,.0f}",
            f"{load['baseline_events_per_s']:,.0f} without",
            f"{-load['slowdown']:+.1%}",
        ),
        (
            "  CSV exports completed / refused 503 / failed",
            f"{load['exports_completed']} / {load['exports_refused_503']} / {load['exports_failed']}",
            f"{load['export_mib']} MiB",
            "",
        ),
    ]


def _catch_up_rows(result: dict[str, Any]) -> list[Row]:
    naive = result.get("naive")
    rows: list[Row] = []
    for run_name, label in (("single", "6 partitions, 1 scoring"), ("scaleout", "12 partitions, 2 scoring")):
        run = (result.get(run_name) or {}).get("catch_up")
        if not run:
            continue
        rows.append(
            (
                f"catch-up from a backlog, events/s ({label})",
                f"{run['events_per_s']:,.0f}",
                _naive_cell(naive),
                _ratio(run["events_per_s"], _naive_rate(naive)),
            )
        )
        rows.append(
            (
                "  CPU per event, system only (no shop producer running), us",
                f"{run['cpu_us_per_event_total']:,}",
                f"ingest paused {run['paused_s']:.1f}s while written",
                "",
            )
        )
    return rows


def _cpu_rows(result: dict[str, Any]) -> list[Row]:
    tp = result["single"]["throughput"]
    per_event = tp.get("cpu_us_per_event", {})
    if not per_event:
        return []
    cpus = (result.get("machine") or {}).get("cpus", os.cpu_count())  # the budget of the machine that ran it
    rows: list[Row] = [
        (
            "CPU per event (all processes), us",
            f"{tp['cpu_us_per_event_total']:,}",
            f"{1e6 * (cpus or 1) / TARGET_EVENTS_PER_S:,.0f} = budget for 8,000/s on {cpus} cores",
            "",
        ),
        ("  system only (without the shop's producer), us", f"{_system_us(tp):,}", "", ""),
    ]
    busy = tp.get("cpu_busy_share_of_wall", {})
    waits = tp.get("run_queue_wait_seconds", {})
    for role, us in sorted(per_event.items(), key=lambda kv: -kv[1]):
        if us >= 1:
            note = f"busy {busy.get(role, 0):.0%} of the run"
            if role in waits:
                note += f", {waits[role]:.1f}s waiting for a CPU"
            rows.append((f"  CPU per event, {role}, us", f"{us:,}", note, ""))
    return rows


def _latency_rows(result: dict[str, Any]) -> list[Row]:
    lat = result["single"].get("latency")
    if not lat:
        return []
    return [
        (
            f"event -> stage change at {lat['rate_per_s']:.0f} ev/s, p50 s",
            f"{lat['p50_s']:.3f}",
            f"target p99 <= {TARGET_P99_S:.1f}",
            "",
        ),
        ("  p99 s", f"{lat['p99_s']:.3f}", "", ""),
        (
            "  max s",
            f"{lat['max_s']:.3f}" if lat["max_s"] is not None else "-",
            f"{lat['matched']}/{lat['events']} matched",
            "",
        ),
    ]


def _memory_rows(result: dict[str, Any]) -> list[Row]:
    single = result["single"]
    whole = single.get("peak_rss_mib_whole_run", {})
    return [
        (
            f"peak RSS {role}, MiB (throughput phase)",
            f"{mib:,.0f}",
            f"{whole[role]:,.0f} over the whole run (catch-up, latency)" if role in whole else "",
            "",
        )
        for role, mib in single.get("peak_rss_mib", {}).items()
    ]


def _render(rows: list[Row]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(4)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _naive_cell(naive: dict[str, Any] | None) -> str:
    return f"{naive['events_per_s']:,.0f} (naive: 1 tx/event)" if naive else "-"


def _naive_rate(naive: dict[str, Any] | None) -> float | None:
    return naive["events_per_s"] if naive else None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _transactions_row(throughput: dict[str, Any]) -> list[Row]:
    tx = throughput.get("scoring_transactions") or {}
    if not tx.get("count"):
        return []
    return [
        (
            "  scoring transactions: facts each (mean)",
            f"{tx['facts_each']:,.0f}",
            f"{tx['count']:,} transactions, {tx['ms_each']:.1f} ms each",
            "",
        )
    ]


def _system_us(throughput: dict[str, Any]) -> int:
    """CPU per event of the system's own processes: the bench's producer stands in for the shop."""
    return sum(us for role, us in throughput.get("cpu_us_per_event", {}).items() if not role.startswith("bench"))


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Each target for each configuration that ran: 1 scoring over 6 partitions, and 2 over 12."""
    out: dict[str, Any] = {}
    configs = [("1 scoring", result["single"]["throughput"]["events_per_s"])]
    if result.get("scaleout"):
        configs.append(("2 scoring", result["scaleout"]["throughput"]["events_per_s"]))
    for label, eps in configs:
        out[f"throughput >= 8000 events/s ({label})"] = {"value": eps, "met": eps >= TARGET_EVENTS_PER_S}
        if result.get("naive"):
            ratio = eps / result["naive"]["events_per_s"]
            out[f">= 8x the naive path ({label})"] = {"value": round(ratio, 2), "met": ratio >= TARGET_NAIVE_RATIO}
    single = result["single"]
    if single.get("api_load"):
        load = single["api_load"]
        out["<= 10 % slower under 8 CSV exports"] = {"value": load["slowdown"], "met": load["met"]}
    if single.get("latency"):
        p99 = single["latency"]["p99_s"]
        out["p99 <= 1 s at 100 events/s"] = {"value": p99, "met": p99 <= TARGET_P99_S}
    if "identical" in result:
        out["scale-out identical"] = {"value": result["identical"], "met": bool(result["identical"])}
    return out


def write_results(result: dict[str, Any]) -> Path:
    """bench/results/<timestamp>.json and latest.json; returns the first."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (RESULTS / f"{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return RESULTS / f"{stamp}.json"
