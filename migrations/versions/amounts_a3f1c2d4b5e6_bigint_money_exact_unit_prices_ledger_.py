"""amounts: 64-bit money, exact unit prices, ledger rows the database protects

- Money columns (and quantities) become BIGINT on PostgreSQL; SQLite's INTEGER is
  already 64-bit (portal.db.MinorUnits), so its parent tables are not rebuilt.
- invoice_lines.unit_price_minor (rounded) becomes unit_price_units + unit_price_scale:
  the price exactly as given (money.UnitPrice). Existing prices keep their value.
- credit_notes.kind: 'credit' or 'small_balance_write_off'.
- Allocations, refund allocations and audit rows are never deleted by a cascade (RESTRICT).
- Triggers (both databases): every ledger row shares its customer's currency; a payment's
  allocations and refunds never exceed it; an invoice's net allocations never exceed its
  total; a refund takes back from an invoice at most what its payment put there.

Revision ID: a3f1c2d4b5e6
Revises: a7c3e1f09b24
Create Date: 2026-11-29 21:50:00

"""
from alembic import op
import sqlalchemy as sa

from babel.numbers import get_currency_precision


# revision identifiers, used by Alembic.
revision = 'a3f1c2d4b5e6'
down_revision = 'a7c3e1f09b24'
branch_labels = None
depends_on = None


MONEY_COLUMNS = (
    ('invoices', 'total_minor'),
    ('invoice_lines', 'quantity_milli'),
    ('invoice_lines', 'tax_minor'),
    ('invoice_lines', 'amount_minor'),
    ('credit_notes', 'amount_minor'),
    ('payments', 'amount_minor'),
    ('payment_allocations', 'amount_minor'),
    ('refunds', 'amount_minor'),
    ('refund_allocations', 'amount_minor'),
    ('checkouts', 'amount_minor'),
)

_SAME_CURRENCY_AS_CUSTOMER = "NEW.currency <> (SELECT currency FROM customers WHERE id = NEW.customer_id)"

# (name, table, timing, condition, message). The condition reads NEW only, in SQL that
# SQLite and PostgreSQL both speak; a NULL (a missing parent) is the foreign key's job.
CHECKS = (
    ('invoices_currency', 'invoices', 'BEFORE', _SAME_CURRENCY_AS_CUSTOMER,
     "an invoice's currency must be its customer's"),
    ('payments_currency', 'payments', 'BEFORE', _SAME_CURRENCY_AS_CUSTOMER,
     "a payment's currency must be its customer's"),
    ('checkouts_currency', 'checkouts', 'BEFORE', _SAME_CURRENCY_AS_CUSTOMER,
     "a checkout's currency must be its customer's"),
    ('credit_notes_currency', 'credit_notes', 'BEFORE',
     "NEW.currency <> (SELECT currency FROM invoices WHERE id = NEW.invoice_id)",
     "a credit note's currency must be its invoice's"),
    ('refunds_currency', 'refunds', 'BEFORE',
     "NEW.currency <> (SELECT currency FROM payments WHERE id = NEW.payment_id)",
     "a refund's currency must be its payment's"),
    ('payment_allocations_currency', 'payment_allocations', 'BEFORE',
     "(SELECT currency FROM payments WHERE id = NEW.payment_id)"
     " <> (SELECT currency FROM invoices WHERE id = NEW.invoice_id)",
     "a payment is allocated only to invoices in its currency"),
    ('refund_allocations_currency', 'refund_allocations', 'BEFORE',
     "(SELECT currency FROM refunds WHERE id = NEW.refund_id)"
     " <> (SELECT currency FROM invoices WHERE id = NEW.invoice_id)",
     "a refund is taken back only from invoices in its currency"),
    ('customers_currency', 'customers', 'BEFORE',
     "EXISTS (SELECT 1 FROM invoices WHERE customer_id = NEW.id AND currency <> NEW.currency)"
     " OR EXISTS (SELECT 1 FROM payments WHERE customer_id = NEW.id AND currency <> NEW.currency)",
     "a customer with invoices or payments keeps their currency"),
    # AFTER: the sums include the row just written.
    ('payment_allocations_within_payment', 'payment_allocations', 'AFTER',
     "(SELECT SUM(amount_minor) FROM payment_allocations WHERE payment_id = NEW.payment_id)"
     " > (SELECT amount_minor FROM payments WHERE id = NEW.payment_id)",
     "a payment's allocations exceed the payment"),
    ('payment_allocations_within_invoice', 'payment_allocations', 'AFTER',
     "(SELECT SUM(amount_minor) FROM payment_allocations WHERE invoice_id = NEW.invoice_id)"
     " - (SELECT COALESCE(SUM(amount_minor), 0) FROM refund_allocations"
     " WHERE invoice_id = NEW.invoice_id)"
     " > (SELECT total_minor FROM invoices WHERE id = NEW.invoice_id)",
     "an invoice's allocations exceed its total"),
    ('invoices_total_covers_allocations', 'invoices', 'AFTER',
     "(SELECT COALESCE(SUM(amount_minor), 0) FROM payment_allocations WHERE invoice_id = NEW.id)"
     " - (SELECT COALESCE(SUM(amount_minor), 0) FROM refund_allocations"
     " WHERE invoice_id = NEW.id) > NEW.total_minor",
     "an invoice's total is less than what is allocated to it"),
    ('refunds_within_payment', 'refunds', 'AFTER',
     "(SELECT SUM(amount_minor) FROM refunds WHERE payment_id = NEW.payment_id)"
     " > (SELECT amount_minor FROM payments WHERE id = NEW.payment_id)",
     "a payment's refunds exceed the payment"),
    # What a refund takes back from an invoice, its payment had put there.
    ('refund_allocations_within_allocation', 'refund_allocations', 'AFTER',
     "(SELECT SUM(r.amount_minor) FROM refund_allocations r JOIN refunds f ON f.id = r.refund_id"
     " WHERE r.invoice_id = NEW.invoice_id"
     " AND f.payment_id = (SELECT payment_id FROM refunds WHERE id = NEW.refund_id))"
     " > COALESCE((SELECT a.amount_minor FROM payment_allocations a"
     " WHERE a.invoice_id = NEW.invoice_id"
     " AND a.payment_id = (SELECT payment_id FROM refunds WHERE id = NEW.refund_id)), 0)",
     "a refund takes back more from an invoice than its payment put there"),
)

# PostgreSQL, READ COMMITTED: two transactions allocating to one invoice would each miss
# the other's row. Locking the invoice first (FOR NO KEY UPDATE, which foreign-key checks'
# KEY SHARE locks do not wait for) makes the second wait, and its sum then sees the first.
_PG_LOCKS = {
    'payment_allocations_within_invoice':
        "PERFORM 1 FROM invoices WHERE id = NEW.invoice_id FOR NO KEY UPDATE;",
    'payment_allocations_within_payment':
        "PERFORM 1 FROM payments WHERE id = NEW.payment_id FOR NO KEY UPDATE;",
}


def _create_checks(dialect):
    for name, table, timing, condition, message in CHECKS:
        trigger = f"trg_{name}"
        if dialect == 'postgresql':
            op.execute(
                f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n  {_PG_LOCKS.get(name, '')}\n"
                f"  IF {condition} THEN\n"
                f"    RAISE EXCEPTION '{message.replace(chr(39), chr(39) * 2)}'"
                " USING ERRCODE = 'check_violation';\n"
                "  END IF;\n  RETURN NEW;\nEND $$"
            )
            op.execute(
                f"CREATE TRIGGER {trigger} {timing} INSERT OR UPDATE ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION {trigger}()"
            )
        else:
            # SQLite: one event per trigger; RAISE(ABORT) is a constraint error.
            for event in ('INSERT', 'UPDATE'):
                op.execute(
                    f"CREATE TRIGGER {trigger}_{event.lower()} {timing} {event} ON {table}"
                    f" FOR EACH ROW WHEN {condition}"
                    f" BEGIN SELECT RAISE(ABORT, '{message.replace(chr(39), chr(39) * 2)}'); END"
                )


def _drop_checks(dialect):
    for name, table, _timing, _condition, _message in CHECKS:
        trigger = f"trg_{name}"
        if dialect == 'postgresql':
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {trigger}()")
        else:
            for event in ('insert', 'update'):
                op.execute(f"DROP TRIGGER IF EXISTS {trigger}_{event}")


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        for table, column in MONEY_COLUMNS:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_nullable=False)

    # Unit prices as given: the old rounded price is exact at the currency's scale.
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unit_price_units', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('unit_price_scale', sa.SmallInteger(), nullable=True))
    bind = op.get_bind()
    op.execute("UPDATE invoice_lines SET unit_price_units = unit_price_minor")
    for (currency,) in bind.execute(sa.text("SELECT DISTINCT currency FROM invoices")).all():
        bind.execute(
            sa.text(
                "UPDATE invoice_lines SET unit_price_scale = :scale WHERE invoice_id IN"
                " (SELECT id FROM invoices WHERE currency = :currency)"
            ),
            {"scale": int(get_currency_precision(currency)), "currency": currency},
        )
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.alter_column('unit_price_units', existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False)
        batch_op.alter_column('unit_price_scale', existing_type=sa.SmallInteger(), nullable=False)
        batch_op.drop_constraint(batch_op.f('ck_invoice_lines_unit_price_not_negative'), type_='check')
        batch_op.drop_column('unit_price_minor')
        batch_op.create_check_constraint(batch_op.f('ck_invoice_lines_unit_price_not_negative'), 'unit_price_units >= 0')
        batch_op.create_check_constraint(batch_op.f('ck_invoice_lines_unit_price_scale_known'), 'unit_price_scale BETWEEN 0 AND 6')

    with op.batch_alter_table('credit_notes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=32), server_default='credit', nullable=False))
        batch_op.create_check_constraint(batch_op.f('ck_credit_notes_kind_known'), "kind IN ('credit', 'small_balance_write_off')")

    # Ledger and audit rows are never deleted by a cascade.
    for table, column, referred, old in (
        ('payment_allocations', 'payment_id', 'payments', 'CASCADE'),
        ('refund_allocations', 'refund_id', 'refunds', 'CASCADE'),
        ('audit_events', 'customer_id', 'customers', 'SET NULL'),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            name = batch_op.f(f'fk_{table}_{column}_{referred}')
            batch_op.drop_constraint(name, type_='foreignkey')
            batch_op.create_foreign_key(name, referred, [column], ['id'], ondelete='RESTRICT')

    _refuse_mixed_currencies(bind)
    _create_checks(dialect)


def _refuse_mixed_currencies(bind):
    """Existing rows the new triggers would refuse: stop, naming them, rather than keep a
    ledger that mixes currencies (the pages would fail on it). Fix them, then upgrade."""
    rows = bind.execute(
        sa.text(
            "SELECT 'invoice ' || i.number FROM invoices i JOIN customers c"
            " ON c.id = i.customer_id WHERE i.currency <> c.currency"
            " UNION ALL SELECT 'payment ' || p.reference FROM payments p JOIN customers c"
            " ON c.id = p.customer_id WHERE p.currency <> c.currency"
            " UNION ALL SELECT 'credit note ' || n.reference FROM credit_notes n JOIN invoices i"
            " ON i.id = n.invoice_id WHERE n.currency <> i.currency"
        )
    ).scalars().all()
    if rows:
        raise RuntimeError(
            "these rows are not in their customer's currency; correct them before upgrading: "
            + ", ".join(rows[:20])
        )


def downgrade():
    dialect = op.get_bind().dialect.name
    _drop_checks(dialect)
    for table, column, referred, old in (
        ('payment_allocations', 'payment_id', 'payments', 'CASCADE'),
        ('refund_allocations', 'refund_id', 'refunds', 'CASCADE'),
        ('audit_events', 'customer_id', 'customers', 'SET NULL'),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            name = batch_op.f(f'fk_{table}_{column}_{referred}')
            batch_op.drop_constraint(name, type_='foreignkey')
            batch_op.create_foreign_key(name, referred, [column], ['id'], ondelete=old)

    with op.batch_alter_table('credit_notes', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_credit_notes_kind_known'), type_='check')
        batch_op.drop_column('kind')

    # Back to a price rounded half-up to the currency's minor unit.
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unit_price_minor', sa.Integer(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT l.id, l.unit_price_units, l.unit_price_scale, i.currency"
            " FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        )
    ).all()
    from decimal import ROUND_HALF_UP, Decimal

    for line_id, units, scale, currency in rows:
        exponent = int(get_currency_precision(currency))
        minor = (Decimal(units).scaleb(exponent - scale)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        bind.execute(
            sa.text("UPDATE invoice_lines SET unit_price_minor = :minor WHERE id = :id"),
            {"minor": int(minor), "id": line_id},
        )
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.alter_column('unit_price_minor', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint(batch_op.f('ck_invoice_lines_unit_price_scale_known'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_invoice_lines_unit_price_not_negative'), type_='check')
        batch_op.drop_column('unit_price_scale')
        batch_op.drop_column('unit_price_units')
        batch_op.create_check_constraint(batch_op.f('ck_invoice_lines_unit_price_not_negative'), 'unit_price_minor >= 0')

    if dialect == 'postgresql':
        for table, column in MONEY_COLUMNS:
            op.alter_column(table, column, type_=sa.Integer(), existing_nullable=False)
