"""Balances are derived: total − allocated payments − credits; status follows."""

from __future__ import annotations

from datetime import date

import pytest

from portal.invoices.balances import status_of
from portal.invoices.models import InvoiceStatus
from portal.invoices.queries import invoice_balance, invoice_balances_for, summarize
from portal.money import Money
from tests.factories import make_credit, make_customer, make_invoice, make_payment

TODAY = date(2026, 11, 23)


def test_line_amounts_round_half_up_and_add_tax(db_session):
    customer = make_customer()
    invoice = make_invoice(customer, lines=[("Widgets", "2.5", "0.15", "0.10"), ("Fee", "1", "5")])
    # 2.5 × 15 cents = 37.5 -> 38 cents, + 10 cents tax; + 500
    assert [line.amount_minor for line in invoice.lines] == [48, 500]
    assert invoice.total == Money(548, "USD")


def test_untouched_invoice_is_open_and_overdue_after_due_date(db_session):
    invoice = make_invoice(
        make_customer(), due_date=date(2026, 11, 13), issue_date=date(2026, 10, 14)
    )
    balance = invoice_balance(invoice, TODAY)
    assert balance.status == InvoiceStatus.OPEN
    assert balance.balance == invoice.total
    assert balance.days_overdue == 10


def test_payment_and_credit_reduce_the_balance(db_session):
    customer = make_customer()
    invoice = make_invoice(customer, lines=[("Service", "1", "100.00")])
    make_payment(customer, [(invoice, "30.00")])
    make_credit(invoice, "20.00")
    balance = invoice_balance(invoice, TODAY)
    assert balance.paid == Money(3000, "USD")
    assert balance.credited == Money(2000, "USD")
    assert balance.balance == Money(5000, "USD")
    assert balance.status == InvoiceStatus.PARTIALLY_PAID


def test_fully_paid_invoice_is_paid_and_never_overdue(db_session):
    customer = make_customer()
    invoice = make_invoice(customer, due_date=date(2026, 1, 31), issue_date=date(2026, 1, 1))
    make_payment(customer, [(invoice, "100.00")])
    balance = invoice_balance(invoice, TODAY)
    assert balance.status == InvoiceStatus.PAID
    assert balance.days_overdue == 0
    assert not balance.is_open


def test_due_today_is_not_overdue(db_session):
    invoice = make_invoice(make_customer(), issue_date=date(2026, 11, 1), due_date=TODAY)
    assert invoice_balance(invoice, TODAY).days_overdue == 0


def test_summary_totals_open_and_overdue_and_next_due_date(db_session):
    customer = make_customer()
    overdue = make_invoice(customer, issue_date=date(2026, 9, 1), due_date=date(2026, 10, 1))
    soon = make_invoice(
        customer,
        issue_date=date(2026, 11, 1),
        due_date=date(2026, 12, 1),
        lines=[("A", "2", "50.00")],
    )
    later = make_invoice(customer, issue_date=date(2026, 11, 20), due_date=date(2026, 12, 20))
    paid = make_invoice(customer, issue_date=date(2026, 8, 1), due_date=date(2026, 9, 1))
    make_payment(customer, [(paid, "100.00"), (overdue, "25.50")])
    balances = invoice_balances_for(customer, TODAY)
    summary = summarize(balances, "USD")
    assert summary.total_due == Money(7450 + 10000 + 10000, "USD")
    assert summary.overdue == Money(7450, "USD")
    assert summary.next_due_date == soon.due_date
    assert summary.open_count == 3
    assert summary.overdue_count == 1
    assert [b.invoice.id for b in balances] == [paid.id, overdue.id, soon.id, later.id]


def test_balances_never_include_another_customers_invoices(db_session):
    mine, theirs = make_customer(), make_customer()
    make_invoice(mine)
    make_invoice(theirs)
    assert {b.invoice.customer_id for b in invoice_balances_for(mine, TODAY)} == {mine.id}


def test_zero_decimal_currency_balances(db_session):
    customer = make_customer(currency="JPY")
    invoice = make_invoice(customer, lines=[("Item", "3", "333.5")])  # 1000.5 -> 1001 yen
    make_payment(customer, [(invoice, "2")])
    balance = invoice_balance(invoice, TODAY)
    assert invoice.total == Money(1001, "JPY")
    assert balance.balance == Money(999, "JPY")


@pytest.mark.parametrize(
    ("balance", "net_paid", "credited", "expected"),
    [
        (10000, 0, 0, InvoiceStatus.OPEN),  # also: paid, then refunded in full
        (5000, 5000, 0, InvoiceStatus.PARTIALLY_PAID),
        (5000, 3000, 2000, InvoiceStatus.PARTIALLY_PAID),  # paid something: "paid" names it
        (5000, 0, 5000, InvoiceStatus.PARTIALLY_CREDITED),  # the reported case
        (0, 0, 10000, InvoiceStatus.CREDITED),  # the reported case
        (0, 3000, 7000, InvoiceStatus.PAID),
        (0, 10000, 0, InvoiceStatus.PAID),
        (0, 0, 0, InvoiceStatus.PAID),  # an invoice of total 0
        (-500, 0, 10500, InvoiceStatus.CREDITED),  # over-credited
    ],
)
def test_status_says_paid_only_when_the_customer_paid(balance, net_paid, credited, expected):
    assert status_of(balance, net_paid, credited, is_void=False) == expected


def test_void_wins_over_every_amount():
    assert status_of(0, 0, 10000, is_void=True) == InvoiceStatus.VOID


def test_an_invoice_only_credited_in_part_is_partially_credited_and_still_open(db_session):
    # given a credit note and no payment
    invoice = make_invoice(
        make_customer(),
        lines=[("Service", "1", "100.00")],
        issue_date=date(2026, 10, 1),
        due_date=date(2026, 11, 1),
    )
    make_credit(invoice, "40.00")
    # when
    balance = invoice_balance(invoice, TODAY)
    # then
    assert balance.status == InvoiceStatus.PARTIALLY_CREDITED
    assert balance.status.label == "Partially credited"
    assert balance.balance == Money(6000, "USD")
    assert balance.is_open
    assert balance.days_overdue == 22


def test_an_invoice_settled_by_a_credit_note_alone_is_credited_and_closed(db_session):
    invoice = make_invoice(
        make_customer(), issue_date=date(2026, 10, 1), due_date=date(2026, 11, 1)
    )
    make_credit(invoice, "100.00")
    balance = invoice_balance(invoice, TODAY)
    assert balance.status == InvoiceStatus.CREDITED
    assert balance.status.label == "Credited"
    assert not balance.is_open
    assert balance.days_overdue == 0


def test_every_invoice_status_has_a_label_in_every_language(app):
    from flask_babel import force_locale

    for locale in ("en", "es", "fr", "de"):
        with app.test_request_context(), force_locale(locale):
            labels = [status.label for status in InvoiceStatus]
            assert len(set(labels)) == len(InvoiceStatus), (locale, labels)
            if locale != "en":
                english = ["Open", "Partially paid", "Partially credited", "Paid", "Credited"]
                assert not set(labels) & set(english), (locale, labels)
