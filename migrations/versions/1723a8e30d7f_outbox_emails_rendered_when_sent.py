"""outbox: emails rendered when sent

Revision ID: 1723a8e30d7f
Revises: 5bf66335fd95
Create Date: 2026-11-23 14:48:21.642466

"""
from alembic import op
import sqlalchemy as sa

import portal.db


# revision identifiers, used by Alembic.
revision = '1723a8e30d7f'
down_revision = '5bf66335fd95'
branch_labels = None
depends_on = None


RENDERED_OR_RENDERABLE = "(subject IS NOT NULL AND body_text IS NOT NULL) OR template IS NOT NULL"


def upgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('template', sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column('context', sa.JSON(), nullable=True))
        batch_op.alter_column('subject', existing_type=sa.VARCHAR(length=300), nullable=True)
        batch_op.alter_column('body_text', existing_type=sa.TEXT(), nullable=True)
        batch_op.create_check_constraint(op.f('ck_outbox_messages_rendered_or_renderable'), RENDERED_OR_RENDERABLE)


def downgrade():
    # Messages still waiting to be rendered cannot be kept without their text.
    op.execute("DELETE FROM outbox_messages WHERE subject IS NULL OR body_text IS NULL")
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_outbox_messages_rendered_or_renderable'), type_='check')
        batch_op.alter_column('body_text', existing_type=sa.TEXT(), nullable=False)
        batch_op.alter_column('subject', existing_type=sa.VARCHAR(length=300), nullable=False)
        batch_op.drop_column('context')
        batch_op.drop_column('template')
