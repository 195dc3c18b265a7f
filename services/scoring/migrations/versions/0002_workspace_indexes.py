"""workspace indexes: customers by rung in customer_id order

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

GET /v1/customers?stage=X pages in customer_id order; (stage, tier, customer_id) cannot give that order
across tiers, so without this index a rung's list sorts the whole rung for every page.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_customers_stage_customer_id"), "customers", ["stage", "customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_customers_stage_customer_id"), table_name="customers")
