"""webhook inbox: pending until processed, with a payload

Revision ID: a1ccac4b4ba0
Revises: 1723a8e30d7f
Create Date: 2026-11-23 15:59:11.776153

"""
from alembic import op
import sqlalchemy as sa

import portal.db


# revision identifiers, used by Alembic.
revision = 'a1ccac4b4ba0'
down_revision = '1723a8e30d7f'
branch_labels = None
depends_on = None


PENDING_UNTIL_PROCESSED = "(outcome = 'pending') = (processed_at IS NULL)"
PENDING_HAS_PAYLOAD = "outcome <> 'pending' OR payload IS NOT NULL"


def upgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_webhook_events_pending_until_processed'), PENDING_UNTIL_PROCESSED)
        batch_op.create_check_constraint(op.f('ck_webhook_events_pending_has_payload'), PENDING_HAS_PAYLOAD)


def downgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_webhook_events_pending_has_payload'), type_='check')
        batch_op.drop_constraint(op.f('ck_webhook_events_pending_until_processed'), type_='check')
