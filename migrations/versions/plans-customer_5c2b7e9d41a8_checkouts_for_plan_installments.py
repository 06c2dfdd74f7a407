"""plans-customer: a checkout may pay one installment of a payment plan

- checkouts.plan_installment_id (nullable, RESTRICT): the installment a card payment made
  through the pay flow pays (0 is the down payment); NULL for an ordinary payment.

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


def _sqlite_triggers_naming(table):
    """SQLite: the triggers whose SQL names `table` (name, SQL). A batch rebuild renames the
    table, which SQLite refuses while a trigger names it, and drops the table's own
    triggers: they are dropped and re-created around the rebuild, unchanged
    (tests/integration/test_amounts.py checks they are all in place at head)."""
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return []
    return [
        (name, sql)
        for name, sql in bind.execute(sa.text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND sql LIKE :pattern"
        ), {"pattern": "%checkouts%"})
    ]


def _rebuild_checkouts(alter):
    triggers = _sqlite_triggers_naming('checkouts')
    for name, _sql in triggers:
        op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table('checkouts', schema=None) as batch_op:
        alter(batch_op)
    for _name, sql in triggers:
        op.execute(sql)


def upgrade():
    def alter(batch_op):
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

    _rebuild_checkouts(alter)


def downgrade():
    def alter(batch_op):
        batch_op.drop_constraint(
            batch_op.f('fk_checkouts_plan_installment_id_plan_installments'), type_='foreignkey'
        )
        batch_op.drop_index(batch_op.f('ix_checkouts_plan_installment_id'))
        batch_op.drop_column('plan_installment_id')

    _rebuild_checkouts(alter)
