"""Offline payment import: allocation, overpayment, append-only references."""

from __future__ import annotations

import io
from datetime import date

import pytest
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.extensions import db
from portal.imports.services import ImportFailed, import_file
from portal.invoices.models import Invoice
from portal.payments.models import Payment, PaymentAllocation
from tests.factories import make_credit, make_customer, make_invoice, make_payment

HEADER = "account_number,payment_reference,paid_on,amount,currency,invoice_number\n"


def run(text: str, *, dry_run: bool = False):
    return import_file("payments", io.StringIO(text), dry_run=dry_run, now=utcnow(), actor="test")


def errors_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(ImportFailed) as failure:
        run(text)
    return [(error.line, error.message) for error in failure.value.errors]


def allocations_of(reference: str) -> list[tuple[str, int]]:
    payment = db.session.scalar(select(Payment).where(Payment.reference == reference))
    return sorted((a.invoice.number, a.amount_minor) for a in payment.allocations)


def invoice(number: str) -> Invoice:
    return db.session.scalar(select(Invoice).where(Invoice.number == number))


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def acme(db_session):
    """A-1 owes three invoices of 100.00: due in March, January and February."""
    customer = make_customer(account_number="A-1", currency="USD")
    for number, due in (("INV-3", 3), ("INV-1", 1), ("INV-2", 2)):
        make_invoice(
            customer,
            number=number,
            issue_date=date(2026, due, 1),
            due_date=date(2026, due, 28),
            lines=[("Goods", "1", "100.00")],
        )
    return customer


def test_payment_without_invoice_goes_to_the_oldest_due_first(acme):
    # when
    report = run(HEADER + "A-1,P-1,2026-04-01,150.00,USD,\n")
    # then
    assert report.summary() == "1 created, 0 updated, 0 unchanged"
    payment = db.session.scalar(select(Payment).where(Payment.reference == "P-1"))
    assert (payment.source, payment.amount_minor, payment.currency) == ("offline", 15000, "USD")
    assert payment.paid_on == date(2026, 4, 1)
    assert payment.customer_id == acme.id
    assert allocations_of("P-1") == [("INV-1", 10000), ("INV-2", 5000)]
    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "import.payments"))
    assert event.data == {"rows": 1, "created": 1, "updated": 0, "unchanged": 0, "allocations": 2}


def test_payment_to_a_named_invoice_goes_there_only(acme):
    run(HEADER + "A-1,P-1,2026-04-01,40.00,USD,INV-3\n")
    assert allocations_of("P-1") == [("INV-3", 4000)]


def test_earlier_rows_and_earlier_payments_and_credits_reduce_the_open_balance(acme):
    # given INV-1 half settled outside this file
    make_payment(acme, [(invoice("INV-1"), "30.00")])
    make_credit(invoice("INV-1"), "20.00")
    # when
    run(
        HEADER
        + "A-1,P-1,2026-04-01,60.00,USD,\n"  # 50.00 closes INV-1, 10.00 to INV-2
        + "A-1,P-2,2026-04-02,95.00,USD,\n"  # 90.00 closes INV-2, 5.00 to INV-3
    )
    # then
    assert allocations_of("P-1") == [("INV-1", 5000), ("INV-2", 1000)]
    assert allocations_of("P-2") == [("INV-2", 9000), ("INV-3", 500)]


def test_overpaying_a_named_invoice_is_refused(acme):
    errors = errors_of(HEADER + "A-1,P-1,2026-04-01,100.01,USD,INV-2\n")
    assert errors == [
        (2, "payment of 100.01 USD is more than the 100.00 USD still open on invoice 'INV-2'")
    ]
    assert count(Payment) == 0


def test_overpaying_the_account_is_refused(acme):
    errors = errors_of(HEADER + "A-1,P-1,2026-04-01,300.01,USD,\n")
    assert errors == [
        (
            2,
            "payment of 300.01 USD is more than the 300.00 USD still open on account 'A-1' "
            "(all its invoices)",
        )
    ]


def test_overpayment_counts_earlier_rows_of_the_same_file(acme):
    errors = errors_of(
        HEADER + "A-1,P-1,2026-04-01,80.00,USD,INV-2\nA-1,P-2,2026-04-02,30.00,USD,INV-2\n"
    )
    assert errors == [
        (3, "payment of 30.00 USD is more than the 20.00 USD still open on invoice 'INV-2'")
    ]
    assert count(Payment) == 0


def test_each_kind_of_bad_row_is_reported_with_its_line(acme):
    other = make_customer(account_number="B-1")
    make_invoice(other, number="INV-B")
    make_customer(account_number="E-1", currency="EUR")
    text = (
        HEADER
        + "A-1,P-1,2026-04-01,10.00,USD,\n"  # 2: fine
        + "X-9,P-2,2026-04-01,10.00,USD,\n"  # 3
        + "A-1,P-3,2026-04-31,10.00,USD,\n"  # 4
        + "A-1,P-4,2026-04-01,-5,USD,\n"  # 5
        + "A-1,P-5,2026-04-01,abc,USD,\n"  # 6
        + "E-1,P-6,2026-04-01,10.00,USD,\n"  # 7
        + "A-1,P-1,2026-04-01,10.00,USD,\n"  # 8
        + "A-1,P-7,2026-04-01,10.00,USD,INV-B\n"  # 9
        + "A-1,P-8,2026-04-01,10.00,USD,INV-NONE\n"  # 10
        + "A-1,P-9,2026-04-01,0,USD,\n"  # 11
    )
    assert errors_of(text) == [
        (3, "unknown account 'X-9'"),
        (4, "paid_on '2026-04-31' is not a real date"),
        (5, "amount '-5' must be more than zero"),
        (6, "amount 'abc' is not a decimal number (use digits and a '.' point, e.g. 1234.50)"),
        (7, "currency USD does not match account 'E-1''s currency EUR"),
        (8, "payment 'P-1' already appears on line 2"),
        (9, "invoice 'INV-B' belongs to another account"),
        (10, "unknown invoice 'INV-NONE' for account 'A-1'"),
        (11, "amount '0' must be more than zero"),
    ]
    assert count(Payment) == 0
    assert count(AuditEvent) == 0


def test_reimporting_the_same_payments_changes_nothing(acme):
    text = HEADER + "A-1,P-1,2026-04-01,150.00,USD,\nA-1,P-2,2026-04-01,20.00,USD,INV-3\n"
    run(text)
    report = run(text)
    assert report.summary() == "0 created, 0 updated, 2 unchanged"
    assert count(Payment) == 2
    assert count(PaymentAllocation) == 3


def test_a_payment_cannot_be_changed_by_reimporting_it(acme):
    run(HEADER + "A-1,P-1,2026-04-01,150.00,USD,\nA-1,P-2,2026-04-01,20.00,USD,INV-3\n")
    errors = errors_of(
        HEADER + "A-1,P-1,2026-04-01,150.01,USD,\nA-1,P-2,2026-04-01,20.00,USD,INV-2\n"
    )
    assert [line for line, _ in errors] == [2, 3]
    assert errors[0][1] == (
        "payment 'P-1' was already imported with different details; payments cannot be "
        "changed (import a new payment or a refund instead)"
    )
    assert db.session.scalar(select(Payment.amount_minor).where(Payment.reference == "P-1")) == (
        15000
    )


def test_yen_payments_have_no_minor_digits(db_session):
    customer = make_customer(account_number="J-1", currency="JPY")
    make_invoice(customer, number="JP-1", lines=[("Sencha", "3", "1250")])
    run(HEADER + "J-1,JP-P1,2026-04-01,3000,JPY,JP-1\n")
    assert allocations_of("JP-P1") == [("JP-1", 3000)]
    errors = errors_of(HEADER + "J-1,JP-P2,2026-04-01,0.4,JPY,\n")
    assert errors == [(2, "amount 0.4 rounds to zero in JPY")]
    errors = errors_of(HEADER + "J-1,JP-P3,2026-04-01,751,JPY,\n")
    assert errors == [
        (
            2,
            "payment of 751 JPY is more than the 750 JPY still open on account 'J-1' "
            "(all its invoices)",
        )
    ]


def test_void_invoices_take_no_payment(acme):
    invoice("INV-1").voided_at = utcnow()
    db.session.flush()
    assert errors_of(HEADER + "A-1,P-1,2026-04-01,10.00,USD,INV-1\n") == [
        (2, "invoice 'INV-1' is void")
    ]
    run(HEADER + "A-1,P-2,2026-04-01,10.00,USD,\n")
    assert allocations_of("P-2") == [("INV-2", 1000)]


def test_invoice_number_column_is_optional(acme):
    run("account_number,payment_reference,paid_on,amount,currency\nA-1,P-1,2026-04-01,5,USD\n")
    assert allocations_of("P-1") == [("INV-1", 500)]


def test_dry_run_reports_but_writes_nothing(acme):
    report = run(HEADER + "A-1,P-1,2026-04-01,150.00,USD,\n", dry_run=True)
    assert report.summary() == "1 created, 0 updated, 0 unchanged"
    assert count(Payment) == 0
    assert count(AuditEvent) == 0


def test_a_refund_reopens_the_balance_an_offline_payment_may_settle(db_session):
    from portal.payments.models import Refund, RefundAllocation

    # given an invoice paid in full, then refunded 40.00
    customer = make_customer(account_number="ACC-REFUND")
    invoice = make_invoice(customer, number="INV-REFUND", lines=[("Service", "1", "100.00")])
    payment = make_payment(customer, [(invoice, "100.00")])
    refund = Refund(
        payment_id=payment.id,
        reference="re_test_1",
        amount_minor=4000,
        currency="USD",
        refunded_on=date(2026, 10, 20),
        actor="staff:1",
    )
    refund.allocations.append(RefundAllocation(invoice_id=invoice.id, amount_minor=4000))
    db.session.add(refund)
    db.session.flush()
    # then the 40.00 it reopened can be paid offline, and not a cent more
    assert errors_of(HEADER + "ACC-REFUND,BANK-R2,2026-10-25,40.01,USD,INV-REFUND\n")
    run(HEADER + "ACC-REFUND,BANK-R1,2026-10-25,40.00,USD,INV-REFUND\n")
