"""plans-customer: a checkout may pay one installment of a payment plan

Revision ID: 5c2b7e9d41a8
Revises: 03e2d64303f3
Create Date: 2026-11-30 00:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c2b7e9d41a8'
down_revision = '03e2d64303f3'  # plans-domain's (plan_installments); was e1a7b3c9d2f4
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan_installment_id', sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f('ix_checkouts_plan_installment_id'), ['plan_installment_id'], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_checkouts_plan_installment_id_plan_installments'),
            'plan_installments',
            ['plan_installment_id'],
            ['id'],
            ondelete='RESTRICT',
        )


def downgrade():
    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f('fk_checkouts_plan_installment_id_plan_installments'), type_='foreignkey'
        )
        batch_op.drop_index(batch_op.f('ix_checkouts_plan_installment_id'))
        batch_op.drop_column('plan_installment_id')
