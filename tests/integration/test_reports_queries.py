"""Aging, DSO and CEI on small hand-made ledgers: every date rule, one at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from portal.extensions import db
from portal.money import Money
from portal.payments.models import Refund, RefundAllocation
from portal.reports.queries import (
    Period,
    aging,
    collections_per_day,
    effectiveness,
    payments_by_channel,
)
from tests.factories import make_credit, make_customer, make_invoice, make_payment

pytestmark = pytest.mark.usefixtures("db_session")

DUE = date(2026, 3, 31)


def bucket(as_of: date, key: str, currency: str = "USD") -> str:
    return str(aging(as_of, currency=currency).total_for(currency).buckets[key].to_decimal())


def total(as_of: date, currency: str = "USD") -> str:
    return str(aging(as_of, currency=currency).total_for(currency).total.to_decimal())


def refund(payment, invoice, amount_minor: int, on: date) -> Refund:
    record = Refund(
        payment=payment,
        reference=f"re_{payment.id}_{on.isoformat()}",
        amount_minor=amount_minor,
        currency=payment.currency,
        refunded_on=on,
        actor="test",
        allocations=[RefundAllocation(invoice_id=invoice.id, amount_minor=amount_minor)],
    )
    db.session.add(record)
    db.session.flush()
    return record


@pytest.mark.parametrize(
    ("as_of", "key"),
    [
        (date(2026, 3, 31), "current"),  # due today: not past due
        (date(2026, 4, 1), "1-30"),
        (date(2026, 4, 30), "1-30"),  # 30 days
        (date(2026, 5, 1), "31-60"),  # 31 days
        (date(2026, 5, 30), "31-60"),  # 60
        (date(2026, 5, 31), "61-90"),
        (date(2026, 6, 29), "61-90"),  # 90
        (date(2026, 6, 30), "91-120"),
        (date(2026, 7, 29), "91-120"),  # 120
        (date(2026, 7, 30), "120+"),  # 121
    ],
)
def test_invoice_falls_in_the_bucket_of_its_days_past_due(as_of, key):
    customer = make_customer()
    make_invoice(customer, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "100")])
    report = aging(as_of, currency="USD").total_for("USD")
    assert {k: str(v.to_decimal()) for k, v in report.buckets.items() if v.minor} == {key: "100.00"}


def test_invoice_does_not_exist_before_its_issue_date():
    customer = make_customer()
    make_invoice(customer, issue_date=date(2026, 3, 1), due_date=DUE)
    assert total(date(2026, 2, 28)) == "0.00"
    assert total(date(2026, 3, 1)) == "100.00"


def test_invoice_paid_on_the_as_of_date_is_not_open_on_it():
    customer = make_customer()
    invoice = make_invoice(customer, issue_date=date(2026, 3, 1), due_date=DUE)
    make_payment(customer, [(invoice, "100.00")], paid_on=date(2026, 4, 10))
    assert bucket(date(2026, 4, 9), "1-30") == "100.00"
    assert total(date(2026, 4, 10)) == "0.00"
    assert total(date(2026, 5, 10)) == "0.00"


def test_partial_payment_leaves_the_rest_in_its_bucket():
    customer = make_customer()
    invoice = make_invoice(customer, issue_date=date(2026, 3, 1), due_date=DUE)
    make_payment(customer, [(invoice, "30.25")], paid_on=date(2026, 3, 15))
    assert bucket(date(2026, 3, 14), "current") == "100.00"
    assert bucket(date(2026, 3, 15), "current") == "69.75"
    assert bucket(date(2026, 5, 15), "31-60") == "69.75"


def test_refund_reopens_the_invoice_from_its_date():
    customer = make_customer()
    invoice = make_invoice(customer, issue_date=date(2026, 3, 1), due_date=DUE)
    payment = make_payment(customer, [(invoice, "100.00")], paid_on=date(2026, 3, 20))
    payment.source = "card"
    refund(payment, invoice, 4000, date(2026, 4, 15))
    assert total(date(2026, 4, 14)) == "0.00"
    assert bucket(date(2026, 4, 15), "1-30") == "40.00"
    assert bucket(date(2026, 5, 15), "31-60") == "40.00"


def test_credit_note_reduces_from_its_issue_date():
    customer = make_customer()
    invoice = make_invoice(customer, issue_date=date(2026, 3, 1), due_date=DUE)
    credit = make_credit(invoice, "25.00")
    credit.issued_on = date(2026, 4, 5)
    db.session.flush()
    assert bucket(date(2026, 4, 4), "1-30") == "100.00"
    assert bucket(date(2026, 4, 5), "1-30") == "75.00"


def test_voided_invoice_leaves_the_aging_from_the_day_it_was_voided():
    customer = make_customer()
    invoice = make_invoice(customer, issue_date=date(2026, 3, 1), due_date=DUE)
    invoice.voided_at = datetime(2026, 4, 5, 15, 0, tzinfo=UTC)
    db.session.flush()
    assert total(date(2026, 4, 4)) == "100.00"
    assert total(date(2026, 4, 5)) == "0.00"


def test_currencies_are_reported_apart_and_never_added():
    usd = make_customer(currency="USD")
    jpy = make_customer(currency="JPY")
    kwd = make_customer(currency="KWD")
    make_invoice(usd, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "10.50")])
    make_invoice(jpy, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "1500")])
    make_invoice(kwd, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "2.125")])
    report = aging(date(2026, 4, 10), customer_limit=None)
    assert [(row.currency, str(row.buckets["1-30"].to_decimal())) for row in report.totals] == [
        ("JPY", "1500"),
        ("KWD", "2.125"),
        ("USD", "10.50"),
    ]
    assert sorted((row.currency, row.account_number) for row in report.customers) == sorted(
        [("JPY", jpy.account_number), ("KWD", kwd.account_number), ("USD", usd.account_number)]
    )


def test_per_customer_rows_sum_to_the_totals_largest_first():
    first, second = make_customer(), make_customer()
    make_invoice(first, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "10")])
    make_invoice(
        second, issue_date=date(2026, 1, 1), due_date=date(2026, 1, 31), lines=[("x", "1", "70")]
    )
    make_invoice(second, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "5")])
    report = aging(date(2026, 4, 10), currency="USD", customer_limit=None)
    assert [row.account_number for row in report.customers] == [
        second.account_number,
        first.account_number,
    ]
    assert str(report.customers[0].buckets["61-90"].to_decimal()) == "70.00"
    assert str(report.customers[0].buckets["1-30"].to_decimal()) == "5.00"
    assert report.totals[0].total == Money(8500, "USD")


def test_dso_and_cei_follow_their_formulas():
    customer = make_customer()
    # open before the period: 100 due 2026-03-31
    before = make_invoice(
        customer, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "100")]
    )
    # sold in April: 200 due 2026-04-30, and 300 due 2026-05-10
    sold = make_invoice(
        customer, issue_date=date(2026, 4, 1), due_date=date(2026, 4, 30), lines=[("x", "1", "200")]
    )
    make_invoice(
        customer,
        issue_date=date(2026, 4, 10),
        due_date=date(2026, 5, 10),
        lines=[("x", "1", "300")],
    )
    make_payment(customer, [(before, "100"), (sold, "50")], paid_on=date(2026, 4, 20))
    result = effectiveness(Period(date(2026, 4, 1), date(2026, 4, 30)), "USD")
    # beginning 100; sales 500; ending 150 + 300 = 450, of which current 450 (none past due)
    assert (result.beginning, result.sales, result.ending, result.ending_current) == (
        Money(10000, "USD"),
        Money(50000, "USD"),
        Money(45000, "USD"),
        Money(45000, "USD"),
    )
    assert result.dso == Decimal("27.0")  # 450 / 500 × 30
    assert result.cei == Decimal("100.0")  # (600 − 450) / (600 − 450)
    may = effectiveness(Period(date(2026, 5, 1), date(2026, 5, 31)), "USD")
    # beginning 450, no sales, ending 450, all past due: CEI 0, DSO undefined
    assert may.cei == Decimal("0.0")
    assert may.dso is None


def test_cei_is_undefined_rather_than_a_division_by_zero():
    result = effectiveness(Period(date(2026, 4, 1), date(2026, 4, 30)), "USD")
    assert result.cei is None
    assert result.dso is None


def test_collections_per_day_and_by_channel():
    customer = make_customer()
    invoice = make_invoice(
        customer, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "100")]
    )
    card = make_payment(customer, [(invoice, "60")], paid_on=date(2026, 4, 2))
    card.source = "card"
    make_payment(customer, [(invoice, "40")], paid_on=date(2026, 4, 3))
    refund(card, invoice, 1000, date(2026, 4, 3))
    period = Period(date(2026, 4, 1), date(2026, 4, 30))
    days = collections_per_day(period, "USD")
    assert [(d.day, d.received.minor, d.refunded.minor, d.net.minor, d.count) for d in days] == [
        (date(2026, 4, 2), 6000, 0, 6000, 1),
        (date(2026, 4, 3), 4000, 1000, 3000, 1),
    ]
    channels = payments_by_channel(period, "USD")
    assert [(c.channel, c.amount.minor, c.count) for c in channels] == [
        ("card", 6000, 1),
        ("offline", 4000, 1),
    ]


def test_invoice_over_settled_on_a_past_day_counts_as_nothing_not_less():
    # given: paid on 3-20, refunded in full on 4-15, then paid again by a payment the ERP
    # dates 4-05 (back-dated): on 4-05..4-14 the records sum to more than the total
    customer = make_customer()
    invoice = make_invoice(customer, issue_date=date(2026, 3, 1), due_date=DUE)
    make_invoice(customer, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "30")])
    first = make_payment(customer, [(invoice, "100.00")], paid_on=date(2026, 3, 20))
    first.source = "card"
    refund(first, invoice, 10000, date(2026, 4, 15))
    make_payment(customer, [(invoice, "100.00")], paid_on=date(2026, 4, 5))
    # then: the invoice is 0 on those days (not −100, which would hide `other`)
    assert bucket(date(2026, 4, 10), "1-30") == "30.00"
    report = aging(date(2026, 4, 10), currency="USD", customer_limit=None)
    assert str(report.customers[0].total.to_decimal()) == "30.00"
    assert total(date(2026, 4, 20)) == "30.00"
    assert total(date(2026, 3, 25)) == "30.00"
    assert total(date(2026, 3, 19)) == "130.00"


def test_the_one_statement_page_gives_the_totals_of_the_plain_aging_and_its_top_rows():
    """The page's query (totals and top customers in one statement, from the per-customer
    rows) agrees with the totals-only query, before and after a customer pays in full
    (total 0: then left out of the customers), in two currencies."""
    big, middle, small, paid = (make_customer() for _ in range(4))
    eur = make_customer(currency="EUR")
    make_invoice(
        big, issue_date=date(2026, 1, 1), due_date=date(2026, 1, 31), lines=[("x", "1", "90")]
    )
    make_invoice(big, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "9")])
    make_invoice(middle, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "2", "20")])
    make_invoice(
        small, issue_date=date(2026, 4, 1), due_date=date(2026, 5, 1), lines=[("x", "1", "3")]
    )
    settled = make_invoice(
        paid, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "50")]
    )
    make_payment(paid, [(settled, "50.00")], paid_on=date(2026, 3, 15))
    make_invoice(eur, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "7")])
    db.session.flush()
    for as_of in (date(2026, 3, 10), date(2026, 4, 10), date(2026, 6, 30)):
        plain = aging(as_of)
        top_two = aging(as_of, customer_limit=2)
        every = aging(as_of, customer_limit=None)
        assert top_two.totals == plain.totals == every.totals, as_of
        assert top_two.customers == every.customers[:2], as_of
        shown = [row.account_number for row in every.customers]
        assert (paid.account_number in shown) == (as_of < date(2026, 3, 15)), as_of
        for row in plain.totals:
            in_currency = [c for c in every.customers if c.currency == row.currency]
            for key in row.buckets:
                assert sum(c.buckets[key].minor for c in in_currency) == row.buckets[key].minor
