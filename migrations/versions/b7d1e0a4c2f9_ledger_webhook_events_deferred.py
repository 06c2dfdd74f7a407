"""ledger: webhook events about a payment not recorded yet are deferred, not ignored

Revision ID: b7d1e0a4c2f9
Revises: 5ec5d4c96c47
Create Date: 2026-11-29 21:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7d1e0a4c2f9'
down_revision = '5ec5d4c96c47'
branch_labels = None
depends_on = None


OUTCOMES_BEFORE = "outcome IN ('pending', 'applied', 'ignored', 'rejected', 'failed')"
OUTCOMES = "outcome IN ('pending', 'applied', 'ignored', 'rejected', 'failed', 'deferred')"
PENDING_UNTIL_PROCESSED_BEFORE = "(outcome = 'pending') = (processed_at IS NULL)"
PENDING_UNTIL_PROCESSED = "(outcome IN ('pending', 'deferred')) = (processed_at IS NULL)"
PENDING_HAS_PAYLOAD_BEFORE = "outcome <> 'pending' OR payload IS NOT NULL"
PENDING_HAS_PAYLOAD = "outcome NOT IN ('pending', 'deferred') OR payload IS NOT NULL"
DEFERRED = sa.text("outcome = 'deferred'")


def _replace_checks(outcomes, until_processed, has_payload):
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_webhook_events_outcome_known'), type_='check')
        batch_op.drop_constraint(op.f('ck_webhook_events_pending_until_processed'), type_='check')
        batch_op.drop_constraint(op.f('ck_webhook_events_pending_has_payload'), type_='check')
        batch_op.create_check_constraint(op.f('ck_webhook_events_outcome_known'), outcomes)
        batch_op.create_check_constraint(op.f('ck_webhook_events_pending_until_processed'), until_processed)
        batch_op.create_check_constraint(op.f('ck_webhook_events_pending_has_payload'), has_payload)


def upgrade():
    _replace_checks(OUTCOMES, PENDING_UNTIL_PROCESSED, PENDING_HAS_PAYLOAD)
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_events_deferred', ['payment_intent_id'], unique=False, postgresql_where=DEFERRED, sqlite_where=DEFERRED)


def downgrade():
    # A deferred event becomes pending again: the worker applies it, or defers it no more
    # and ignores it as before (its payment still unknown).
    op.execute("UPDATE webhook_events SET outcome = 'pending' WHERE outcome = 'deferred'")
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_deferred', postgresql_where=DEFERRED, sqlite_where=DEFERRED)
    _replace_checks(OUTCOMES_BEFORE, PENDING_UNTIL_PROCESSED_BEFORE, PENDING_HAS_PAYLOAD_BEFORE)
