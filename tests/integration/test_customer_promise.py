"""A customer promises from the account page: within PROMISE_MAX_DAYS, reminders wait."""

from __future__ import annotations

from datetime import date, timedelta

from flask.testing import FlaskClient
from sqlalchemy import select

from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.promises.models import Promise
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice


def _setup(client: FlaskClient):  # type: ignore[no-untyped-def]
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(customer, issue_date=date(2026, 9, 1), lines=[("A", "1", "75.00")])
    db.session.commit()
    login_as(client, customer)
    page = client.get("/account")
    assert page.status_code == 200
    return customer, invoice, page.text


def test_a_customer_promises_to_pay_by_a_date(client: FlaskClient) -> None:
    customer, invoice, page = _setup(client)
    assert "I will pay by (at most 14 days from today)" in page
    by = customer_today(customer, utcnow()) + timedelta(days=14)
    response = client.post(
        "/account/promise",
        data={
            "csrf_token": csrf_token_from(page),
            "invoices": invoice.number,
            "promised_on": by.isoformat(),
        },
    )
    assert response.status_code == 302
    promise = db.session.scalar(select(Promise).where(Promise.customer_id == customer.id))
    assert (promise.amount_minor, promise.source, promise.promised_on) == (7500, "customer", by)
    assert promise.created_by == f"customer:{customer.id}"
    after = client.get("/account").text
    assert "We will not send reminders for these invoices until" in after
    assert "You promised to pay $75.00 by" in after


def test_a_promise_beyond_the_limit_is_refused(client: FlaskClient) -> None:
    customer, invoice, page = _setup(client)
    by = customer_today(customer, utcnow()) + timedelta(days=15)
    response = client.post(
        "/account/promise",
        data={
            "csrf_token": csrf_token_from(page),
            "invoices": invoice.number,
            "promised_on": by.isoformat(),
        },
    )
    assert response.status_code == 302
    assert "A promise can be at most 14 days ahead." in client.get("/account").text
    assert db.session.scalar(select(Promise)) is None


def test_a_bad_date_or_a_foreign_invoice_is_refused(client: FlaskClient) -> None:
    customer, invoice, page = _setup(client)
    other = make_invoice(make_customer(), issue_date=date(2026, 9, 1))
    db.session.commit()
    token = csrf_token_from(page)
    client.post(
        "/account/promise",
        data={"csrf_token": token, "invoices": invoice.number, "promised_on": "31/12/2026"},
    )
    assert "Please enter a valid date." in client.get("/account").text
    by = customer_today(customer, utcnow()) + timedelta(days=3)
    client.post(
        "/account/promise",
        data={"csrf_token": token, "invoices": other.number, "promised_on": by.isoformat()},
    )
    assert "Choose at least one invoice that is still open." in client.get("/account").text
    assert db.session.scalar(select(Promise)) is None


def test_anonymous_and_staff_cannot_promise(client: FlaskClient, staff_client: FlaskClient) -> None:
    response = staff_client.post("/account/promise", data={})
    assert response.status_code in (400, 401)
    assert db.session.scalar(select(Promise)) is None


def test_the_only_invoice_to_promise_is_ticked_and_of_two_neither_is(
    client: FlaskClient,
) -> None:
    customer, invoice, page = _setup(client)
    assert f'value="{invoice.number}" checked>' in page
    second = make_invoice(customer, lines=[("B", "1", "10.00")])
    db.session.commit()
    page = client.get("/account").text
    assert f'value="{invoice.number}">' in page
    assert f'value="{second.number}">' in page
