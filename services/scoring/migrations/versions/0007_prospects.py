"""first_seen_at indexed: the funnel's cohorts and the `potential` entries of the flows

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10

`GET /v1/funnel` groups customers by the month or week of `first_seen_at`, and `GET /v1/flows` counts the
customers first seen in each bucket as the entries of `potential` (contract section 12); both bound the range
on `first_seen_at` and find its ends with min/max, which the index answers without reading the table.
Prospects themselves need no new table: they are customers on `potential`, and their import claims its rows in
`processed_events` like any event.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_customers_first_seen_at"), "customers", ["first_seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_customers_first_seen_at"), table_name="customers")
