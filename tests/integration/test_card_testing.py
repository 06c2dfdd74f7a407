"""Card testing: rate limits on the pages that reach Stripe, a reused SetupIntent, and a
cap on failed card attempts per customer per day."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.db import utcnow
from portal.extensions import db
from portal.payments.models import Checkout
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.usefixtures("stripe_app")

SETUP_SECRET = re.compile(r'data-setup-secret="([^"]+)"')


def _customer():
    customer = make_customer(timezone="UTC")
    today = utcnow().date()
    invoice = make_invoice(
        customer,
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        lines=[("Consulting", "1", "150.00")],
    )
    return customer, invoice


def _start(client, invoice):
    page = client.get("/pay")
    return client.post(
        "/pay", data={"csrf_token": csrf_token_from(page.text), "invoices": [invoice.number]}
    )


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --- rate limits ------------------------------------------------------------------------------
def test_card_pages_are_rate_limited_per_account(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "CARD_RATE_LIMIT", "4 per minute")
    customer, invoice = _customer()
    login_as(client, customer)
    location = _start(client, invoice).headers["Location"]
    statuses = [client.get(location).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # the checkout's opening counted too
    page = client.get(location)
    assert page.status_code == 429
    assert "Too many attempts" in page.text
    # and opening another checkout shares the same budget, writing nothing
    before = _count(Checkout)
    assert _start(client, invoice).status_code == 429
    assert _count(Checkout) == before


def test_card_pages_are_rate_limited_per_ip_across_accounts(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "CARD_RATE_LIMIT", "100 per minute")
    monkeypatch.setitem(app.config, "CARD_RATE_LIMIT_PER_IP", "3 per minute")
    statuses = []
    for _ in range(2):
        customer, invoice = _customer()
        login_as(client, customer)
        response = _start(client, invoice)
        statuses.append(response.status_code)
        if response.status_code == 302:
            statuses.append(client.get(response.headers["Location"]).status_code)
    assert statuses == [302, 200, 302, 429]
    # another address is not held back by this one's budget
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    customer, invoice = _customer()
    login_as(other, customer)
    assert _start(other, invoice).status_code == 302


def test_the_session_budget_is_per_session(app, client, monkeypatch):
    from portal.payments.card_testing import _per_session

    customer, _invoice = _customer()
    login_as(client, customer)
    client.get("/pay")
    with app.test_request_context():
        with client.session_transaction() as session:
            secret = session["csrf_token"]
        from flask import session as live

        live["csrf_token"] = secret
        first = _per_session()
        live["csrf_token"] = secret + "x"
        second = _per_session()
    assert first.startswith("session:")
    assert first != second
    assert secret not in first
