"""What one card charge can take (Stripe's minimum, maximum and three-decimal step), and
what the pay page says when the whole payable amount is outside it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.db import utcnow
from portal.extensions import db
from portal.money import Money
from portal.payments.models import Checkout
from portal.payments.policy import (
    CardProblem,
    card_chargeable_part,
    card_maximum,
    card_minimum,
    card_problem,
    effective_minimum,
    is_small_balance,
)
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice, make_payment

pytest_plugins = ["tests.stripe_server"]


@pytest.mark.parametrize(
    ("amount", "problem", "chargeable"),
    [
        (Money(50, "USD"), None, Money(50, "USD")),
        (Money(49, "USD"), CardProblem.BELOW_CARD_MINIMUM, Money(0, "USD")),
        (Money(3_000_000_000, "USD"), CardProblem.ABOVE_CARD_MAXIMUM, Money(99_999_999, "USD")),
        (Money(99_999_999, "USD"), None, Money(99_999_999, "USD")),
        (Money(99_999_999, "JPY"), None, Money(99_999_999, "JPY")),
        (Money(49, "JPY"), CardProblem.BELOW_CARD_MINIMUM, Money(0, "JPY")),
        (Money(5, "KWD"), CardProblem.BELOW_CARD_MINIMUM, Money(0, "KWD")),
        (Money(12_345, "KWD"), CardProblem.NOT_CARD_REPRESENTABLE, Money(12_340, "KWD")),
        (Money(12_340, "KWD"), None, Money(12_340, "KWD")),
        (Money(29, "GBP"), CardProblem.BELOW_CARD_MINIMUM, Money(0, "GBP")),
    ],
)
def test_what_one_card_charge_can_take(amount, problem, chargeable):
    assert card_problem(amount) == problem
    assert card_chargeable_part(amount) == chargeable
    assert is_small_balance(amount) == (not chargeable.is_positive)


def test_stripe_limits_in_our_minor_units():
    assert card_maximum("USD") == Money(99_999_999, "USD")  # $999,999.99
    assert card_maximum("KWD") == Money(99_999_990, "KWD")  # ends in 0
    assert card_minimum("USD") == Money(50, "USD")
    assert card_minimum("KWD") == Money(10, "KWD")  # not in Stripe's table: its step


def _customer_owing(currency: str, price: str, *, paid: str | None = None):
    customer = make_customer(currency=currency, timezone="UTC")
    today = utcnow().date()
    invoice = make_invoice(
        customer,
        lines=[("Plant", "1", price)],
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
    )
    if paid:
        make_payment(customer, [(invoice, paid)])
    return customer, invoice


@pytest.mark.usefixtures("stripe_app")
def test_a_payable_amount_above_stripes_maximum_is_offered_in_parts(client):
    # given 30,000,000.00 USD owed
    customer, invoice = _customer_owing("USD", "30000000.00")
    login_as(client, customer)
    # when
    page = client.get("/pay")
    # then the page says why and offers the largest single payment
    assert page.status_code == 200
    assert "One card payment can be at most $999,999.99" in page.text
    assert re.search(r'name="amount"[^>]*value="999999.99"', page.text)
    # and that part starts a checkout
    response = client.post(
        "/pay",
        data={
            "csrf_token": csrf_token_from(page.text),
            "invoices": [invoice.number],
            "amount": "999999.99",
        },
    )
    assert response.status_code == 302
    checkout = db.session.scalar(select(Checkout).where(Checkout.customer_id == customer.id))
    assert checkout.amount == Money(99_999_999, "USD")


@pytest.mark.usefixtures("stripe_app")
def test_a_three_decimal_remainder_is_offered_to_the_last_chargeable_unit(client):
    customer, _invoice = _customer_owing("KWD", "5.005")
    login_as(client, customer)
    page = client.get("/pay").text
    assert "only in steps of KWD0.010" in page
    assert "Pay KWD5.000 by card" in page
    assert re.search(r'name="amount"[^>]*value="5.000"', page)


@pytest.mark.usefixtures("stripe_app")
def test_a_balance_below_the_card_minimum_says_how_else_to_pay(client):
    customer, _invoice = _customer_owing("USD", "100.00", paid="99.60")
    login_as(client, customer)
    page = client.get("/pay").text
    assert "Card payments start at $0.50, so $0.40 cannot be paid by card" in page
    assert "billing@northwind.example" in page


def _pay(client, invoice, amount=""):
    page = client.get("/pay")
    return client.post(
        "/pay",
        data={
            "csrf_token": csrf_token_from(page.text),
            "invoices": [invoice.number],
            "amount": amount,
        },
    )


def _checkouts(customer) -> int:
    return db.session.scalar(
        select(func.count()).select_from(Checkout).where(Checkout.customer_id == customer.id)
    )


@pytest.mark.usefixtures("stripe_app")
@pytest.mark.parametrize(
    ("currency", "price", "paid", "amount", "message"),
    [
        ("USD", "30000000.00", None, "", "One card payment can be at most $999,999.99"),
        ("USD", "30000000.00", None, "1000000.00", "One card payment can be at most $999,999.99"),
        ("USD", "100.00", "99.60", "", "Card payments start at $0.50"),
        ("KWD", "5.005", None, "", "only in steps of KWD0.010"),
        ("KWD", "5.005", None, "1.235", "only in steps of KWD0.010"),
        ("KWD", "12.345", "12.340", "", "Card payments start at KWD0.010"),
    ],
)
def test_an_amount_one_card_cannot_take_is_refused_with_what_to_do(
    client, currency, price, paid, amount, message
):
    # given
    customer, invoice = _customer_owing(currency, price, paid=paid)
    login_as(client, customer)
    # when
    response = _pay(client, invoice, amount)
    # then a message, a 400, nothing written
    assert response.status_code == 400
    assert message in response.text
    assert _checkouts(customer) == 0


@pytest.mark.usefixtures("stripe_app")
def test_the_largest_chargeable_part_of_a_three_decimal_balance_starts_a_checkout(client):
    customer, invoice = _customer_owing("KWD", "5.005")
    login_as(client, customer)
    assert _pay(client, invoice, "5.000").status_code == 302
    checkout = db.session.scalar(select(Checkout).where(Checkout.customer_id == customer.id))
    assert checkout.amount == Money(5000, "KWD")


@pytest.mark.usefixtures("stripe_app")
def test_the_card_limit_message_is_translated(client):
    customer, _invoice = _customer_owing("USD", "30000000.00")
    customer.locale = "de"
    db.session.flush()
    login_as(client, customer)
    page = client.get("/pay", headers={"Accept-Language": "de"}).text
    assert "Eine Kartenzahlung kann höchstens" in page


@pytest.mark.parametrize(
    ("configured", "effective"),
    [
        (Money(100, "USD"), Money(100, "USD")),  # the creditor's 1.00 is above Stripe's 0.50
        (Money(10, "USD"), Money(50, "USD")),  # 0.10 configured: a card takes 0.50 at least
        (Money(1, "JPY"), Money(50, "JPY")),  # PAYMENT_MINIMUM 1.00 in yen is ¥1
        (Money(5, "KWD"), Money(10, "KWD")),  # up to what a card can charge
        (Money(1000, "KWD"), Money(1000, "KWD")),
    ],
)
def test_the_smallest_partial_payment_is_one_rule(configured, effective):
    assert effective_minimum(configured) == effective


@pytest.mark.usefixtures("stripe_app")
def test_a_partial_payment_below_the_card_minimum_is_refused_as_below_the_minimum(client):
    # given ¥1,000 owed, and PAYMENT_MINIMUM 1.00 (¥1) while cards start at ¥50
    customer, invoice = _customer_owing("JPY", "1000")
    login_as(client, customer)
    page = client.get("/pay").text
    # then the page, the form and the checkout agree on ¥50
    assert "The smallest partial payment is ¥50." in page
    assert 'data-minimum="50"' in page
    response = _pay(client, invoice, "10")
    assert response.status_code == 400
    assert "The smallest amount you can pay is ¥50." in response.text
    assert "bank transfer" not in response.text
    assert _checkouts(customer) == 0
    assert _pay(client, invoice, "50").status_code == 302


@pytest.mark.usefixtures("stripe_app")
def test_a_balance_no_card_can_pay_offers_no_partial_payment(client):
    customer, _invoice = _customer_owing("KWD", "12.345", paid="12.340")
    login_as(client, customer)
    page = client.get("/pay").text
    assert "Card payments start at KWD0.010" in page
    assert "smallest partial payment" not in page


@pytest.mark.usefixtures("stripe_app")
@pytest.mark.parametrize(
    ("currency", "price", "paid", "message"),
    [
        ("JPY", "1000", "998", "Card payments start at ¥50, so ¥2 cannot be paid by card"),
        ("KWD", "12.345", "12.340", "Card payments start at KWD0.010"),
    ],
)
def test_the_account_page_offers_no_card_payment_that_cannot_succeed(
    client, currency, price, paid, message
):
    customer, _invoice = _customer_owing(currency, price, paid=paid)
    login_as(client, customer)
    page = client.get("/account").text
    assert "Pay all overdue" not in page
    assert "Choose invoices to pay" not in page
    assert message in page


@pytest.mark.usefixtures("stripe_app")
def test_the_account_page_still_offers_what_a_card_can_take(client):
    customer, _invoice = _customer_owing("KWD", "5.005")
    login_as(client, customer)
    page = client.get("/account").text
    assert "Pay all overdue" in page
    assert 'id="card-notice"' not in page
