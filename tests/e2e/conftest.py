"""One running system per test module, started as `make run` starts it, on the session's database server and
broker (given as DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS), with its own database and topic names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.embedded import EmbeddedBroker, EmbeddedPostgres, create_database
from tests.support import Shop, System, TopicReader, uid


@pytest.fixture(scope="module")
def system_env(pg: EmbeddedPostgres, broker: EmbeddedBroker, migrated_template: str) -> dict[str, str]:
    suffix = uid()
    db = create_database(pg.url, f"e2e_{suffix}", template=migrated_template)
    return {
        "DATABASE_URL": db,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "TOPIC_PURCHASES": f"shop.purchases.{suffix}",
        "TOPIC_REFERRALS": f"shop.referrals.{suffix}",
        "TOPIC_COMPLAINTS": f"shop.complaints.{suffix}",
        "TOPIC_STAGE_CHANGES": f"loyalty.stage-changes.{suffix}",
        "TOPIC_DEAD_LETTER": f"loyalty.dead-letter.{suffix}",
        "TOPIC_CUSTOMER_HEALTH": f"loyalty.customer-health.{suffix}",
        "TOPIC_SCORING_INPUT": f"loyalty.scoring-input.{suffix}",
        "INGEST_GROUP_ID": f"ingest-{suffix}",
        "SCORING_GROUP_ID": f"scoring-{suffix}",
        "TOPIC_PARTITIONS": "3",
        "CONSUMER_POLL_TIMEOUT_MS": "100",
        "RELAY_IDLE_POLL_MS": "50",
    }


@pytest.fixture(scope="module")
def system(system_env: dict[str, str], state_dir: Path) -> Iterator[System]:
    with System(env=system_env, state_dir=state_dir / f"system-{system_env['SCORING_GROUP_ID']}") as sut:
        yield sut


@pytest.fixture(scope="module")
def shop(system_env: dict[str, str]) -> Iterator[Shop]:
    s = Shop(
        system_env["KAFKA_BOOTSTRAP_SERVERS"],
        {
            "purchase": system_env["TOPIC_PURCHASES"],
            "referral": system_env["TOPIC_REFERRALS"],
            "complaint": system_env["TOPIC_COMPLAINTS"],
        },
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def stage_changes(system: System, system_env: dict[str, str]) -> Iterator[TopicReader]:
    reader = TopicReader(system_env["KAFKA_BOOTSTRAP_SERVERS"], system_env["TOPIC_STAGE_CHANGES"])
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def dead_letters(system: System, system_env: dict[str, str]) -> Iterator[TopicReader]:
    reader = TopicReader(system_env["KAFKA_BOOTSTRAP_SERVERS"], system_env["TOPIC_DEAD_LETTER"])
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def customer_health(system: System, system_env: dict[str, str]) -> Iterator[TopicReader]:
    reader = TopicReader(system_env["KAFKA_BOOTSTRAP_SERVERS"], system_env["TOPIC_CUSTOMER_HEALTH"])
    yield reader
    reader.close()
