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


def test_refused_forms_and_update_total_cost_nothing_of_the_budget(app, client, monkeypatch):
    # ten mistyped amounts and "Update total" presses open nothing at Stripe
    monkeypatch.setitem(app.config, "CARD_RATE_LIMIT", "4 per minute")
    customer, invoice = _customer()
    login_as(client, customer)
    token = csrf_token_from(client.get("/pay").text)
    for typo in ["1,2,3", "abc", "0", "-5", "9999", "0.001", "12..5", "1e3", "", "0.10"]:
        data = {"csrf_token": token, "invoices": [invoice.number], "amount": typo or "x"}
        refused = client.post("/pay", data=data)
        assert refused.status_code == 400, (typo, refused.status_code)
        assert "Too many attempts" not in refused.text
        assert client.post("/pay", data=data | {"update": "y"}).status_code in (200, 400)
    assert _count(Checkout) == 0
    # and the customer can still open the checkout and its card page
    response = _start(client, invoice)
    assert response.status_code == 302
    assert client.get(response.headers["Location"]).status_code == 200


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


def test_the_session_budget_is_per_session_and_the_account_budget_per_customer(app, client):
    from portal.payments.card_testing import _per_account, _per_session

    customer, _invoice = _customer()
    other = app.test_client()
    keys = []
    for browser in (client, other):  # the same customer opens two links, in two browsers
        login_as(browser, customer)
        token = browser.get_cookie("portal_customer").value
        with app.test_request_context(headers={"Cookie": f"portal_customer={token}"}):
            keys.append((_per_session(), _per_account()))
    (first_session, first_account), (second_session, second_account) = keys
    assert first_session.startswith("session:")
    assert first_session != second_session
    assert first_account == second_account == f"customer:{customer.id}"


# --- one open SetupIntent per customer, reused ------------------------------------------------
def _card_page(client, location):
    page = client.get(location)
    assert page.status_code == 200, page.text
    return page, SETUP_SECRET.search(page.text).group(1)


def _setup_count(localstripe) -> int:
    import requests

    from tests.stripe_journeys import SECRET_KEY

    listed = requests.get(
        f"{localstripe.url}/v1/setup_intents", auth=(SECRET_KEY, ""), timeout=5
    ).json()
    return len(listed["data"])


def test_reloading_the_card_page_reuses_the_open_setup_intent(client, localstripe):
    customer, invoice = _customer()
    login_as(client, customer)
    location = _start(client, invoice).headers["Location"]
    _page, first = _card_page(client, location)
    for _ in range(3):
        assert _card_page(client, location)[1] == first
    assert _setup_count(localstripe) == 1  # at Stripe too: one object, not four
    # another checkout of the same customer reuses it too
    other = _start(client, invoice).headers["Location"]
    assert _card_page(client, other)[1] == first
    # once a card is set up on it, the next visit gets a new one
    localstripe.set_up_card(first)
    _page, second = _card_page(client, location)
    assert second != first
    assert _card_page(client, location)[1] == second


def test_a_setup_intent_of_another_customer_is_never_reused(client, localstripe):
    from portal.payments.models import PaymentAccount

    first, invoice = _customer()
    login_as(client, first)
    _page, theirs = _card_page(client, _start(client, invoice).headers["Location"])
    second, other_invoice = _customer()
    login_as(client, second)
    location = _start(client, other_invoice).headers["Location"]
    account = db.session.scalar(
        select(PaymentAccount).where(PaymentAccount.customer_id == second.id)
    )
    account.open_setup_intent_id = theirs.split("_secret_")[0]
    db.session.flush()
    _page, mine = _card_page(client, location)
    assert mine != theirs


# --- failed attempts per customer per day --------------------------------------------------------
def _pay(client, localstripe, location, card):
    page, secret = _card_page(client, location)
    setup = localstripe.set_up_card(secret, card)
    return client.post(
        f"{location}/confirm",
        data={
            "csrf_token": csrf_token_from(page.text),
            "setup_intent": setup,
            "card_choice": "new",
        },
    )


def test_failed_card_attempts_are_capped_per_customer_and_day(
    app, client, localstripe, monkeypatch
):
    from portal.payments.models import CardFailure, Payment
    from tests.stripe_journeys import CARD_DECLINED_AT_PAYMENT, CARD_OK

    monkeypatch.setitem(app.config, "CARD_FAILURES_PER_DAY", 2)
    customer, invoice = _customer()
    customer.locale = "es"
    login_as(client, customer)
    location = _start(client, invoice).headers["Location"]
    # given two declined charges
    for _ in range(2):
        assert _pay(client, localstripe, location, CARD_DECLINED_AT_PAYMENT).status_code == 302
    assert _count(CardFailure) == 2
    # then the card page says card payments are paused, in the customer's language,
    # and offers no card form (no SetupIntent is created or shown)
    page = client.get(location)
    assert page.status_code == 429
    assert "los pagos con tarjeta de su cuenta están en pausa" in page.text
    assert "data-setup-secret" not in page.text
    # and a good card is not tried: nothing is charged, nothing recorded
    token = csrf_token_from(client.get("/pay").text)
    response = client.post(
        f"{location}/confirm",
        data={"csrf_token": token, "setup_intent": "seti_anything", "card_choice": "new"},
    )
    assert response.headers["Location"] == location
    assert _count(Payment) == 0
    assert _count(CardFailure) == 2
    checkout = db.session.scalar(select(Checkout).order_by(Checkout.id.desc()))
    assert checkout.status == "open"
    # and no new checkout opens: the choice page says why
    chosen = _start(client, invoice)
    assert chosen.status_code == 400
    assert "en pausa" in chosen.text
    # a day later, the customer may pay again
    for failure in db.session.scalars(select(CardFailure)):
        failure.failed_at -= timedelta(hours=24, seconds=1)
    db.session.flush()
    assert _pay(client, localstripe, location, CARD_OK).headers["Location"] == f"{location}/done"
    assert _count(Payment) == 1


def test_a_card_not_set_up_for_this_customer_counts_as_a_failure(client, localstripe):
    from portal.payments.models import CardFailure

    customer, invoice = _customer()
    login_as(client, customer)
    location = _start(client, invoice).headers["Location"]
    page, _secret = _card_page(client, location)
    response = client.post(
        f"{location}/confirm",
        data={"csrf_token": csrf_token_from(page.text), "setup_intent": "seti_forged"},
    )
    assert response.headers["Location"] == location
    (failure,) = db.session.scalars(select(CardFailure)).all()
    assert (failure.customer_id, failure.code) == (customer.id, "card_not_usable")


@pytest.mark.parametrize(
    ("code", "counts"),
    [
        ("card_declined", True),
        ("incorrect_cvc", True),
        ("card_not_usable", True),
        ("gateway_unavailable", False),
        ("attempt_in_doubt", False),
        (None, False),
        ("", False),
    ],
)
def test_only_the_cards_own_failures_count(code, counts):
    from portal.payments.card_testing import counts_as_failure

    assert counts_as_failure(code) is counts
