"""What the customer sees: emails that promise only what the portal does, the payment
history with its receipts, the saved card, email settings, the step-1 total, the language
switch, and `make run`'s links."""

from __future__ import annotations

import html
import importlib.metadata
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from portal.audit.models import AuditEvent
from portal.customers.models import Customer
from portal.db import utcnow
from portal.demo.loader import load_demo
from portal.extensions import db
from portal.money import Money
from portal.notifications.models import EmailOptOut, OutboxMessage
from portal.notifications.services import opt_out, schedule_collection_emails
from portal.payments.ledger import refund_payment
from portal.payments.models import Checkout, Payment, SavedCard
from tests.factories import (
    csrf_token_from,
    login_as,
    make_credit,
    make_customer,
    make_invoice,
    make_payment,
)
from tests.stripe_journeys import pay

pytest_plugins = ["tests.stripe_server"]

ROOT = Path(__file__).resolve().parents[2]
CONTACT = "write to billing@northwind.example or call +1 555 0100"


def _count(model) -> int:  # type: ignore[no-untyped-def]
    return db.session.scalar(select(func.count()).select_from(model))


def _text(page: str) -> str:
    """The page's text as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _customer_with_invoices(**fields: object):  # type: ignore[no-untyped-def]
    customer = make_customer(timezone="UTC", **fields)
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


# --- emails promise only what exists ----------------------------------------------------
BROKEN_PROMISES = ("see your options", "tell us if something is wrong")


def _reminders(locale: str) -> list[OutboxMessage]:
    """A reminder before the due date and one after it, in `locale`."""
    now = utcnow()
    customer = make_customer(timezone="UTC", locale=locale)
    for days in (3, -10):  # due in 3 days; 10 days overdue
        invoice = make_invoice(
            customer,
            issue_date=now.date() - timedelta(days=40),
            due_date=now.date() + timedelta(days=days),
        )
        invoice.created_at = now - timedelta(days=40)  # imported long ago: no notice
    schedule_collection_emails(now=now)
    messages = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.customer_id == customer.id)
    ).all()
    assert {m.kind for m in messages} == {"reminder_before_due", "reminder_overdue"}
    return list(messages)


@pytest.mark.parametrize("locale", ["en", "es", "fr", "de"])
def test_reminders_offer_only_what_the_portal_does(db_session, locale):
    for message in _reminders(locale):
        for body in (message.body_text, message.body_html):
            assert not any(p in body.lower() for p in BROKEN_PROMISES), body
        # what to do when the invoice is wrong: the creditor's own address and phone, in
        # the message itself (not only in the footer)
        message_part = message.body_text.split("\n--\n", 1)[0]
        assert "billing@northwind.example" in message_part
        assert "+1 555 0100" in message_part
        if locale == "en":
            assert CONTACT in message.body_text
            # no card payments configured: no offer to pay online
            assert "pay" not in message.body_text.split("Hello", 1)[1].split("http")[0].lower()
            assert "View the invoice" in message.body_html


def test_reminders_offer_paying_in_part_when_cards_are_taken(stripe_app, db_session):
    for message in _reminders("en"):
        assert "You can pay it online, in full or in part:" in message.body_text
        assert "View and pay the invoice" in message.body_html


def test_reminders_without_a_creditor_phone_give_the_address_alone(app, db_session):
    phone, app.config["CREDITOR_PHONE"] = app.config["CREDITOR_PHONE"], ""
    try:
        for message in _reminders("en"):
            assert (
                "If something is wrong with the invoice, write to billing@northwind.example."
                in message.body_text
            )
            assert "call" not in message.body_text
    finally:
        app.config["CREDITOR_PHONE"] = phone


# --- payment history --------------------------------------------------------------------
def test_account_lists_payments_and_credits_and_links_each_receipt(stripe_app, client, localstripe):
    # given a card payment, an offline payment and a credit note
    customer, overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    with stripe_app.test_request_context():
        checkout = pay(localstripe, customer, [upcoming.number])
    card_payment = db.session.scalar(select(Payment).where(Payment.checkout_id == checkout.id))
    offline = make_payment(customer, [(overdue, "30.00")], reference="ERP-7781")
    credit = make_credit(overdue, "5.00")
    # when the account page opens
    page = client.get("/account").text
    text = _text(page)
    # then each is listed: the card payment by its receipt number, linked to its receipt
    receipt_url = f"/payments/{card_payment.id}/receipt.pdf"
    assert f'href="{receipt_url}"' in page
    assert f"Receipt {card_payment.receipt_number} (PDF)" in text
    assert card_payment.reference.startswith("pi_")
    assert card_payment.reference not in page  # never Stripe's id
    assert "Payment ERP-7781" in text
    assert offline.reference in text
    assert credit.reference in text
    # and the receipt opens
    receipt = client.get(receipt_url)
    assert receipt.status_code == 200
    assert receipt.mimetype == "application/pdf"
    # and the invoice page links the receipt of its payment, never Stripe's id
    invoice_page = client.get(f"/invoices/{upcoming.number}").text
    assert f'href="{receipt_url}"' in invoice_page
    assert card_payment.reference not in invoice_page


def test_account_shows_what_a_refund_gave_back_and_the_balance_it_reopened(
    stripe_app, client, localstripe
):
    # given a card payment of an invoice, refunded in part
    customer, _overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    with stripe_app.test_request_context():
        checkout = pay(localstripe, customer, [upcoming.number])
        payment = db.session.scalar(select(Payment).where(Payment.checkout_id == checkout.id))
        refund_payment(payment, Money(1250, "USD"), actor="staff:1", now=utcnow())
    # when the account page opens
    text = _text(client.get("/account").text)
    # then the payment says what was given back, and the invoice owes it again
    history = text[text.index("Payments and credits") :]
    assert "$50.00 $12.50 refunded" in history
    open_section = text[text.index("Open invoices") : text.index("Closed invoices")]
    assert upcoming.number in open_section
    assert "Partially paid" in open_section


def test_someone_elses_payments_are_not_listed(client):
    me, _overdue, _upcoming = _customer_with_invoices()
    other, other_overdue, _ = _customer_with_invoices()
    make_payment(other, [(other_overdue, "10.00")], reference="THEIRS-1")
    login_as(client, me)
    page = client.get("/account").text
    assert "THEIRS-1" not in page
    assert "No payments yet." in page


def _statements_for(client, path: str) -> int:  # type: ignore[no-untyped-def]
    executed: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        executed.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(executed)


@pytest.mark.parametrize("path", ["/account", "/invoices/{number}", "/pay"])
def test_statements_per_page_do_not_grow_with_invoices_and_payments(stripe_app, client, path):
    # One query per kind of row, never one per invoice, payment or credit (N+1): the
    # page benchmark (bench/bench_pages.py) runs on customers of a million-invoice ledger.
    counts = []
    for size in (1, 50):
        customer = make_customer(timezone="UTC")
        invoices = [
            make_invoice(customer, number=f"N{customer.id}-{i}", lines=[("A", "1", "100.00")])
            for i in range(size)
        ]
        for invoice in invoices:
            make_payment(customer, [(invoice, "10.00")])
            make_payment(customer, [(invoices[0], "1.00")])
            make_credit(invoice, "2.00")
        login_as(client, customer)
        counts.append(_statements_for(client, path.format(number=invoices[0].number)))
    assert counts[0] == counts[1], counts


# --- the saved card ---------------------------------------------------------------------
def test_saved_card_is_shown_and_removed_after_a_confirmation(stripe_app, client, localstripe):
    # given a customer who saved a card when paying
    customer, _overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    with stripe_app.test_request_context():
        pay(localstripe, customer, [upcoming.number], save_card=True)
    # then the account page shows it, with its expiry
    account = client.get("/account").text
    assert "Visa ending in 4242, expires 12/2034" in _text(account)
    assert 'href="/account/card/remove"' in account
    # when they ask to remove it, a confirmation comes first and nothing is removed yet
    confirm = client.get("/account/card/remove")
    assert confirm.status_code == 200
    assert "Remove your saved card?" in confirm.text
    assert _count(SavedCard) == 1
    # a POST without the form's token removes nothing
    refused = client.post("/pay/card/remove", data={"return_to": "account"})
    assert refused.status_code in (302, 400)
    assert _count(SavedCard) == 1
    # when they confirm
    removed = client.post(
        "/pay/card/remove",
        data={"csrf_token": csrf_token_from(confirm.text), "return_to": "account"},
    )
    # then it is gone, here and in the audit log, and they are back on the account page
    assert removed.status_code == 302
    assert removed.headers["Location"] == "/account#card-title"
    assert _count(SavedCard) == 0
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "card.removed"))
    account = client.get("/account").text
    assert "Your saved card was removed." in account
    assert "No card is saved." in account


def test_card_removal_page_without_a_saved_card_goes_back(stripe_app, client):
    customer, _overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    response = client.get("/account/card/remove")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"


def test_no_card_section_without_card_payments(client):
    customer, _overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    assert "Your saved card" not in client.get("/account").text
    assert client.get("/account/card/remove").status_code == 404


# --- email language and opt-out ---------------------------------------------------------
def test_account_shows_email_language_and_undoes_an_opt_out(client):
    # given a consumer who stopped collection email
    customer, _overdue, _upcoming = _customer_with_invoices(kind="consumer", locale="fr")
    opt_out(customer, source="page", now=utcnow())
    login_as(client, customer)
    page = client.get("/account").text
    text = _text(page)
    assert "Français" in text
    assert "Arrêtés à votre demande le" in text
    # a POST without the form's token changes nothing
    client.post("/account/email/resume")
    assert _count(EmailOptOut) == 1
    # when they ask for collection email again
    resumed = client.post("/account/email/resume", data={"csrf_token": csrf_token_from(page)})
    # then the opt-out is gone, the audit log says who undid it, and reminders go again
    assert resumed.status_code == 302
    assert _count(EmailOptOut) == 0
    undone = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "email.opt_out_undone")
    )
    assert undone is not None
    assert undone.actor == f"customer:{customer.id}"
    page = client.get("/account").text
    assert "Vous recevrez de nouveau par e-mail" in page
    assert "Envoyés par e-mail." in page
    report = schedule_collection_emails(now=utcnow())
    assert report.reminders >= 1


def test_resuming_email_needs_a_session(client):
    customer, _overdue, _upcoming = _customer_with_invoices(kind="consumer")
    opt_out(customer, source="page", now=utcnow())
    response = client.post("/account/email/resume")
    assert response.status_code in (302, 400, 401)
    assert _count(EmailOptOut) == 1


def test_changing_the_language_says_emails_follow_it(client):
    customer, _overdue, _upcoming = _customer_with_invoices(locale="en")
    login_as(client, customer)
    account = client.get("/account").text
    # one press: a button per language, each submitting its own code
    assert re.search(r'<button type="submit" name="locale" value="es" lang="es"', account)
    assert "<select" not in account.split("</header>")[0]
    response = client.post(
        "/language",
        data={"csrf_token": csrf_token_from(account), "locale": "es", "next": "/account"},
        follow_redirects=True,
    )
    text = _text(response.text)
    assert "Los correos que le enviemos también estarán en Español." in text
    assert "Idioma de nuestros correos Español" in text
    db.session.refresh(customer)
    assert customer.locale == "es"


def test_an_unknown_language_changes_nothing(client):
    customer, _overdue, _upcoming = _customer_with_invoices(locale="en")
    login_as(client, customer)
    account = client.get("/account").text
    response = client.post(
        "/language",
        data={"csrf_token": csrf_token_from(account), "locale": "xx", "next": "/account"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "emails we send you" not in response.text
    db.session.refresh(customer)
    assert customer.locale == "en"


# --- step 1 of paying -------------------------------------------------------------------
def _update(client, numbers, amount=""):  # type: ignore[no-untyped-def]
    page = client.get("/pay")
    return client.post(
        "/pay",
        data={
            "csrf_token": csrf_token_from(page.text),
            "invoices": numbers,
            "amount": amount,
            "update": "Update total",
        },
    )


def test_step_one_shows_the_total_of_what_is_preselected(stripe_app, client):
    customer, _overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    text = _text(client.get("/pay").text)
    assert "Total of the invoices ticked: $200.00" in text
    assert "How $200.00 will be applied, oldest due first:" in text


def test_update_total_without_javascript_opens_nothing(stripe_app, client):
    customer, overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    # ticking one invoice only
    response = _update(client, [upcoming.number])
    assert response.status_code == 200
    assert "Total of the invoices ticked: $50.00" in _text(response.text)
    # a partial amount over both: the oldest due gets it first
    response = _update(client, [upcoming.number, overdue.number], "170")
    text = _text(response.text)
    assert "Total of the invoices ticked: $200.00" in text
    assert "How $170.00 will be applied, oldest due first:" in text
    assert f"{overdue.number}: $150.00, paid in full" in text
    assert f"{upcoming.number}: $20.00 of $50.00" in text
    assert text.index(overdue.number + ":") < text.index(upcoming.number + ":")
    # a small amount reaches only the oldest
    text = _text(_update(client, [upcoming.number, overdue.number], "20").text)
    assert f"{overdue.number}: $20.00 of $150.00" in text
    assert f"{upcoming.number}: nothing this time ($50.00 stays due)" in text
    assert _count(Checkout) == 0


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("abc", "Please enter the amount as a number, for example 120.50."),
        ("9" * 32, "You can pay at most $200.00."),
        ("0.10", "The smallest amount you can pay is $1.00."),
        ("0", "Please enter an amount greater than zero."),
        ("1e5", "Please enter the amount as a number, for example 120.50."),
    ],
)
def test_update_total_with_a_bad_amount_says_why(stripe_app, client, amount, message):
    customer, overdue, upcoming = _customer_with_invoices()
    login_as(client, customer)
    response = _update(client, [overdue.number, upcoming.number], amount)
    assert response.status_code == 200
    text = _text(response.text)
    assert message in text
    assert "Total of the invoices ticked: $200.00" in text
    assert "will be applied" not in text
    assert _count(Checkout) == 0


def test_update_total_with_nothing_ticked_asks_for_a_tick(stripe_app, client):
    customer, _overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    response = _update(client, [])
    assert response.status_code == 200
    assert "Tick at least one invoice to see the total." in response.text


def test_a_refused_form_puts_its_error_summary_first_and_focused(stripe_app, client):
    customer, overdue, _upcoming = _customer_with_invoices()
    login_as(client, customer)
    page = client.get("/pay")
    response = client.post(
        "/pay",
        data={
            "csrf_token": csrf_token_from(page.text),
            "invoices": [overdue.number],
            "amount": "0.10",
        },
    )
    assert response.status_code == 400
    summary = re.search(r'<div class="error-summary"[^>]*>', response.text)
    assert summary is not None
    assert "autofocus" in summary.group(0)
    assert 'tabindex="-1"' in summary.group(0)
    assert '<a href="#amount">The smallest amount you can pay is $1.00.</a>' in response.text
    assert _count(Checkout) == 0


def test_lost_link_form_error_summary_is_focused(client):
    page = client.get("/link/new")
    response = client.post(
        "/link/new",
        data={"csrf_token": csrf_token_from(page.text), "account_number": "", "email": "x"},
    )
    assert response.status_code in (200, 400)
    assert re.search(r'<div class="error-summary"[^>]*autofocus', response.text)


# --- every page -------------------------------------------------------------------------
def test_every_page_links_a_local_favicon_and_it_is_served(client):
    page = client.get("/").text
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    with client.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200
        assert icon.mimetype == "image/svg+xml"
        assert b"<svg" in icon.data


def test_the_enhancement_script_carries_the_pages_nonce(client):
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'src="/static/js/portal.js" nonce="{nonce}"' in response.text
    with client.get("/static/js/portal.js") as script:
        assert script.status_code == 200


# --- make run -------------------------------------------------------------------------------
def test_links_alone_print_an_english_and_a_spanish_customer_and_no_load_message(db_session):
    first = load_demo(print_links=False)
    assert first[0].startswith("Loaded the demo ledger")
    lines = load_demo(print_links=True, load=False)
    assert not any("already has customers" in line for line in lines)
    assert len(lines) == 2
    assert lines[0].startswith("Customer link (English: ")
    assert lines[1].startswith("Customer link (Spanish: ")
    locales = []
    for line in lines:
        account = re.search(r"account ([^)]+)\)", line).group(1)
        customer = db.session.scalar(select(Customer).where(Customer.account_number == account))
        locales.append(customer.locale)
    assert locales == ["en", "es"]


def test_make_help_and_the_readme_name_the_ports():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "PORT=" in readme
    assert "STRIPE_PORT=" in readme
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    help_recipe = makefile.split("help:", 1)[1].split("\n\n", 1)[0]
    assert "PORT=$(PORT)" in help_recipe
    assert "STRIPE_PORT=$(STRIPE_PORT)" in help_recipe
    output = subprocess.run(
        ["make", "-s", "help"],  # noqa: S607 (make from the PATH, as a developer runs it)
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "PORT=5000" in output
    assert "STRIPE_PORT=8420" in output
    assert "portal demo --no-load" in makefile


def test_gunicorn_of_the_production_command_is_a_dependency():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "gunicorn -w 4 'wsgi:app'" in readme
    requirements = importlib.metadata.requires("portal") or []
    assert any(re.match(r"gunicorn\b", r) for r in requirements), requirements


def test_the_opt_out_confirmation_says_where_to_undo_it(client):
    from portal.notifications.services import unsubscribe_token

    customer, _overdue, _upcoming = _customer_with_invoices(kind="consumer")
    response = client.post(f"/email/opt-out/{unsubscribe_token(customer)}")
    assert response.status_code == 200
    assert "You can turn them back on from your account page" in response.text
    assert _count(EmailOptOut) == 1
