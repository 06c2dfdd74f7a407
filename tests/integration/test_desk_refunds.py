"""Refunds from the customer page: through the ledger and localstripe, emailed, in the
timeline, and safe against a second submission of the same form."""

from __future__ import annotations

from datetime import date

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.extensions import db
from portal.notifications.models import OutboxMessage
from portal.payments.models import Payment, Refund
from tests.factories import csrf_token_from, make_customer, make_invoice, make_payment
from tests.stripe_journeys import pay

pytest_plugins = ["tests.stripe_server"]


@pytest.fixture
def paid(stripe_app, localstripe, app):  # type: ignore[no-untyped-def]
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(
        customer, issue_date=date(2026, 9, 1), lines=[("Widgets", "1", "120.00")]
    )
    with app.test_request_context():
        pay(localstripe, customer, [invoice.number])
    db.session.commit()
    payment = db.session.scalar(select(Payment).where(Payment.customer_id == customer.id))
    return customer, invoice, payment


def _refund_form(client: FlaskClient, customer):  # type: ignore[no-untyped-def]
    page = client.get(f"/staff/customers/{customer.account_number}")
    assert page.status_code == 200
    return page.text


def _post_refund(client, customer, payment, text, **data):  # type: ignore[no-untyped-def]
    return client.post(
        f"/staff/customers/{customer.account_number}/payments/{payment.id}/refund",
        data={"csrf_token": csrf_token_from(text), **data},
    )


def test_a_partial_refund_goes_to_stripe_is_emailed_and_in_the_timeline(
    staff_client: FlaskClient, paid, localstripe
) -> None:
    customer, _invoice, payment = paid
    page = _refund_form(staff_client, customer)
    seen = page.split('name="refunds_seen" value="')[1].split('"')[0]
    response = _post_refund(
        staff_client, customer, payment, page, amount="45.50", reason="damaged", refunds_seen=seen
    )
    assert response.status_code == 302
    # then Stripe holds the refund, the ledger too, and the invoice owes 45.50 again
    [at_stripe] = localstripe.get(f"/v1/refunds?payment_intent={payment.reference}")["data"]
    assert at_stripe["amount"] == 4550
    refund = db.session.scalar(select(Refund).where(Refund.payment_id == payment.id))
    assert (refund.amount_minor, refund.reason) == (4550, "damaged")
    assert refund.actor == f"staff:{staff_client.staff_member.id}"  # type: ignore[attr-defined]
    [email] = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "refund_notice")
    ).all()
    assert "We refunded $45.50 of your card payment" in email.body_text
    after = staff_client.get(f"/staff/customers/{customer.account_number}").text
    assert "Refunded $45.50; the customer will be emailed." in after
    assert "damaged" in after
    assert "$45.50" in after
    # a second submission of the same form (double click) refunds nothing more
    again = _post_refund(
        staff_client, customer, payment, page, amount="45.50", reason="damaged", refunds_seen=seen
    )
    assert again.status_code == 302
    assert (
        "was refunded since the page was opened" in staff_client.get(again.headers["Location"]).text
    )
    assert len(localstripe.get(f"/v1/refunds?payment_intent={payment.reference}")["data"]) == 1
    assert db.session.scalars(select(Refund)).all() == [refund]


def test_a_refund_amount_is_read_in_the_specialists_language(
    staff_client: FlaskClient, paid, localstripe
) -> None:
    customer, _invoice, payment = paid
    with staff_client.session_transaction() as session:
        session["locale"] = "fr"
    page = _refund_form(staff_client, customer)
    response = _post_refund(
        staff_client, customer, payment, page, amount="45,50 $US", reason="abîmé", refunds_seen="0"
    )
    assert response.status_code == 302
    [at_stripe] = localstripe.get(f"/v1/refunds?payment_intent={payment.reference}")["data"]
    assert at_stripe["amount"] == 4550


@pytest.mark.parametrize(
    ("amount", "reason", "message"),
    [
        ("120.01", "too much", "more than what is left to refund on this payment"),
        ("-5", "negative", "The amount must be more than zero."),
        ("abc", "words", "as a number"),
        ("1,00,0", "misplaced grouping", "as a number"),
        ("45.505", "too precise", "with at most 2 decimals"),
        ("€45", "another currency", "This amount is in USD"),
        ("10", "", "Give the reason for the refund."),
    ],
)
def test_a_bad_refund_changes_nothing_and_says_why(
    staff_client: FlaskClient, paid, localstripe, amount, reason, message
) -> None:
    customer, _invoice, payment = paid
    page = _refund_form(staff_client, customer)
    response = _post_refund(
        staff_client, customer, payment, page, amount=amount, reason=reason, refunds_seen="0"
    )
    assert response.status_code == 302
    assert message in staff_client.get(response.headers["Location"]).text
    assert db.session.scalars(select(Refund)).all() == []
    assert localstripe.get(f"/v1/refunds?payment_intent={payment.reference}")["data"] == []


def test_an_offline_payment_has_no_refund_button_and_is_refused(
    staff_client: FlaskClient, stripe_app
) -> None:
    customer = make_customer()
    invoice = make_invoice(customer)
    payment = make_payment(customer, [(invoice, "10.00")])
    db.session.commit()
    page = _refund_form(staff_client, customer)
    assert f"/payments/{payment.id}/refund" not in page
    response = _post_refund(
        staff_client, customer, payment, page, amount="5", reason="x", refunds_seen="0"
    )
    assert (
        "Only card payments can be refunded here."
        in staff_client.get(response.headers["Location"]).text
    )


def test_another_customers_payment_is_refused(staff_client: FlaskClient, paid) -> None:
    _customer, _invoice, payment = paid
    other = make_customer()
    db.session.commit()
    page = _refund_form(staff_client, other)
    response = _post_refund(
        staff_client, other, payment, page, amount="5", reason="x", refunds_seen="0"
    )
    assert "is not this customer's" in staff_client.get(response.headers["Location"]).text
    assert db.session.scalars(select(Refund)).all() == []
