# ruff: noqa: F811 (`shop`, the card-taking live portal, is a fixture imported below)
"""What a customer sees, in a real browser: the payment history with its receipts, the
saved card, the step-1 total (with JavaScript and without), the language switch, and
every customer page on a 390 px phone, each scanned with axe-core.

Screenshots of the phone pages go to $E2E_SCREENSHOTS when it is set (to look at them),
else to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pypdf import PdfReader
from sqlalchemy import select

from portal.customers.models import Customer
from portal.extensions import db
from portal.notifications.services import unsubscribe_token
from portal.payments.models import Payment
from tests.e2e.conftest import Ledger, LiveServer, new_context
from tests.e2e.test_payments import (
    CARD_OK,
    assert_accessible,
    continue_to_card,
    expect_paid,
    fill_card,
    shop,  # noqa: F401 (a fixture: the live portal taking cards through localstripe)
    sign_in,
)

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.e2e

PHONE_WIDTH = 390


def _pay_upcoming_saving_the_card(page: Page, shop: LiveServer, ledger: Ledger) -> None:
    sign_in(page, shop, ledger)
    page.goto(f"{shop.url}/pay?invoice={ledger.upcoming_invoice}")
    continue_to_card(page)
    fill_card(page, CARD_OK)
    page.get_by_label("Save this card for my next payment").check()
    page.get_by_role("button", name="Pay $99.50").click()
    expect_paid(page, "$99.50", shop, ledger)


def _card_payment(shop: LiveServer, ledger: Ledger) -> Payment:
    with shop.app.app_context():
        payment = db.session.scalar(
            select(Payment)
            .join(Customer, Customer.id == Payment.customer_id)
            .where(Customer.account_number == ledger.account_number, Payment.source == "card")
        )
        assert payment is not None
        db.session.expunge(payment)
        return payment


# --- payment history --------------------------------------------------------------------
def test_every_receipt_is_found_from_the_account_page(
    page: Page, shop: LiveServer, ledger: Ledger
) -> None:
    # given a customer who paid one invoice by card (the ledger has an offline payment too)
    _pay_upcoming_saving_the_card(page, shop, ledger)
    payment = _card_payment(shop, ledger)
    # when they open their account
    page.goto(f"{shop.url}/account")
    history = page.get_by_role("table", name="Your payments")
    # then both payments are listed, the card one by its receipt number, never Stripe's id
    expect(history.get_by_role("row")).to_have_count(3)  # a header and two payments
    receipt_link = history.get_by_role("link", name=f"Receipt {payment.receipt_number} (PDF)")
    expect(receipt_link).to_be_visible()
    expect(history).to_contain_text(f"Payment {ledger.account_number}-PAY")
    expect(page.locator("main")).not_to_contain_text(payment.reference)
    assert payment.reference.startswith("pi_")
    assert_accessible(page)
    # and the receipt downloads from there
    with page.expect_download() as download:
        receipt_link.click()
    text = "".join(p.extract_text() for p in PdfReader(download.value.path()).pages)
    assert payment.receipt_number in text
    assert "$99.50" in text
    # and the invoice page links the same receipt
    page.get_by_role("link", name=ledger.upcoming_invoice).first.click()
    history_on_invoice = page.get_by_role("region", name="Payments and credits")
    expect(
        history_on_invoice.get_by_role("link", name=f"Receipt {payment.receipt_number} (PDF)")
    ).to_be_visible()
    assert_accessible(page)


def test_the_saved_card_is_shown_and_removed_after_a_confirmation(
    page: Page, shop: LiveServer, ledger: Ledger
) -> None:
    _pay_upcoming_saving_the_card(page, shop, ledger)
    page.goto(f"{shop.url}/account")
    card = page.get_by_role("region", name="Your saved card")
    expect(card).to_contain_text("Visa ending in 4242, expires 11/2041")
    assert_accessible(page)
    # the first press only asks
    card.get_by_role("link", name="Remove this card").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Remove your saved card?")
    expect(page.locator("main")).to_contain_text("Visa ending in 4242, expires 11/2041")
    assert_accessible(page)
    # "Keep the card" keeps it
    page.get_by_role("link", name="Keep the card").click()
    expect(page.get_by_role("region", name="Your saved card")).to_contain_text("4242")
    # confirming removes it
    page.get_by_role("link", name="Remove this card").click()
    page.get_by_role("button", name="Remove the card").click()
    expect(page).to_have_url(re.compile(r"/account#card-title$"))
    expect(page.get_by_text("Your saved card was removed.")).to_be_visible()
    expect(page.get_by_role("region", name="Your saved card")).to_contain_text("No card is saved")
    assert_accessible(page)


# --- step 1: the total of what is ticked ------------------------------------------------
def _total(page: Page) -> str:
    return page.locator("#pay-total").inner_text()


def test_step_one_total_follows_ticks_and_the_amount_live(
    page: Page, shop: LiveServer, ledger: Ledger
) -> None:
    sign_in(page, shop, ledger)
    page.get_by_role("link", name="Choose invoices to pay").click()
    # both invoices ticked: their total, each paid in full
    expect(page.locator("#pay-total")).to_have_text(ledger.total_due)
    expect(page.get_by_role("button", name="Update total")).to_have_count(0)  # live instead
    assert_accessible(page)
    # unticking one changes the total at once
    page.get_by_label(f"Invoice {ledger.upcoming_invoice}").uncheck()
    expect(page.locator("#pay-total")).to_have_text(ledger.overdue)
    page.get_by_label(f"Invoice {ledger.upcoming_invoice}").check()
    # a partial amount: the oldest due first, the rest later
    page.get_by_label("Amount to pay (optional)").fill("250")
    split = page.locator("#pay-split")
    expect(split).to_contain_text("How $250.00 will be applied, oldest due first:")
    expect(split).to_contain_text(f"{ledger.overdue_invoice}: $215.10, paid in full")
    expect(split).to_contain_text(f"{ledger.upcoming_invoice}: $34.90 of $99.50")
    # an amount that cannot be paid says why at once, in the words "Continue" would use
    page.get_by_label("Amount to pay (optional)").fill("1.000")
    expect(split).to_have_text(
        "“1.000” could mean $1.00 or $1,000.00. Please write the amount with its decimals."
    )
    page.get_by_label("Amount to pay (optional)").fill("500")
    expect(split).to_have_text(f"You can pay at most {ledger.total_due}.")
    assert_accessible(page)
    page.get_by_label("Amount to pay (optional)").fill("20")
    expect(split).to_contain_text(f"{ledger.overdue_invoice}: $20.00 of $215.10")
    expect(split).to_contain_text(
        f"{ledger.upcoming_invoice}: nothing this time ($99.50 stays due)"
    )
    assert_accessible(page)
    # and the card page charges what the preview said
    continue_to_card(page)
    expect(page.locator("#charge-amount")).to_have_text("$20.00")


@pytest.fixture
def no_js(browser: Browser, shop: LiveServer) -> Iterator[BrowserContext]:
    context = new_context(browser, shop, java_script_enabled=False)
    try:
        yield context
    finally:
        context.close()


def test_step_one_total_without_javascript_comes_from_update_total(
    no_js: BrowserContext,
    shop: LiveServer,
    ledger: Ledger,
) -> None:
    page = no_js.new_page()
    page.goto(shop.link(ledger.account_number))
    page.get_by_role("button", name="Continue to my account").click()
    page.get_by_role("link", name="Choose invoices to pay").click()
    expect(page.locator("#pay-total")).to_have_text(ledger.total_due)
    # without JavaScript the total changes when "Update total" is pressed
    page.get_by_label(f"Invoice {ledger.upcoming_invoice}").uncheck()
    expect(page.locator("#pay-total")).to_have_text(ledger.total_due)
    page.get_by_role("button", name="Update total").click()
    expect(page.locator("#pay-total")).to_have_text(ledger.overdue)
    expect(page.get_by_label(f"Invoice {ledger.upcoming_invoice}")).not_to_be_checked()
    # and so does the split of a partial amount
    page.get_by_label(f"Invoice {ledger.upcoming_invoice}").check()
    page.get_by_label("Amount to pay (optional)").fill("250")
    page.get_by_role("button", name="Update total").click()
    split = page.locator("#pay-split")
    expect(split).to_contain_text(f"{ledger.overdue_invoice}: $215.10, paid in full")
    expect(split).to_contain_text(f"{ledger.upcoming_invoice}: $34.90 of $99.50")
    expect(page.get_by_label("Amount to pay (optional)")).to_have_value("250")


def test_a_refused_amount_moves_focus_to_the_error_summary(
    page: Page, shop: LiveServer, ledger: Ledger
) -> None:
    sign_in(page, shop, ledger)
    page.get_by_role("link", name="Choose invoices to pay").click()
    page.get_by_label("Amount to pay (optional)").fill("0.10")
    page.get_by_role("button", name="Continue to payment").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("The smallest amount you can pay is $1.00.")
    assert_accessible(page)
    # the reason is said once, under the field, until the amount is changed
    expect(page.locator("#pay-split .pay-preview__problem")).to_have_count(0)
    # its link leads to the field
    summary.get_by_role("link").click()
    amount = page.get_by_label("Amount to pay (optional)")
    expect(amount).to_be_focused()
    # where the live preview then says the server's reason for what is typed next
    amount.fill("12 EUR")
    expect(page.locator("#pay-split")).to_have_text(
        "This amount is in USD: please enter it without another currency."
    )
    amount.fill("1e3")
    expect(page.locator("#pay-split")).to_have_text(
        "Please enter the amount as a number, for example 120.50."
    )


# --- language ---------------------------------------------------------------------------
def test_one_press_switches_the_language_and_says_emails_follow(
    page: Page, shop: LiveServer, ledger: Ledger
) -> None:
    sign_in(page, shop, ledger)
    page.get_by_role("button", name="Español").click()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_role("status")).to_contain_text(
        "Los correos que le enviemos también estarán en Español."
    )
    emails = page.get_by_role("region", name="Nuestros correos")
    expect(emails).to_contain_text("Idioma de nuestros correos")
    expect(emails).to_contain_text("Español")
    expect(page.get_by_role("button", name="Español")).to_have_attribute("aria-current", "true")
    assert_accessible(page)


# --- a 390 px phone ---------------------------------------------------------------------
@pytest.fixture
def phone_page(browser: Browser, shop: LiveServer) -> Iterator[Page]:
    context = new_context(
        browser,
        shop,
        viewport={"width": PHONE_WIDTH, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("E2E_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def check_phone_page(page: Page, shots: Path, name: str) -> None:
    """Nothing wider than the phone, no row label squeezed, axe-clean; a screenshot kept."""
    width = page.evaluate("document.scrollingElement.scrollWidth")
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True, timeout=30_000)
    assert width <= PHONE_WIDTH, f"{page.url} is {width}px wide on a {PHONE_WIDTH}px phone"
    squeezed = page.evaluate(
        """() => [...document.querySelectorAll('.table--stack [data-label]')]
              .filter(cell => cell.offsetParent !== null)
              .filter(cell => {
                  // a caption squeezed by its value wraps onto more than one line
                  const label = getComputedStyle(cell, '::before');
                  return parseFloat(label.height) > 1.6 * parseFloat(label.lineHeight);
              }).map(cell => cell.dataset.label)"""
    )
    assert squeezed == [], f"squeezed captions on {page.url}: {squeezed}"
    # a table caption, legend, heading or label pressed into a narrow column wraps one
    # or two words a line (the receipt's "How your payment was applied" did)
    narrow = page.evaluate(
        """() => [...document.querySelectorAll(
                 'main caption, main legend, main h1, main h2, main h3, main dt, main label')]
              .filter(el => el.offsetParent !== null || el.tagName === 'CAPTION')
              .filter(el => el.getBoundingClientRect().width > 1)
              .filter(el => {
                  const box = el.getBoundingClientRect();
                  const style = getComputedStyle(el);
                  const line = parseFloat(style.lineHeight) || 1.4 * parseFloat(style.fontSize);
                  return box.height > 2.6 * line && box.width < 0.45 * window.innerWidth;
              }).map(el => el.textContent.trim())"""
    )
    assert narrow == [], f"text squeezed into a narrow column on {page.url}: {narrow}"
    badges = page.evaluate(
        """() => [...document.querySelectorAll('.badge')]
              .filter(b => b.offsetParent !== null)
              .filter(b => b.getBoundingClientRect().height
                           > 2.2 * parseFloat(getComputedStyle(b).fontSize))
              .map(b => b.textContent)"""
    )
    assert badges == [], f"swollen badges on {page.url}: {badges}"
    main_top = page.evaluate(
        "document.querySelector('main').firstElementChild.getBoundingClientRect().top"
        " - document.querySelector('.site-header').getBoundingClientRect().bottom"
    )
    assert main_top >= 12, f"content starts {main_top}px under the header on {page.url}"
    assert_accessible(page)


def test_every_customer_page_fits_a_390px_phone(
    phone_page: Page,
    shop: LiveServer,
    ledger: Ledger,
    shots: Path,
) -> None:
    page = phone_page
    page.goto(f"{shop.url}/")
    check_phone_page(page, shots, "01-home")
    page.goto(f"{shop.url}/link/new")
    check_phone_page(page, shots, "02-lost-link")
    page.get_by_role("button", name="Email me a new link").tap()
    expect(page.locator("#error-summary")).to_be_focused()
    check_phone_page(page, shots, "03-lost-link-refused")
    page.goto(f"{shop.url}/accessibility")
    check_phone_page(page, shots, "04-accessibility")
    page.goto(shop.link(ledger.account_number))
    check_phone_page(page, shots, "05-landing")
    page.get_by_role("button", name="Continue to my account").tap()
    expect(page).to_have_url(f"{shop.url}/account")
    check_phone_page(page, shots, "06-account")
    page.get_by_role("link", name=ledger.overdue_invoice).first.tap()
    expect(page.get_by_role("heading", level=1)).to_contain_text(ledger.overdue_invoice)
    check_phone_page(page, shots, "07-invoice")
    page.goto(f"{shop.url}/pay")
    expect(page.locator("main")).not_to_contain_text("Invoice Invoice")
    check_phone_page(page, shots, "08-pay-step-1")
    page.get_by_label(f"Invoice {ledger.overdue_invoice}").uncheck()
    page.get_by_label("Amount to pay (optional)").fill("20")
    check_phone_page(page, shots, "09-pay-step-1-partial")
    page.goto(f"{shop.url}/pay?invoice={ledger.upcoming_invoice}")
    page.get_by_role("button", name="Continue to payment").tap()
    expect(page.locator("#card-element input")).to_have_count(5)
    check_phone_page(page, shots, "10-card")
    fill_card(page, CARD_OK)
    page.get_by_label("Save this card for my next payment").check()
    page.get_by_role("button", name="Pay $99.50").tap()
    expect_paid(page, "$99.50", shop, ledger)
    check_phone_page(page, shots, "11-done")
    page.goto(f"{shop.url}/account")
    check_phone_page(page, shots, "12-account-with-history")
    page.goto(f"{shop.url}/account/card/remove")
    check_phone_page(page, shots, "13-remove-card")
    page.get_by_role("button", name="Español").tap()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    check_phone_page(page, shots, "14-remove-card-es")
    page.goto(f"{shop.url}/account")
    check_phone_page(page, shots, "15-account-es")
    with shop.app.app_context():
        customer = db.session.scalar(
            select(Customer).where(Customer.account_number == ledger.account_number)
        )
        token = unsubscribe_token(customer)
        db.session.rollback()
    page.goto(f"{shop.url}/email/opt-out/{token}")
    check_phone_page(page, shots, "16-opt-out")
    page.goto(f"{shop.url}/account")
    page.get_by_role("button", name="Cerrar sesión").tap()
    expect(page).to_have_url(re.compile(r"/signed-out"))
    check_phone_page(page, shots, "17-signed-out")
