"""A specialist's day in a real browser: sign in with TOTP, find a customer, read the
timeline, record a call and a promise, refund part of a card payment; axe on every page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.db import utcnow
from portal.extensions import db
from portal.payments.models import Payment, Refund
from portal.promises.models import CustomerNote, Promise
from portal.staff.models import StaffMember
from tests.e2e.conftest import LiveServer, assert_accessible
from tests.factories import STAFF_PASSWORD, make_customer, make_invoice, make_staff, next_totp_code
from tests.stripe_journeys import pay

pytest_plugins = ["tests.stripe_server"]


@pytest.fixture(scope="module")
def desk(live_server: LiveServer, localstripe) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """The live portal, refunding through localstripe."""
    config = localstripe.config()
    saved = {key: live_server.app.config.get(key) for key in config}
    live_server.app.config.update(config)
    try:
        yield live_server
    finally:
        live_server.app.config.update(saved)


def _seed(app, localstripe):  # type: ignore[no-untyped-def]
    today = utcnow().date()
    with app.test_request_context():
        member = make_staff("specialist")
        customer = make_customer(
            account_number="DESK-0042",
            name="Initech Ltd",
            email="ap@initech.example",
            timezone="UTC",
        )
        paid = make_invoice(
            customer,
            number="DESK-0042-A",
            issue_date=today - timedelta(days=40),
            due_date=today - timedelta(days=10),
            lines=[("Printers", "1", "150.00")],
        )
        make_invoice(
            customer,
            number="DESK-0042-B",
            issue_date=today - timedelta(days=35),
            due_date=today - timedelta(days=5),
            lines=[("Toner", "4", "25.00")],
        )
        db.session.commit()
        pay(localstripe, customer, [paid.number])
        db.session.commit()
        return member.id, customer.id


def _sign_in(page: Page, server: LiveServer, member_id: int) -> None:
    page.goto(f"{server.url}/staff/login")
    assert_accessible(page)
    with server.app.app_context():
        member = db.session.get(StaffMember, member_id)
        email = member.email
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    with server.app.app_context():
        code = next_totp_code(db.session.get(StaffMember, member_id))
        db.session.commit()
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))


def test_a_specialists_day(page: Page, desk: LiveServer, localstripe) -> None:  # type: ignore[no-untyped-def]
    member_id, customer_id = _seed(desk.app, localstripe)
    _sign_in(page, desk, member_id)
    assert_accessible(page)

    # find the customer by a prefix of the account number, in lower case
    page.get_by_role("link", name="Customers").click()
    page.get_by_label("Account number, name, email or invoice number").fill("desk-00")
    page.get_by_role("button", name="Search").click()
    assert_accessible(page)
    page.get_by_role("link", name="DESK-0042").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Initech Ltd")

    # the top and the timeline
    expect(page.locator(".desk-figures")).to_contain_text("$100.00")  # B is open, A paid
    timeline = page.locator(".desk-timeline")
    expect(timeline).to_contain_text("Invoice imported")
    expect(timeline).to_contain_text("DESK-0042-B")
    expect(timeline).to_contain_text("Payment")
    assert_accessible(page)

    # record a call
    page.get_by_label("Kind").select_option("call")
    page.get_by_label("What was said or agreed").fill("Spoke to AP: toner invoice next week")
    page.get_by_role("button", name="Save the note").click()
    expect(page.get_by_text("The note was saved.")).to_be_visible()
    expect(timeline).to_contain_text("Spoke to AP: toner invoice next week")

    # record a promise for the open invoice
    by = (utcnow().date() + timedelta(days=7)).isoformat()
    page.get_by_label("DESK-0042-B").check()
    page.get_by_label("Amount promised").fill("100.00")
    page.get_by_label("Pay by").fill(by)
    page.get_by_role("button", name="Record the promise").click()
    expect(page.get_by_text("The promise was recorded")).to_be_visible()
    expect(page.locator("#promises-heading + ul")).to_contain_text("$100.00 by")
    assert_accessible(page)

    # refund part of the card payment, from its row
    row = page.locator("tr", has_text="$150.00").filter(
        has=page.get_by_role("button", name="Refund")
    )
    row.get_by_label(re.compile("Amount")).fill("20.00")
    row.get_by_label("Reason").fill("one printer returned")
    row.get_by_role("button", name="Refund").click()
    expect(page.get_by_text("Refunded $20.00; the customer will be emailed.")).to_be_visible()
    expect(timeline).to_contain_text("one printer returned")
    assert_accessible(page)

    # the outbox and the follow-up queue
    page.get_by_role("link", name="Outbox").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Outbox")
    assert_accessible(page)
    page.get_by_role("link", name="Follow-up").click()
    assert_accessible(page)

    with desk.app.app_context():
        assert (
            db.session.scalar(
                select(CustomerNote.body).where(CustomerNote.customer_id == customer_id)
            )
            == "Spoke to AP: toner invoice next week"
        )
        promise = db.session.scalar(select(Promise).where(Promise.customer_id == customer_id))
        assert (promise.amount_minor, promise.status) == (10000, "open")
        [refund] = db.session.scalars(
            select(Refund).join(Payment).where(Payment.customer_id == customer_id)
        ).all()
        assert (refund.amount_minor, refund.reason) == (2000, "one printer returned")
