"""Paying over HTTP: the pages, their refusals, their security, the receipt."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from portal import create_app
from portal.config import ConfigurationError
from portal.db import utcnow
from portal.extensions import db
from portal.payments.inventory import CARD_PAGE_SCRIPTS, STATIC_DIR, _sri
from portal.payments.models import Checkout, CheckoutStatus, Payment, SavedCard
from tests.factories import (
    csrf_token_from,
    login_as,
    make_credit,
    make_customer,
    make_invoice,
    make_payment,
)
from tests.stripe_journeys import CARD_3DS, CARD_DECLINED_AT_PAYMENT, CARD_OK

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.usefixtures("stripe_app")

SETUP_SECRET = re.compile(r'data-setup-secret="([^"]+)"')


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _customer_with_invoices():
    customer = make_customer(timezone="UTC")
    today = utcnow().date()
    overdue = make_invoice(
        customer,
        number=f"OVD-{customer.id}",
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        lines=[("Consulting", "1", "150.00")],
    )
    upcoming = make_invoice(
        customer,
        number=f"UPC-{customer.id}",
        issue_date=today,
        due_date=today + timedelta(days=20),
        lines=[("Support", "1", "50.00")],
    )
    return customer, overdue, upcoming


def _start(client, numbers, amount=""):
    page = client.get("/pay")
    return client.post(
        "/pay",
        data={"csrf_token": csrf_token_from(page.text), "invoices": numbers, "amount": amount},
    )


def _card_page(client, response):
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    return location, client.get(location)


def _confirm(client, localstripe, location, page, card=CARD_OK, **extra):
    setup = localstripe.set_up_card(SETUP_SECRET.search(page.text).group(1), card)
    data = {"csrf_token": csrf_token_from(page.text), "setup_intent": setup, "card_choice": "new"}
    return client.post(f"{location}/confirm", data=data | extra)


# --- starting points --------------------------------------------------------------------------
def test_account_and_invoice_pages_offer_to_pay(client):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    account = client.get("/account").text
    assert 'href="/pay?overdue=1"' in account
    assert "Pay all overdue" in account
    assert 'href="/pay"' in account
    assert f'href="/pay?invoice={overdue.number}"' in client.get(f"/invoices/{overdue.number}").text


def test_nothing_offers_to_pay_when_card_payments_are_off(app, client, monkeypatch):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", None)
    assert "/pay" not in client.get("/account").text
    assert "/pay" not in client.get(f"/invoices/{overdue.number}").text
    assert client.get("/pay").status_code == 404


def test_pay_all_overdue_preselects_only_the_overdue_invoices(client):
    customer, overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    page = client.get("/pay?overdue=1").text
    assert re.search(rf'value="{overdue.number}" checked', page)
    assert not re.search(rf'value="{upcoming.number}" checked', page)
    assert "$150.00" in page
    just_one = client.get(f"/pay?invoice={upcoming.number}").text
    assert re.search(rf'value="{upcoming.number}" checked', just_one)
    assert not re.search(rf'value="{overdue.number}" checked', just_one)


def test_an_invoice_number_is_escaped_once_on_the_pay_page(client):
    # given an invoice number with every character HTML gives a meaning to
    customer = make_customer(timezone="UTC")
    today = utcnow().date()
    make_invoice(
        customer,
        number="A&B<1>'x\"",
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        lines=[("Consulting", "1", "100.00")],
    )
    make_invoice(customer, number="PLAIN-1", due_date=today + timedelta(days=5))
    login_as(client, customer)
    escaped = "A&amp;B&lt;1&gt;&#39;x&#34;"
    # when the page shows it: ticked, as a label, in the split of the total
    page = client.get("/pay").text
    # then it is escaped once wherever it appears
    assert f'data-label="{escaped}" value="{escaped}" checked>' in page
    assert f'<label for="invoice-1">Invoice {escaped}</label>' in page
    assert f"<li>{escaped}: $100.00, paid in full</li>" in page
    # and so after "Update total" with a partial amount, and after a refused amount
    token = csrf_token_from(page)
    numbers = ["A&B<1>'x\"", "PLAIN-1"]
    data = {"csrf_token": token, "invoices": numbers, "amount": "30", "update": "1"}
    updated = client.post("/pay", data=data).text
    assert f"<li>{escaped}: $30.00 of $100.00</li>" in updated
    assert f'value="{escaped}" checked>' in updated
    refused = client.post("/pay", data={"csrf_token": token, "invoices": numbers, "amount": "0.10"})
    assert refused.status_code == 400
    assert f'<label for="invoice-1">Invoice {escaped}</label>' in refused.text
    for text in (page, updated, refused.text):
        assert "A&B<1>" not in text
        assert "&amp;amp;" not in text
        assert "&amp;lt;" not in text
        assert "&amp;#" not in text


def test_the_pages_need_a_session(client):
    assert client.get("/pay").status_code == 401
    assert client.get("/pay/1").status_code == 401


# --- refusals: a message, a 400, nothing written ---------------------------------------------
def test_a_form_without_csrf_token_is_refused(client):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    response = client.post("/pay", data={"invoices": [overdue.number]})
    assert response.status_code == 400
    assert _count(Checkout) == 0


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0.10", "The smallest amount you can pay is $1.00."),
        ("150.01", "You can pay at most $150.00."),
        ("abc", "Please enter a valid amount."),
    ],
)
def test_a_bad_amount_is_explained_next_to_the_field(client, amount, message):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    response = _start(client, [overdue.number], amount)
    assert response.status_code == 400
    assert message in response.text
    assert 'aria-invalid="true"' in response.text
    assert _count(Checkout) == 0


def test_another_customers_invoice_cannot_be_paid(client):
    customer, _overdue, _upcoming = _customer_with_invoices()
    _other, theirs, _ = _customer_with_invoices()
    login_as(client, customer)
    response = _start(client, [theirs.number])
    assert response.status_code == 400
    assert "Choose at least one invoice" in response.text
    assert _count(Checkout) == 0


def test_another_customers_checkout_is_not_found(client, localstripe):
    owner, overdue, _upcoming = _customer_with_invoices()
    login_as(client, owner)
    location, _page = _card_page(client, _start(client, [overdue.number]))
    intruder, _, _ = _customer_with_invoices()
    login_as(client, intruder)
    assert client.get(location).status_code == 404
    token = csrf_token_from(client.get("/pay").text)
    assert client.post(f"{location}/confirm", data={"csrf_token": token}).status_code == 404
    assert client.get(f"{location}/done").status_code == 404


# --- paying ------------------------------------------------------------------------------------
def test_paying_shows_the_charge_then_a_receipt_and_the_invoice_is_paid(client, localstripe):
    # given
    customer, overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    # when they choose both invoices and lower the amount
    location, page = _card_page(client, _start(client, [overdue.number, upcoming.number], "160"))
    # then the card page says exactly what will be charged
    assert 'id="charge-amount">$160.00<' in page.text
    assert "Pay $160.00" in page.text
    # when they pay
    response = _confirm(client, localstripe, location, page)
    assert response.headers["Location"] == f"{location}/done"
    done = client.get(response.headers["Location"])
    # then the confirmation shows the payment and its allocation, oldest due first
    assert "your payment is complete" in done.text
    assert re.search(rf"{overdue.number}</a></th>\s*<td[^>]*>\$150\.00", done.text)
    assert re.search(rf"{upcoming.number}</a></th>\s*<td[^>]*>\$10\.00", done.text)
    assert "Paid" in client.get(f"/invoices/{overdue.number}").text
    assert "Partially paid" in client.get(f"/invoices/{upcoming.number}").text
    # and the receipt downloads as a PDF
    payment = db.session.scalar(select(Payment).where(Payment.customer_id == customer.id))
    pdf = client.get(f"/payments/{payment.id}/receipt.pdf")
    assert pdf.mimetype == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
    assert payment.receipt_number in text
    assert "$160.00" in text
    assert overdue.number in text
    assert "Visa ending in 4242" in text
    # and what is still owed after it: $10.00 of the $50.00 upcoming invoice was paid
    assert re.search(rf"{upcoming.number}\s.*\$10\.00\s*\$40\.00", text)
    assert "Still owed on your account as of" in text
    assert ": $40.00." in text


def test_the_card_page_shows_where_a_partial_amount_goes(client, localstripe):
    # given two ticked invoices and a partial 12.34 that reaches only the older one
    customer, overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    _location, page = _card_page(client, _start(client, [overdue.number, upcoming.number], "12.34"))
    # then step 2 says so, as step 1 did
    assert "How $12.34 will be applied, oldest due first:" in page.text
    assert f"{overdue.number}: $12.34 of $150.00" in page.text
    assert f"{upcoming.number}: nothing this time ($50.00 stays due)" in page.text
    # and paying both in full says each is paid in full
    _location, page = _card_page(client, _start(client, [overdue.number, upcoming.number]))
    assert f"{overdue.number}: $150.00, paid in full" in page.text
    assert f"{upcoming.number}: $50.00, paid in full" in page.text


def test_the_amount_in_the_request_is_never_trusted(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    _confirm(client, localstripe, location, page, amount="0.50", amount_minor="50")
    [charged] = localstripe.charged()
    assert charged["amount"] == 15000


def test_a_declined_card_says_why_and_another_card_can_be_tried(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    response = _confirm(client, localstripe, location, page, CARD_DECLINED_AT_PAYMENT)
    assert response.headers["Location"] == location
    again = client.get(location)
    assert "Your card was declined. Please use another card, or call your bank." in again.text
    assert _count(Payment) == 0
    paid = _confirm(client, localstripe, location, again, CARD_OK)
    assert paid.headers["Location"].endswith("/done")
    assert _count(Payment) == 1


def test_three_d_secure_runs_in_the_browser_and_the_server_asks_stripe(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    response = _confirm(client, localstripe, location, page, CARD_3DS)
    assert response.headers["Location"] == location
    action = client.get(location)
    assert "Confirm the payment with your bank" in action.text
    checkout = db.session.scalar(select(Checkout).where(Checkout.customer_id == customer.id))
    assert f'data-client-secret="{checkout.payment_intent_id}_secret_' in action.text
    localstripe.authenticate(checkout.payment_intent_id, success=True)
    checked = client.post(f"{location}/check", data={"csrf_token": csrf_token_from(action.text)})
    assert checked.headers["Location"] == f"{location}/done"
    assert _count(Payment) == 1


def test_the_return_page_asks_stripe_when_the_webhook_is_late(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    _confirm(client, localstripe, location, page, CARD_3DS)
    checkout = db.session.scalar(select(Checkout).where(Checkout.customer_id == customer.id))
    localstripe.authenticate(checkout.payment_intent_id, success=True)
    done = client.get(f"{location}/done")
    assert "your payment is complete" in done.text
    assert _count(Payment) == 1


def test_a_double_click_charges_once(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    setup = localstripe.set_up_card(SETUP_SECRET.search(page.text).group(1))
    data = {"csrf_token": csrf_token_from(page.text), "setup_intent": setup, "card_choice": "new"}
    first = client.post(f"{location}/confirm", data=data)
    second = client.post(f"{location}/confirm", data=data)
    assert first.headers["Location"] == second.headers["Location"] == f"{location}/done"
    assert len(localstripe.payment_intents()) == 1
    assert _count(Payment) == 1


def test_a_saved_card_is_offered_next_time_and_can_be_removed(client, localstripe):
    customer, overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    _confirm(client, localstripe, location, page, save_card="y")
    location, page = _card_page(client, _start(client, [upcoming.number]))
    assert "Your saved card: Visa ending in 4242" in page.text
    paid = client.post(
        f"{location}/confirm",
        data={"csrf_token": csrf_token_from(page.text), "card_choice": "saved"},
    )
    assert paid.headers["Location"].endswith("/done")
    assert len(localstripe.charged()) == 2
    removed = client.post(
        "/pay/card/remove", data={"csrf_token": csrf_token_from(page.text), "checkout": "1"}
    )
    assert removed.status_code == 302
    assert _count(SavedCard) == 0


def test_stripe_down_gives_a_calm_page_and_charges_nothing(
    app, client, monkeypatch, unreachable_stripe
):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, _page = _card_page(client, _start(client, [overdue.number]))
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", unreachable_stripe)
    response = client.get(location)
    assert response.status_code == 503
    assert "Card payments are not available right now" in response.text
    assert "Nothing was charged" in response.text


def test_a_receipt_is_only_for_its_customers_card_payments(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    offline = make_payment(customer, [(overdue, "10.00")])
    login_as(client, customer)
    assert client.get(f"/payments/{offline.id}/receipt.pdf").status_code == 404
    location, page = _card_page(client, _start(client, [overdue.number]))
    _confirm(client, localstripe, location, page)
    card = db.session.scalar(select(Payment).where(Payment.source == "card"))
    login_as(client, make_customer())
    assert client.get(f"/payments/{card.id}/receipt.pdf").status_code == 404


# --- the card page's security -------------------------------------------------------------------
def test_the_card_page_admits_only_our_origin_and_stripe_js(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    _location, page = _card_page(client, _start(client, [overdue.number]))
    policy = dict(
        [*part.split(" ", 1), ""][:2]
        for part in page.headers["Content-Security-Policy"].split("; ")
    )
    stripe = localstripe.url
    assert re.fullmatch(rf"'self' {stripe} 'nonce-[\w-]+'", policy["script-src"])
    assert policy["frame-src"] == stripe
    assert policy["connect-src"] == f"'self' {stripe}"
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    # and no other page admits Stripe
    assert stripe not in client.get("/account").headers["Content-Security-Policy"]
    assert stripe not in client.get("/pay").headers["Content-Security-Policy"]


def test_every_script_on_the_card_page_is_in_the_inventory(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    _location, page = _card_page(client, _start(client, [overdue.number]))
    tags = re.findall(r"<script\b[^>]*>", page.text)
    inventory = {script.name for script in CARD_PAGE_SCRIPTS}
    assert len(tags) == len(inventory)
    expected_src = {"stripe-js": localstripe.js_url, "portal-card-form": "/static/js/pay.js"}
    for tag in tags:
        name = re.search(r'data-inventory="([^"]+)"', tag).group(1)
        assert name in inventory, f"{tag} is not in the card page's script inventory"
        assert re.search(rf'src="{re.escape(expected_src[name])}"', tag)
        assert "nonce=" in tag
    declared = re.search(r'<meta name="script-inventory" content="([^"]+)">', page.text)
    assert declared.group(1).split() == [script.name for script in CARD_PAGE_SCRIPTS]
    ours = next(t for t in tags if "portal-card-form" in t)
    assert f'integrity="{_sri("js/pay.js")}"' in ours
    assert (STATIC_DIR / "js" / "pay.js").exists()
    assert not re.search(r"<[^>]+\son[a-z]+=", page.text)  # no inline event handlers


def test_the_card_form_never_carries_card_fields(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    _location, page = _card_page(client, _start(client, [overdue.number]))
    names = set(re.findall(r'name="([^"]+)"', page.text))
    assert names.isdisjoint({"number", "card_number", "cvc", "exp_month", "exp_year", "amount"})


def test_the_app_refuses_a_live_key_with_a_fake_stripe(monkeypatch):
    with pytest.raises(ConfigurationError, match="live Stripe key"):
        create_app(
            {
                "STRIPE_SECRET_KEY": "sk_live_abc",
                "STRIPE_PUBLISHABLE_KEY": "pk_live_abc",
                "STRIPE_WEBHOOK_SECRET": "whsec_abc",
                "STRIPE_API_BASE": "http://127.0.0.1:8420",
                "SQLALCHEMY_DATABASE_URI": "sqlite://",
            },
            env_name="testing",
        )


def test_a_finished_checkout_cannot_be_paid_again(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    _confirm(client, localstripe, location, page)
    assert client.get(location).headers["Location"] == f"{location}/done"
    checkout = db.session.scalar(select(Checkout).where(Checkout.customer_id == customer.id))
    assert checkout.state == CheckoutStatus.SUCCEEDED


@pytest.mark.parametrize("setup_intent", ["seti_doesnotexist", "pm_card_visa", "", "x" * 100])
def test_a_forged_or_missing_card_is_refused_with_a_message(client, localstripe, setup_intent):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    response = client.post(
        f"{location}/confirm",
        data={"csrf_token": csrf_token_from(page.text), "setup_intent": setup_intent},
    )
    assert response.headers["Location"] == location
    assert "This card cannot be used. Please enter your card again." in client.get(location).text
    assert localstripe.payment_intents() == []
    checkout = db.session.scalar(select(Checkout).where(Checkout.customer_id == customer.id))
    assert checkout.state == CheckoutStatus.OPEN


def test_stripe_down_when_paying_says_so_and_charges_nothing(
    app, client, localstripe, monkeypatch, unreachable_stripe
):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    setup = localstripe.set_up_card(SETUP_SECRET.search(page.text).group(1))
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", unreachable_stripe)
    response = client.post(
        f"{location}/confirm",
        data={"csrf_token": csrf_token_from(page.text), "setup_intent": setup},
    )
    assert response.headers["Location"] == location
    with client.session_transaction() as session:
        flashed = [message for _category, message in session["_flashes"]]
    assert flashed == ["We could not reach our card processor. Please try again in a minute."]
    assert localstripe.payment_intents() == []
    assert _count(Payment) == 0


def test_a_second_tab_waits_while_the_first_is_with_the_bank(client, localstripe):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    first, first_page = _card_page(client, _start(client, [overdue.number]))
    second, second_page = _card_page(client, _start(client, [overdue.number]))
    _confirm(client, localstripe, first, first_page, CARD_3DS)  # now waiting for 3-D Secure
    response = _confirm(client, localstripe, second, second_page, CARD_OK)
    assert response.headers["Location"] == second
    assert "Another payment of yours is being processed" in client.get(second).text
    assert localstripe.charged() == []


def test_a_checkout_overtaken_by_a_dispute_sends_the_customer_back_to_step_one(client, localstripe):
    """Review finding: a card page opened before a dispute kept offering its old amount
    (every click refused) and spread that amount over invoices never chosen."""
    from portal.audit.actors import Actor
    from portal.disputes.services import open_dispute

    customer, overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    location, page = _card_page(client, _start(client, [overdue.number]))
    assert "Pay $150.00" in page.text
    # when the customer disputes 100.00 of the invoice in another tab
    open_dispute(
        customer, overdue, {1: None}, "damaged", "", [],
        actor=Actor.customer(customer), now=utcnow(),
    )  # fmt: skip
    db.session.commit()
    # then paying on the old card page charges nothing and leads back to step 1
    response = _confirm(client, localstripe, location, page)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/pay?invoice={overdue.number}"
    assert localstripe.charged() == []
    # and so does opening the old card page again: nothing says $150.00 would go anywhere
    again = client.get(location)
    assert again.status_code == 302
    assert again.headers["Location"] == f"/pay?invoice={overdue.number}"
    step_one = client.get(again.headers["Location"]).text
    assert "What you owe has changed since you started." in step_one
    assert upcoming.number in step_one  # still offered, not pre-chosen


def test_a_partial_amount_can_be_typed_with_a_decimal_comma(client, localstripe):
    """Review finding: step 1 writes amounts as "1,00 US$" in Spanish, French and German,
    yet refused "80,00" as "not a valid amount" (the dispute form takes it)."""
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    _location, page = _card_page(client, _start(client, [overdue.number], "12,34"))
    assert "Pay $12.34" in page.text
    # in English a comma before three digits groups thousands: "1,000" is a thousand
    # dollars (more than is owed), never one dollar
    response = _start(client, [overdue.number], "1,000")
    assert response.status_code == 400
    assert "You can pay at most $150.00." in response.text


def test_an_invoice_credited_in_part_is_still_payable(client):
    customer = make_customer(timezone="UTC")
    part = make_invoice(customer, number="INV-PART-CREDIT", lines=[("Service", "1", "100.00")])
    full = make_invoice(customer, number="INV-FULL-CREDIT", lines=[("Service", "1", "100.00")])
    make_credit(part, "40.00")
    make_credit(full, "100.00")
    login_as(client, customer)
    pay = client.get("/pay").text
    assert "INV-PART-CREDIT" in pay
    assert "$60.00" in pay
    assert "INV-FULL-CREDIT" not in pay
