"""Paying in a real browser: Chromium, the live portal, localstripe and its fake Stripe.js.

localstripe's Stripe.js draws the Card Element as plain inputs (placeholders `number`,
`exp_month`, `exp_year`, `cvc`, `postal_code`) and shows its own 3-D Secure window
("Complete authentication" / "Fail authentication"). Real Stripe draws them in its
own frames, which carry their own labels; the fake's bare inputs are therefore left out
of the axe-core scan (`#card-element`), and everything else on every page is scanned.
"""

from __future__ import annotations

import itertools
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qsl

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, Request, expect
from pypdf import PdfReader

from portal.db import utcnow
from portal.extensions import db
from portal.payments.inventory import CARD_PAGE_SCRIPTS
from tests.e2e.conftest import BLOCKING_IMPACTS, Ledger, LiveServer, _describe
from tests.stripe_journeys import CARD_3DS, CARD_DECLINED_AT_PAYMENT, CARD_OK

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.e2e

PAY = re.compile(r"^Pay ")
CVC = "987"
EXP_MONTH, EXP_YEAR = "11", "41"
THIRD_PARTY_FIELDS = {"exclude": [["#card-element"]]}
OUR_FIELDS = {"csrf_token", "invoices", "invoice", "amount", "setup_intent", "card_choice"}
OUR_FIELDS |= {"save_card", "overdue", "locale", "shown_in", "next", "submit"}
_axe = Axe()


@pytest.fixture(scope="module")
def shop(live_server: LiveServer, localstripe) -> Iterator[LiveServer]:
    """The live portal, taking card payments through localstripe, which calls its webhook,
    with the worker's webhook loop (`portal jobs run --loop`) beside it."""
    config = localstripe.config()
    saved = {key: live_server.app.config.get(key) for key in config}
    live_server.app.config.update(config)
    # localstripe sends an event a second after scheduling it, to whoever is registered
    # then: let the events of earlier tests (other customers, other databases) go first.
    time.sleep(1.2)
    localstripe.register_webhook(f"{live_server.url}/stripe/webhook")
    stop = threading.Event()
    worker = threading.Thread(target=_worker, args=(live_server.app, stop), name="e2e-worker")
    worker.start()
    try:
        yield live_server
    finally:
        stop.set()
        worker.join(timeout=10)
        localstripe.register_webhook("http://127.0.0.1:9/nowhere")  # the other tests' server
        live_server.app.config.update(saved)


def _worker(app, stop: threading.Event) -> None:
    from portal.jobs.webhook_worker import apply_as_they_arrive

    with app.app_context():
        apply_as_they_arrive(lambda: 0 if stop.is_set() else 1, poll_seconds=0.1)


def wait_for_webhook(shop: LiveServer, ledger: Ledger, event_type: str) -> None:
    """Until localstripe's signed event about the customer's latest checkout was applied.

    It comes a second after the charge; waiting for it also keeps it from landing in
    the next test (the live server's SQLite has one writer at a time).
    """
    from sqlalchemy import func, select

    from portal.customers.models import Customer
    from portal.payments.models import Checkout, WebhookEvent

    with shop.app.app_context():
        checkout_id = db.session.scalar(
            select(func.max(Checkout.id))
            .join(Customer, Customer.id == Checkout.customer_id)
            .where(Customer.account_number == ledger.account_number)
        )
        db.session.remove()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with shop.app.app_context():
            stored = db.session.scalar(
                select(WebhookEvent.outcome).where(
                    WebhookEvent.checkout_id == checkout_id, WebhookEvent.type == event_type
                )
            )
            db.session.remove()
        if stored not in (None, "pending"):
            assert stored in ("applied", "ignored"), stored  # verified; never rejected
            return
        time.sleep(0.1)
    raise AssertionError(f"no {event_type} webhook from localstripe")


def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core finding outside the third-party card fields."""
    violations = _axe.run(page, context=THIRD_PARTY_FIELDS).response["violations"]
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    assert not blocking, f"axe-core on {page.url}:\n" + "\n".join(_describe(v) for v in blocking)


def sign_in(page: Page, shop: LiveServer, ledger: Ledger) -> None:
    page.goto(shop.link(ledger.account_number))
    page.get_by_role("button", name="Continue to my account").click()
    expect(page).to_have_url(f"{shop.url}/account")


def fill_card(page: Page, number: str) -> None:
    fields = page.locator("#card-element")
    fields.get_by_placeholder("number").fill(number)
    fields.get_by_placeholder("exp_month").fill(EXP_MONTH)
    fields.get_by_placeholder("exp_year").fill(EXP_YEAR)
    fields.get_by_placeholder("cvc").fill(CVC)
    fields.get_by_placeholder("postal_code").fill("12345")


def continue_to_card(page: Page) -> None:
    assert_accessible(page)
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Pay by card")
    expect(page.locator("#card-element input")).to_have_count(5)  # Stripe.js is mounted
    assert_accessible(page)


def expect_paid(page: Page, amount: str, shop: LiveServer, ledger: Ledger) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Thank you: your payment is complete", timeout=15_000
    )
    expect(page.locator(".summary__item--main dd").first).to_have_text(amount)
    assert_accessible(page)
    wait_for_webhook(shop, ledger, "payment_intent.succeeded")


# --- journeys --------------------------------------------------------------------------------
def test_pay_one_invoice_from_its_page_and_get_a_receipt(
    page: Page, shop: LiveServer, ledger: Ledger
):
    sign_in(page, shop, ledger)
    page.goto(f"{shop.url}/invoices/{ledger.upcoming_invoice}")
    assert_accessible(page)
    page.get_by_role("link", name="Pay this invoice").click()
    expect(page.get_by_label(f"Invoice {ledger.upcoming_invoice}")).to_be_checked()
    expect(page.get_by_label(f"Invoice {ledger.overdue_invoice}")).not_to_be_checked()
    continue_to_card(page)
    expect(page.locator("#charge-amount")).to_have_text("$99.50")
    fill_card(page, CARD_OK)
    page.get_by_role("button", name="Pay $99.50").click()
    expect_paid(page, "$99.50", shop, ledger)
    # the receipt downloads, and waits in the outbox
    with page.expect_download() as download:
        page.get_by_role("link", name="Download receipt (PDF)").click()
    text = "".join(p.extract_text() for p in PdfReader(download.value.path()).pages)
    assert "$99.50" in text
    assert ledger.upcoming_invoice in text
    assert any(
        "we received your payment of $99.50" in body for body in shop.emails_to(ledger.email)
    )
    # and the invoice shows as paid at once
    page.goto(f"{shop.url}/invoices/{ledger.upcoming_invoice}")
    expect(page.locator(".page-heading .badge").first).to_have_text("Paid")


def test_pay_all_overdue_in_one_click(page: Page, shop: LiveServer, ledger: Ledger):
    sign_in(page, shop, ledger)
    assert_accessible(page)
    page.get_by_role("link", name="Pay all overdue").click()
    expect(page.get_by_label(f"Invoice {ledger.overdue_invoice}")).to_be_checked()
    expect(page.get_by_label(f"Invoice {ledger.upcoming_invoice}")).not_to_be_checked()
    continue_to_card(page)
    fill_card(page, CARD_OK)
    page.get_by_role("button", name=f"Pay {ledger.overdue}").click()
    expect_paid(page, ledger.overdue, shop, ledger)
    page.get_by_role("link", name="Back to your account").last.click()
    overdue_tile = page.locator(".summary__item").filter(has_text="Overdue").locator("dd")
    expect(overdue_tile).to_have_text("$0.00")


def test_pay_part_of_what_is_due(page: Page, shop: LiveServer, ledger: Ledger):
    sign_in(page, shop, ledger)
    page.get_by_role("link", name="Choose invoices to pay").click()
    page.get_by_label("Amount to pay (optional)").fill("0.10")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.locator(".field__error")).to_have_text("The smallest amount you can pay is $1.00.")
    assert_accessible(page)
    page.get_by_label("Amount to pay (optional)").fill("20")
    continue_to_card(page)
    expect(page.locator("#charge-amount")).to_have_text("$20.00")
    fill_card(page, CARD_OK)
    page.get_by_role("button", name="Pay $20.00").click()
    expect_paid(page, "$20.00", shop, ledger)
    expect(page.get_by_role("row", name=re.compile(ledger.overdue_invoice))).to_contain_text(
        "$20.00"
    )


@pytest.mark.parametrize("approved", [True, False], ids=["approved", "failed"])
def test_three_d_secure(page: Page, shop: LiveServer, ledger: Ledger, approved: bool):
    sign_in(page, shop, ledger)
    page.goto(f"{shop.url}/pay?invoice={ledger.upcoming_invoice}")
    continue_to_card(page)
    fill_card(page, CARD_3DS)
    page.get_by_role("button", name="Pay $99.50").click()
    # the bank's check when the card is set up, then again for the payment
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_role("heading", name="Confirm the payment with your bank")).to_be_visible()
    assert_accessible(page)
    answer = "Complete authentication" if approved else "Fail authentication"
    page.get_by_role("button", name=answer).click()
    if approved:
        expect_paid(page, "$99.50", shop, ledger)
    else:
        expect(page.get_by_text("Your bank could not confirm it is you")).to_be_visible()
        expect(page.get_by_role("heading", level=1)).to_have_text("Pay by card")
        assert_accessible(page)
        assert shop_payments(shop, ledger) == 1  # only the seeded offline payment


def test_a_declined_card_then_another_card(page: Page, shop: LiveServer, ledger: Ledger):
    sign_in(page, shop, ledger)
    page.goto(f"{shop.url}/pay?invoice={ledger.upcoming_invoice}")
    continue_to_card(page)
    fill_card(page, CARD_DECLINED_AT_PAYMENT)
    page.get_by_role("button", name="Pay $99.50").click()
    expect(page.get_by_text("Your card was declined. Please use another card")).to_be_visible()
    assert_accessible(page)
    assert shop_payments(shop, ledger) == 1
    wait_for_webhook(shop, ledger, "payment_intent.payment_failed")
    fill_card(page, CARD_OK)
    page.get_by_role("button", name="Pay $99.50").click()
    expect_paid(page, "$99.50", shop, ledger)


def _pay_upcoming_keeping_the_card(page: Page, shop: LiveServer, ledger: Ledger) -> None:
    sign_in(page, shop, ledger)
    page.goto(f"{shop.url}/pay?invoice={ledger.upcoming_invoice}")
    continue_to_card(page)
    fill_card(page, CARD_OK)
    page.get_by_label("Save this card for my next payment").check()
    page.get_by_role("button", name="Pay $99.50").click()
    expect_paid(page, "$99.50", shop, ledger)


def test_a_saved_card_is_reused(page: Page, shop: LiveServer, ledger: Ledger):
    _pay_upcoming_keeping_the_card(page, shop, ledger)
    # next time: the saved card, no card to type
    page.goto(f"{shop.url}/pay?overdue=1")
    continue_to_card(page)
    expect(page.get_by_label("Your saved card: Visa ending in 4242")).to_be_checked()
    expect(page.locator("#new-card")).to_be_hidden()
    page.get_by_role("button", name=f"Pay {ledger.overdue}").click()
    expect_paid(page, ledger.overdue, shop, ledger)
    # and then there is nothing left to pay
    page.goto(f"{shop.url}/pay")
    assert page.get_by_text("You have nothing to pay right now").is_visible()


def test_removing_the_saved_card(page: Page, shop: LiveServer, ledger: Ledger):
    _pay_upcoming_keeping_the_card(page, shop, ledger)
    page.goto(f"{shop.url}/pay?overdue=1")
    continue_to_card(page)
    page.get_by_role("button", name="Remove my saved card").click()
    expect(page.get_by_text("Your saved card was removed.")).to_be_visible()
    expect(page.get_by_label("Your saved card: Visa ending in 4242")).to_have_count(0)
    expect(page.locator("#card-element input")).to_have_count(5)


# --- what reaches our server ------------------------------------------------------------------
def test_no_card_data_reaches_our_server_and_only_inventoried_scripts_run(
    page: Page, shop: LiveServer, ledger: Ledger, localstripe, caplog: pytest.LogCaptureFixture
):
    # given every request the browser sends, every script it loads, every log line
    caplog.set_level(logging.DEBUG)
    sent: list[Request] = []
    scripts: list[str] = []
    violations: list[str] = []
    page.on("request", lambda request: sent.append(request))
    page.on(
        "request",
        lambda request: scripts.append(request.url) if request.resource_type == "script" else None,
    )
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    # when the customer pays with a card
    sign_in(page, shop, ledger)
    page.goto(f"{shop.url}/pay?invoice={ledger.upcoming_invoice}")
    scripts.clear()  # the other pages run static/js/portal.js; the card page must not
    continue_to_card(page)
    scripts_on_card_page = set(scripts)
    declared = page.locator('meta[name="script-inventory"]').get_attribute("content").split()
    in_page = page.eval_on_selector_all(
        "script", "nodes => nodes.map(n => [n.src, n.dataset.inventory])"
    )
    fill_card(page, CARD_OK)
    page.get_by_label("Save this card for my next payment").check()
    page.get_by_role("button", name="Pay $99.50").click()
    expect_paid(page, "$99.50", shop, ledger)
    # then the card page loaded exactly its inventoried scripts, and the CSP blocked nothing
    assert scripts_on_card_page == {localstripe.js_url, f"{shop.url}/static/js/pay.js"}
    assert declared == [script.name for script in CARD_PAGE_SCRIPTS]
    assert sorted(name for _src, name in in_page) == sorted(declared)  # nothing added at run time
    assert violations == []
    # and no card number, security code or expiry date went to our server
    ours = [r for r in sent if r.url.startswith(shop.url)]
    assert any(r.method == "POST" for r in ours)
    for request in ours:
        fields = parse_qsl(request.post_data or "") + parse_qsl(request.url.partition("?")[2])
        for name, value in fields:
            assert name in OUR_FIELDS, name
            assert CARD_OK not in value
            assert value not in (CVC, EXP_MONTH, EXP_YEAR, f"20{EXP_YEAR}")
    # while Stripe did receive them
    assert any(r.url.startswith(localstripe.url) and r.method == "POST" for r in sent)
    # nor into our logs
    assert CARD_OK not in caplog.text
    assert not re.search(r"\bcvc\b", caplog.text, re.IGNORECASE)
    assert not re.search(r"exp_(month|year)", caplog.text)  # Stripe's PaymentMethod bodies
    # nor into our database
    with shop.app.app_context():
        path = db.engine.url.database
    dump = "\n".join(sqlite3.connect(path).iterdump())
    assert CARD_OK not in dump
    assert not re.search(rf"'{CVC}'|'20{EXP_YEAR}'", dump)


def shop_payments(shop: LiveServer, ledger: Ledger) -> int:
    from sqlalchemy import func, select

    from portal.customers.models import Customer
    from portal.payments.models import Payment

    with shop.app.app_context():
        return db.session.scalar(
            select(func.count())
            .select_from(Payment)
            .join(Customer)
            .where(Customer.account_number == ledger.account_number)
        )


# --- amounts as each language writes them -------------------------------------------------------
_grouped = itertools.count(1)


@pytest.mark.parametrize(
    ("locale", "typed"),
    [("de", "1.062,75"), ("fr", "1\u202f062,75"), ("fr", "1 062,75"), ("es", "1.062,75 US$")],
)
def test_a_grouped_amount_is_previewed_and_charged_as_typed(
    page: Page, shop: LiveServer, locale: str, typed: str
):
    """A customer copies the total as the page writes it (grouped): the live preview and
    the card step read it as the server does, 1,062.75, and that is what is charged; the
    script's total is grouped as the server's (Spanish too: "1.062,75 US$")."""
    from portal.money import Money
    from tests.factories import make_customer, make_invoice

    n = next(_grouped)
    today = utcnow().date()
    with shop.app.app_context():
        customer = make_customer(
            account_number=f"GRP-{locale}-{n:03d}",
            email=f"grp-{locale}-{n}@example.com",
            locale=locale,
            timezone="UTC",
        )
        make_invoice(
            customer,
            number=f"GRP-{locale}-{n:03d}",
            issue_date=today - timedelta(days=40),
            due_date=today - timedelta(days=10),
            lines=[("Consulting", "1", "2125.50")],
        )
        db.session.commit()
        db.session.remove()
    page.goto(shop.link(f"GRP-{locale}-{n:03d}"))
    page.locator('main form [type="submit"]').click()
    page.goto(f"{shop.url}/pay")
    expect(page.locator("html")).to_have_attribute("lang", locale)
    # the script rewrote the total: grouped exactly as Babel writes it
    expect(page.locator("#pay-total")).to_have_text(Money(212550, "USD").format(locale))
    amount = page.locator('input[name="amount"]')
    amount.fill(typed)
    part = Money(106275, "USD").format(locale)
    expect(page.locator("#pay-split")).to_contain_text(part)
    expect(page.locator("#pay-split li")).to_have_count(1)
    assert_accessible(page)
    # something the server would read otherwise, or refuse, gets no preview but its reason
    amount.fill("1.062.75")
    expect(page.locator("#pay-split li")).to_have_count(0)
    expect(page.locator("#pay-split .pay-preview__problem")).to_have_count(1)
    amount.fill(typed)
    expect(page.locator("#pay-split")).to_contain_text(part)
    page.locator('#pay-choose button[type="submit"]').click()
    expect(page.locator("#charge-amount")).to_have_text(part)
    expect(page.locator("#card-element input")).to_have_count(5)  # Stripe.js is mounted
    fill_card(page, CARD_OK)
    page.locator("#pay-button").click()
    expect(page.locator(".summary__item--main dd").first).to_have_text(part, timeout=15_000)
    ledger = Ledger(f"GRP-{locale}-{n:03d}", "", "", "", "", "", "", "")  # type: ignore[call-arg]
    wait_for_webhook(shop, ledger, "payment_intent.succeeded")
