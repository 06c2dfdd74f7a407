"""reports: indexes for credit sales and collections in a period

Revision ID: e1a7b3c9d2f4
Revises: c4d1e5f7a2b8
Create Date: 2026-11-29 22:47:00

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "e1a7b3c9d2f4"
down_revision = "c4d1e5f7a2b8"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_invoices_currency_issue", "invoices", ["currency", "issue_date"], unique=False
    )
    op.create_index(
        "ix_payments_currency_paid_on", "payments", ["currency", "paid_on"], unique=False
    )


def downgrade():
    op.drop_index("ix_payments_currency_paid_on", table_name="payments")
    op.drop_index("ix_invoices_currency_issue", table_name="invoices")
