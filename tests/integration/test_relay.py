"""The outbox relay against the real broker and PostgreSQL: stage changes one keyed record each, referral
conversions batched into one record of facts per partition, everything marked only after the broker took it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

from services.scoring.relay import _BACKLOG, _CLAIM, _LOCK, _PRUNE_DEDUPE, _RELAY_LOCK, prune, publish_once
from services.scoring.unit_of_work import run_sql
from shared.adapters.db import make_engine
from shared.adapters.kafka import make_batch_producer, partition_for
from shared.settings import Settings
from shared.wire.messages import Fact, encode
from tests.facts import decode_record
from tests.support import TopicReader, wait_until

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _publish(engine: Engine, settings: Settings, *, limit: int, record_bytes: int = 1500) -> Counter[str]:
    """One relay pass with a producer of its own."""
    producer = make_batch_producer(settings)
    try:
        return publish_once(
            engine=engine,
            producer=producer,
            limit=limit,
            facts_topic=settings.topic_scoring_input,
            record_bytes=record_bytes,
        )
    finally:
        producer.close()


def _conversion(referral: str, referrer: str) -> Fact:
    return Fact(
        kind="referral_converted",
        event_id=referral,
        role="converted",
        customer_id=referrer,
        occurred_at=AT,
        other_customer_id=f"new-{referral}",
    )


def test_conversions_travel_as_facts_per_partition_and_stage_changes_one_by_one(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    conversions = [_conversion(f"r{i}", f"referrer-{i % 7}") for i in range(40)]
    rows = [
        {
            "id": f"conversion:{f.event_id}",
            "topic": settings.topic_scoring_input,
            "key": f.customer_id,
            "payload": encode(f),
        }
        for f in conversions
    ]
    rows += [
        {"id": f"stage-{i}", "topic": settings.topic_stage_changes, "key": f"c{i}", "payload": b'{"n":%d}' % i}
        for i in range(5)
    ]
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO outbox (message_id, topic, key, payload) VALUES (:id, :topic, :key, :payload)"), rows
        )
    # a small record size: the 40 facts need several records on some partitions
    published = _publish(engine, settings, limit=1000, record_bytes=1500)
    assert published == {settings.topic_scoring_input: 40, settings.topic_stage_changes: 5}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox")).scalar() == 0

    facts_reader = TopicReader(settings.kafka_bootstrap_servers, settings.topic_scoring_input)
    stage_reader = TopicReader(settings.kafka_bootstrap_servers, settings.topic_stage_changes)
    try:
        records = wait_until(
            lambda: (lambda r: r if sum(len(decode_record(x.value)) for x in r) >= 40 else None)(facts_reader.poll()),
            what="the conversion facts",
        )
        stage = wait_until(
            lambda: (lambda r: r if len(r) >= 5 else None)(stage_reader.poll()), what="the stage changes"
        )
    finally:
        facts_reader.close()
        stage_reader.close()
    partitions = settings.topic_partitions
    assert len(records) < 40 and all(r.value[:1] == b"[" and r.key is None for r in records)
    assert all(len(r.value) <= 1500 for r in records)
    by_partition: dict[int, list[Fact]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        for fact in decode_record(r.value):
            assert partition_for(fact.customer_id.encode(), partitions) == r.partition
            by_partition.setdefault(r.partition, []).append(fact)
    for p, facts in by_partition.items():
        assert facts == [f for f in conversions if partition_for(f.customer_id.encode(), partitions) == p]
    assert sorted((r.key, r.value) for r in stage) == sorted((f"c{i}".encode(), b'{"n":%d}' % i) for i in range(5))
    assert all(r.partition == partition_for(r.key, partitions) for r in stage)


def test_the_backlog_is_the_number_of_rows_waiting(settings: Settings) -> None:
    """The gauge comes from PostgreSQL's live-row count of the outbox (never a scan of a heap full of deleted rows)."""
    writer = make_engine(settings.database_url)
    with writer.begin() as conn:
        conn.execute(
            text("INSERT INTO outbox (message_id, topic, key, payload) VALUES (:id, :topic, 'k', 'x')"),
            [{"id": f"m{i}", "topic": settings.topic_stage_changes} for i in range(7)],
        )
    writer.dispose()  # a backend flushes its statistics when it ends (an idle one within ~10 s)
    reader = make_engine(settings.database_url)

    def backlog() -> int:
        with reader.connect() as conn:
            return int(conn.execute(_BACKLOG).scalar_one())

    wait_until(lambda: backlog() == 7 or None, what="7 rows waiting")
    assert _publish(writer, settings, limit=1000) == {settings.topic_stage_changes: 7}
    writer.dispose()
    wait_until(lambda: backlog() == 0 or None, what="nothing waiting after the publish")


def _fill_outbox(conn: Connection, topic: str, n: int) -> None:
    conn.execute(
        text("""
        INSERT INTO outbox (message_id, topic, key, payload)
        SELECT 'm' || g || '-' || gen_random_uuid(), :topic, 'c' || g, convert_to(repeat('x', 300), 'UTF8')
        FROM generate_series(1, :n) g
    """),
        {"topic": topic, "n": n},
    )


def _analyze_outbox(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("ANALYZE outbox"))
        conn.commit()


def _claim_plan(engine: Engine, *, limit: int, as_the_relay_does: bool) -> str:
    with engine.connect() as conn:  # rolled back on leaving
        if as_the_relay_does:
            assert run_sql(conn, _LOCK, {"k": _RELAY_LOCK})[0][0] is True
        return "\n".join(r[0] for r in run_sql(conn, "EXPLAIN (COSTS OFF) " + _CLAIM, {"limit": limit}))


def test_a_claim_takes_at_most_its_limit_when_the_statistics_say_the_outbox_is_empty(settings: Settings) -> None:
    """Statistics taken when every row was deleted, then a backlog: the claim takes `limit` rows, once each.

    Written as `id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`, this exact state made PostgreSQL re-run the
    locking subquery for each row of the outbox, each time past the rows it had just deleted: one claim took
    the whole backlog, in time growing with its square (the two-instance bench phases that ran for minutes).
    """
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        _fill_outbox(conn, settings.topic_stage_changes, 2000)
        conn.execute(text("DELETE FROM outbox"))
    _analyze_outbox(engine)
    with engine.begin() as conn:
        _fill_outbox(conn, settings.topic_stage_changes, 3000)
        first = conn.execute(text("SELECT min(id) FROM outbox")).scalar_one()
    plan = _claim_plan(engine, limit=500, as_the_relay_does=True)
    assert "Join" not in plan and "Nested Loop" not in plan and "Seq Scan" not in plan, plan

    assert _publish(engine, settings, limit=500) == {settings.topic_stage_changes: 500}
    with engine.connect() as conn:  # the 500 oldest went, in id order
        assert conn.execute(text("SELECT count(*), min(id) FROM outbox")).one() == (2500, first + 500)


def test_the_claim_walks_the_primary_key_even_when_the_statistics_say_the_outbox_is_nearly_empty(
    settings: Settings,
) -> None:
    """An ANALYZE between two drains records a few rows in many pages of deleted ones: the claim must not turn
    into a sorted scan of the whole heap, which costs every pass time in proportion to what was ever deleted."""
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        _fill_outbox(conn, settings.topic_stage_changes, 20000)
        conn.execute(text("DELETE FROM outbox WHERE id <= (SELECT min(id) + 19949 FROM outbox)"))
    _analyze_outbox(engine)
    plain = _claim_plan(engine, limit=5000, as_the_relay_does=False)
    assert "Seq Scan on outbox" in plain, plain  # the hazard is real: planned as it stands, the claim scans the heap
    plan = _claim_plan(engine, limit=5000, as_the_relay_does=True)
    assert "Seq Scan" not in plan and "Index Scan using pk_outbox" in plan, plan

    assert _publish(engine, settings, limit=5000) == {settings.topic_stage_changes: 50}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0


def test_housekeeping_removes_the_dedupe_records_past_their_retention_and_keeps_the_rest(settings: Settings) -> None:
    """Also planned from statistics of an empty table (a new database): one pass of 10,000 over the table at most,
    never a join that re-reads the whole table per row."""
    engine = make_engine(settings.database_url)
    _analyze = text("ANALYZE processed_events")
    with engine.connect() as conn:
        conn.execute(_analyze)
        conn.commit()
    with engine.begin() as conn:
        conn.execute(
            text("""
            INSERT INTO processed_events (event_id, role, customer_id, processed_at)
            SELECT 'e' || g, 'primary', 'c' || g, now() - make_interval(days => CASE WHEN g <= 12000 THEN 40 ELSE 1 END)
            FROM generate_series(1, 15000) g
        """)
        )
    with engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN (COSTS OFF) " + _PRUNE_DEDUPE.text), {"days": 30}))
    assert "Join" not in plan and "Nested Loop" not in plan, plan
    assert prune(engine=engine, dedupe_retention_days=30) == 12000
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*), min(event_id) FROM processed_events")).one() == (3000, "e12001")
