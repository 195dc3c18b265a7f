"""the shop's focus per customer: the kind to develop and the loyalty index, stored for lists

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

`GET /v1/customers?develop=<kind>` filters and `sort=index` orders on values stored with the customer, computed
by the scoring transaction as of the customer's last event (docs/loyalty.md, "Focus"): a query cannot compute
a loyalty vector, and a list needs one stable order to page through.

Both columns are nullable: a row keeps NULL until its customer's next event writes it (the formulas live in the
service, not in SQL). A NULL `develop` matches no `develop=` filter; a NULL index sorts after every stored one.

`ix_customers_index_order` serves `sort=index` pages: highest index first, ties in customer_id order, so its
key is (-index, customer_id) and one row comparison continues a page; a NULL index counts as -1, after every
stored one. `ix_customers_develop_customer_id` serves `develop=` lists in customer_id order.

Cost: the index changes with almost every event, so customer updates are no longer HOT (they were for about half
of the rows, those whose rung and tier stayed); docs/performance.md has the measurement.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("develop", sa.Text, nullable=True))
    op.add_column("customers", sa.Column("loyalty_index", sa.Numeric(5, 4), nullable=True))
    op.create_index("ix_customers_index_order", "customers", [sa.text("(-coalesce(loyalty_index, -1))"), "customer_id"])
    op.create_index(op.f("ix_customers_develop_customer_id"), "customers", ["develop", "customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_customers_develop_customer_id"), table_name="customers")
    op.drop_index("ix_customers_index_order", table_name="customers")
    op.drop_column("customers", "loyalty_index")
    op.drop_column("customers", "develop")
