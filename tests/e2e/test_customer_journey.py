"""A customer's way through the portal in a real browser, every page checked with axe-core."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.e2e.conftest import Ledger, LiveServer, assert_accessible

pytestmark = pytest.mark.e2e

CONTINUE = "Continue to my account"


def sign_in(page: Page, live_server: LiveServer, ledger: Ledger) -> None:
    """Open a fresh emailed link and press Continue, as a person does."""
    page.goto(live_server.link(ledger.account_number))
    page.get_by_role("button", name=CONTINUE).click()
    expect(page).to_have_url(f"{live_server.url}/account")


def summary_value(page: Page, label: str) -> Locator:
    """The figure under `label` in the summary tiles."""
    tile = page.locator(".summary__item").filter(has=page.get_by_text(label, exact=True))
    return tile.locator("dd")


def test_link_shows_a_neutral_landing_until_continue_is_pressed(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    # given a link from an email
    link = live_server.link(ledger.account_number)
    # when it is opened
    response = page.goto(link)
    # then the landing shows nothing of the account, only the button
    assert response is not None
    assert response.status == 200
    button = page.get_by_role("button", name=CONTINUE)
    expect(button).to_be_visible()
    body = page.locator("body")
    for secret in (ledger.name, ledger.account_number, ledger.overdue_invoice, ledger.total_due):
        expect(body).not_to_contain_text(secret)
    assert_accessible(page)
    # when the button is pressed
    button.click()
    # then the account opens
    expect(page).to_have_url(f"{live_server.url}/account")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Hello, {ledger.name}")
    assert_accessible(page)


def test_account_shows_what_is_due_and_the_open_invoices(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    sign_in(page, live_server, ledger)

    expect(page.get_by_text(f"Account number {ledger.account_number}")).to_be_visible()
    expect(summary_value(page, "Total due")).to_have_text(ledger.total_due)
    expect(summary_value(page, "Overdue")).to_have_text(ledger.overdue)
    open_invoices = page.get_by_role("table", name="Open invoices")
    overdue_row = open_invoices.get_by_role("row").filter(has_text=ledger.overdue_invoice)
    expect(overdue_row).to_contain_text("Partially paid")
    expect(overdue_row).to_contain_text("10 days overdue")
    expect(overdue_row).to_contain_text("$215.10")
    upcoming_row = open_invoices.get_by_role("row").filter(has_text=ledger.upcoming_invoice)
    expect(upcoming_row).to_contain_text("$99.50")
    expect(open_invoices).not_to_contain_text(ledger.paid_invoice)
    expect(page.get_by_role("table", name="Closed invoices")).to_contain_text(ledger.paid_invoice)
    assert_accessible(page)


def test_invoice_page_lists_its_lines_and_payments(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    # given a signed-in customer
    sign_in(page, live_server, ledger)
    # when they open the overdue invoice from the account page
    page.get_by_role("rowheader", name=ledger.overdue_invoice).get_by_role("link").first.click()
    # then its lines, payment and balance are shown
    expect(page).to_have_url(f"{live_server.url}/invoices/{ledger.overdue_invoice}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {ledger.overdue_invoice}")
    lines = page.get_by_role("table", name="Line items")
    consulting = lines.get_by_role("row").filter(has_text="Consulting hours")
    for cell in ("2.5", "$80.00", "$20.00", "$220.00"):
        expect(consulting).to_contain_text(cell)
    expect(lines.get_by_role("row").filter(has_text="Travel")).to_contain_text("$45.10")
    expect(lines.get_by_role("row").filter(has_text="Total")).to_contain_text("$265.10")
    expect(summary_value(page, "Balance due")).to_have_text(ledger.overdue)
    expect(page.get_by_role("region", name="Payments and credits")).to_contain_text(
        f"Payment {ledger.account_number}-PAY"
    )
    assert_accessible(page)


def test_header_form_switches_the_page_to_spanish(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    # given an account page in English
    sign_in(page, live_server, ledger)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    # when Español is pressed in the header (one press, no separate "change" button)
    page.get_by_role("group", name="Language").get_by_role("button", name="Español").click()
    # then the same page comes back in Spanish, amounts written the Spanish way
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page).to_have_url(f"{live_server.url}/account")
    expect(page.get_by_role("button", name="Español")).to_have_attribute("aria-current", "true")
    # (the main tile, found by its place: its label is now in Spanish)
    expect(page.locator(".summary__item--main dd")).to_have_text("314,60 US$")
    assert_accessible(page)
    # and the choice holds on the next page
    page.get_by_role("rowheader", name=ledger.overdue_invoice).get_by_role("link").first.click()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator(".summary__item--main dd")).to_have_text("215,10 US$")
    assert_accessible(page)


def test_invoice_and_statement_download_as_pdf(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    sign_in(page, live_server, ledger)
    page.get_by_role("rowheader", name=ledger.overdue_invoice).get_by_role("link").first.click()

    with page.expect_download() as invoice_download:
        page.get_by_role("link", name="Download invoice (PDF)").click()
    invoice = invoice_download.value
    assert invoice.suggested_filename == f"invoice-{ledger.overdue_invoice}.pdf"
    assert Path(invoice.path()).read_bytes().startswith(b"%PDF")

    page.get_by_role("link", name="Back to your account").click()
    with page.expect_download() as statement_download:
        page.get_by_role("link", name="Download statement (PDF)").click()
    statement = statement_download.value
    assert statement.suggested_filename.startswith(f"statement-{ledger.account_number}-")
    assert Path(statement.path()).read_bytes().startswith(b"%PDF")


def test_lost_link_form_explains_errors_then_emails_a_working_link(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    # given the lost-link form
    page.goto("/link/new")
    expect(page.get_by_role("heading", level=1)).to_have_text("Get a new link")
    assert_accessible(page)
    # when it is sent with an email address that is not one
    page.get_by_label("Account number (optional)").fill(ledger.account_number)
    email = page.get_by_label("Email address")
    email.fill("not-an-email")
    page.get_by_role("button", name="Email me a new link").click()
    # then the error is summarised and tied to the field
    expect(page.get_by_role("alert")).to_contain_text("Please enter a valid email address.")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_accessible_description(re.compile("Please enter a valid email"))
    expect(page.get_by_label("Account number (optional)")).to_have_value(ledger.account_number)
    assert_accessible(page)
    # when it is corrected and sent again
    email.fill(ledger.email.upper())
    page.get_by_role("button", name="Email me a new link").click()
    # then the answer says to check the email, and an email with a working link is queued
    expect(page).to_have_url(f"{live_server.url}/link/sent")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    assert_accessible(page)
    assert live_server.emails_to(ledger.email) == []  # the worker matches the request
    live_server.run_lost_link_job()
    (body,) = live_server.emails_to(ledger.email)
    match = re.search(rf"{re.escape(live_server.url)}/l/\S+", body)
    assert match, body
    page.goto(match.group(0))
    page.get_by_role("button", name=CONTINUE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Hello, {ledger.name}")


@pytest.mark.parametrize(
    ("problem", "status", "heading"),
    [
        ("expired", 410, "This link has expired"),
        ("unknown", 404, "We do not recognise this link"),
    ],
)
def test_unusable_link_offers_the_lost_link_form(
    page: Page, live_server: LiveServer, ledger: Ledger, problem: str, status: int, heading: str
) -> None:
    if problem == "expired":
        link = live_server.link(ledger.account_number, expired=True)
    else:
        link = f"{live_server.url}/l/not-a-real-token"

    response = page.goto(link)

    assert response is not None
    assert response.status == status
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.get_by_role("button", name=CONTINUE)).to_have_count(0)
    expect(page.get_by_label("Account number")).to_be_visible()
    expect(page.get_by_label("Email address")).to_be_visible()
    expect(page.get_by_role("button", name="Email me a new link")).to_be_visible()
    assert_accessible(page)


def test_keyboard_alone_reaches_and_presses_continue(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    # given the landing page of a link
    page.goto(live_server.link(ledger.account_number))
    button = page.get_by_role("button", name=CONTINUE)
    # when the person tabs through it
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    for _ in range(10):
        if button.evaluate("element => element === document.activeElement"):
            break
        page.keyboard.press("Tab")
    # then the button gets a visible focus, and Enter opens the account
    expect(button).to_be_focused()
    assert button.evaluate("element => getComputedStyle(element).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/account")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Hello, {ledger.name}")


def test_sign_out_ends_the_session(page: Page, live_server: LiveServer, ledger: Ledger) -> None:
    # given a signed-in customer
    sign_in(page, live_server, ledger)
    # when they sign out
    page.get_by_role("button", name="Sign out").click()
    # then they are told so, and the account no longer opens
    expect(page).to_have_url(f"{live_server.url}/signed-out")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed out")
    expect(page.get_by_role("status")).to_contain_text("You have signed out.")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    assert_accessible(page)
    response = page.goto("/account")
    assert response is not None
    assert response.status == 401
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Please open the link from your email"
    )
    expect(page.locator("body")).not_to_contain_text(ledger.name)
    assert_accessible(page)


def test_unknown_page_is_not_found(page: Page) -> None:
    response = page.goto("/no-such-page")

    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    expect(page.get_by_role("link", name="Email me a new link")).to_be_visible()
    assert_accessible(page)


def test_home_page_points_to_a_new_link(page: Page) -> None:
    response = page.goto("/")

    assert response is not None
    assert response.status == 200
    expect(page.get_by_role("link", name="Email me a new link")).to_be_visible()
    assert_accessible(page)


def test_accessibility_statement_is_linked_from_the_footer(page: Page) -> None:
    page.goto("/")

    with page.expect_response(re.compile(r"/accessibility$")) as statement:
        page.get_by_role("link", name="Accessibility statement").click()

    assert statement.value.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Accessibility statement")
    expect(page.get_by_role("heading", name="Report a barrier")).to_be_visible()
    assert_accessible(page)


def test_account_and_invoice_fit_a_phone_screen(
    phone: BrowserContext, live_server: LiveServer, ledger: Ledger
) -> None:
    # given a phone-sized touch screen
    page = phone.new_page()
    # when the customer opens their link and taps through
    page.goto(live_server.link(ledger.account_number))
    assert_accessible(page)
    page.get_by_role("button", name=CONTINUE).tap()
    # then the account page fits the width, with every figure on screen
    expect(page).to_have_url(f"{live_server.url}/account")
    expect(summary_value(page, "Total due")).to_have_text(ledger.total_due)
    expect(summary_value(page, "Total due")).to_be_in_viewport()
    assert_fits_width(page)
    assert_accessible(page)
    # and so does the invoice page
    page.get_by_role("rowheader", name=ledger.overdue_invoice).get_by_role("link").first.tap()
    expect(page.get_by_role("table", name="Line items")).to_contain_text("Consulting hours")
    assert_fits_width(page)
    assert_accessible(page)


def assert_fits_width(page: Page) -> None:
    scroll_width, viewport_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= viewport_width, (
        f"{page.url} scrolls sideways: {scroll_width}px wide on a {viewport_width}px screen"
    )
