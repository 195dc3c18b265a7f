"""The outbox relay: claim and delete rows, publish them, commit the delete — in that order.

The delete is written with the claim but commits only after the broker acknowledged every message, so a crash
or a failed send before the commit re-publishes the same rows with the same ids (at least once on the
wire, never a second id); every row in the outbox is waiting to be published (migration 0004). Only one relay
publishes at a time (a transaction-scoped advisory lock), so the stage changes of one customer leave in the
order they were written, which is ladder order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from kafka.errors import KafkaError
from sqlalchemy import Engine, TextClause, text
from sqlalchemy.exc import SQLAlchemyError

from services.scoring.unit_of_work import run_sql, session
from shared.adapters.batches import RecordBatchProducer
from shared.adapters.kafka import partition_for
from shared.faults import Faults
from shared.wire.messages import FactRecords

log = logging.getLogger(__name__)

_RELAY_LOCK = 74210002

# claim and delete in one statement: the delete only commits after the publish was acknowledged, so a failed or
# interrupted publish rolls it back and the rows are claimed again (marking rows published and deleting them
# later costs the database far more: docs/performance.md).
# The ids are gathered into an array, which PostgreSQL computes once: as `id IN (SELECT ...)` the planner could
# make the locking subquery the inner side of a nested loop, re-run it for every row of the outbox, and each
# re-run skipped the rows already deleted and took the next ones. With statistics taken while the outbox was
# empty, one claim then deleted every row, not `limit`, in time that grows with the square of the backlog
# (docs/performance.md, "The relay's claim"; tests/integration/test_relay.py holds it).
_CLAIM = """
    DELETE FROM outbox
    WHERE id = ANY(ARRAY(SELECT id FROM outbox ORDER BY id LIMIT %(limit)b::integer FOR UPDATE SKIP LOCKED))
    RETURNING id, topic, key, payload
"""
# and the ids are found by walking the primary key whatever the statistics say: the outbox is emptied as fast as
# it fills, so an ANALYZE can record a handful of rows in thousands of pages of deleted ones, and the planner
# then sorts a sequential scan of the whole heap for every pass, a cost that grows with the rows deleted since
# the last vacuum. Set with the lock, in the same round trip,
# for this transaction only.
_LOCK = "SELECT pg_try_advisory_xact_lock(%(k)b::bigint), set_config('enable_seqscan', 'off', true)"
# PostgreSQL's own live-row count of the table: an estimate, and some seconds behind once the writers go idle (a
# backend flushes its counts at most once a second, and an idle one later); count(*) read the whole heap,
# which between two autovacuums is mostly rows the relay deleted
_BACKLOG = text("SELECT coalesce(max(n_live_tup), 0) FROM pg_stat_user_tables WHERE relid = 'outbox'::regclass")
# the rows' addresses, gathered once as the claim's ids are: as `(event_id, role) IN (SELECT ...)`, statistics of an
# empty table (a new database) made every 10,000-row pass a hash join over a scan of the whole table
_PRUNE_DEDUPE = text("""
    DELETE FROM processed_events WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM processed_events WHERE processed_at < now() - make_interval(days => :days) LIMIT 10000))
""")


def publish_once(
    *,
    engine: Engine,
    producer: RecordBatchProducer,
    limit: int,
    facts_topic: str,
    record_bytes: int,
    faults: Faults | None = None,
) -> Counter[str]:
    """Publish and delete up to `limit` outbox rows, oldest first; the count per topic (empty if another relay is busy).

    Rows for `facts_topic` (the referral conversions going back to scoring) travel as ingest's facts do: one
    record per partition holding their facts in order, at most `record_bytes` each (`shared.wire.messages`). Every
    other row is one record keyed by its key, as the contract wants for stage changes.
    """
    with session(engine) as conn:
        if not run_sql(conn, _LOCK, {"k": _RELAY_LOCK})[0][0]:
            return Counter()
        rows = sorted(run_sql(conn, _CLAIM, {"limit": limit}))  # RETURNING has no order; publish in id order
        if not rows:
            return Counter()
        # the partition Kafka's partitioner would pick, from a bounded cache: kafka-python's own is pure Python
        counts = {topic: len(producer.partitions_for(topic)) for topic in {r[1] for r in rows}}
        send = producer.send
        facts = FactRecords(max_bytes=record_bytes)
        for _, topic, key, payload in rows:
            raw_key = key.encode()
            partition = partition_for(raw_key, counts[topic])
            if topic == facts_topic:
                full = facts.add(partition, payload)
                if full is not None:
                    send(topic, key=None, value=full, partition=partition)
            else:
                send(topic, key=raw_key, value=payload, partition=partition)
        for partition, value in facts.drain():
            send(facts_topic, key=None, value=value, partition=partition)
        producer.flush()  # raises on any refusal: the transaction rolls back and the rows stay unpublished
        if faults is not None:
            faults.point("relay.after_publish")
    return Counter(r[1] for r in rows)


def _delete_in_chunks(engine: Engine, statement: TextClause, params: dict[str, int]) -> int:
    """Run a `LIMIT 10000` delete until it deletes less than that; short transactions keep locks brief."""
    total = 0
    while True:
        with session(engine) as conn:
            n = conn.execute(statement, params).rowcount
        total += n
        if n < 10000:
            return total


def prune(*, engine: Engine, dedupe_retention_days: int) -> int:
    """Delete dedupe records past their retention; returns how many."""
    return _delete_in_chunks(engine, _PRUNE_DEDUPE, {"days": dedupe_retention_days})


class Relay:
    """Runs `publish_once` in a loop until `stop()`; `wake()` ends the idle wait early (after a commit).

    It runs in a process of its own (`services/scoring/relay_process.py`), so it reports what it published
    through `on_published` and the outbox backlog through `on_backlog` instead of touching metrics itself.
    Only database and broker errors are retried here: anything else ends `run()`, the process exits, and
    scoring starts a new one.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        producer: RecordBatchProducer,
        batch_size: int,
        idle_s: float,
        dedupe_retention_days: int,
        housekeeping_interval_s: float,
        facts_topic: str,
        record_bytes: int,
        on_published: Callable[[Counter[str]], None],
        on_backlog: Callable[[int], None],
        faults: Faults | None = None,
    ) -> None:
        self.engine = engine
        self.facts_topic = facts_topic
        self.record_bytes = record_bytes
        self.producer = producer
        self.batch_size = batch_size
        self.idle_s = idle_s
        self.dedupe_retention_days = dedupe_retention_days
        self.housekeeping_interval_s = housekeeping_interval_s
        self.on_published = on_published
        self.on_backlog = on_backlog
        self.faults = faults
        self._wake = threading.Event()
        self._stop = threading.Event()

    def wake(self) -> None:
        """Start the next pass now (thread-safe)."""
        self._wake.set()

    def stop(self) -> None:
        """Let `run()` return after the pass in hand (thread-safe)."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Publish until `stop()`: back to back while passes come back full, else after a wake or the idle wait."""
        next_housekeeping = time.monotonic() + self.housekeeping_interval_s
        next_backlog = 0.0
        backoff = self.idle_s
        while not self._stop.is_set():
            try:
                published = publish_once(
                    engine=self.engine,
                    producer=self.producer,
                    limit=self.batch_size,
                    faults=self.faults,
                    facts_topic=self.facts_topic,
                    record_bytes=self.record_bytes,
                )
                if published:
                    self.on_published(published)
                if time.monotonic() >= next_backlog:  # not per pass: the gauge needs no more, and the query is not free
                    with self.engine.connect() as conn:
                        self.on_backlog(conn.execute(_BACKLOG).scalar_one())
                    next_backlog = time.monotonic() + 2.0
                if time.monotonic() >= next_housekeeping:
                    removed = prune(engine=self.engine, dedupe_retention_days=self.dedupe_retention_days)
                    log.info("housekeeping removed %d dedupe records", removed)
                    next_housekeeping = time.monotonic() + self.housekeeping_interval_s
                backoff = self.idle_s
                if published.total() >= self.batch_size:
                    continue
            except (SQLAlchemyError, KafkaError) as exc:
                # the database or broker is away: the claim's delete rolled back, so nothing is lost; try again later
                log.warning("relay pass failed, retrying: %s", exc)
                backoff = min(backoff * 2 if backoff else 0.1, 5.0)
            self._wake.wait(backoff)
            self._wake.clear()
