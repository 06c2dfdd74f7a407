"""From an email to the portal in a real browser: reminder links and the opt-out page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.notifications.models import EmailOptOut
from portal.notifications.services import schedule_collection_emails, unsubscribe_token
from tests.e2e.conftest import Ledger, LiveServer, assert_accessible

pytestmark = pytest.mark.e2e


def _customer(live_server: LiveServer, ledger: Ledger) -> Customer:
    customer = db.session.scalar(
        select(Customer).where(Customer.account_number == ledger.account_number)
    )
    assert customer is not None
    return customer


def test_reminder_link_opens_the_overdue_invoice(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    # given the runner queued the overdue reminder for this customer
    with live_server.app.app_context():
        schedule_collection_emails(now=utcnow())
        db.session.commit()
    body = next(
        text for text in live_server.emails_to(ledger.email) if ledger.overdue_invoice in text
    )
    link = re.search(r"https?://\S+/l/[A-Za-z0-9_-]+", body)
    assert link is not None
    # when the customer opens it and continues
    page.goto(link.group(0))
    assert_accessible(page)
    page.get_by_role("button", name="Continue to my account").click()
    # then the invoice the email was about is on screen
    expect(page).to_have_url(f"{live_server.url}/invoices/{ledger.overdue_invoice}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(ledger.overdue_invoice)
    assert_accessible(page)


def test_opt_out_page_asks_once_then_confirms(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    with live_server.app.app_context():
        customer = _customer(live_server, ledger)
        customer.kind = "consumer"
        db.session.commit()
        token = unsubscribe_token(customer)
        customer_id = customer.id
    # opening the link changes nothing
    page.goto(f"{live_server.url}/email/opt-out/{token}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Stop collection emails?")
    assert_accessible(page)
    with live_server.app.app_context():
        assert (
            db.session.scalar(select(EmailOptOut).where(EmailOptOut.customer_id == customer_id))
            is None
        )
    # the one button does
    page.get_by_role("button", name="Stop collection emails").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Collection emails stopped")
    assert_accessible(page)
    with live_server.app.app_context():
        assert (
            db.session.scalar(select(EmailOptOut).where(EmailOptOut.customer_id == customer_id))
            is not None
        )
