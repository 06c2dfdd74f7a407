"""A specialist resolves a dispute from the queue in a real browser: sign in with TOTP,
open the queue, open the oldest dispute, accept it in part; the customer's dispute page
then shows the decision. axe-core on the queue and a dispute's page in all four languages."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.db import utcnow
from portal.disputes.models import Dispute, DisputeReason
from portal.disputes.services import open_dispute
from portal.extensions import db
from portal.invoices.models import CreditNote
from portal.money import Money
from portal.staff.models import StaffMember
from tests.e2e.conftest import LiveServer, assert_accessible
from tests.factories import STAFF_PASSWORD, make_customer, make_invoice, make_staff, next_totp_code

pytestmark = pytest.mark.e2e
_seeds = itertools.count(1)


def _seed(server: LiveServer) -> tuple[int, int, int, str]:
    """A specialist, and a customer with two open disputes; the first is the oldest."""
    now = utcnow()
    n = next(_seeds)
    with server.app.test_request_context():
        member = make_staff("specialist")
        customer = make_customer(
            account_number=f"DSP-E2E-{n}",
            name="Umbrella Corp",
            email=f"ap{n}@umbrella.example",
            timezone="UTC",
        )
        invoice = make_invoice(
            customer,
            number=f"DSP-E2E-INV-{n}",
            issue_date=(now - timedelta(days=20)).date(),
            due_date=(now + timedelta(days=10)).date(),
            lines=[("Widgets", "3", "40.00"), ("Delivery", "1", "25.00"), ("Setup", "1", "60.00")],
        )
        oldest = open_dispute(
            customer,
            invoice,
            {1: Money.from_decimal("80.00", "USD"), 2: None},
            DisputeReason.DAMAGED,
            "Two of the three widgets arrived broken, and delivery was late.",
            [],
            actor=Actor.customer(customer),
            now=now - timedelta(days=6),
        )
        oldest.opened_at = now - timedelta(days=6)
        newer = open_dispute(
            customer,
            invoice,
            {3: None},
            DisputeReason.NOT_ORDERED,
            "We never asked for setup.",
            [],
            actor=Actor.customer(customer),
            now=now - timedelta(days=1),
        )
        db.session.commit()
        return member.id, oldest.id, newer.id, customer.account_number


def _sign_in(page: Page, server: LiveServer, member_id: int) -> None:
    page.goto(f"{server.url}/staff/login")
    with server.app.app_context():
        email = db.session.get(StaffMember, member_id).email
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    with server.app.app_context():
        code = next_totp_code(db.session.get(StaffMember, member_id))
        db.session.commit()
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))


def test_a_specialist_accepts_the_oldest_dispute_in_part(
    context: BrowserContext, live_server: LiveServer
) -> None:
    member_id, oldest_id, newer_id, account = _seed(live_server)
    page = context.new_page()
    _sign_in(page, live_server, member_id)
    expect(page.get_by_text("open disputes").first).to_be_visible()

    # the queue, from the nav: oldest first
    page.get_by_role("navigation", name="Staff areas").get_by_role(
        "link", name=re.compile("^Disputes")
    ).click()
    expect(page.get_by_role("heading", name="Disputes", exact=True)).to_be_visible()
    assert_accessible(page)
    # (other browser tests may have left open disputes of their own in the queue)
    links = page.locator(".dispute-queue tbody th a")
    expect(links.first).to_be_visible()
    shown = links.all_text_contents()
    assert shown.index(f"Dispute {oldest_id}") < shown.index(f"Dispute {newer_id}")
    page.get_by_role("link", name=f"Dispute {oldest_id}", exact=True).click()

    # the dispute: what was disputed, the customer's message, the decision forms
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Dispute {oldest_id}: Umbrella Corp")
    expect(page.get_by_text("Two of the three widgets arrived broken")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Credit on line 1 (Widgets)").fill("40.00")
    page.locator("#partial").get_by_label("Reason for the customer").fill(
        "One widget of the two was broken in transit; the other works, and delivery was on time."
    )
    page.locator("#partial").get_by_role("button", name="Accept in part").click()

    # back on the queue, with what happened; the decided one has left it
    expect(
        page.get_by_text(f"Dispute {oldest_id} accepted in part: $40.00 credited")
    ).to_be_visible()
    queue = page.locator(".dispute-queue tbody")
    expect(queue.get_by_role("link", name=f"Dispute {oldest_id}", exact=True)).to_have_count(0)
    expect(queue.get_by_role("link", name=f"Dispute {newer_id}", exact=True)).to_have_count(1)
    assert_accessible(page)

    with live_server.app.app_context():
        dispute = db.session.get(Dispute, oldest_id)
        assert dispute.status == "partly_accepted"
        credits = db.session.scalars(
            select(CreditNote).where(CreditNote.dispute_id == oldest_id)
        ).all()
        assert [(c.amount_minor, c.kind) for c in credits] == [(4000, "dispute")]

    # the customer's page for that dispute shows the decision
    customer_page = context.browser.new_context(base_url=live_server.url).new_page()
    customer_page.goto(live_server.link(account))
    customer_page.get_by_role("button", name="Continue to my account").click()
    customer_page.goto(f"{live_server.url}/disputes/{oldest_id}")
    summary = customer_page.get_by_role("region", name="Dispute summary")
    expect(summary).to_contain_text("We credited $40.00 of the $105.00 you disputed.")
    expect(summary).to_contain_text("One widget of the two was broken in transit")
    assert_accessible(customer_page)
    customer_page.context.close()


@pytest.mark.parametrize(
    ("locale", "queue_heading"),
    [("en", "Disputes"), ("es", "Disputas"), ("fr", "Litiges"), ("de", "Beanstandungen")],
    ids=["en", "es", "fr", "de"],
)
def test_queue_and_dispute_pages_are_accessible_in_every_language(
    context: BrowserContext, live_server: LiveServer, locale: str, queue_heading: str
) -> None:
    member_id, oldest_id, _newer, _account = _seed(live_server)
    page = context.new_page()
    _sign_in(page, live_server, member_id)
    # the language switcher of the public pages sets the language of the whole session
    page.goto(f"{live_server.url}/accessibility")
    page.locator(f'.language-form button[value="{locale}"]').click()
    page.goto(f"{live_server.url}/staff/disputes")
    expect(page.locator("html")).to_have_attribute("lang", locale)
    expect(page.get_by_role("heading", level=1)).to_have_text(queue_heading)
    assert_accessible(page)
    page.goto(f"{live_server.url}/staff/disputes/{oldest_id}")
    expect(page.locator("#decide")).to_be_visible()
    assert_accessible(page)
    # a refused decision shows its message on the page, still accessible
    page.locator("#reject button[type=submit]").click()
    expect(page.locator("#reject .field__error")).to_be_visible()
    assert_accessible(page)
    page.goto(f"{live_server.url}/staff/reports/disputes")
    assert_accessible(page)


def test_queue_and_dispute_fit_a_phone(phone: BrowserContext, live_server: LiveServer) -> None:
    member_id, oldest_id, _newer, _account = _seed(live_server)
    page = phone.new_page()
    _sign_in(page, live_server, member_id)
    for path in ("/staff/disputes", f"/staff/disputes/{oldest_id}"):
        page.goto(f"{live_server.url}{path}")
        # wide tables scroll inside their own region; the page itself never scrolls sideways
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
