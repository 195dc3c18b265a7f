"""Prometheus metrics, one registry per process; the names are the dashboard's contract."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Metrics:
    """Every metric of the system; each service increments the ones that concern it."""

    service: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # process_start_time_seconds among them: a restart shows as a new start time
        ProcessCollector(registry=r)
        self.events = Counter(
            "loyalty_events_total",
            "Events by type and outcome (accepted, duplicate, rejected).",
            ["service", "type", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "loyalty_dead_letters_total",
            "Messages published to the dead-letter topic, by error code.",
            ["error_code"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "loyalty_consumer_lag_messages",
            "Messages behind the end of each assigned partition.",
            ["service", "topic", "partition"],
            registry=r,
        )
        self.processing_latency = Histogram(
            "loyalty_processing_latency_seconds",
            "From the broker's timestamp of the oldest message of each partition in a batch to the batch's "
            "effects being durable (the worst case of each batch).",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_duration = Histogram(
            "loyalty_batch_duration_seconds",
            "Time to process one poll batch end to end.",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "loyalty_batch_size_messages",
            "Messages per poll batch.",
            ["service"],
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.stage_changes = Counter(
            "loyalty_stage_changes_total", "Rungs entered, by the rung entered.", ["to_stage"], registry=r
        )
        self.outbox_backlog = Gauge(
            "loyalty_outbox_backlog",
            "Outbox rows not yet published (PostgreSQL's live-row statistics of the table, seconds behind at most).",
            registry=r,
        )
        self.relay_published = Counter(
            "loyalty_relay_published_total", "Outbox rows published, by topic.", ["topic"], registry=r
        )
        self.batch_retries = Counter(
            "loyalty_batch_retries_total",
            "Batches retried after a transient database or broker error.",
            ["service"],
            registry=r,
        )
        self.health_changes = Counter(
            "loyalty_health_changes_total",
            "Health status changes announced, by cause (order, scan, refit).",
            ["cause"],
            registry=r,
        )
        self.health_fits = Counter(
            "loyalty_health_fits_total",
            "Health model fits, by outcome: fitted, too_few (the priors stay in force), failed (the previous "
            "model stays in force; the log says why).",
            ["outcome"],
            registry=r,
        )
        self.health_model_version = Gauge(
            "loyalty_health_model_version", "The health model version in force (0 = the policy's priors).", registry=r
        )
