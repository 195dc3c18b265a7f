"""The outbox relay: claim unpublished rows, publish them, mark them — in that order.

A crash between publish and mark re-publishes the same rows with the same ids (at least once on the
wire, never a second id). Only one relay publishes at a time (a transaction-scoped advisory lock), so the
stage changes of one customer leave in the order they were written, which is ladder order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import Engine, TextClause, text
from sqlalchemy.exc import SQLAlchemyError

from services.scoring.store import session
from shared.faults import Faults
from shared.kafka import partition_for
from shared.metrics import Metrics

log = logging.getLogger(__name__)

_RELAY_LOCK = 74210002

_CLAIM = text("""
    SELECT id, topic, key, payload FROM outbox
    WHERE published_at IS NULL
    ORDER BY id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
""")
_MARK = text("UPDATE outbox SET published_at = now() WHERE id = ANY(CAST(:ids AS bigint[]))")
_BACKLOG = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
_PRUNE_OUTBOX = text("""
    DELETE FROM outbox WHERE id IN (
        SELECT id FROM outbox WHERE published_at < now() - make_interval(hours => :hours) LIMIT 10000)
""")
_PRUNE_DEDUPE = text("""
    DELETE FROM processed_events WHERE (event_id, role) IN (
        SELECT event_id, role FROM processed_events
        WHERE processed_at < now() - make_interval(days => :days) LIMIT 10000)
""")


def publish_once(*, engine: Engine, producer: KafkaProducer, limit: int, faults: Faults | None = None) -> Counter[str]:
    """Publish up to `limit` outbox rows; returns how many per topic (none when another relay holds the lock)."""
    with session(engine) as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _RELAY_LOCK}).scalar():
            return Counter()
        rows = conn.execute(_CLAIM, {"limit": limit}).all()
        if not rows:
            return Counter()
        # the partition Kafka's partitioner would pick, from a bounded cache: kafka-python's own is pure Python
        counts = {topic: len(producer.partitions_for(topic)) for topic in {r.topic for r in rows}}
        futures = []
        for r in rows:
            key = r.key.encode()
            futures.append(producer.send(r.topic, key=key, value=bytes(r.payload),
                                         partition=partition_for(key, counts[r.topic])))
        producer.flush()
        for future in futures:
            future.get(timeout=0)  # raises the send's error; the rows stay unpublished and are retried
        if faults is not None:
            faults.point("relay.after_publish")
        conn.execute(_MARK, {"ids": [r.id for r in rows]})
    return Counter(r.topic for r in rows)


def _delete_in_chunks(engine: Engine, statement: TextClause, params: dict[str, int]) -> int:
    """Run a `LIMIT 10000` delete until it deletes less than that; short transactions keep locks brief."""
    total = 0
    while True:
        with session(engine) as conn:
            n = conn.execute(statement, params).rowcount
        total += n
        if n < 10000:
            return total


def prune(*, engine: Engine, outbox_retention_hours: int, dedupe_retention_days: int) -> tuple[int, int]:
    """Delete published outbox rows and dedupe records past their retention; returns (outbox, dedupe) counts."""
    return (_delete_in_chunks(engine, _PRUNE_OUTBOX, {"hours": outbox_retention_hours}),
            _delete_in_chunks(engine, _PRUNE_DEDUPE, {"days": dedupe_retention_days}))


class Relay:
    """Runs `publish_once` in a loop on its own thread; `wake()` shortens the idle wait after a commit."""

    def __init__(self, *, engine: Engine, producer: KafkaProducer, metrics: Metrics, batch_size: int,
                 idle_s: float, outbox_retention_hours: int, dedupe_retention_days: int,
                 housekeeping_interval_s: float, faults: Faults | None = None) -> None:
        self.engine = engine
        self.producer = producer
        self.metrics = metrics
        self.batch_size = batch_size
        self.idle_s = idle_s
        self.outbox_retention_hours = outbox_retention_hours
        self.dedupe_retention_days = dedupe_retention_days
        self.housekeeping_interval_s = housekeeping_interval_s
        self.faults = faults
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        next_housekeeping = time.monotonic() + self.housekeeping_interval_s
        next_backlog = 0.0
        backoff = self.idle_s
        while not self._stop.is_set():
            try:
                published = publish_once(engine=self.engine, producer=self.producer, limit=self.batch_size,
                                         faults=self.faults)
                for topic, count in published.items():
                    self.metrics.relay_published.labels(topic=topic).inc(count)
                if time.monotonic() >= next_backlog:  # a count per pass was a fifth of the relay's time
                    with self.engine.connect() as conn:
                        self.metrics.outbox_backlog.set(conn.execute(_BACKLOG).scalar() or 0)
                    next_backlog = time.monotonic() + 2.0
                if time.monotonic() >= next_housekeeping:
                    removed = prune(engine=self.engine, outbox_retention_hours=self.outbox_retention_hours,
                                    dedupe_retention_days=self.dedupe_retention_days)
                    log.info("housekeeping removed %d outbox rows and %d dedupe records", *removed)
                    next_housekeeping = time.monotonic() + self.housekeeping_interval_s
                backoff = self.idle_s
                if published.total() >= self.batch_size:
                    continue
            except (SQLAlchemyError, KafkaError) as exc:
                # the database or broker is away: nothing was marked, so nothing is lost; try again later
                log.warning("relay pass failed, retrying: %s", exc)
                backoff = min(backoff * 2 if backoff else 0.1, 5.0)
            self._wake.wait(backoff)
            self._wake.clear()
