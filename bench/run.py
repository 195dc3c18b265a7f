"""`make bench`: throughput and latency of the whole system against two baselines, in one run.

    .venv/bin/python -m bench.run [--events 60000] [--customers 12000] [--seed 7] [--latency-seconds 20]
                                  [--latency-rate 100] [--skip-scaleout] [--skip-naive] [--keep]

What it does (docs/performance.md explains each figure):

1. Starts one PostgreSQL (embedded, as `make run` starts it) and, per system under test, the system exactly as
   `make run` does (`python -m devstack.launcher` in its own process group, its own STATE_DIR, broker port and
   HTTP ports, DATABASE_URL pointing at a fresh database on that server).
2. THROUGHPUT: sends N generated shop events as fast as a batching lz4 producer can, while the system runs;
   events/s = N / (first send -> every event applied: all primary and referred facts in processed_events,
   every referral conversion fed back and applied, the outbox empty).
3. BASELINE 1: a bare kafka-python consumer reads and json-decodes the same N messages (msgs/s).
4. LATENCY: first purchases of new customers at a fixed rate; each yields a visitor->first_purchase stage
   change, read from loyalty.stage-changes and matched by cause_event_id: p50/p99/max of send -> receive.
5. PEAK RSS and CPU seconds of every process of the system, sampled during the run.
6. BASELINE 2: the naive path (bench/naive.py: one transaction per event) over a sample, on a fresh database.
7. SCALE-OUT: the same input into a second system with TOPIC_PARTITIONS=12 and SCORING_INSTANCES=2; its
   throughput, and a digest of every customer's state and rung set, which must equal the first run's.

Prints one table and writes bench/results/<timestamp>.json and bench/results/latest.json. The parts:
bench/system.py starts what is measured, bench/sampling.py samples its processes, bench/shop.py and
bench/progress.py send and watch, bench/phases.py measures, bench/report.py renders.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import log
from bench.generator import generate, summary
from bench.phases import run_naive_baseline, run_system
from bench.progress import settle
from bench.report import RESULTS, machine, table, targets, write_results
from bench.shop import to_messages
from devstack.embedded import EmbeddedPostgres, start_postgres
from shared.settings import Settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench", description="throughput and latency against baselines")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--customers", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duplicates", type=float, default=0.01, help="share of exact re-sends (default 0.01)")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-rate", type=float, default=100.0)
    parser.add_argument("--naive-sample", type=int, default=5000)
    parser.add_argument(
        "--skip-api-load", action="store_true", help="skip the throughput phase under 8 concurrent CSV exports"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="max seconds for one throughput phase")
    parser.add_argument("--skip-scaleout", action="store_true")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--skip-catchup", action="store_true", help="skip draining a backlog written while ingest is paused"
    )
    parser.add_argument(
        "--shop-producer",
        choices=("batches", "kafka-python"),
        default="batches",
        help="how the bench writes the shop's events in the throughput runs: record batches "
        "built in the clock (shared/adapters/batches.py, default) or kafka-python's KafkaProducer",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (databases, logs)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the services during the single-instance throughput phase"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "args": vars(args),
        "command": " ".join(
            [Path(sys.executable).name, "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    log(f"generating {args.events} events over {args.customers} customers (seed {args.seed})")
    # `now` floored to the day: runs of one day get the same stream, so their digests compare
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    stream = generate(customers=args.customers, events=args.events, seed=args.seed, duplicates=args.duplicates, now=day)
    result["input"] = summary(stream)
    backlog: list[dict[str, Any]] | None = None
    # fresh customers and event ids again (a third seed) for the phase under API load
    api_stream = (
        None
        if args.skip_api_load
        else generate(
            customers=args.customers, events=args.events, seed=args.seed + 2, duplicates=args.duplicates, now=day
        )
    )
    if not args.skip_catchup:
        # other customers and event ids (another seed), so that nothing of it was applied before
        backlog = generate(
            customers=args.customers, events=args.events, seed=args.seed + 1, duplicates=args.duplicates, now=day
        )
    root = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    log(f"work folder {root}")
    pg = start_postgres(root / "pg" / "data")
    failed = False
    try:
        result.update(measure(args, root=root, pg=pg, stream=stream, backlog=backlog, api_stream=api_stream))
    except BaseException:
        failed = True
        raise
    finally:
        pg.stop()
        if args.keep or failed:
            log(f"kept the work folder {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["targets"] = targets(result)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = table(result)
    print()
    print(text)
    print()
    for name, t in result["targets"].items():
        print(f"  {'MET ' if t['met'] else 'MISSED'}  {name}: {t['value']}")
    result["table"] = text
    print(f"\nresults: {write_results(result)}")
    return 0


def measure(
    args: argparse.Namespace,
    *,
    root: Path,
    pg: EmbeddedPostgres,
    stream: list[dict[str, Any]],
    backlog: list[dict[str, Any]] | None,
    api_stream: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every phase args asks for, on the server `pg`: {"single": ..., "naive": ..., "scaleout": ..., "identical"}."""
    result: dict[str, Any] = {}
    messages = to_messages(stream, Settings())
    common = {
        "root": root,
        "pg": pg,
        "template_url": None,
        "messages": messages,
        "expect": summary(stream),
        "seed": args.seed,
        "latency_rate": args.latency_rate,
        "timeout_s": args.timeout,
        "backlog": to_messages(backlog, Settings()) if backlog is not None else None,
        "backlog_expect": summary(backlog) if backlog is not None else None,
        "shop": args.shop_producer,
    }
    profile_dir = RESULTS / f"profile-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}" if args.profile else None
    result["single"] = run_system(
        name="single",
        partitions=6,
        instances=1,
        latency_s=args.latency_seconds,
        with_baseline=True,
        profile_dir=profile_dir,
        **common,
        api_load=to_messages(api_stream, Settings()) if api_stream is not None else None,
        api_expect=summary(api_stream) if api_stream is not None else None,
    )
    if profile_dir is not None:
        from bench import profile

        print(profile.render(result["single"]["throughput"]["profile"]), file=sys.stderr)
    finished = [] if args.keep else ["bench_single"]
    if not args.skip_naive:
        settle(pg, drop=finished)
        result["naive"] = run_naive_baseline(pg, messages, args.naive_sample)
        log(f"naive: {result['naive']}")
        finished += [] if args.keep else ["bench_naive"]
    if not args.skip_scaleout:
        settle(pg, drop=finished)
        result["scaleout"] = run_system(
            name="scaleout", partitions=12, instances=2, latency_s=0, with_baseline=False, **common
        )
        a, b = result["single"]["digest"], result["scaleout"]["digest"]
        result["identical"] = (
            a["customers_md5"] == b["customers_md5"]
            and a["stage_history_md5"] == b["stage_history_md5"]
            and a["customers"] == b["customers"] > 0
        )
    return result


if __name__ == "__main__":
    raise SystemExit(main())
