"""Promising to pay from the account page, in a real browser on a 390 x 844 phone.

A refused promise must be told where the customer is: in the form they just sent, its
summary on screen and focused, each error beside its field, what they entered kept;
the last invoice is shown as text, not as a checkbox a tap unticks; axe-core on each
state. Screenshots go to $E2E_SCREENSHOTS when it is set, else to the test's
temporary directory.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.promises.models import Promise
from tests.e2e.conftest import Ledger, LiveServer, assert_accessible

pytestmark = pytest.mark.e2e

DATE_LABEL = "I will pay by (at most 14 days from today)"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("E2E_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _sign_in(page: Page, live_server: LiveServer, ledger: Ledger) -> None:
    page.goto(live_server.link(ledger.account_number))
    page.get_by_role("button", name="Continue to my account").tap()
    expect(page).to_have_url(f"{live_server.url}/account")


def _targets_too_small(page: Page) -> list[str]:
    """The promise form's checkboxes, rows and button under 24 x 24 CSS px (WCAG 2.5.8)."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
                 '.promise-form input[type=checkbox], .promise-form .choice,'
                 + ' .promise-form input[type=date], .promise-form button')]
              .map(el => [el, el.getBoundingClientRect()])
              .filter(([el, box]) => box.width < 24 || box.height < 24)
              .map(([el, box]) => `${el.outerHTML.slice(0, 60)} ${box.width}x${box.height}`)"""
    )


def test_a_refused_promise_is_told_in_the_form_on_a_phone(
    phone: BrowserContext, live_server: LiveServer, ledger: Ledger, shots: Path
) -> None:
    page = phone.new_page()
    _sign_in(page, live_server, ledger)
    today = utcnow().date()
    form = page.locator("form.promise-form")
    # the fieldset has no browser frame (as the dispute form's); nothing is ticked yet
    fieldset = form.locator("fieldset")
    assert fieldset.evaluate("el => getComputedStyle(el).borderTopWidth") == "0px"
    expect(form.get_by_role("checkbox", checked=True)).to_have_count(0)
    assert _targets_too_small(page) == []

    # when the customer picks a date but ticks nothing, and sends the promise
    later = (today + timedelta(days=3)).isoformat()
    form.get_by_label(DATE_LABEL).fill(later)
    form.get_by_role("button", name="Send my promise").tap()

    # then the page opens at the form's error summary, on screen and focused
    expect(page).to_have_url(f"{live_server.url}/account/promise#error-summary")
    summary = form.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_be_in_viewport()
    expect(summary).to_contain_text("Choose at least one invoice that is still open.")
    # the error is beside the invoices too, on screen with them, and the date is kept
    invoices = form.get_by_role("group", name="I will pay these invoices in full:")
    expect(invoices).to_have_attribute("aria-describedby", "promise-invoices-error")
    expect(form.locator("#promise-invoices-error")).to_be_in_viewport()
    expect(form.get_by_label(DATE_LABEL)).to_have_value(later)
    expect(page.locator(".flashes .flash--error")).to_have_count(0)
    page.screenshot(path=str(shots / "promise-01-nothing-ticked.png"))
    assert_accessible(page)
    # the summary's link leads to the invoices
    summary.get_by_role("link").tap()
    expect(invoices).to_be_focused()

    # when they tick the overdue invoice and send again
    form.get_by_label(f"{ledger.overdue_invoice} ({ledger.overdue})").check()
    form.get_by_role("button", name="Send my promise").tap()
    # then the promise is made, told where they are
    expect(page).to_have_url(f"{live_server.url}/account#promise-title")
    note = page.get_by_text(f"You promised to pay {ledger.overdue} by")
    expect(note).to_be_in_viewport()

    # and the one invoice left is written out, with no checkbox a tap could untick
    form = page.locator("form.promise-form")
    expect(form).to_contain_text("I will pay this invoice in full:")
    expect(form).to_contain_text(ledger.upcoming_invoice)
    expect(form.get_by_role("checkbox")).to_have_count(0)
    page.screenshot(path=str(shots / "promise-02-one-invoice-left.png"))
    assert_accessible(page)

    # when its date is too far ahead (the browser does not stop it: the form says why)
    too_far = (today + timedelta(days=20)).isoformat()
    form.get_by_label(DATE_LABEL).fill(too_far)
    form.get_by_role("button", name="Send my promise").tap()
    summary = form.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_be_in_viewport()
    expect(summary).to_contain_text("A promise can be at most 14 days ahead.")
    date = form.get_by_label(DATE_LABEL)
    expect(date).to_have_value(too_far)
    expect(date).to_have_attribute("aria-invalid", "true")
    expect(date).to_have_attribute("aria-describedby", "promised_on-error")
    expect(form.locator("#promised_on-error")).to_be_in_viewport()
    assert _targets_too_small(page) == []
    page.screenshot(path=str(shots / "promise-03-date-too-far.png"))
    assert_accessible(page)

    # and corrected, it is made
    date.fill((today + timedelta(days=14)).isoformat())
    form.get_by_role("button", name="Send my promise").tap()
    expect(page).to_have_url(f"{live_server.url}/account#promise-title")
    with live_server.app.app_context():
        made = db.session.execute(
            select(Promise.amount_minor, Promise.promised_on)
            .join(Customer, Customer.id == Promise.customer_id)
            .where(Customer.account_number == ledger.account_number)
            .order_by(Promise.id)
        ).all()
    assert [tuple(row) for row in made] == [
        (21510, today + timedelta(days=3)),
        (9950, today + timedelta(days=14)),
    ]
