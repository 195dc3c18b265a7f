"""The scoring service's tables (SQLAlchemy Core). Migrations in `migrations/` create them; nothing calls create_all."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    Table,
    Text,
    text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

customers = Table(
    "customers",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("stage", Text, nullable=False),
    Column("stage_rank", SmallInteger, nullable=False),
    Column("stage_entered_at", DateTime(timezone=True), nullable=False),
    Column("tier", Text, nullable=False),
    Column("sales", Numeric, nullable=False),
    Column("costs", Numeric, nullable=False),
    Column("profit", Numeric, nullable=False),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_event_at", DateTime(timezone=True), nullable=False),
    # the focus (contract section 16) as of the customer's last event, for lists to filter and sort on
    # (migration 0005); NULL until the customer's first write under that migration
    Column("develop", Text),
    Column("loyalty_index", Numeric(5, 4)),
    # the whole domain state (counts, month buckets, referrers) as JSON text (`state.to_text`); the columns
    # above are for queries. text, not jsonb (migration 0003): parsing jsonb on every write cost the database
    # more than the rest of the row; `state::jsonb` still works for ad-hoc queries
    Column("state", Text, nullable=False),
    # optimistic concurrency: a write must see the version it read (two instances during a rebalance)
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # migration 0006: the order days the health model needs (UTC day numbers since 1970-01-01; null without
    # orders), and the current health (docs/health.md)
    Column("last_order_at", DateTime(timezone=True)),
    Column("order_first_day", Integer),
    Column("order_last_day", Integer),
    Column("order_day_count", Integer),
    Column("health_status", Text),
    Column("p_alive", Float),
    Column("health_as_of", DateTime(timezone=True)),
    Column("health_model_version", Integer),
    Column("at_risk_since", DateTime(timezone=True)),
    # when P(alive) falls below the threshold if no order comes; null when at risk already or never
    Column("health_due_at", DateTime(timezone=True)),
    # status changes announced so far: the transition number in each health message's stable id
    Column("health_transitions", Integer, nullable=False, server_default=text("0")),
    Index(None, "health_due_at"),
    Index(None, "health_model_version"),
    Index(None, "health_status", "customer_id"),
    Index(None, "stage", "tier", "customer_id"),
    Index(None, "tier", "customer_id"),
    Index(None, "stage", "customer_id"),  # migration 0002: a rung's list in customer_id order
    Index(None, "develop", "customer_id"),  # migration 0005: develop= lists
    # migration 0005: sort=index pages, highest first, no index (NULL) last, ties in customer_id order
    Index("ix_customers_index_order", text("(-coalesce(loyalty_index, -1))"), "customer_id"),
    Index(None, "first_seen_at"),  # migration 0007: funnel cohorts, the flows' potential entries
    postgresql_with={"fillfactor": 80},  # migration 0003: room for HOT updates
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("role", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index(None, "processed_at", postgresql_using="brin"),  # migration 0003: rows come in time order
)

stage_history = Table(
    "stage_history",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("to_stage", Text, primary_key=True),
    Column("from_stage", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("cause_event_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index(None, "occurred_at", "to_stage"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("message_id", Text, nullable=False, unique=True),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # every row here is unpublished: the relay deletes what it published, in the same transaction (migration 0004)
)

health_models = Table(
    "health_models",
    metadata,
    # every fit is a numbered version (migration 0006); the newest of the policy's model kind is in force
    Column("version", Integer, Identity(always=False), primary_key=True),
    Column("model", Text, nullable=False),
    Column("r", Float, nullable=False),
    Column("alpha", Float, nullable=False),
    Column("a", Float, nullable=False),
    Column("b", Float, nullable=False),
    Column("customers", Integer, nullable=False),
    Column("log_likelihood", Float, nullable=False),
    Column("fitted_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)
