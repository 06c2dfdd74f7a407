"""The customer's plan builder over HTTP: offers, the preview with real numbers, each
builder error in words, nothing written before `accept`."""

from __future__ import annotations

from datetime import date, timedelta

from flask.testing import FlaskClient

from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import Invoice
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice


def _signed_in(client: FlaskClient, amount: str = "2100.00") -> tuple[Customer, Invoice, str]:
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(customer, issue_date=date(2026, 9, 1), lines=[("Work", "1", amount)])
    db.session.commit()
    login_as(client, customer)
    page = client.get("/plans/new")
    assert page.status_code == 200
    return customer, invoice, page.text


def _today(customer: Customer) -> date:
    return customer_today(customer, utcnow())


def _builder(invoice: Invoice, token: str, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {
        "csrf_token": token,
        "invoices": invoice.number,
        "down_payment": "225.00",
        "frequency": "monthly",
        "installments": "12",
        "preview": "1",
    }
    data.update(fields)
    return data


def test_preview_names_the_broken_limit_and_the_nearest_plan_within_policy(
    client: FlaskClient,
) -> None:
    customer, invoice, page = _signed_in(client)
    first = _today(customer) + timedelta(days=14)
    response = client.post(
        "/plans/new",
        data=_builder(invoice, csrf_token_from(page), first_payment_date=first.isoformat()),
    )
    assert response.status_code == 200
    text = response.text
    assert "12 installments is over the limit of 6." in text
    assert "6 monthly payments of $312.50 would be approved now." in text
    assert text.count("$156.25") == 12  # 1,875.00 in 12
    assert "$225.00" in text
    assert '<td data-label="Total" class="num amount" id="plan-total">$2,100.00</td>' in text
