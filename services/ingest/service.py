"""Start-up and shutdown of the ingest service: settings, logging, topics, HTTP ops app, pipeline."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from services.ingest.app import create_app
from services.ingest.pipeline import Pipeline
from shared.adapters.http import ServerThread
from shared.adapters.kafka import ensure_topics
from shared.adapters.metrics import Metrics
from shared.logging import setup_logging
from shared.runtime import tune_gc
from shared.settings import Settings

log = logging.getLogger(__name__)


def run(*, settings: Settings, stop: threading.Event) -> None:
    """Serve HTTP and run the pipeline until `stop` is set, then finish the batch in hand and close."""
    metrics = Metrics(service="ingest")
    server = ServerThread(
        create_app(settings=settings, metrics=metrics), host=settings.http_host, port=settings.ingest_port
    )
    # HTTP first: while the broker is still away, /healthz answers and /readyz says so
    server.start()
    try:
        if settings.create_topics:
            ensure_topics(settings)
        pipeline = Pipeline(settings=settings, metrics=metrics)
        tune_gc(gen0_threshold=settings.gc_gen0_threshold)
        try:
            pipeline.run(stop)
        finally:
            pipeline.close()
    finally:
        server.stop()
        log.info("ingest stopped")


def main() -> int:
    """Entry point: build the settings once, stop cleanly on SIGTERM or SIGINT."""
    settings = Settings()
    setup_logging(service="ingest", level=settings.log_level, fmt=settings.log_format)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run(settings=settings, stop=stop)
    return 0
