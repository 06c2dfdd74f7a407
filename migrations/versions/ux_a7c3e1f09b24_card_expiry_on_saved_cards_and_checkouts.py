"""ux: card expiry on saved cards and checkouts (shown on the account page)

Revision ID: a7c3e1f09b24
Revises: b7d2e4f1a9c3
Create Date: 2026-11-29 21:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c3e1f09b24'
down_revision = "b7d2e4f1a9c3"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('card_exp_month', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('card_exp_year', sa.Integer(), nullable=True))

    with op.batch_alter_table('saved_cards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('exp_month', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('exp_year', sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            op.f('ck_saved_cards_exp_month_valid'), 'exp_month IS NULL OR exp_month BETWEEN 1 AND 12'
        )


def downgrade():
    with op.batch_alter_table('saved_cards', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_saved_cards_exp_month_valid'), type_='check')
        batch_op.drop_column('exp_year')
        batch_op.drop_column('exp_month')

    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.drop_column('card_exp_year')
        batch_op.drop_column('card_exp_month')
