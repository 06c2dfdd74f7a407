"""webhook inbox: events stored on receipt, applied by the worker

Revision ID: 5bf66335fd95
Revises: 8e5f18b29e4a
Create Date: 2026-11-23 14:41:00.844146

"""
from alembic import op
import sqlalchemy as sa

import portal.db


# revision identifiers, used by Alembic.
revision = '5bf66335fd95'
down_revision = '8e5f18b29e4a'
branch_labels = None
depends_on = None


OUTCOMES_BEFORE = "outcome IN ('applied', 'ignored', 'rejected')"
OUTCOMES = "outcome IN ('pending', 'applied', 'ignored', 'rejected', 'failed')"
PENDING = sa.text("outcome = 'pending'")


def upgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('last_error', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('processed_at', portal.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(op.f('ck_webhook_events_outcome_known'), type_='check')
        batch_op.create_check_constraint(op.f('ck_webhook_events_outcome_known'), OUTCOMES)
        batch_op.create_check_constraint(op.f('ck_webhook_events_attempts_not_negative'), 'attempts >= 0')
        batch_op.create_index('ix_webhook_events_pending', ['id'], unique=False, postgresql_where=PENDING, sqlite_where=PENDING)
    # Events stored before the inbox were applied on receipt.
    op.execute("UPDATE webhook_events SET processed_at = received_at, attempts = 1")


def downgrade():
    # Pending events would be lost: apply them (`portal jobs run --only apply_webhooks`) first.
    op.execute("DELETE FROM webhook_events WHERE outcome IN ('pending', 'failed')")
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_pending', postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.drop_constraint(op.f('ck_webhook_events_attempts_not_negative'), type_='check')
        batch_op.drop_constraint(op.f('ck_webhook_events_outcome_known'), type_='check')
        batch_op.create_check_constraint(op.f('ck_webhook_events_outcome_known'), OUTCOMES_BEFORE)
        batch_op.drop_column('processed_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('attempts')
        batch_op.drop_column('payload')
