"""fixes: the ledger's guards also hold for UPDATEs; no working opt-out link at rest

The amounts migration (a3f1c2d4b5e6) checks the row being written: an allocation against
its payment and invoice, a refund against its payment. An UPDATE of the other side went
unchecked: `UPDATE payments SET amount_minor = 1` while 2.00 was allocated from it. These
triggers check every side of each rule, and keep a ledger row's links fixed:

- a payment's amount covers its allocations and its refunds;
- a refund's amount covers what it takes back from invoices (refund_allocations);
- an invoice's credit notes plus its net allocations never exceed its total (on credit
  notes, allocations and invoices alike);
- a payment allocation covers what refunds of that payment took back from that invoice;
- allocations, refund allocations, refunds, credit notes and payments never move to
  another payment, refund, invoice or customer; an invoice with ledger rows keeps its
  customer.

Stored emails' opt-out links (outbox_messages.unsubscribe_url and the bodies) are
replaced by the placeholder the portal now stores (the link is made when sent,
notifications.services.OPT_OUT_LINK_SLOT).

No table is rebuilt here, so no earlier trigger is dropped
(tests/integration/test_amounts.py::test_every_ledger_trigger_is_in_place_at_head).

Revision ID: c4e8a2b61d07
Revises: c4e8a1f2d903
Create Date: 2026-11-29 22:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4e8a2b61d07'
down_revision = 'c4e8a1f2d903'
branch_labels = None
depends_on = None


_NET_ALLOCATED = (
    "(SELECT COALESCE(SUM(amount_minor), 0) FROM payment_allocations WHERE invoice_id = {inv})"
    " - (SELECT COALESCE(SUM(amount_minor), 0) FROM refund_allocations WHERE invoice_id = {inv})"
    " + (SELECT COALESCE(SUM(amount_minor), 0) FROM credit_notes WHERE invoice_id = {inv})"
)

# What refunds of payment {pay} took back from invoice {inv}.
_REFUNDED_FROM = (
    "(SELECT COALESCE(SUM(r.amount_minor), 0) FROM refund_allocations r"
    " JOIN refunds f ON f.id = r.refund_id"
    " WHERE r.invoice_id = {inv} AND f.payment_id = {pay})"
)

# (name, table, timing, events, condition, message). Conditions read NEW (and OLD for
# UPDATE-only triggers) in SQL that SQLite and PostgreSQL both speak.
CHECKS = (
    ('payments_cover_allocations', 'payments', 'AFTER', ('UPDATE',),
     "(SELECT COALESCE(SUM(amount_minor), 0) FROM payment_allocations"
     " WHERE payment_id = NEW.id) > NEW.amount_minor",
     "a payment's amount is less than what is allocated from it"),
    ('payments_cover_refunds', 'payments', 'AFTER', ('UPDATE',),
     "(SELECT COALESCE(SUM(amount_minor), 0) FROM refunds WHERE payment_id = NEW.id)"
     " > NEW.amount_minor",
     "a payment's amount is less than what is refunded from it"),
    ('refund_allocations_within_refund', 'refund_allocations', 'AFTER', ('INSERT', 'UPDATE'),
     "(SELECT SUM(amount_minor) FROM refund_allocations WHERE refund_id = NEW.refund_id)"
     " > (SELECT amount_minor FROM refunds WHERE id = NEW.refund_id)",
     "a refund takes back more from invoices than the refund"),
    ('refunds_cover_allocations', 'refunds', 'AFTER', ('UPDATE',),
     "(SELECT COALESCE(SUM(amount_minor), 0) FROM refund_allocations WHERE refund_id = NEW.id)"
     " > NEW.amount_minor",
     "a refund's amount is less than what it takes back from invoices"),
    ('credit_notes_within_invoice', 'credit_notes', 'AFTER', ('INSERT', 'UPDATE'),
     _NET_ALLOCATED.format(inv="NEW.invoice_id")
     + " > (SELECT total_minor FROM invoices WHERE id = NEW.invoice_id)",
     "an invoice's credit notes and payments exceed its total"),
    ('payment_allocations_within_balance', 'payment_allocations', 'AFTER', ('INSERT', 'UPDATE'),
     _NET_ALLOCATED.format(inv="NEW.invoice_id")
     + " > (SELECT total_minor FROM invoices WHERE id = NEW.invoice_id)",
     "an invoice's credit notes and payments exceed its total"),
    ('invoices_total_covers_ledger', 'invoices', 'AFTER', ('UPDATE',),
     _NET_ALLOCATED.format(inv="NEW.id") + " > NEW.total_minor",
     "an invoice's total is less than what is paid and credited on it"),
    ('payment_allocations_cover_refunds', 'payment_allocations', 'AFTER', ('UPDATE',),
     _REFUNDED_FROM.format(inv="NEW.invoice_id", pay="NEW.payment_id") + " > NEW.amount_minor",
     "an allocation is less than what refunds took back from it"),
    # Links: moving a row would leave the rules above unchecked on the side it left.
    ('payment_allocations_links_fixed', 'payment_allocations', 'BEFORE', ('UPDATE',),
     "NEW.payment_id <> OLD.payment_id OR NEW.invoice_id <> OLD.invoice_id",
     "an allocation keeps its payment and invoice"),
    ('refund_allocations_links_fixed', 'refund_allocations', 'BEFORE', ('UPDATE',),
     "NEW.refund_id <> OLD.refund_id OR NEW.invoice_id <> OLD.invoice_id",
     "a refund allocation keeps its refund and invoice"),
    ('refunds_links_fixed', 'refunds', 'BEFORE', ('UPDATE',),
     "NEW.payment_id <> OLD.payment_id",
     "a refund keeps its payment"),
    ('credit_notes_links_fixed', 'credit_notes', 'BEFORE', ('UPDATE',),
     "NEW.invoice_id <> OLD.invoice_id",
     "a credit note keeps its invoice"),
    ('payments_links_fixed', 'payments', 'BEFORE', ('UPDATE',),
     "NEW.customer_id <> OLD.customer_id",
     "a payment keeps its customer"),
    ('invoices_links_fixed', 'invoices', 'BEFORE', ('UPDATE',),
     "NEW.customer_id <> OLD.customer_id AND ("
     "EXISTS (SELECT 1 FROM payment_allocations WHERE invoice_id = OLD.id)"
     " OR EXISTS (SELECT 1 FROM credit_notes WHERE invoice_id = OLD.id))",
     "an invoice with payments or credit notes keeps its customer"),
)

# PostgreSQL, READ COMMITTED: lock the invoice first so that two transactions writing to
# it serialise and the second's sum sees the first (see the amounts migration).
_PG_LOCKS = {
    'credit_notes_within_invoice':
        "PERFORM 1 FROM invoices WHERE id = NEW.invoice_id FOR NO KEY UPDATE;",
    'payment_allocations_within_balance':
        "PERFORM 1 FROM invoices WHERE id = NEW.invoice_id FOR NO KEY UPDATE;",
    'refund_allocations_within_refund':
        "PERFORM 1 FROM refunds WHERE id = NEW.refund_id FOR NO KEY UPDATE;",
}


def _quoted(message):
    return message.replace("'", "''")


OPT_OUT_LINK_SLOT = "opt-out-link-made-when-sent"


def _redact_opt_out_links(bind):
    rows = bind.execute(sa.text(
        "SELECT id, unsubscribe_url, body_text, body_html FROM outbox_messages"
        " WHERE unsubscribe_url IS NOT NULL"
    )).all()
    for id_, url, text, html in rows:
        base, _, token = url.rpartition("/")
        if token == OPT_OUT_LINK_SLOT:
            continue
        slot = f"{base}/{OPT_OUT_LINK_SLOT}"
        bind.execute(
            sa.text(
                "UPDATE outbox_messages SET unsubscribe_url = :slot, body_text = :text,"
                " body_html = :html WHERE id = :id"
            ),
            {
                "id": id_,
                "slot": slot,
                "text": text.replace(url, slot) if text else text,
                "html": html.replace(url, slot) if html else html,
            },
        )


def upgrade():
    dialect = op.get_bind().dialect.name
    _redact_opt_out_links(op.get_bind())
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


def downgrade():
    dialect = op.get_bind().dialect.name
    for name, table, _timing, events, _condition, _message in CHECKS:
        trigger = f"trg_{name}"
        if dialect == 'postgresql':
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {trigger}()")
        else:
            for event in events:
                op.execute(f"DROP TRIGGER IF EXISTS {trigger}_{event.lower()}")
