"""`python -m services.scoring`: the scoring consumer and the HTTP API, and the outbox relay as its child process."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType

from services.scoring.api import create_app
from services.scoring.cache import StateCache
from services.scoring.domain.policy import Policy, parse_policy
from services.scoring.health.models import ModelSource
from services.scoring.health.refit import HealthLoop
from services.scoring.heavy import Activity
from services.scoring.http_common import ApiContext
from services.scoring.relay_process import RelayProcess
from services.scoring.worker import ScoringWorker
from shared.adapters.db import make_engine
from shared.adapters.http import ServerThread
from shared.adapters.kafka import RecordFetcher, ensure_topics, make_consumer, make_producer
from shared.adapters.metrics import Metrics
from shared.faults import Faults
from shared.logging import setup_logging
from shared.runtime import tune_gc
from shared.settings import Settings

log = logging.getLogger("services.scoring")

DEFAULT_POLICY = Path(__file__).parent / "policy.toml"


def load_policy(*, settings: Settings) -> Policy:
    """The policy file named by POLICY_FILE, else the bundled default."""
    return parse_policy((settings.policy_file or DEFAULT_POLICY).read_text(encoding="utf-8"))


def main() -> None:
    settings = Settings()
    setup_logging(service="scoring", level=settings.log_level, fmt=settings.log_format)
    if not settings.database_url:
        raise SystemExit("DATABASE_URL is not set")
    policy = load_policy(settings=settings)
    metrics = Metrics(service="scoring")
    engine = make_engine(settings.database_url)
    faults = Faults(settings.fault_injection)
    if settings.create_topics:
        ensure_topics(settings)

    # the read side's own small pool, with PostgreSQL's statement_timeout on its connections: API load waits
    # for (or is refused) these connections, never the event path's
    api_engine = make_engine(
        settings.database_url,
        pool_size=settings.api_pool_size,
        max_overflow=0,
        pool_timeout_s=settings.api_pool_timeout_s,
        statement_timeout_ms=settings.api_statement_timeout_ms,
        application_name="loyalty-scoring-api",
    )
    event_path = Activity()  # marked after every committed batch: while it is recent, exports yield

    producer = make_producer(settings)  # dead letters: rare, one record each
    relay: RelayProcess | None = None
    if settings.relay_enabled:
        # a process of its own (relay_process.py): as a thread it took the GIL from the transaction
        relay = RelayProcess(metrics=metrics)
        relay.start()

    def committed() -> None:
        event_path.mark()
        if relay is not None:
            relay.wake()

    source = ModelSource(engine, policy=policy, topic=settings.topic_customer_health)
    # the health loop's scans and refits write with the event path's engine: they are the event path's work
    health = HealthLoop(
        engine=engine,
        policy=policy,
        source=source,
        metrics=metrics,
        scan_s=settings.health_scan_seconds,
        refit_h=settings.health_refit_hours,
        batch=settings.health_batch_size,
        on_commit=relay.wake if relay else lambda: None,
        faults=faults,
    )
    app = create_app(
        ctx=ApiContext(engine=api_engine, policy=policy, settings=settings, health=health),
        metrics=metrics,
        readiness_engine=engine,
        event_path=event_path,
    )
    http = ServerThread(app, host=settings.http_host, port=settings.scoring_port)
    http.start()

    consumer = make_consumer(
        settings,
        group_id=settings.scoring_group_id,
        topics=[settings.topic_scoring_input],
        max_poll_records=settings.scoring_max_poll_records,
    )
    worker = ScoringWorker(
        consumer=consumer,
        engine=engine,
        policy=policy,
        metrics=metrics,
        dead_letter=producer,
        dead_letter_topic=settings.topic_dead_letter,
        stage_topic=settings.topic_stage_changes,
        conversion_topic=settings.topic_scoring_input,
        poll_timeout_ms=settings.consumer_poll_timeout_ms,
        max_records=settings.scoring_max_poll_records,
        on_commit=committed,
        faults=faults,
        cache=StateCache(capacity=settings.scoring_state_cache_size),
        originals=(originals := RecordFetcher(settings)),
        dead_letter_max_bytes=settings.dead_letter_max_bytes,
        health=source,
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the batch in hand and stopping", signal.Signals(signum).name)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("scoring started", extra={"group": settings.scoring_group_id, "port": settings.scoring_port})
    tune_gc(gen0_threshold=settings.gc_gen0_threshold)
    health.start()
    try:
        worker.run()
    finally:
        health.stop()
        consumer.close(autocommit=False, timeout_ms=5000)
        originals.close()
        if relay is not None:
            relay.stop()
        producer.close(timeout=5)
        http.stop()
        api_engine.dispose()
        engine.dispose()
        log.info("scoring stopped")


if __name__ == "__main__":
    main()
