"""outbox: an attachment named by the message, made when it is sent

The plan activation email carries the agreement PDF. The outbox stores only what to
attach ("plan_agreement:12"); the runner renders the file in the message's locale as it
sends, like the portal link, so no document is ever stored in the outbox.

Revision ID: b3e5a7c9d1f2
Revises: f0a6d3c2b1e9
Create Date: 2026-11-30 02:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b3e5a7c9d1f2'
down_revision = 'f0a6d3c2b1e9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attachment', sa.String(length=60), nullable=True))


def downgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_column('attachment')
