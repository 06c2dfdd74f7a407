"""ledger rows are never deleted: payments, allocations, refunds and credit notes

The ledger is append-only, like the audit log: a balance is recomputed from these rows,
so deleting one changes what a customer owes with no trace. Foreign keys already refuse
a DELETE that would orphan a row (`ON DELETE RESTRICT`); these triggers refuse the plain
DELETE of a row nothing points at (an allocation, a refund allocation, a credit note, a
payment with no allocation) too, and on PostgreSQL a TRUNCATE. A correction is a new row:
a refund, a credit note, a reversing allocation.

Revision ID: f0a6d3c2b1e9
Revises: 5c2b7e9d41a8
Create Date: 2026-11-30 00:40:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'f0a6d3c2b1e9'
down_revision = '5c2b7e9d41a8'  # plans-customer's; written on e1a7b3c9d2f4
branch_labels = None
depends_on = None

TABLES = ('payments', 'payment_allocations', 'refunds', 'refund_allocations', 'credit_notes')
MESSAGE = "the ledger is append-only: {table} rows are never deleted"


def upgrade():
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        trigger = f"trg_{table}_never_deleted"
        message = MESSAGE.format(table=table)
        if dialect == 'postgresql':
            op.execute(
                f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n  RAISE EXCEPTION '{message}' USING ERRCODE = 'restrict_violation';\n"
                "END $$"
            )
            op.execute(
                f"CREATE TRIGGER {trigger} BEFORE DELETE ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION {trigger}()"
            )
            op.execute(
                f"CREATE TRIGGER {trigger}_truncate BEFORE TRUNCATE ON {table}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {trigger}()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {trigger} BEFORE DELETE ON {table}"
                f" BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def downgrade():
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        trigger = f"trg_{table}_never_deleted"
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}" if dialect == 'postgresql'
                   else f"DROP TRIGGER IF EXISTS {trigger}")
        if dialect == 'postgresql':
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}_truncate ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {trigger}()")
