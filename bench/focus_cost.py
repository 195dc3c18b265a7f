"""What storing the focus costs the event path: a micro-benchmark of the scoring transaction's parts.

    .venv/bin/python -m bench.focus_cost [--events 60000] [--customers 12000] [--rounds 5]
                                         [--db] [--db-rounds 3] [--database-url URL]

The scoring transaction stores each written customer's focus as of their last event (docs/loyalty.md), which
costs a loyalty() and a focus() per written customer, unless the customer's last fact made a stage change at
that moment (its measures are reused). Both parts are measured on the bench's input (`bench.generator`, seed 7),
cut into transactions of 6,317 facts (the bench's mean):

- Python: per written customer, the work the transaction already did (apply() of its facts and to_text() of
  the state), loyalty() as of the last event, and focus(); the share of writes that reuse a stage change's
  measures. Best of `--rounds`.
- With `--db`: `store.process_batch` over the same facts on fresh databases, alternately with and without the
  index the `sort=index` pages walk (`ix_customers_index_order`, which makes every customer update non-HOT):
  Python CPU and PostgreSQL backend CPU per fact, and the share of HOT updates. Medians of `--db-rounds` each.
  Without `--database-url` it starts an embedded PostgreSQL in a scratch folder.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psutil
from sqlalchemy import text

from bench.generator import generate
from devstack.embedded import create_database, start_postgres
from services.scoring.__main__ import DEFAULT_POLICY
from services.scoring.cache import StateCache
from services.scoring.domain.focus import focus
from services.scoring.domain.ladder import StageChanged, apply
from services.scoring.domain.measures import loyalty
from services.scoring.domain.policy import Policy, parse_policy
from services.scoring.domain.state import CustomerState, to_text
from services.scoring.migrate import upgrade
from services.scoring.outgoing import conversion_fact
from services.scoring.store import process_batch
from services.scoring.unit_of_work import session
from shared.adapters.db import make_engine
from shared.wire.messages import Fact
from shared.wire.validation import validate

TRANSACTION_FACTS = 6317
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def bench_facts(*, events: int, customers: int) -> list[Fact]:
    facts: list[Fact] = []
    for event in generate(customers=customers, events=events, seed=7, now=NOW):
        result = validate(orjson.dumps(event), base_currency="EUR", max_bytes=65536, now=NOW)
        if isinstance(result, list):
            facts.extend(result)
    return facts


def python_parts(facts: list[Fact], policy: Policy, *, rounds: int) -> dict[str, float]:
    """µs per written customer of each part (best of `rounds`), written customers per fact, and the share of
    them whose last fact's stage-change measures are reused (`reused`)."""
    best: dict[str, float] = {}
    writes = reused = 0
    for _ in range(rounds):
        states: dict[str, CustomerState] = {}
        spent = dict.fromkeys(("apply + to_text", "loyalty", "focus"), 0.0)
        writes = reused = 0
        for i in range(0, len(facts), TRANSACTION_FACTS):
            t0 = time.perf_counter()
            touched: dict[str, CustomerState] = {}
            moment: dict[str, tuple[CustomerState, datetime]] = {}
            for fact in facts[i : i + TRANSACTION_FACTS]:
                state, changes = apply(states.get(fact.customer_id), fact, policy=policy)
                states[fact.customer_id] = touched[fact.customer_id] = state
                if any(isinstance(c, StageChanged) for c in changes):
                    moment[fact.customer_id] = (state, fact.occurred_at)
            for state in touched.values():
                to_text(state)
            t1 = time.perf_counter()
            scores = [loyalty(s, at=s.last_event_at, policy=policy) for s in touched.values()]
            t2 = time.perf_counter()
            for s, v in zip(touched.values(), scores, strict=True):
                focus(v, s.stage, policy.focus)
            t3 = time.perf_counter()
            spent["apply + to_text"] += t1 - t0
            spent["loyalty"] += t2 - t1
            spent["focus"] += t3 - t2
            writes += len(touched)
            reused += sum(
                1 for c, s in touched.items() if c in moment and moment[c][0] is s and moment[c][1] == s.last_event_at
            )
        for name, seconds in spent.items():
            best[name] = min(best.get(name, float("inf")), 1e6 * seconds / writes)
    return {**best, "writes per fact": writes / len(facts), "reused": reused / writes}


def transaction_run(admin_url: str, facts: list[Fact], policy: Policy, *, with_index: bool) -> dict[str, float]:
    """One replay through process_batch on a fresh database; CPU µs per fact (Python, PostgreSQL backend)."""
    url = create_database(admin_url, f"focus_cost_{uuid.uuid4().hex[:8]}")
    upgrade(database_url=url)
    engine = make_engine(url)
    if not with_index:
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_customers_index_order"))
    cache = StateCache(capacity=20_000)
    python = backend = 0.0
    pending, applied = list(facts), 0
    conversions: list[Fact] = []
    try:
        while pending or conversions:
            batch = conversions + pending[:TRANSACTION_FACTS]
            pending = pending[TRANSACTION_FACTS:]
            c0 = time.process_time()
            with session(engine) as conn:
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                proc = psutil.Process(pid)
                b0 = sum(proc.cpu_times()[:2])
                outcome = process_batch(
                    conn, facts=batch, policy=policy, stage_topic="s", conversion_topic="f", cache=cache
                )
            python += time.process_time() - c0
            backend += sum(proc.cpu_times()[:2]) - b0
            cache.remember(outcome.written)
            applied += len(batch)
            conversions = [conversion_fact(c) for c in outcome.conversions]
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM outbox"))  # the relay's part, outside the measure
        with engine.connect() as conn:
            updated, hot = conn.execute(
                text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'customers'")
            ).one()
    finally:
        engine.dispose()
    return {
        "python": 1e6 * python / applied,
        "postgres": 1e6 * backend / applied,
        "hot": hot / updated if updated else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--customers", type=int, default=12_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", action="store_true", help="also replay the scoring transaction on PostgreSQL")
    parser.add_argument("--db-rounds", type=int, default=3)
    parser.add_argument("--database-url", default="", help="a server to create the bench databases on")
    args = parser.parse_args()
    policy = parse_policy(DEFAULT_POLICY.read_text(encoding="utf-8"))
    facts = bench_facts(events=args.events, customers=args.customers)
    print(f"{len(facts):,} facts, transactions of {TRANSACTION_FACTS:,}")

    parts = python_parts(facts, policy, rounds=args.rounds)
    print(f"\nPython, µs per written customer (best of {args.rounds}):")
    for name in ("apply + to_text", "loyalty", "focus"):
        print(f"  {name:<18} {parts[name]:6.2f}")
    print(
        f"  written customers per fact: {parts['writes per fact']:.3f}; "
        f"{parts['reused']:.1%} of them reuse a stage change's measures"
    )
    if not args.db:
        return

    scratch = Path(tempfile.mkdtemp(prefix="focus-cost-"))
    pg = None if args.database_url else start_postgres(scratch / "pg")
    admin_url = args.database_url or pg.url  # type: ignore[union-attr]
    try:
        runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        for _ in range(args.db_rounds):
            for with_index in (False, True):  # alternated: the host's speed drifts
                runs[with_index].append(transaction_run(admin_url, facts, policy, with_index=with_index))
        print(f"\nscoring transaction, CPU µs per fact (median of {args.db_rounds}):")
        print(f"  {'':<34} {'python':>8} {'postgres':>9} {'HOT updates':>12}")
        for with_index, label in ((False, "without ix_customers_index_order"), (True, "with it (as migrated)")):
            med = {k: statistics.median(r[k] for r in runs[with_index]) for k in ("python", "postgres", "hot")}
            print(f"  {label:<34} {med['python']:8.1f} {med['postgres']:9.1f} {med['hot']:12.0%}")
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
