"""Read-only looks at the system's database: how far it has applied what was sent, the digest of the end state,
and the housekeeping between phases."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from devstack.embedded import EmbeddedPostgres
from shared.settings import libpq_url


class Progress:
    """Read-only counts in the system's database: how far it has applied what was sent."""

    _SQL = """
        SELECT count(*) FILTER (WHERE role = 'primary'), count(*) FILTER (WHERE role = 'referred'),
               count(*) FILTER (WHERE role = 'converted'), (SELECT (min(id) IS NOT NULL)::int FROM outbox)
        FROM processed_events
    """

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(libpq_url(database_url), autocommit=True)

    def applied(self, event_ids: list[str]) -> int:
        """How many of `event_ids` scoring has applied: index lookups only, cheap enough to poll often."""
        row = self.conn.execute(
            "SELECT count(*) FROM processed_events WHERE role = 'primary' AND event_id = ANY(%(ids)s)",
            {"ids": event_ids},
        ).fetchone()
        assert row is not None
        return int(row[0])

    def unpublished(self) -> bool:
        """Whether any outbox row still waits to be published.

        From the primary key, never a count: the relay deletes what it published, and until autovacuum runs the
        heap is mostly dead rows, which `count(*)` every 20 ms scanned (one catch-up phase spent 105 s of
        PostgreSQL CPU on it).
        """
        row = self.conn.execute("SELECT min(id) IS NOT NULL FROM outbox").fetchone()
        assert row is not None
        return bool(row[0])

    def counts(self) -> tuple[int, int, int, int]:
        """(primary facts, referred facts, conversions applied, 1 if the outbox holds any row else 0)."""
        row = self.conn.execute(self._SQL).fetchone()
        assert row is not None
        return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def close(self) -> None:
        self.conn.close()


def wait_applied(
    progress: Progress,
    *,
    base: tuple[int, int, int, int],
    expect: dict[str, int],
    tail: list[str],
    started: float,
    timeout_s: float,
) -> tuple[bool, list[tuple[float, int]]]:
    """Wait until every effect of `expect` beyond `base` is visible; (done, [(seconds, applied), ...])."""
    target_primary = base[0] + expect["distinct_events"]
    target_referred = base[1] + expect["referrals"]
    target_converted = base[2] + expect["conversions"]
    deadline = started + timeout_s
    while time.perf_counter() < deadline and progress.applied(tail) < len(tail):
        # the full count scans processed_events and the outbox: a cheap probe first, so that the bench's own
        # polling does not load the database it measures (it only decides when the exact counts begin)
        time.sleep(0.1)
    samples: list[tuple[float, int]] = []
    while time.perf_counter() < deadline:
        if progress.unpublished():
            # stage changes still on their way out: an index-only look, every 20 ms, until the outbox is empty
            time.sleep(0.02)
            continue
        c = progress.counts()
        now = time.perf_counter() - started
        samples.append((round(now, 3), c[0] - base[0]))
        if c[0] >= target_primary and c[1] >= target_referred and c[2] >= target_converted and c[3] == 0:
            return True, samples
        # a count over processed_events costs the database a few ms: poll often only near the end
        rate = samples[-1][1] / now if now > 0 and samples[-1][1] > 0 else 0.0
        remaining = target_primary - c[0]
        time.sleep(min(0.5, max(0.05, remaining / rate / 3)) if rate else 0.2)
    return False, samples


def digest(database_url: str, *, customer_prefix: str) -> dict[str, Any]:
    """A fingerprint of every customer's order-independent state and of the set of rungs entered."""
    like = customer_prefix + "%"
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        customers = conn.execute(
            """
            SELECT count(*), md5(coalesce(string_agg(
                customer_id || '|' || stage || '|' || sales::text || '|' || costs::text || '|' ||
                (state::jsonb - 'stage_entered_at')::text, E'\n' ORDER BY customer_id), ''))
            FROM customers WHERE customer_id LIKE %s""",
            (like,),
        ).fetchone()
        history = conn.execute(
            """
            SELECT count(*), md5(coalesce(string_agg(customer_id || '|' || to_stage, E'\n'
                                                     ORDER BY customer_id, to_stage), ''))
            FROM stage_history WHERE customer_id LIKE %s""",
            (like,),
        ).fetchone()
        stages = {
            r[0]: int(r[1])
            for r in conn.execute(
                "SELECT stage, count(*) FROM customers WHERE customer_id LIKE %s GROUP BY stage", (like,)
            )
        }
        tiers = {
            r[0]: int(r[1])
            for r in conn.execute(
                "SELECT tier, count(*) FROM customers WHERE customer_id LIKE %s GROUP BY tier", (like,)
            )
        }
    assert customers is not None and history is not None
    return {
        "customers": int(customers[0]),
        "customers_md5": customers[1],
        "stage_history_rows": int(history[0]),
        "stage_history_md5": history[1],
        "stages": stages,
        "tiers": tiers,
    }


def settle(pg: EmbeddedPostgres, *, drop: list[str]) -> None:
    """Between phases: drop the finished phases' databases and checkpoint.

    Otherwise the autovacuum of one phase's tables, and a checkpoint its WAL brings on, land in the next
    phase's clock (one scale-out run spent 11.7 s of PostgreSQL CPU, 2.7x its usual, that way).
    """
    with psycopg.connect(libpq_url(pg.url), autocommit=True) as conn:
        for name in drop:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute("CHECKPOINT")
