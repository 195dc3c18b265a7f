"""Typed settings, built once at start-up from the environment and passed down.

Nothing in the project reads the environment at import time: a service's `__main__` calls
`Settings()` once and hands the frozen object to whatever needs it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def normalize_database_url(url: str) -> str:
    """Return `url` as a SQLAlchemy psycopg-3 URL; accepts `postgresql://` and `postgresql+psycopg://`."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        scheme = "postgresql+psycopg"
    else:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment))


def redacted_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`: the form a log line or an error message may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def libpq_url(url: str) -> str:
    """Return `url` in the plain `postgresql://` form libpq and psql understand."""
    parts = urlsplit(normalize_database_url(url))
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


class Settings(BaseSettings):
    """Every setting of the system; environment variable = upper-case field name."""

    # hide_input_in_errors: a refused value never reaches a start-up error, so a DATABASE_URL with a password
    # (or a token) in it is never printed
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False, hide_input_in_errors=True)

    # connections
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # repr=False: it may carry a password; `redacted_url()` is the form to log
    database_url: str = Field(default="", repr=False)
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(default=None, repr=False)
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None

    # HTTP
    ingest_port: int = 8001
    scoring_port: int = 8002
    http_host: str = "0.0.0.0"
    api_tokens: str = Field(default="", repr=False)
    # /docs, /redoc and /openapi.json of the scoring API: on for development, off in the deploy manifests
    api_docs_enabled: bool = True
    # a request body larger than this is refused with 413 (no endpoint of either service reads more)
    http_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # POST /v1/prospects, the one endpoint that reads a larger body, streams it and refuses more than this
    import_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)

    # the read side's own resources (scoring's HTTP API), so that API load cannot starve the event path:
    # its own connection pool, a PostgreSQL statement_timeout on those connections, and a bound on the
    # expensive requests (CSV exports, flows) in flight at once; one more is answered 503 at once
    api_pool_size: int = Field(default=4, ge=1)
    api_pool_timeout_s: float = Field(default=5.0, gt=0)
    api_statement_timeout_ms: int = Field(default=5000, ge=0)
    api_heavy_concurrency: int = Field(default=2, ge=1)
    # while the consumer is busy, the share of the time the expensive requests may take together
    # (services/scoring/heavy.py): they share one interpreter lock with the event path
    api_heavy_share: float = Field(default=0.05, gt=0, le=1)

    # topics
    topic_purchases: str = "shop.purchases"
    topic_referrals: str = "shop.referrals"
    topic_complaints: str = "shop.complaints"
    topic_stage_changes: str = "loyalty.stage-changes"
    topic_dead_letter: str = "loyalty.dead-letter"
    topic_scoring_input: str = "loyalty.scoring-input"
    topic_customer_health: str = "loyalty.customer-health"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    create_topics: bool = True

    # consumer groups and tuning
    ingest_group_id: str = "loyalty-ingest"
    scoring_group_id: str = "loyalty-scoring"
    consumer_session_timeout_ms: int = 6000
    consumer_heartbeat_interval_ms: int = 1000
    consumer_max_poll_records: int = 5000
    # scoring-input records carry up to producer_batch_size bytes of facts each (~700 under load), so
    # scoring polls fewer of them: this bounds the facts, and so the work, of one scoring transaction
    scoring_max_poll_records: int = Field(default=16, ge=1)
    # customers whose last committed state scoring keeps in memory, so a batch reads only the others from the
    # table (services/scoring/store.py StateCache); ~2.2 KB each, so it bounds the memory; 0 = always read the table
    scoring_state_cache_size: int = Field(default=20_000, ge=0)
    consumer_max_poll_interval_ms: int = 60000
    consumer_poll_timeout_ms: int = 200
    # how long the broker may hold a fetch that has no data yet (Kafka's default; it answers as soon as data
    # arrives). The launcher lowers it for the embedded broker, see devstack.embedded.EMBEDDED_FETCH_MAX_WAIT_MS
    consumer_fetch_max_wait_ms: int = Field(default=500, ge=1)
    producer_linger_ms: int = 20
    producer_batch_size: int = 262144
    producer_compression: str = "lz4"
    # young-generation GC threshold of the services (shared/runtime.py); 0 = Python's default of 700
    gc_gen0_threshold: int = Field(default=50_000, ge=0)

    # domain
    base_currency: str = "EUR"
    max_future_skew_hours: int = 24
    max_message_bytes: int = 65536
    # a dead letter's value is cut to this many bytes (header `error.truncated` keeps the original size):
    # Kafka's default max.message.bytes is 1 MiB, and a letter the topic refuses must not block its batch
    dead_letter_max_bytes: int = Field(default=1_000_000, ge=1024)
    policy_file: Path | None = None

    # scoring / relay
    relay_enabled: bool = True
    relay_batch_size: int = 5000
    relay_idle_poll_ms: int = 200
    dedupe_retention_days: int = 30
    housekeeping_interval_s: int = 300

    # health (docs/health.md): how often due customers are turned at risk, and how often the model is refitted
    health_scan_seconds: float = Field(default=60, gt=0)
    health_refit_hours: float = Field(default=24, gt=0)
    # customers one scan or sweep transaction takes at most (each its own transaction, repeated until none is left)
    health_batch_size: int = Field(default=5000, ge=1)

    # test-only: crash at named points (shared/faults.py); empty in production
    fault_injection: str = ""

    # logging
    log_level: str = "INFO"
    log_format: str = "json"

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        return normalize_database_url(value) if value else value

    @field_validator("base_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha() or not value.isupper():
            raise ValueError("BASE_CURRENCY must be a 3-letter upper-case code")
        return value

    @property
    def shop_topics(self) -> tuple[str, str, str]:
        """The three input topics, in a stable order."""
        return (self.topic_purchases, self.topic_referrals, self.topic_complaints)

    @property
    def all_topics(self) -> tuple[str, ...]:
        """Every topic the system reads or writes."""
        return (
            *self.shop_topics,
            self.topic_scoring_input,
            self.topic_stage_changes,
            self.topic_dead_letter,
            self.topic_customer_health,
        )
