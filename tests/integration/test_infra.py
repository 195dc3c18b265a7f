"""The embedded stack itself: migrations apply, topics get the partition count asked for."""

from __future__ import annotations

from kafka import KafkaAdminClient
from sqlalchemy import create_engine, inspect

from shared.adapters.kafka import ensure_topics
from shared.settings import Settings, normalize_database_url


def test_migrations_create_every_table(database_url: str) -> None:
    engine = create_engine(normalize_database_url(database_url))
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"customers", "processed_events", "stage_history", "outbox", "alembic_version"} <= tables


def test_topics_are_created_with_the_configured_partition_count(settings: Settings) -> None:
    ensure_topics(settings, [settings.topic_purchases + ".x"], partitions=5)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        described = admin.describe_topics([settings.topic_purchases, settings.topic_purchases + ".x"])
    finally:
        admin.close()
    counts = {d["name"]: len(d["partitions"]) for d in described}
    assert counts == {settings.topic_purchases: 3, settings.topic_purchases + ".x": 5}
