"""plans: policy versions, payment plans, covered invoices, installments, charge attempts

Besides the tables (portal/plans/models.py), triggers on SQLite and PostgreSQL alike:
- a plan's installments, and the amounts of invoices it covers, never sum above its
  total; a covered amount is never above the invoice's total;
- a charge attempt never asks more than its installment;
- a plan keeps its customer, currency and total; installments, covered invoices and
  attempts keep their plan, invoice and installment.
The exact sum (installments == total once active) is the service's, checked in its
tests: rows are inserted one by one, so no row trigger can see the finished schedule.

Seeds version 1 of the `standard` segment's policy with the README's defaults.

Revision ID: 03e2d64303f3
Revises: d8b90cda7a12
Create Date: 2026-11-30 00:31:07.095189

"""
from alembic import op
import sqlalchemy as sa

import portal.db

from datetime import UTC, datetime


# revision identifiers, used by Alembic.
revision = '03e2d64303f3'
down_revision = 'd8b90cda7a12'  # disputes-core's (merged); was e1a7b3c9d2f4
branch_labels = None
depends_on = None

# The README's defaults for segment `standard` (portal/plans/policy.py PlanPolicy()).
STANDARD_LIMITS = {
    "max_installments": 6,
    "frequencies": ["biweekly", "monthly", "weekly"],
    "max_duration_months": 6,
    "min_installment": {"0": 2000, "2": 2000, "3": 20000},
    "min_down_payment_percent": 10,
    "max_first_payment_days": 30,
    "max_total": {"0": 1000000, "2": 1000000, "3": 10000000},
    "autopay_required": False,
    "cooling_off_days": 90,
}

_SUM = "(SELECT COALESCE(SUM(amount_minor), 0) FROM {table} WHERE plan_id = NEW.plan_id)"
_PLAN_TOTAL = "(SELECT total_minor FROM payment_plans WHERE id = NEW.plan_id)"

# (name, table, timing, events, condition, message), as in fixes_c4e8a2b61d07.
CHECKS = (
    ('plan_installments_within_total', 'plan_installments', 'AFTER', ('INSERT', 'UPDATE'),
     _SUM.format(table="plan_installments") + " > " + _PLAN_TOTAL,
     "a plan's installments sum above its total"),
    ('plan_invoices_within_total', 'plan_invoices', 'AFTER', ('INSERT', 'UPDATE'),
     _SUM.format(table="plan_invoices") + " > " + _PLAN_TOTAL,
     "a plan covers more of its invoices than its total"),
    ('plan_invoices_within_invoice', 'plan_invoices', 'AFTER', ('INSERT', 'UPDATE'),
     "NEW.amount_minor > (SELECT total_minor FROM invoices WHERE id = NEW.invoice_id)",
     "a plan covers more of an invoice than its total"),
    ('installment_attempts_within_installment', 'installment_attempts', 'AFTER',
     ('INSERT', 'UPDATE'),
     "NEW.amount_minor > (SELECT amount_minor FROM plan_installments"
     " WHERE id = NEW.installment_id)",
     "a charge asks more than its installment"),
    ('payment_plans_terms_fixed', 'payment_plans', 'BEFORE', ('UPDATE',),
     "NEW.total_minor <> OLD.total_minor OR NEW.customer_id <> OLD.customer_id"
     " OR NEW.currency <> OLD.currency",
     "a plan keeps its customer, currency and total"),
    ('plan_installments_links_fixed', 'plan_installments', 'BEFORE', ('UPDATE',),
     "NEW.plan_id <> OLD.plan_id",
     "an installment keeps its plan"),
    ('plan_invoices_links_fixed', 'plan_invoices', 'BEFORE', ('UPDATE',),
     "NEW.plan_id <> OLD.plan_id OR NEW.invoice_id <> OLD.invoice_id",
     "a covered invoice keeps its plan and invoice"),
    ('installment_attempts_links_fixed', 'installment_attempts', 'BEFORE', ('UPDATE',),
     "NEW.installment_id <> OLD.installment_id",
     "a charge attempt keeps its installment"),
)

# PostgreSQL, READ COMMITTED: lock the plan first so that two transactions adding to it
# serialise and the second's sum sees the first.
_PG_LOCKS = {
    'plan_installments_within_total':
        "PERFORM 1 FROM payment_plans WHERE id = NEW.plan_id FOR NO KEY UPDATE;",
    'plan_invoices_within_total':
        "PERFORM 1 FROM payment_plans WHERE id = NEW.plan_id FOR NO KEY UPDATE;",
}


def _quoted(message):
    return message.replace("'", "''")


def _create_triggers():
    dialect = op.get_bind().dialect.name
    for name, table, timing, events, condition, message in CHECKS:
        trigger = f"trg_{name}"
        if dialect == 'postgresql':
            op.execute(
                f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n  {_PG_LOCKS.get(name, '')}\n"
                f"  IF {condition} THEN\n"
                f"    RAISE EXCEPTION '{_quoted(message)}' USING ERRCODE = 'check_violation';\n"
                "  END IF;\n  RETURN NEW;\nEND $$"
            )
            op.execute(
                f"CREATE TRIGGER {trigger} {timing} {' OR '.join(events)} ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION {trigger}()"
            )
        else:
            for event in events:
                op.execute(
                    f"CREATE TRIGGER {trigger}_{event.lower()} {timing} {event} ON {table}"
                    f" FOR EACH ROW WHEN {condition}"
                    f" BEGIN SELECT RAISE(ABORT, '{_quoted(message)}'); END"
                )


def _drop_triggers():
    dialect = op.get_bind().dialect.name
    for name, table, _timing, events, _condition, _message in CHECKS:
        trigger = f"trg_{name}"
        if dialect == 'postgresql':
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {trigger}()")
        else:
            for event in events:
                op.execute(f"DROP TRIGGER IF EXISTS {trigger}_{event.lower()}")


def upgrade():
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table('plan_policy_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('segment', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('limits', sa.JSON(), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.CheckConstraint('length(segment) > 0', name=op.f('ck_plan_policy_versions_segment_not_empty')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_plan_policy_versions_version_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_policy_versions')),
    sa.UniqueConstraint('segment', 'version', name='uq_plan_policy_versions_segment_version')
    )
    op.create_table('payment_plans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('policy_version_id', sa.Integer(), nullable=False),
    sa.Column('total_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('down_payment_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('frequency', sa.String(length=16), nullable=False),
    sa.Column('installment_count', sa.SmallInteger(), nullable=False),
    sa.Column('first_payment_date', sa.Date(), nullable=False),
    sa.Column('proposed_on', sa.Date(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('autopay', sa.Boolean(), nullable=False),
    sa.Column('saved_card_id', sa.Integer(), nullable=True),
    sa.Column('breaches', sa.JSON(), nullable=False),
    sa.Column('proposed_terms', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('decided_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=False),
    sa.Column('countered_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('activated_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('activated_on', sa.Date(), nullable=True),
    sa.Column('ended_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.Text(), nullable=False),
    sa.Column('cooling_off_until', sa.Date(), nullable=True),
    sa.Column('followed_up_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("frequency IN ('weekly', 'biweekly', 'monthly')", name=op.f('ck_payment_plans_frequency_known')),
    sa.CheckConstraint("source IN ('customer', 'staff')", name=op.f('ck_payment_plans_source_known')),
    sa.CheckConstraint("status <> 'broken' OR cooling_off_until IS NOT NULL", name=op.f('ck_payment_plans_cooling_off_when_broken')),
    sa.CheckConstraint("status IN ('pending', 'countered', 'active') OR ended_at IS NOT NULL", name=op.f('ck_payment_plans_ended_when_over')),
    sa.CheckConstraint("status IN ('pending', 'countered', 'active', 'completed', 'broken', 'cancelled', 'declined')", name=op.f('ck_payment_plans_status_known')),
    sa.CheckConstraint("status NOT IN ('active', 'completed', 'broken') OR activated_at IS NOT NULL", name=op.f('ck_payment_plans_activated_when_agreed')),
    sa.CheckConstraint('down_payment_minor >= 0 AND down_payment_minor < total_minor', name=op.f('ck_payment_plans_down_payment_below_total')),
    sa.CheckConstraint('first_payment_date > proposed_on', name=op.f('ck_payment_plans_first_payment_after_proposal')),
    sa.CheckConstraint('installment_count >= 1', name=op.f('ck_payment_plans_installments_positive')),
    sa.CheckConstraint('length(currency) = 3', name=op.f('ck_payment_plans_currency_iso')),
    sa.CheckConstraint('total_minor > 0', name=op.f('ck_payment_plans_total_positive')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_payment_plans_customer_id_customers'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['policy_version_id'], ['plan_policy_versions.id'], name=op.f('fk_payment_plans_policy_version_id_plan_policy_versions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['saved_card_id'], ['saved_cards.id'], name=op.f('fk_payment_plans_saved_card_id_saved_cards'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_plans'))
    )
    with op.batch_alter_table('payment_plans', schema=None) as batch_op:
        batch_op.create_index('ix_payment_plans_customer_status', ['customer_id', 'status'], unique=False)
        batch_op.create_index('ix_payment_plans_status_created', ['status', 'created_at'], unique=False)

    op.create_table('plan_installments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.SmallInteger(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('paid_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('paid_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reminder_sent_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(status = 'paid') = (paid_minor = amount_minor AND paid_at IS NOT NULL)", name=op.f('ck_plan_installments_paid_when_paid_in_full')),
    sa.CheckConstraint("status IN ('scheduled', 'paid', 'cancelled')", name=op.f('ck_plan_installments_status_known')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_plan_installments_amount_positive')),
    sa.CheckConstraint('number >= 0', name=op.f('ck_plan_installments_number_not_negative')),
    sa.CheckConstraint('paid_minor >= 0 AND paid_minor <= amount_minor', name=op.f('ck_plan_installments_paid_within_amount')),
    sa.ForeignKeyConstraint(['plan_id'], ['payment_plans.id'], name=op.f('fk_plan_installments_plan_id_payment_plans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_installments')),
    sa.UniqueConstraint('plan_id', 'number', name='uq_plan_installments_number')
    )
    with op.batch_alter_table('plan_installments', schema=None) as batch_op:
        batch_op.create_index('ix_plan_installments_status_due', ['status', 'due_date'], unique=False)

    op.create_table('plan_invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('paid_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('open_invoice_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_plan_invoices_amount_positive')),
    sa.CheckConstraint('open_invoice_id IS NULL OR open_invoice_id = invoice_id', name=op.f('ck_plan_invoices_open_slot_is_invoice')),
    sa.CheckConstraint('paid_minor >= 0 AND paid_minor <= amount_minor', name=op.f('ck_plan_invoices_paid_within_amount')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_plan_invoices_invoice_id_invoices'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['open_invoice_id'], ['invoices.id'], name=op.f('fk_plan_invoices_open_invoice_id_invoices'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['plan_id'], ['payment_plans.id'], name=op.f('fk_plan_invoices_plan_id_payment_plans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_invoices')),
    sa.UniqueConstraint('open_invoice_id', name=op.f('uq_plan_invoices_open_invoice_id')),
    sa.UniqueConstraint('plan_id', 'invoice_id', name='uq_plan_invoices_pair')
    )
    with op.batch_alter_table('plan_invoices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plan_invoices_invoice_id'), ['invoice_id'], unique=False)

    op.create_table('installment_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('installment_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.SmallInteger(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('amount_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=64), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('processing', 'requires_action', 'succeeded', 'failed', 'canceled')", name=op.f('ck_installment_attempts_status_known')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_installment_attempts_amount_positive')),
    sa.CheckConstraint('attempt >= 1', name=op.f('ck_installment_attempts_attempt_positive')),
    sa.CheckConstraint('length(currency) = 3', name=op.f('ck_installment_attempts_currency_iso')),
    sa.ForeignKeyConstraint(['installment_id'], ['plan_installments.id'], name=op.f('fk_installment_attempts_installment_id_plan_installments'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_installment_attempts')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_installment_attempts_idempotency_key')),
    sa.UniqueConstraint('installment_id', 'attempt', name='uq_installment_attempts_number'),
    sa.UniqueConstraint('payment_intent_id', name=op.f('uq_installment_attempts_payment_intent_id'))
    )
    with op.batch_alter_table('installment_attempts', schema=None) as batch_op:
        batch_op.create_index('uq_installment_attempts_one_holding', ['installment_id'], unique=True, postgresql_where=sa.text("status IN ('processing', 'requires_action', 'succeeded')"), sqlite_where=sa.text("status IN ('processing', 'requires_action', 'succeeded')"))

    # ### end Alembic commands ###
    _create_triggers()
    versions = sa.table(
        "plan_policy_versions",
        sa.column("segment", sa.String),
        sa.column("version", sa.Integer),
        sa.column("limits", sa.JSON),
        sa.column("created_at", portal.db.UTCDateTime(timezone=True)),
        sa.column("created_by", sa.String),
    )
    op.bulk_insert(
        versions,
        [
            {
                "segment": "standard",
                "version": 1,
                "limits": STANDARD_LIMITS,
                "created_at": datetime.now(UTC),
                "created_by": "system",
            }
        ],
    )


def downgrade():
    _drop_triggers()
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table('installment_attempts', schema=None) as batch_op:
        batch_op.drop_index('uq_installment_attempts_one_holding', postgresql_where=sa.text("status IN ('processing', 'requires_action', 'succeeded')"), sqlite_where=sa.text("status IN ('processing', 'requires_action', 'succeeded')"))

    op.drop_table('installment_attempts')
    with op.batch_alter_table('plan_invoices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plan_invoices_invoice_id'))

    op.drop_table('plan_invoices')
    with op.batch_alter_table('plan_installments', schema=None) as batch_op:
        batch_op.drop_index('ix_plan_installments_status_due')

    op.drop_table('plan_installments')
    with op.batch_alter_table('payment_plans', schema=None) as batch_op:
        batch_op.drop_index('ix_payment_plans_status_created')
        batch_op.drop_index('ix_payment_plans_customer_status')

    op.drop_table('payment_plans')
    op.drop_table('plan_policy_versions')
    # ### end Alembic commands ###
