"""Amounts typed as each language writes them, through the real forms: the pay page, the
dispute form, the plan builder, and the staff side's partial credit, counter-offer, policy,
promise and refund. Grouped totals as the pages show them are read to the minor unit;
what is ambiguous or not an amount is refused in the reader's language, writing nothing."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.customers.models import Customer
from portal.db import utcnow
from portal.disputes.models import Dispute, DisputeLine
from portal.extensions import db
from portal.invoices.models import CreditNote, Invoice
from portal.money import Money
from portal.payments.models import Checkout
from portal.promises.models import Promise
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice
from tests.integration.test_dispute_customer import post_multipart

pytest_plugins = ["tests.stripe_server"]

NNBSP, NBSP = "\u202f", "\u00a0"

# The same thousand and fifty cents, as each language writes it (and the reported inputs).
GROUPED = {
    "en": ["1,000.50"],
    "es": ["1.000,50"],
    "fr": ["1 000,50", f"1{NBSP}000,50", f"1{NNBSP}000,50"],
    "de": ["1.000,50"],
}
GROUPED_CASES = [(locale, text) for locale, texts in GROUPED.items() for text in texts]
NOT_A_NUMBER = {
    "en": "Please enter the amount as a number, for example 120.50.",
    "es": "Indique el importe como número, por ejemplo 120,50.",
    "fr": "Saisissez le montant sous forme de nombre, par exemple 120,50.",
    "de": "Bitte geben Sie den Betrag als Zahl ein, zum Beispiel 120,50.",
}
VALID_AMOUNT = {
    "en": "Please enter a valid amount.",
    "es": "Ingrese un importe válido.",
    "fr": "Veuillez saisir un montant valide.",
    "de": "Bitte geben Sie einen gültigen Betrag ein.",
}


def _count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def _customer(locale: str, currency: str = "EUR", total: str = "2000.00") -> Customer:
    customer = make_customer(locale=locale, currency=currency, timezone="UTC")
    today = utcnow().date()
    make_invoice(
        customer,
        number=f"INV-{customer.id}",
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        lines=[("Consulting", "1", total), ("Delivery", "1", "10.000")],
    )
    db.session.commit()
    return customer


# --- the pay page ------------------------------------------------------------------------------
def _pay(client: FlaskClient, customer: Customer, amount: str, **extra: str):  # type: ignore[no-untyped-def]
    page = client.get("/pay")
    assert page.status_code == 200
    data = {"csrf_token": csrf_token_from(page.text), "invoices": [f"INV-{customer.id}"]}
    return client.post("/pay", data=data | {"amount": amount} | extra)


@pytest.mark.parametrize(("locale", "text"), GROUPED_CASES)
def test_the_pay_page_takes_a_grouped_amount_as_its_language_writes_it(
    client: FlaskClient, stripe_app, locale: str, text: str
) -> None:
    customer = _customer(locale)
    login_as(client, customer)
    response = _pay(client, customer, text)
    assert response.status_code == 302, response.text
    checkout = db.session.scalars(select(Checkout)).one()
    assert (checkout.amount_minor, checkout.currency) == (100050, "EUR")


@pytest.mark.parametrize(("locale", "text"), GROUPED_CASES)
def test_update_total_previews_a_grouped_amount(
    client: FlaskClient, stripe_app, locale: str, text: str
) -> None:
    customer = _customer(locale)
    login_as(client, customer)
    response = _pay(client, customer, text, update="1")
    assert response.status_code == 200
    assert Money(100050, "EUR").format(locale) in response.text  # "You pay 1.000,50 €…"
    assert 'aria-invalid="true"' not in response.text
    assert _count(Checkout) == 0


@pytest.mark.parametrize("locale", ["en", "es", "fr", "de"])
def test_the_pay_page_refuses_what_is_not_an_amount_in_the_customers_language(
    client: FlaskClient, stripe_app, locale: str
) -> None:
    customer = _customer(locale)
    login_as(client, customer)
    for text in ("1e3", "NaN", "Infinity", "1,00,0", "12 abc"):
        response = _pay(client, customer, text)
        assert response.status_code == 400, text
        assert VALID_AMOUNT[locale] in response.text, text
    assert _count(Checkout) == 0


def test_the_pay_page_says_why_an_amount_is_ambiguous_or_too_precise(
    client: FlaskClient, stripe_app
) -> None:
    kwd = _customer("de", currency="KWD", total="2000.000")
    login_as(client, kwd)
    response = _pay(client, kwd, "1.000")
    assert response.status_code == 400
    assert f"„1.000“ kann 1,000{NBSP}KWD oder 1.000,000{NBSP}KWD bedeuten." in response.text
    assert _pay(client, kwd, "1.000,000").status_code == 302  # written with its decimals
    assert db.session.scalars(select(Checkout.amount_minor)).all() == [1000000]


@pytest.mark.parametrize(
    ("locale", "text", "minor"),
    [
        ("de", "1.000", 100000),
        ("en", "1,000", 100000),
        ("fr", "1.000", 100000),
    ],
)
def test_a_thousand_or_one_is_decided_by_the_language(
    client: FlaskClient, stripe_app, app, monkeypatch, locale: str, text: str, minor: int
) -> None:
    monkeypatch.setitem(app.config, "PAYMENT_MINIMUM", "0.50")
    customer = _customer(locale)
    login_as(client, customer)
    assert _pay(client, customer, text).status_code == 302
    assert db.session.scalars(select(Checkout.amount_minor)).one() == minor


@pytest.mark.parametrize(("locale", "text"), [("de", "1,000"), ("en", "1.000")])
def test_one_or_a_thousand_is_asked_not_guessed(
    client: FlaskClient, stripe_app, locale: str, text: str
) -> None:
    customer = _customer(locale)
    login_as(client, customer)
    refused = _pay(client, customer, text)
    assert refused.status_code == 400
    assert "1.000,00" in refused.text or "1,000.00" in refused.text  # both readings shown
    assert db.session.scalars(select(Checkout)).all() == []


@pytest.mark.parametrize(
    ("shown_in", "switched_to", "text", "minor"),
    [
        ("en", "de", "1,000.50", 100050),
        ("de", "en", "1.000,50", 100050),
        ("en", "de", "12.50", 1250),
    ],
)
def test_an_amount_is_read_in_the_language_its_form_was_shown_in(
    client: FlaskClient, stripe_app, shown_in: str, switched_to: str, text: str, minor: int
) -> None:
    """The page was shown in one language; the language changed (another tab, another
    device) before the form was sent: the amount is read as the page it was typed on
    writes numbers (a reviewer's "1.000" previewed as $1.00 in English was charged as a
    thousand after a switch to German)."""
    customer = _customer(shown_in)
    login_as(client, customer)
    page = client.get("/pay")
    assert f'name="shown_in" value="{shown_in}"' in page.text
    data = {"csrf_token": csrf_token_from(page.text), "invoices": [f"INV-{customer.id}"]}
    switched = client.post(
        "/language", data={"csrf_token": data["csrf_token"], "locale": switched_to}
    )
    assert switched.status_code == 302
    sent = client.post("/pay", data=data | {"amount": text, "shown_in": shown_in})
    assert sent.status_code == 302, sent.text
    assert db.session.scalars(select(Checkout.amount_minor)).one() == minor


def test_a_form_without_its_language_is_read_in_the_requests(
    client: FlaskClient, stripe_app
) -> None:
    customer = _customer("de")
    login_as(client, customer)
    for shown_in in (None, "xx", "../en"):
        extra = {} if shown_in is None else {"shown_in": shown_in}
        assert _pay(client, customer, "1.000,50", **extra).status_code == 302
    assert set(db.session.scalars(select(Checkout.amount_minor))) == {100050}


def test_a_pasted_total_with_its_currency_sign_is_the_amount_and_another_currency_is_refused(
    client: FlaskClient, stripe_app
) -> None:
    customer = _customer("en", currency="USD")
    login_as(client, customer)
    refused = _pay(client, customer, "€1,000.50")
    assert refused.status_code == 400
    assert "This amount is in USD: please enter it without another currency." in refused.text
    assert _count(Checkout) == 0
    assert _pay(client, customer, "$1,000.50").status_code == 302
    assert db.session.scalars(select(Checkout.amount_minor)).one() == 100050


def test_a_proposed_amount_reads_back_in_the_customers_language(
    client: FlaskClient, stripe_app
) -> None:
    """When one card cannot take the total (above Stripe's 999,999.99), step 1 proposes
    the most it can, written as the customer's language writes it: posted as it is, it
    is that amount."""
    customer = _customer("de", total="2000000.00")
    login_as(client, customer)
    assert 'value="999999,99"' in client.get("/pay").text
    assert _pay(client, customer, "999999,99").status_code == 302
    assert db.session.scalars(select(Checkout.amount_minor)).one() == 99999999


# --- the dispute form ----------------------------------------------------------------------------
@pytest.mark.parametrize(("locale", "text"), GROUPED_CASES)
def test_a_dispute_line_takes_a_grouped_amount(
    client: FlaskClient, app, tmp_path, monkeypatch, locale: str, text: str
) -> None:
    monkeypatch.setitem(app.config, "UPLOAD_DIR", str(tmp_path / "uploads"))
    customer = _customer(locale)
    login_as(client, customer)
    number = f"INV-{customer.id}"
    token = csrf_token_from(client.get(f"/invoices/{number}/dispute").text)
    data = {"csrf_token": token, "reason": "damaged", "message": "Broken.", "evidence": []}
    response = post_multipart(
        client, f"/invoices/{number}/dispute", data | {"line-1": "y", "amount-1": text}
    )
    assert response.status_code == 303, response.text
    assert db.session.scalars(select(DisputeLine.amount_minor)).all() == [100050]


@pytest.mark.parametrize("locale", ["en", "es", "fr", "de"])
def test_a_dispute_line_refuses_what_is_not_an_amount_and_saves_nothing(
    client: FlaskClient, app, tmp_path, monkeypatch, locale: str
) -> None:
    monkeypatch.setitem(app.config, "UPLOAD_DIR", str(tmp_path / "uploads"))
    customer = _customer(locale)
    login_as(client, customer)
    number = f"INV-{customer.id}"
    token = csrf_token_from(client.get(f"/invoices/{number}/dispute").text)
    data = {"csrf_token": token, "reason": "damaged", "message": "Broken.", "evidence": []}
    for text in ("1e3", "1,00,0", "NaN"):
        response = post_multipart(
            client, f"/invoices/{number}/dispute", data | {"line-1": "y", "amount-1": text}
        )
        assert response.status_code == 400, text
        assert NOT_A_NUMBER[locale] in response.text, text
    assert _count(Dispute) == 0


# --- the plan builder -------------------------------------------------------------------------
@pytest.mark.parametrize(("locale", "text"), GROUPED_CASES)
def test_a_plans_down_payment_takes_a_grouped_amount(
    client: FlaskClient, locale: str, text: str
) -> None:
    customer = make_customer(locale=locale, currency="EUR", timezone="UTC")
    invoice = make_invoice(customer, issue_date=date(2026, 9, 1), lines=[("Work", "1", "3000.50")])
    db.session.commit()
    login_as(client, customer)
    page = client.get("/plans/new")
    first = utcnow().date() + timedelta(days=14)
    data = {
        "csrf_token": csrf_token_from(page.text),
        "invoices": invoice.number,
        "down_payment": text,
        "frequency": "monthly",
        "installments": "4",
        "first_payment_date": first.isoformat(),
        "preview": "1",
    }
    response = client.post("/plans/new", data=data)
    assert response.status_code == 200, response.text
    assert 'id="plan-schedule"' in response.text
    # 3,000.50 less 1,000.50 down is 2,000.00: four payments of 500.00
    assert response.text.count(Money(50000, "EUR").format(locale)) >= 4


# --- the staff side ---------------------------------------------------------------------------
def _in_language(client: FlaskClient, locale: str) -> None:
    with client.session_transaction() as session:
        session["locale"] = locale


def _open_dispute(invoice: Invoice) -> Dispute:
    from portal.audit.actors import Actor
    from portal.disputes.services import open_dispute

    customer = db.session.get(Customer, invoice.customer_id)
    dispute = open_dispute(
        customer, invoice, {1: None}, "damaged", "Broken.", [], actor=Actor.customer(customer),
        now=utcnow() - timedelta(days=1),
    )  # fmt: skip
    db.session.commit()
    return dispute


@pytest.mark.parametrize(("locale", "text"), GROUPED_CASES)
def test_a_partial_credit_takes_a_grouped_amount(
    staff_client: FlaskClient, locale: str, text: str
) -> None:
    customer = _customer("en")
    invoice = db.session.scalars(select(Invoice).where(Invoice.customer_id == customer.id)).one()
    dispute = _open_dispute(invoice)
    _in_language(staff_client, locale)
    page = staff_client.get(f"/staff/disputes/{dispute.id}").text
    seen = re.search(r'name="messages_seen" value="(\d+)"', page)
    response = staff_client.post(
        f"/staff/disputes/{dispute.id}/accept-in-part",
        data={
            "csrf_token": csrf_token_from(page),
            "messages_seen": seen.group(1) if seen else "0",
            "credit-1": text,
            "reason": "Part of it arrived whole.",
        },
    )
    assert response.status_code == 302
    db.session.refresh(dispute)
    assert dispute.status == "partly_accepted"
    assert db.session.scalars(select(CreditNote.amount_minor)).all() == [100050]


@pytest.mark.parametrize(("locale", "text"), GROUPED_CASES)
def test_a_promise_taken_on_the_desk_takes_a_grouped_amount(
    staff_client: FlaskClient, locale: str, text: str
) -> None:
    customer = _customer("en")
    _in_language(staff_client, locale)
    page = staff_client.get(f"/staff/customers/{customer.account_number}").text
    response = staff_client.post(
        f"/staff/customers/{customer.account_number}/promises",
        data={
            "csrf_token": csrf_token_from(page),
            "invoices": [f"INV-{customer.id}"],
            "amount": text,
            "promised_on": (utcnow().date() + timedelta(days=3)).isoformat(),
        },
    )
    assert response.status_code == 302
    assert db.session.scalars(select(Promise.amount_minor)).all() == [100050]


def test_a_desk_amount_in_another_currency_is_refused_in_the_staff_language(
    staff_client: FlaskClient,
) -> None:
    customer = _customer("en")
    _in_language(staff_client, "fr")
    page = staff_client.get(f"/staff/customers/{customer.account_number}").text
    response = staff_client.post(
        f"/staff/customers/{customer.account_number}/promises",
        data={
            "csrf_token": csrf_token_from(page),
            "invoices": [f"INV-{customer.id}"],
            "amount": "$1 000,50",
            "promised_on": (utcnow().date() + timedelta(days=3)).isoformat(),
        },
    )
    assert response.status_code == 302
    shown = staff_client.get(response.headers["Location"]).text
    assert "Ce montant est en EUR : veuillez le saisir sans autre devise." in shown
    assert _count(Promise) == 0


@pytest.mark.parametrize(("locale", "text"), [("de", "1.000,50"), ("fr", "1 000,50")])
def test_a_policy_limit_takes_a_grouped_amount(
    admin_client: FlaskClient, locale: str, text: str
) -> None:
    _in_language(admin_client, locale)
    page = admin_client.get("/staff/policies/standard")
    assert page.status_code == 200
    data = {
        "csrf_token": csrf_token_from(page.text),
        "max_installments": "12",
        "frequencies": ["monthly"],
        "max_duration_months": "12",
        "min_installment": "20,00",
        "min_down_payment_percent": "10",
        "max_first_payment_days": "30",
        "max_total": text,
        "cooling_off_days": "90",
    }
    response = admin_client.post("/staff/policies/standard", data=data)
    assert response.status_code == 302, response.text
    from portal.plans.queries import policy_for_segment

    policy = policy_for_segment("standard")
    assert policy.max_total_for("USD") == Money(100050, "USD")
    assert policy.min_installment_for("USD") == Money(2000, "USD")
