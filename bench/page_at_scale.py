"""GET /v1/customers at a million customers: how long a page takes through the real API, and the query plans.

    .venv/bin/python -m bench.page_at_scale [--customers 1000000] [--requests 200] [--database-url URL]

Fills a fresh database with synthetic customers in one INSERT ... SELECT generate_series (the state JSON is
built in SQL, in the shape `state.to_json` writes, with rungs and tiers drawn so that every rung and tier is
populated, and a stored focus drawn per rung, 2 % of rows without one), serves the scoring app under uvicorn on
a free port, and times pages over HTTP: the first page, a deep page through a cursor, filtered pages, and pages
by loyalty index. Then prints EXPLAIN (ANALYZE, BUFFERS) of each page query.
Without --database-url it starts an embedded PostgreSQL in a scratch folder and removes it afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

from devstack.embedded import create_database, free_port, start_postgres, wait_for_port
from services.scoring.__main__ import DEFAULT_POLICY
from services.scoring.api import create_app
from services.scoring.domain.policy import parse_policy
from services.scoring.http_common import ApiContext
from services.scoring.migrate import upgrade
from services.scoring.read.lists import IndexKey, ListFilter, Order, encode_cursor, encode_index_cursor, page_query
from shared.adapters.db import make_engine
from shared.adapters.http import ServerThread
from shared.adapters.metrics import Metrics
from shared.settings import Settings

# One row per customer, drawn from random(): rung first, then counts that fit the rung under the default policy
# (first_purchase: 1 order; regular: >= 3 orders in >= 2 months; advocate: also >= 3 full-price orders and a
# referral), money from the counts, the tier from the profit, month buckets ending in the current month. The
# stored focus (develop, loyalty_index) is drawn, not computed: the kinds a rung can develop, skewed as real
# input is (most customers have no complaint and no referral), an index in 4 places, and 2 % of rows without one
# (customers not written since the focus is stored).
FILL_SQL = """
WITH base AS (
    SELECT g,
           'c-' || substr(md5(g::text), 1, 16) AS customer_id,
           random() AS u_stage, random() AS u_orders, random() AS u_months, random() AS u_value,
           random() AS u_cost, random() AS u_full, random() AS u_extra, random() AS u_age,
           (extract(year FROM now() AT TIME ZONE 'UTC')::int * 12
            + extract(month FROM now() AT TIME ZONE 'UTC')::int - 1) AS m_now
    FROM generate_series(1, :n) AS g
), rung AS (
    SELECT *, CASE WHEN u_stage < 0.30 THEN 'visitor' WHEN u_stage < 0.70 THEN 'first_purchase'
                   WHEN u_stage < 0.92 THEN 'regular' ELSE 'advocate' END AS stage
    FROM base
), counts AS (
    SELECT *,
           CASE stage WHEN 'visitor' THEN 0 WHEN 'first_purchase' THEN 1 + (u_orders < 0.3)::int
                      ELSE 3 + floor(u_orders * 10)::int END AS orders,
           CASE stage WHEN 'visitor' THEN 0 WHEN 'first_purchase' THEN 1
                      ELSE 2 + floor(u_months * 4)::int END AS months,
           (u_extra < 0.10)::int AS complaints,
           CASE WHEN stage = 'advocate' THEN 1 + floor(u_extra * 3)::int
                WHEN stage = 'first_purchase' AND u_extra > 0.95 THEN 1 ELSE 0 END AS referrals,
           (stage <> 'visitor' AND u_extra BETWEEN 0.5 AND 0.55)::int AS refunds,
           1 + (g % 3) AS step
    FROM rung
), money AS (
    SELECT *,
           CASE stage WHEN 'advocate' THEN greatest(3, orders - floor(u_full * 2)::int)
                      WHEN 'regular' THEN floor(u_full * 3)::int
                      ELSE floor(u_full * (orders + 1))::int END AS full_price,
           round((orders * (20 + u_value * 160))::numeric, 2) AS sales,
           round((orders * (20 + u_value * 160) * (0.35 + u_cost * 0.8) + complaints * 15)::numeric, 2) AS costs,
           now() - (interval '1 day' * (1 + u_age * 60)) AS last_event_at
    FROM counts
), shaped AS (
    SELECT *, sales - costs AS profit,
           CASE WHEN sales - costs >= 100 THEN 'profitable' WHEN sales - costs < 0 THEN 'unprofitable'
                ELSE 'middling' END AS tier,
           last_event_at - (interval '1 month' * (greatest(months, 1) - 1) * step) - interval '3 days'
               AS first_seen_at,
           (SELECT coalesce(jsonb_agg(m_now - k * step ORDER BY k DESC), '[]'::jsonb)
              FROM generate_series(0, months - 1) AS k) AS order_months,
           (SELECT coalesce(jsonb_agg(jsonb_build_array(
                       m_now - k * step,
                       orders / months + CASE WHEN k = 0 THEN orders % months ELSE 0 END,
                       round(sales / months, 2)::text,
                       CASE WHEN k = 0 THEN refunds ELSE 0 END,
                       CASE WHEN k = 0 THEN complaints ELSE 0 END,
                       CASE WHEN k = 0 THEN referrals ELSE 0 END,
                       0) ORDER BY k DESC), '[]'::jsonb)
              FROM generate_series(0, months - 1) AS k) AS order_activity
    FROM money
)
INSERT INTO customers (customer_id, stage, stage_rank, stage_entered_at, tier, sales, costs, profit,
                       first_seen_at, last_event_at, develop, loyalty_index, state, version)
SELECT customer_id, stage,
       CASE stage WHEN 'visitor' THEN 1 WHEN 'first_purchase' THEN 2 WHEN 'regular' THEN 3 ELSE 4 END,
       last_event_at, tier, sales, costs, profit, first_seen_at, last_event_at,
       CASE WHEN u_age < 0.02 THEN NULL
            WHEN stage IN ('visitor', 'first_purchase')
                THEN (ARRAY['evaluative', 'evaluative', 'evaluative', 'consultative', 'contact'])[1 + g % 5]
            ELSE (ARRAY['evaluative', 'evaluative', 'consultative', 'consultative', 'financial', 'procedural',
                        'contact', 'evaluative'])[1 + g % 8] END,
       CASE WHEN u_age < 0.02 THEN NULL ELSE round((u_value * 0.7 + u_full * 0.1)::numeric, 4) END,
       jsonb_build_object(
           'v', 1, 'customer_id', customer_id, 'stage', stage,
           'stage_entered_at', to_char(last_event_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'first_seen_at', to_char(first_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'last_event_at', to_char(last_event_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'orders', orders, 'refunds', refunds, 'full_price_orders', full_price,
           'referrals_made', referrals, 'referrals_converted', 0, 'complaints', complaints,
           'sales', sales::text, 'costs', costs::text,
           'order_months', order_months,
           'activity', CASE WHEN months = 0 AND complaints + referrals > 0
                            THEN jsonb_build_array(jsonb_build_array(m_now, 0, '0', 0, complaints, referrals, 0))
                            ELSE order_activity END,
           'pending_referrals', '[]'::jsonb)::text,
       1
FROM shaped
"""

SCENARIOS: list[tuple[str, ListFilter, str | IndexKey | None, Order]] = [
    ("first page", ListFilter(), None, "customer_id"),
    ("deep page (cursor at the middle)", ListFilter(), "c-8", "customer_id"),
    ("stage=regular&tier=middling", ListFilter(stage="regular", tier="middling"), None, "customer_id"),
    ("stage=regular&tier=middling, deep", ListFilter(stage="regular", tier="middling"), "c-8", "customer_id"),
    ("stage=advocate", ListFilter(stage="advocate"), None, "customer_id"),
    ("tier=unprofitable, deep", ListFilter(tier="unprofitable"), "c-8", "customer_id"),
    ("develop=procedural, deep", ListFilter(develop="procedural"), "c-8", "customer_id"),
    ("stage=regular&develop=financial", ListFilter(stage="regular", develop="financial"), None, "customer_id"),
    ("sort=index", ListFilter(), None, "index"),
    ("sort=index, deep", ListFilter(), (3500, "c-8"), "index"),
    ("develop=contact&sort=index, deep", ListFilter(develop="contact"), (3500, "c-8"), "index"),
    ("stage=advocate&sort=index", ListFilter(stage="advocate"), None, "index"),
]


def fill(engine: Engine, *, customers: int) -> float:
    """Insert `customers` synthetic customers and ANALYZE; returns the seconds it took."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        conn.execute(text(FILL_SQL), {"n": customers})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE customers"))
    return time.perf_counter() - started


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_pages(base_url: str, *, requests: int, limit: int) -> list[tuple[str, float, float, float, int]]:
    """(scenario, p50 ms, p95 ms, mean ms, items) of `requests` sequential GETs per scenario, after a warm-up."""
    rows = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for name, flt, after, order in SCENARIOS:
            params: dict[str, str | int] = {"limit": limit, "sort": order}
            for key in ("stage", "tier", "develop"):
                if getattr(flt, key):
                    params[key] = getattr(flt, key)
            if isinstance(after, tuple):
                params["after"] = encode_index_cursor(after)
            elif after:
                params["after"] = encode_cursor(after)
            for _ in range(5):
                client.get("/v1/customers", params=params).raise_for_status()
            samples = []
            items = 0
            for _ in range(requests):
                t0 = time.perf_counter()
                r = client.get("/v1/customers", params=params)
                samples.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                items = len(r.json()["items"])
            rows.append((name, percentile(samples, 0.5), percentile(samples, 0.95), statistics.fmean(samples), items))
    return rows


def time_csv(base_url: str, flt: ListFilter) -> tuple[int, float]:
    """(rows, seconds) of one streamed CSV export."""
    params = {k: v for k, v in (("stage", flt.stage), ("tier", flt.tier)) if v}
    t0 = time.perf_counter()
    lines = 0
    with httpx.stream(
        "GET", f"{base_url}/v1/customers", params=params, headers={"Accept": "text/csv"}, timeout=600
    ) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            lines += chunk.count(b"\n")
    return lines - 1, time.perf_counter() - t0


def explain(engine: Engine, *, limit: int) -> None:
    with engine.connect() as conn:
        for name, flt, after, order in SCENARIOS:
            sql, params = page_query(flt, after=after, limit=limit + 1, order=order)  # the API asks for one more
            plan = conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"), params).scalars().all()
            print(f"\n-- {name}: {sql}")
            print("\n".join(f"   {line}" for line in plan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per scenario")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--database-url", default="", help="a server to create the bench database on")
    parser.add_argument("--csv", action="store_true", help="also time a streamed CSV export of one rung and tier")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="page-at-scale-"))
    pg = None if args.database_url else start_postgres(scratch / "pg")
    admin_url = args.database_url or pg.url  # type: ignore[union-attr]
    db_url = create_database(admin_url, f"bench_pages_{uuid.uuid4().hex[:8]}")
    engine = make_engine(db_url)
    http = None
    try:
        upgrade(database_url=db_url)
        print(f"filling {args.customers:,} customers ...", flush=True)
        seconds = fill(engine, customers=args.customers)
        with engine.connect() as conn:
            spread = conn.execute(text("SELECT stage, tier, count(*) FROM customers GROUP BY 1, 2 ORDER BY 1, 2")).all()
            size = conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('customers'))")).scalar()
        print(f"filled in {seconds:.1f}s; customers table with indexes: {size}")
        print("  " + ", ".join(f"{s}/{t}: {n:,}" for s, t, n in spread))

        settings = Settings(database_url=db_url)
        ctx = ApiContext(
            engine=engine, policy=parse_policy(DEFAULT_POLICY.read_text(encoding="utf-8")), settings=settings
        )
        port = free_port()
        http = ServerThread(create_app(ctx=ctx, metrics=Metrics(service="scoring")), host="127.0.0.1", port=port)
        http.start()
        wait_for_port(port, timeout_s=10)
        base_url = f"http://127.0.0.1:{port}"

        print(
            f"\nGET /v1/customers?limit={args.limit}: {args.requests} sequential requests per scenario "
            "(one client, keep-alive; the time includes JSON, loyalty at now, and HTTP)"
        )
        print(f"  {'scenario':<44} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'items':>6}")
        for name, p50, p95, mean, items in time_pages(base_url, requests=args.requests, limit=args.limit):
            print(f"  {name:<44} {p50:8.1f} {p95:8.1f} {mean:8.1f} {items:6d}")
        if args.csv:
            flt = ListFilter(stage="advocate", tier="profitable")
            rows, secs = time_csv(base_url, flt)
            print(
                f"\nCSV export stage=advocate&tier=profitable: {rows:,} rows in {secs:.1f}s ({rows / secs:,.0f} rows/s)"
            )
        print("\nEXPLAIN (ANALYZE, BUFFERS) of the page queries:")
        explain(engine, limit=args.limit)
    finally:
        if http is not None:
            http.stop()
        engine.dispose()
        if pg is not None:
            pg.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
