"""Amounts to the minor unit: lines rounded once, 64-bit money, a ledger the database
guards, and small remainders that no card can pay."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from pypdf import PdfReader
from sqlalchemy import select

from portal import create_app
from portal.audit.models import AuditEvent
from portal.config import ConfigurationError, small_balance_tolerances
from portal.db import utcnow
from portal.extensions import db
from portal.imports.services import ImportFailed, import_file
from portal.invoices.models import CreditNote, CreditNoteKind, Invoice, InvoiceStatus
from portal.invoices.queries import invoice_balance
from portal.invoices.services import write_off_small_balances
from portal.jobs.runner import run_jobs
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.notifications.services import schedule_collection_emails
from portal.payments.models import Payment, PaymentAllocation
from tests.factories import login_as, make_credit, make_customer, make_invoice, make_payment

INVOICE_HEADER = (
    "account_number,invoice_number,issue_date,due_date,currency,line_number,"
    "description,quantity,unit_price,tax_amount\n"
)
PAYMENT_HEADER = "account_number,payment_reference,paid_on,amount,currency,invoice_number\n"


def run_import(kind: str, text: str):
    return import_file(kind, io.StringIO(text), now=utcnow(), actor="test")


def invoice(number: str) -> Invoice:
    return db.session.scalar(select(Invoice).where(Invoice.number == number))


# --- a line is quantity x unit price, rounded half-up once -------------------------------
def test_imported_lines_round_the_product_once_and_keep_the_price_as_given(client):
    # given
    usd = make_customer(account_number="U-1", currency="USD", timezone="UTC")
    make_customer(account_number="J-1", currency="JPY")
    # when
    run_import(
        "invoices",
        INVOICE_HEADER
        + "U-1,INV-R,2026-01-05,2026-02-04,USD,1,Bolts,3,0.335,\n"
        + "U-1,INV-R,2026-01-05,2026-02-04,USD,2,Washers,1000,0.004,\n"
        + "U-1,INV-R,2026-01-05,2026-02-04,USD,3,Nuts,10,0.125,\n"
        + "U-1,INV-R,2026-01-05,2026-02-04,USD,4,Pins,1,1.005,0.10\n"
        + "U-1,INV-R,2026-01-05,2026-02-04,USD,5,Rivets,4,0.004130,\n"
        + "J-1,INV-J,2026-01-05,2026-02-04,JPY,1,Sencha,3,0.5,\n",
    )
    # then every line is the product rounded once, plus tax
    lines = invoice("INV-R").lines
    assert [line.amount for line in lines] == [
        Money.from_decimal(v, "USD") for v in ("1.01", "4.00", "1.25", "1.11", "0.02")
    ]
    assert invoice("INV-R").total == Money.from_decimal("7.39", "USD")
    assert [line.amount for line in invoice("INV-J").lines] == [Money(2, "JPY")]
    # and the unit price is kept with the precision it was given
    assert [str(line.unit_price.to_decimal()) for line in lines] == [
        "0.335",
        "0.004",
        "0.125",
        "1.005",
        "0.004130",
    ]
    # shown that way on the invoice page
    login_as(client, usd)
    page = client.get("/invoices/INV-R")
    assert page.status_code == 200
    for shown in ("$0.335", "$0.004", "$0.125", "$1.005", "$0.004130", "$7.39"):
        assert f">{shown}<" in page.text
    # and in the PDF
    pdf = client.get("/invoices/INV-R/pdf")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.data)).pages)
    for shown in ("$0.335", "$0.004130", "$1.01", "$7.39"):
        assert shown in text


def test_a_unit_price_with_more_than_six_decimals_is_a_line_numbered_error(db_session):
    make_customer(account_number="U-1", currency="USD")
    with pytest.raises(ImportFailed) as failure:
        run_import(
            "invoices", INVOICE_HEADER + "U-1,INV-7,2026-01-05,2026-02-04,USD,1,X,1,0.1234567,\n"
        )
    assert [(e.line, e.message) for e in failure.value.errors] == [
        (2, "a unit price has at most 6 decimal places")
    ]
    assert invoice("INV-7") is None


# --- 64-bit money --------------------------------------------------------------------------
def test_thirty_million_dollars_import_and_are_paid_like_any_other_amount(db_session):
    # given
    make_customer(account_number="BIG", currency="USD")
    # when
    run_import(
        "invoices",
        INVOICE_HEADER + "BIG,INV-BIG,2026-01-05,2026-02-04,USD,1,Plant,1,30000000.00,\n",
    )
    run_import("payments", PAYMENT_HEADER + "BIG,WIRE-1,2026-01-20,29999999.99,USD,INV-BIG\n")
    # then
    big = invoice("INV-BIG")
    assert big.total_minor == 3_000_000_000
    balance = invoice_balance(big, utcnow().date())
    assert balance.balance == Money(1, "USD")
    run_import("payments", PAYMENT_HEADER + "BIG,WIRE-2,2026-01-21,0.01,USD,INV-BIG\n")
    assert invoice_balance(big, utcnow().date()).status == InvoiceStatus.PAID


def test_amounts_past_a_bigint_are_refused_with_a_reason(db_session):
    make_customer(account_number="BIG", currency="USD")
    with pytest.raises(ImportFailed) as failure:
        run_import(
            "invoices",
            INVOICE_HEADER
            + "BIG,INV-HUGE,2026-01-05,2026-02-04,USD,1,X,1000000,99999999999999999.00,\n",
        )
    assert "too large" in str(failure.value.errors[0])


# --- the database guards the ledger ----------------------------------------------------------
def _refused(statement: str, **params: object) -> str:
    with pytest.raises(sa.exc.IntegrityError) as failure, db.session.begin_nested():
        db.session.execute(sa.text(statement), params)
    return str(failure.value.orig)


def test_the_database_keeps_every_ledger_row_in_the_customers_currency(db_session):
    customer = make_customer(currency="USD")
    usd = make_invoice(customer)
    payment = make_payment(customer, [(usd, "10.00")])
    assert "customer" in _refused("UPDATE invoices SET currency = 'EUR' WHERE id = :id", id=usd.id)
    assert "customer" in _refused(
        "UPDATE payments SET currency = 'EUR' WHERE id = :id", id=payment.id
    )
    assert "keeps their currency" in _refused(
        "UPDATE customers SET currency = 'EUR' WHERE id = :id", id=customer.id
    )
    assert "invoice" in _refused(
        "INSERT INTO credit_notes (reference, invoice_id, amount_minor, currency, issued_on,"
        " reason, created_at, kind) VALUES ('CN-X', :id, 1, 'EUR', '2026-10-01', '',"
        " '2026-10-01 00:00:00', 'credit')",
        id=usd.id,
    )
    # a customer without ledger rows may still change currency
    fresh = make_customer(currency="USD")
    db.session.execute(
        sa.text("UPDATE customers SET currency = 'EUR' WHERE id = :id"), {"id": fresh.id}
    )


def test_allocations_never_exceed_their_payment_or_the_invoice(db_session):
    customer = make_customer(currency="USD")
    first = make_invoice(customer, lines=[("A", "1", "100.00")])
    second = make_invoice(customer, lines=[("B", "1", "100.00")])
    payment = make_payment(customer, [(first, "60.00")])
    # more than the payment
    assert "exceed the payment" in _refused(
        "UPDATE payment_allocations SET amount_minor = 6001 WHERE payment_id = :id",
        id=payment.id,
    )
    assert "exceed the payment" in _refused(
        "INSERT INTO payment_allocations (payment_id, invoice_id, amount_minor)"
        " VALUES (:payment, :invoice, 1)",
        payment=payment.id,
        invoice=second.id,
    )
    # more than the invoice's total
    other = make_payment(customer, [(second, "100.00")])
    assert "exceed its total" in _refused(
        "INSERT INTO payment_allocations (payment_id, invoice_id, amount_minor)"
        " VALUES (:payment, :invoice, 4001)",
        payment=other.id,
        invoice=first.id,
    )
    # (moving an allocation to another invoice is refused outright: fixes_c4e8a2b61d07)
    assert "keeps its payment and invoice" in _refused(
        "UPDATE payment_allocations SET invoice_id = :invoice WHERE payment_id = :id",
        invoice=first.id,
        id=other.id,
    )
    assert "total is less than what is" in _refused(
        "UPDATE invoices SET total_minor = 5999 WHERE id = :id", id=first.id
    )
    assert (
        db.session.scalar(
            select(sa.func.sum(PaymentAllocation.amount_minor)).where(
                PaymentAllocation.invoice_id == first.id
            )
        )
        == 6000
    )


def test_ledger_and_audit_rows_are_never_deleted_by_a_cascade(db_session):
    customer = make_customer()
    inv = make_invoice(customer)
    payment = make_payment(customer, [(inv, "10.00")])
    make_credit(inv, "5.00")
    db.session.add(AuditEvent(action="x", actor="test", customer_id=customer.id))
    db.session.flush()
    _refused("DELETE FROM payments WHERE id = :id", id=payment.id)
    _refused("DELETE FROM invoices WHERE id = :id", id=inv.id)
    _refused("DELETE FROM customers WHERE id = :id", id=customer.id)
    assert db.session.get(Payment, payment.id) is not None


def test_ledger_rows_are_never_deleted_even_when_nothing_points_at_them(db_session):
    """A plain DELETE of an allocation, a credit note or a lone payment would change what
    the customer owes with no trace: the database refuses each (append-only ledger)."""
    customer = make_customer()
    inv = make_invoice(customer)
    payment = make_payment(customer, [(inv, "10.00")])
    credit = make_credit(inv, "5.00")
    lone = Payment(
        customer_id=customer.id,
        reference="PAY-UNALLOCATED",
        source="offline",
        amount_minor=700,  # money no invoice owed: kept as a payment, allocated later
        currency=customer.currency,
        paid_on=date(2026, 10, 15),
    )
    db.session.add(lone)
    db.session.flush()
    for statement, ident in (
        ("DELETE FROM payment_allocations WHERE payment_id = :id", payment.id),
        ("DELETE FROM credit_notes WHERE id = :id", credit.id),
        ("DELETE FROM payments WHERE id = :id", lone.id),
    ):
        assert "never deleted" in _refused(statement, id=ident)
    assert db.session.get(Payment, lone.id) is not None


# --- small balances ----------------------------------------------------------------------------
@pytest.fixture
def kwd_remainder(db_session):
    """KWD invoice 12.345, overdue, paid 12.340 by bank: 0.005 KWD left."""
    now = utcnow()
    customer = make_customer(account_number="K-1", currency="KWD", timezone="UTC")
    inv = make_invoice(
        customer,
        number="INV-KWD",
        lines=[("Service", "1", "12.345")],
        issue_date=now.date() - timedelta(days=40),
        due_date=now.date() - timedelta(days=10),
    )
    inv.created_at = now - timedelta(days=40)
    run_import("payments", PAYMENT_HEADER + "K-1,BANK-1,2026-01-20,12.340,KWD,INV-KWD\n")
    return inv


def test_a_remainder_no_card_can_pay_is_never_dunned(kwd_remainder):
    balance = invoice_balance(kwd_remainder, utcnow().date())
    assert balance.balance == Money(5, "KWD")
    assert schedule_collection_emails(now=utcnow()).reminders == 0
    # the same invoice with a chargeable remainder is reminded
    make_credit(kwd_remainder, "0.005")
    other = make_invoice(
        kwd_remainder.customer,
        lines=[("Service", "1", "12.345")],
        issue_date=kwd_remainder.issue_date,
        due_date=kwd_remainder.due_date,
    )
    other.created_at = kwd_remainder.created_at
    assert schedule_collection_emails(now=utcnow()).reminders == 1


def test_the_tolerance_writes_the_remainder_off_with_an_audited_credit_note(kwd_remainder):
    now = utcnow()
    # when
    report = write_off_small_balances(small_balance_tolerances("USD=0.50,KWD=0.010"), now=now)
    # then
    [note] = report.written_off
    assert (note.kind, note.amount, note.invoice_id) == (
        CreditNoteKind.SMALL_BALANCE_WRITE_OFF,
        Money(5, "KWD"),
        kwd_remainder.id,
    )
    assert invoice_balance(kwd_remainder, now.date()).status == InvoiceStatus.PAID
    event = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "credit_note.small_balance_written_off")
    )
    assert (event.subject_id, event.data["amount_minor"], event.actor) == (note.id, 5, "system")
    # and running it again writes nothing more
    assert write_off_small_balances(small_balance_tolerances("KWD=0.010"), now=now).summary() == (
        "0 small balances written off"
    )


def test_no_tolerance_or_a_smaller_one_writes_nothing_off(kwd_remainder):
    for setting in ("", "USD=0.50", "KWD=0.004"):
        assert not write_off_small_balances(
            small_balance_tolerances(setting), now=utcnow()
        ).written_off
    assert db.session.scalar(select(sa.func.count()).select_from(CreditNote)) == 0


def test_a_chargeable_remainder_is_not_written_off_however_large_the_tolerance(db_session):
    customer = make_customer(currency="USD")
    inv = make_invoice(customer, lines=[("A", "1", "100.00")])
    make_payment(customer, [(inv, "99.40")])  # 0.60 left: a card can take it
    assert not write_off_small_balances({"USD": Money(100, "USD")}, now=utcnow()).written_off
    make_payment(customer, [(inv, "0.20")])  # 0.40 left: below Stripe's 0.50
    [note] = write_off_small_balances({"USD": Money(50, "USD")}, now=utcnow()).written_off
    assert note.amount == Money(40, "USD")


def test_the_worker_runs_the_write_off(app, kwd_remainder):
    app.config["SMALL_BALANCE_TOLERANCE"] = "KWD=0.010"
    try:
        outcomes = run_jobs(
            now=datetime.now(UTC), runner="r1", only="write_off_small_balances", force=True
        )
    finally:
        app.config["SMALL_BALANCE_TOLERANCE"] = ""
    assert [(o.kind, o.outcome, o.detail) for o in outcomes] == [
        ("write_off_small_balances", "ok", "1 small balance written off")
    ]
    assert invoice_balance(kwd_remainder, utcnow().date()).status == InvoiceStatus.PAID
    assert db.session.scalar(select(sa.func.count()).select_from(OutboxMessage)) == 0


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("USD", "must look like CUR=AMOUNT"),
        ("XYZ=1", "unknown currency"),
        ("USD=abc", "not a decimal number"),
        ("USD=-1", "zero or more"),
        ("USD=0.005", "at most 2 decimal places for USD"),
        ("USD=0.5,usd=1", "USD is given twice"),
    ],
)
def test_a_bad_tolerance_setting_is_a_clear_configuration_error(setting, problem):
    with pytest.raises(ConfigurationError, match=problem):
        small_balance_tolerances(setting)
    with pytest.raises(ConfigurationError, match="SMALL_BALANCE_TOLERANCE"):
        create_app({"SMALL_BALANCE_TOLERANCE": setting}, env_name="testing")


def test_tolerances_parse_per_currency():
    assert small_balance_tolerances(" USD=0.50, kwd=0.010 ,") == {
        "USD": Money(50, "USD"),
        "KWD": Money(10, "KWD"),
    }


def test_refunds_never_exceed_their_payment_nor_what_it_put_on_an_invoice(db_session):
    customer = make_customer(currency="USD")
    inv = make_invoice(customer, lines=[("A", "1", "100.00")])
    payment = make_payment(customer, [(inv, "60.00")])
    insert_refund = (
        "INSERT INTO refunds (payment_id, reference, amount_minor, currency, refunded_on,"
        " reason, actor, created_at) VALUES (:payment, :reference, :amount, 'USD',"
        " '2026-10-20', '', 'test', '2026-10-20 00:00:00')"
    )
    assert "exceed the payment" in _refused(
        insert_refund, payment=payment.id, reference="re_1", amount=6001
    )
    db.session.execute(
        sa.text(insert_refund), {"payment": payment.id, "reference": "re_2", "amount": 6000}
    )
    refund_id = db.session.scalar(sa.text("SELECT id FROM refunds WHERE reference = 're_2'"))
    # Both rules refuse it: more than the payment put there, and more than the refund.
    assert "more from" in _refused(
        "INSERT INTO refund_allocations (refund_id, invoice_id, amount_minor)"
        " VALUES (:refund, :invoice, 6001)",
        refund=refund_id,
        invoice=inv.id,
    )


def test_every_ledger_trigger_is_in_place_at_head(db_session):
    # A later SQLite batch migration that rebuilds one of these tables drops its triggers
    # with it (Alembic does not copy them): it must create them again.
    if db.engine.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    else:
        query = "SELECT DISTINCT trigger_name FROM information_schema.triggers"
    names = {
        name.removesuffix("_insert").removesuffix("_update")
        for name in db.session.scalars(sa.text(query))
    }
    assert {
        "trg_invoices_currency",
        "trg_payments_currency",
        "trg_checkouts_currency",
        "trg_credit_notes_currency",
        "trg_refunds_currency",
        "trg_payment_allocations_currency",
        "trg_refund_allocations_currency",
        "trg_customers_currency",
        "trg_payment_allocations_within_payment",
        "trg_payment_allocations_within_invoice",
        "trg_invoices_total_covers_allocations",
        "trg_refunds_within_payment",
        "trg_refund_allocations_within_allocation",
        # fixes_c4e8a2b61d07: the other side of each rule, and fixed links
        "trg_payments_cover_allocations",
        "trg_payments_cover_refunds",
        "trg_refund_allocations_within_refund",
        "trg_refunds_cover_allocations",
        "trg_credit_notes_within_invoice",
        "trg_payment_allocations_within_balance",
        "trg_invoices_total_covers_ledger",
        "trg_payment_allocations_cover_refunds",
        "trg_payment_allocations_links_fixed",
        "trg_refund_allocations_links_fixed",
        "trg_refunds_links_fixed",
        "trg_credit_notes_links_fixed",
        "trg_payments_links_fixed",
        "trg_invoices_links_fixed",
        # ledgerguard_f0a6d3c2b1e9: no ledger row is ever deleted
        "trg_payments_never_deleted",
        "trg_payment_allocations_never_deleted",
        "trg_refunds_never_deleted",
        "trg_refund_allocations_never_deleted",
        "trg_credit_notes_never_deleted",
    } <= names


def _make_refund(payment: Payment, invoice: Invoice, amount: int, taken_back: int) -> int:
    db.session.execute(
        sa.text(
            "INSERT INTO refunds (payment_id, reference, amount_minor, currency, refunded_on,"
            " reason, actor, created_at) VALUES (:payment, :reference, :amount, 'USD',"
            " '2026-10-20', '', 'test', '2026-10-20 00:00:00')"
        ),
        {"payment": payment.id, "reference": f"re_{payment.id}", "amount": amount},
    )
    refund_id = db.session.scalar(
        sa.text("SELECT id FROM refunds WHERE reference = :r"), {"r": f"re_{payment.id}"}
    )
    db.session.execute(
        sa.text(
            "INSERT INTO refund_allocations (refund_id, invoice_id, amount_minor)"
            " VALUES (:refund, :invoice, :amount)"
        ),
        {"refund": refund_id, "invoice": invoice.id, "amount": taken_back},
    )
    return refund_id


def test_updates_cannot_shrink_what_the_ledger_rests_on(db_session):
    # Each rule of the amounts migration, broken from its other side by an UPDATE.
    customer = make_customer(currency="USD")
    inv = make_invoice(customer, lines=[("A", "1", "100.00")])
    payment = make_payment(customer, [(inv, "60.00")])
    allocation = db.session.scalar(
        select(PaymentAllocation).where(PaymentAllocation.payment_id == payment.id)
    )
    assert "allocated from it" in _refused(
        "UPDATE payments SET amount_minor = 1 WHERE id = :id", id=payment.id
    )
    refund_id = _make_refund(payment, inv, 1000, 1000)
    # 60.00 payment, 10.00 refunded: lowering it to 9.99 also breaks the refunds' rule.
    assert "payment's amount is less" in _refused(
        "UPDATE payments SET amount_minor = 999 WHERE id = :id", id=payment.id
    )
    assert "takes back from invoices" in _refused(
        "UPDATE refunds SET amount_minor = 999 WHERE id = :id", id=refund_id
    )
    assert "more from invoices than the refund" in _refused(
        "UPDATE refund_allocations SET amount_minor = 1001 WHERE refund_id = :id", id=refund_id
    )
    assert "refunds took back" in _refused(
        "UPDATE payment_allocations SET amount_minor = 999 WHERE id = :id", id=allocation.id
    )
    # Credit notes count against the invoice's total: 60 paid - 10 refunded + 50 credit fits,
    # 50.01 does not; nor may the total then drop below what is paid and credited.
    credit = make_credit(inv, "50.00")
    assert "credit notes and payments exceed" in _refused(
        "UPDATE credit_notes SET amount_minor = 5001 WHERE id = :id", id=credit.id
    )
    assert "paid and credited" in _refused(
        "UPDATE invoices SET total_minor = 9999 WHERE id = :id", id=inv.id
    )
    assert "credit notes and payments exceed" in _refused(
        "UPDATE payment_allocations SET amount_minor = 6001 WHERE id = :id", id=allocation.id
    )
    # What the guards leave alone still works: a smaller credit, a larger payment.
    db.session.execute(
        sa.text("UPDATE credit_notes SET amount_minor = 100 WHERE id = :id"), {"id": credit.id}
    )
    db.session.execute(
        sa.text("UPDATE payments SET amount_minor = 7000 WHERE id = :id"), {"id": payment.id}
    )


def test_ledger_rows_keep_their_links(db_session):
    customer = make_customer(currency="USD")
    other = make_customer(currency="USD")
    inv = make_invoice(customer, lines=[("A", "1", "100.00")])
    spare = make_invoice(customer, lines=[("B", "1", "100.00")])
    foreign = make_invoice(other, lines=[("C", "1", "100.00")])
    payment = make_payment(customer, [(inv, "60.00")])
    second = make_payment(customer, [(spare, "90.00")])
    refund_id = _make_refund(payment, inv, 1000, 1000)
    credit = make_credit(inv, "5.00")
    for statement, params, message in (
        (
            "UPDATE payment_allocations SET invoice_id = :to WHERE payment_id = :p",
            {"to": spare.id, "p": payment.id},
            "keeps its payment and invoice",
        ),
        (
            "UPDATE payment_allocations SET payment_id = :to WHERE payment_id = :p",
            {"to": second.id, "p": payment.id},
            "keeps its payment and invoice",
        ),
        (
            "UPDATE refund_allocations SET invoice_id = :to WHERE refund_id = :p",
            {"to": spare.id, "p": refund_id},
            "keeps its refund and invoice",
        ),
        (
            "UPDATE refunds SET payment_id = :to WHERE id = :p",
            {"to": second.id, "p": refund_id},
            "keeps its payment",
        ),
        (
            "UPDATE credit_notes SET invoice_id = :to WHERE id = :p",
            {"to": spare.id, "p": credit.id},
            "keeps its invoice",
        ),
        (
            "UPDATE payments SET customer_id = :to WHERE id = :p",
            {"to": other.id, "p": payment.id},
            "keeps its customer",
        ),
        (
            "UPDATE invoices SET customer_id = :to WHERE id = :p",
            {"to": other.id, "p": inv.id},
            "keeps its customer",
        ),
    ):
        assert message in _refused(statement, **params), statement
    # An invoice with nothing paid or credited may still move (an import correcting it).
    db.session.execute(
        sa.text("UPDATE invoices SET customer_id = :to WHERE id = :p"),
        {"to": customer.id, "p": foreign.id},
    )
