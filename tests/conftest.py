"""Fixtures: one real PostgreSQL and one real Tansu broker per test session, started here.

Each test gets its own database (a copy of a migrated template) and its own random topic names and group
ids, so tests never see each other's data.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.embedded import EmbeddedBroker, EmbeddedPostgres, create_database, start_broker, start_postgres
from shared.adapters.kafka import ensure_topics
from shared.settings import Settings

_TEMPLATE_DB = "loyalty_template"


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    """A scratch folder for the session's database and logs (kept under test-artifacts/ on failure)."""
    root = Path(os.environ.get("TEST_STATE_DIR", tempfile.mkdtemp(prefix="loyalty-test-")))
    root.mkdir(parents=True, exist_ok=True)
    yield root


@pytest.fixture(scope="session")
def pg(state_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL server for the whole session."""
    server = start_postgres(state_dir / "pg" / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def broker(state_dir: Path) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu) for the whole session."""
    b = start_broker(log_path=state_dir / "broker.log")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def migrated_template(pg: EmbeddedPostgres) -> str:
    """A database migrated to head once; each test's database is copied from it."""
    from services.scoring.migrate import upgrade

    url = create_database(pg.url, _TEMPLATE_DB)
    upgrade(database_url=url)
    return _TEMPLATE_DB


@pytest.fixture
def database_url(pg: EmbeddedPostgres, migrated_template: str) -> str:
    """A fresh, migrated database for this test."""
    return create_database(pg.url, f"t_{uuid.uuid4().hex[:12]}", template=migrated_template)


def random_suffix() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_settings(broker: EmbeddedBroker, database_url: str) -> Callable[..., Settings]:
    """Settings for this test: its own database, topic names and group ids; overrides by keyword."""
    suffix = random_suffix()
    base: dict[str, Any] = {
        "kafka_bootstrap_servers": broker.bootstrap,
        "database_url": database_url,
        "topic_purchases": f"shop.purchases.{suffix}",
        "topic_referrals": f"shop.referrals.{suffix}",
        "topic_complaints": f"shop.complaints.{suffix}",
        "topic_stage_changes": f"loyalty.stage-changes.{suffix}",
        "topic_dead_letter": f"loyalty.dead-letter.{suffix}",
        "topic_customer_health": f"loyalty.customer-health.{suffix}",
        "topic_scoring_input": f"loyalty.scoring-input.{suffix}",
        "ingest_group_id": f"ingest-{suffix}",
        "scoring_group_id": f"scoring-{suffix}",
        "topic_partitions": 3,
        "log_format": "text",
        "consumer_poll_timeout_ms": 100,
        "relay_idle_poll_ms": 50,
    }

    def factory(**overrides: Any) -> Settings:
        return Settings(**{**base, **overrides})

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """This test's settings, with its topics created."""
    s = make_settings()
    ensure_topics(s)
    return s
