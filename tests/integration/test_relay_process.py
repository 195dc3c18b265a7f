"""The relay as scoring's child process, against the real broker and PostgreSQL: it publishes, its reports reach
scoring's metrics, a kill -9 of it is followed by a new one, and it never outlives the scoring process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, text

from services.scoring.relay_process import RelayProcess
from shared.adapters.db import make_engine
from shared.adapters.metrics import Metrics
from shared.settings import Settings
from tests.support import TopicReader, wait_until


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_STAGE_CHANGES": settings.topic_stage_changes,
        "TOPIC_SCORING_INPUT": settings.topic_scoring_input,
        "RELAY_IDLE_POLL_MS": "30000",  # long: a row published within the test's deadlines was woken up
        "LOG_FORMAT": "text",
    }


def _insert(engine: Engine, settings: Settings, ids: range) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO outbox (message_id, topic, key, payload) VALUES (:id, :topic, :key, :body)"),
            [
                {"id": f"stage-{i}", "topic": settings.topic_stage_changes, "key": f"c{i}", "body": b'{"n":%d}' % i}
                for i in ids
            ],
        )


def _published(metrics: Metrics, topic: str) -> float:
    return metrics.registry.get_sample_value("loyalty_relay_published_total", {"topic": topic}) or 0.0


def _gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_publishes_when_woken_reports_metrics_and_comes_back_after_kill_9(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    metrics = Metrics(service="scoring")
    metrics.outbox_backlog.set(-1)  # until the relay's first report
    relay = RelayProcess(metrics=metrics, env=_env(settings))
    reader = TopicReader(settings.kafka_bootstrap_servers, settings.topic_stage_changes)
    try:
        relay.start()
        wait_until(
            lambda: metrics.registry.get_sample_value("loyalty_outbox_backlog") == 0 or None,
            what="the first pass's backlog report",
        )
        first = relay.pid
        assert first is not None
        _insert(engine, settings, range(5))
        relay.wake()  # the relay now waits 30 s between passes: only the wake-up publishes within the deadline
        wait_until(
            lambda: _published(metrics, settings.topic_stage_changes) == 5 or None,
            timeout_s=10,
            what="5 published, in scoring's metrics",
        )

        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: relay.pid if relay.pid not in (None, first) else None, what="a new relay process")
        assert relay.restarts == 1
        _insert(engine, settings, range(5, 8))
        relay.wake()
        wait_until(
            lambda: _published(metrics, settings.topic_stage_changes) == 8 or None,
            timeout_s=10,
            what="3 more published by the new relay",
        )
        seen = wait_until(
            lambda: (lambda r: r if len(r) >= 8 else None)(reader.poll()), what="8 stage changes on the topic"
        )
    finally:
        relay.stop()
        reader.close()
    assert sorted(r.value for r in seen) == sorted(b'{"n":%d}' % i for i in range(8))
    assert _gone(second)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox")).scalar() == 0


_PARENT = """
import sys, time
from services.scoring.relay_process import RelayProcess
from shared.adapters.metrics import Metrics
relay = RelayProcess(metrics=Metrics(service="scoring"))
relay.start()
while relay.pid is None:
    time.sleep(0.05)
print(relay.pid, flush=True)
time.sleep(120)
"""


def test_the_relay_never_outlives_a_scoring_process_killed_with_kill_9(settings: Settings) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], env=_env(settings), stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
        parent.kill()
        parent.wait(10)
        wait_until(lambda: _gone(child) or None, what="the orphaned relay to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
