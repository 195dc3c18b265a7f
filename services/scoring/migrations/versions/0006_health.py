"""health inside each rung: order days and health on customers, numbered health models

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Each customer with an order gets the projection of their order days the health model needs (first and last
UTC day as day numbers, how many distinct days) and their current health: status, P(alive), when it was
computed and under which model version, since when at risk, how many status changes have been announced (the
transition number in each health message's stable id), and `health_due_at`, the moment P(alive) will fall below
the threshold if no order comes. The periodic scan reads only the rows due (an index on `health_due_at`); the
sweep after a refit reads only the rows stamped with another model version (an index on the version).

`health_models` keeps every fit as a numbered version; the newest of the policy's model kind is in force.

Customers stored before this revision have no order days in their state, so they get a health with their
first order after the upgrade.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customers", sa.Column("order_first_day", sa.Integer(), nullable=True))
    op.add_column("customers", sa.Column("order_last_day", sa.Integer(), nullable=True))
    op.add_column("customers", sa.Column("order_day_count", sa.Integer(), nullable=True))
    op.add_column("customers", sa.Column("health_status", sa.Text(), nullable=True))
    op.add_column("customers", sa.Column("p_alive", sa.Float(), nullable=True))
    op.add_column("customers", sa.Column("health_as_of", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customers", sa.Column("health_model_version", sa.Integer(), nullable=True))
    op.add_column("customers", sa.Column("at_risk_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customers", sa.Column("health_due_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "customers", sa.Column("health_transitions", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.create_index(op.f("ix_customers_health_due_at"), "customers", ["health_due_at"])
    op.create_index(op.f("ix_customers_health_model_version"), "customers", ["health_model_version"])
    op.create_index(op.f("ix_customers_health_status_customer_id"), "customers", ["health_status", "customer_id"])
    op.create_table(
        "health_models",
        sa.Column("version", sa.Integer(), sa.Identity(always=False), primary_key=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("r", sa.Float(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("a", sa.Float(), nullable=False),
        sa.Column("b", sa.Float(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("log_likelihood", sa.Float(), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_health_models")),
    )


def downgrade() -> None:
    op.drop_table("health_models")
    op.drop_index(op.f("ix_customers_health_status_customer_id"), table_name="customers")
    op.drop_index(op.f("ix_customers_health_model_version"), table_name="customers")
    op.drop_index(op.f("ix_customers_health_due_at"), table_name="customers")
    for column in (
        "health_transitions",
        "health_due_at",
        "at_risk_since",
        "health_model_version",
        "health_as_of",
        "p_alive",
        "health_status",
        "order_day_count",
        "order_last_day",
        "order_first_day",
        "last_order_at",
    ):
        op.drop_column("customers", column)
