"""Issue 12's browser journey, in each of the four languages, from start to end.

A customer opens their link, chooses their language, disputes one of three lines with a
photo, sees "payable now" drop and pays the other two lines by card (localstripe); a
specialist chooses the same language, signs in (password and TOTP), opens the dispute
queue and its oldest dispute, and accepts it in part through the form; the customer reads
the decision in their language and pays the rest, and the invoice shows paid. axe-core
runs on every page the journey shows.

Nothing here is matched by English text in a non-English run: elements are found by ids,
form field names and links' `href` (built with `url_for`); the words and amounts a page
must show come from the app's catalogs (`gettext`) and its money filter under
`force_locale`, never typed in by hand.

The staff pages have no language switch of their own: staff choose the language with the
switcher of the public pages (here the accessibility statement), which sets it for the
whole session and is kept through the staff sign-in.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from babel.numbers import format_decimal
from flask import url_for
from flask_babel import force_locale, gettext
from playwright.sync_api import Browser, BrowserContext, Page, expect

from portal.db import utcnow
from portal.disputes.models import DisputeStatus
from portal.extensions import db
from portal.i18n import money_filter
from portal.invoices.models import InvoiceStatus
from portal.money import Money
from portal.staff.models import StaffMember
from tests import evidence_files as files
from tests.e2e.conftest import LiveServer, new_context
from tests.e2e.test_disputes import uploads  # noqa: F401  (the module's fixture: UPLOAD_DIR)
from tests.e2e.test_payments import (
    assert_accessible,
    fill_card,
    shop,  # noqa: F401  (the module's fixture: the live portal taking cards)
    wait_for_webhook,
)
from tests.factories import STAFF_PASSWORD, make_customer, make_invoice, make_staff, next_totp_code
from tests.stripe_journeys import CARD_OK

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.e2e

LOCALES = ["en", "es", "fr", "de"]
# Line 2 is disputed. "Not received": the other e2e modules leave open disputes of other
# reasons in the shared live portal, so the specialist's queue filtered by this reason
# has this journey's dispute as its oldest.
REASON = "not_received"
DISPUTED_LINE = 2
_numbers = itertools.count(1)


class Journey:
    """One customer's invoice, and the app's own words and amounts in one locale."""

    def __init__(self, server: LiveServer, locale: str) -> None:
        self.server = server
        self.locale = locale
        n = next(_numbers)
        today = utcnow().date()
        with server.app.app_context():
            customer = make_customer(
                account_number=f"DJL-{locale}-{n:03d}",
                name=f"Initech {locale.upper()} {n}",
                email=f"ap-{locale}-{n}@initech.example",
                timezone="UTC",
            )
            invoice = make_invoice(
                customer,
                number=f"DJL-{locale}-{n:03d}-A",
                issue_date=today - timedelta(days=5),
                due_date=today + timedelta(days=25),
                lines=[
                    ("Pallet of rivets", "1", "100.00"),
                    ("Crate of glass panels", "1", "40.00"),
                    ("Delivery", "1", "10.00"),
                ],
            )
            member = make_staff("specialist")
            db.session.commit()
            self.account_number = customer.account_number
            self.customer_name = customer.name
            self.invoice = invoice.number
            self.staff_id = member.id
            self.staff_email = member.email

    # --- the app's own words, links and amounts in this locale --------------------------
    def t(self, message: str, **params: Any) -> str:
        """`message` from the catalog of this journey's locale."""
        with self.server.app.test_request_context("/"), force_locale(self.locale):
            return str(gettext(message, **params))

    def money(self, minor: int) -> str:
        """USD `minor` cents as the pages of this locale write them (the `money` filter)."""
        with self.server.app.test_request_context("/"), force_locale(self.locale):
            return money_filter(Money(minor, "USD"))

    def label(self, status: DisputeStatus | InvoiceStatus) -> str:
        with self.server.app.test_request_context("/"), force_locale(self.locale):
            return status.label

    def decimal(self, text: str) -> str:
        """A plain amount as someone writing this locale types it ("15.00", "15,00")."""
        return str(format_decimal(Decimal(text), format="0.00", locale=self.locale))

    def href(self, endpoint: str, **values: Any) -> str:
        """The path a page links to (`url_for`), for a selector `a[href="..."]`."""
        with self.server.app.test_request_context("/"):
            return url_for(endpoint, **values)

    def link_to(self, page: Page, endpoint: str, **values: Any):  # type: ignore[no-untyped-def]
        return page.locator(f'a[href="{self.href(endpoint, **values)}"]')


def _choose_language(page: Page, locale: str) -> None:
    """The header's switcher: one button per language, its value the locale."""
    page.locator(f'.language-form button[name="locale"][value="{locale}"]').click()
    expect(page.locator("html")).to_have_attribute("lang", locale)


def _pay_by_card(page: Page, journey: Journey, amount: str) -> None:
    """From the invoice page: pay what is payable now by card, and wait for the webhook."""
    journey.link_to(page, "payments.choose", invoice=journey.invoice).click()
    expect(page.locator("#pay-choose")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("button", name=journey.t("Continue to payment")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(journey.t("Pay by card"))
    expect(page.locator("#card-element input")).to_have_count(5)  # Stripe.js is mounted
    expect(page.locator("#charge-amount")).to_have_text(amount)
    assert_accessible(page)
    fill_card(page, CARD_OK)
    pay = page.locator("#pay-button")
    expect(pay).to_have_text(journey.t("Pay %(amount)s", amount=amount))
    pay.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        journey.t("Thank you: your payment is complete"), timeout=15_000
    )
    expect(page.locator(".summary__item--main dd").first).to_have_text(amount)
    expect(page.locator("html")).to_have_attribute("lang", journey.locale)
    assert_accessible(page)
    wait_for_webhook(
        journey.server,
        SimpleNamespace(account_number=journey.account_number),  # type: ignore[arg-type]
        "payment_intent.succeeded",
    )


def _staff_decide(browser: Browser, journey: Journey, dispute_id: int) -> None:
    """A specialist, in the journey's language, accepts $15.00 of the $40.00 in part."""
    server = journey.server
    context = new_context(browser, server)  # an English browser: the choice is the switcher's
    try:
        page = context.new_page()
        page.goto(f"{server.url}{journey.href('site.accessibility')}")
        _choose_language(page, journey.locale)
        assert_accessible(page)
        page.goto(f"{server.url}{journey.href('staff.login')}")
        expect(page.locator("html")).to_have_attribute("lang", journey.locale)
        expect(page.get_by_role("heading", level=1)).to_have_text(journey.t("Staff sign-in"))
        assert_accessible(page)
        page.locator('input[name="email"]').fill(journey.staff_email)
        page.locator('input[name="password"]').fill(STAFF_PASSWORD)
        page.locator('main form [type="submit"]').click()
        expect(page.get_by_role("heading", level=1)).to_have_text(journey.t("Enter your code"))
        assert_accessible(page)
        with server.app.app_context():
            code = next_totp_code(db.session.get(StaffMember, journey.staff_id))
            db.session.commit()
        page.locator('input[name="code"]').fill(code)
        page.locator('main form [type="submit"]').click()
        expect(page).to_have_url(re.compile(r"/staff/$"))
        expect(page.locator("html")).to_have_attribute("lang", journey.locale)
        assert_accessible(page)

        # the queue, from the staff nav; filtered by the reason, oldest first
        queue = journey.href("staff_disputes.queue")
        page.locator(f'.staff-nav a[href="{queue}"]').click()
        expect(page.get_by_role("heading", level=1)).to_have_text(journey.t("Disputes"))
        assert_accessible(page)
        page.locator('select[name="reason"]').select_option(REASON)
        page.locator('.staff-filters button[type="submit"]').click()
        expect(page).to_have_url(re.compile(rf"reason={REASON}"))
        oldest = page.locator(".dispute-queue tbody th a").first
        expect(oldest).to_have_attribute(
            "href", journey.href("staff_disputes.detail", dispute_id=dispute_id)
        )
        assert_accessible(page)
        oldest.click()

        # the dispute: the customer's photo, then the decision in part
        expect(page.get_by_role("heading", level=1)).to_have_text(
            journey.t("Dispute %(id)s: %(name)s", id=dispute_id, name=journey.customer_name)
        )
        expect(page.locator(".dispute-files a")).to_have_text("crate.jpg")
        assert_accessible(page)
        partial = page.locator("form#partial")
        partial.locator(f'input[name="credit-{DISPUTED_LINE}"]').fill(journey.decimal("15.00"))
        partial.locator('textarea[name="reason"]').fill(
            "Two of the five panels were already cracked when they left our warehouse."
        )
        partial.locator('button[type="submit"]').click()

        # back on the queue, told what happened, in the same language
        expect(page.locator(".flash--success")).to_have_text(
            journey.t(
                "Dispute %(id)d accepted in part: %(amount)s credited; the rest of "
                "%(disputed)s is payable again.",
                id=dispute_id,
                amount=journey.money(1500),
                disputed=journey.money(4000),
            )
        )
        expect(page.locator("html")).to_have_attribute("lang", journey.locale)
        assert_accessible(page)
    finally:
        context.close()


@pytest.mark.parametrize("locale", LOCALES)
def test_dispute_a_line_pay_the_rest_staff_accept_in_part_pay_the_remainder(
    context: BrowserContext,
    browser: Browser,
    shop: LiveServer,  # noqa: F811  (the fixture imported above)
    uploads: Path,  # noqa: F811  (the fixture imported above)
    locale: str,
) -> None:
    journey = Journey(shop, locale)
    page = context.new_page()

    # the customer opens their link and chooses their language
    page.goto(shop.link(journey.account_number))
    assert_accessible(page)
    page.locator('main form [type="submit"]').click()  # "Continue to my account"
    expect(page).to_have_url(f"{shop.url}{journey.href('customers.account')}")
    _choose_language(page, locale)
    assert_accessible(page)

    # the invoice of three lines, and its dispute form
    journey.link_to(page, "invoices.detail", number=journey.invoice).first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        journey.t("Invoice %(number)s", number=journey.invoice)
    )
    expect(page.locator("#payable-now")).to_have_count(0)  # nothing held yet
    assert_accessible(page)
    journey.link_to(page, "disputes.new", number=journey.invoice).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        journey.t("Dispute a charge on invoice %(number)s", number=journey.invoice)
    )
    assert_accessible(page)

    # the customer disputes the glass panels, with a photo
    form = page.locator("form.dispute-form")
    form.locator(f'input[name="line-{DISPUTED_LINE}"]').check()
    form.locator(f'input[name="reason"][value="{REASON}"]').check()
    form.locator('textarea[name="message"]').fill("The crate arrived empty: see the photo.")
    form.locator('input[name="evidence"]').set_input_files(
        [{"name": "crate.jpg", "mimeType": "image/jpeg", "buffer": files.jpeg_photo((320, 240))}]
    )
    form.locator('button[type="submit"].button--primary').click()

    # the dispute's page: open, on hold, with the photo
    expect(page).to_have_url(re.compile(r"/disputes/\d+$"))
    dispute_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", level=1)).to_have_text(
        journey.t("Your dispute of invoice %(number)s", number=journey.invoice)
    )
    expect(page.locator(".flash--success")).to_have_text(
        journey.t(
            "Thank you. We received your dispute of %(amount)s. It is on hold: you do not "
            "need to pay it while we look into it.",
            amount=journey.money(4000),
        )
    )
    expect(page.locator(".page-heading .badge")).to_have_text(journey.label(DisputeStatus.OPEN))
    expect(page.locator(".file-list a")).to_have_text("crate.jpg")
    assert_accessible(page)
    assert any(path.is_file() for path in uploads.rglob("*"))  # stored, outside static/

    # the invoice: "payable now" leaves the disputed line out
    journey.link_to(page, "invoices.detail", number=journey.invoice).first.click()
    expect(page.locator("#payable-now dd")).to_have_text(journey.money(11000))
    expect(page.locator("#in-dispute dd")).to_have_text(journey.money(4000))
    assert_accessible(page)

    # the customer pays the two other lines by card
    _pay_by_card(page, journey, journey.money(11000))
    page.goto(f"{shop.url}{journey.href('invoices.detail', number=journey.invoice)}")
    expect(page.locator("#payable-now dd")).to_have_text(journey.money(0))
    expect(journey.link_to(page, "payments.choose", invoice=journey.invoice)).to_have_count(0)
    assert_accessible(page)

    # a specialist, in the same language, accepts $15.00 of the $40.00
    _staff_decide(browser, journey, dispute_id)

    # the customer reads the decision in their language
    page.goto(f"{shop.url}{journey.href('disputes.detail', dispute_id=dispute_id)}")
    expect(page.locator("html")).to_have_attribute("lang", locale)
    expect(page.locator(".page-heading .badge")).to_have_text(
        journey.label(DisputeStatus.PARTLY_ACCEPTED)
    )
    state = page.locator("#dispute-state")
    expect(state).to_contain_text(
        journey.t(
            "We credited %(credited)s of the %(disputed)s you disputed. The rest, %(rest)s, "
            "is payable again.",
            credited=journey.money(1500),
            disputed=journey.money(4000),
            rest=journey.money(2500),
        )
    )
    expect(state).to_contain_text("already cracked")
    assert_accessible(page)

    # and pays the rest; the invoice is paid
    state.locator(f'a[href="{journey.href("invoices.detail", number=journey.invoice)}"]').click()
    expect(page.locator(".summary__item--main dd")).to_have_text(journey.money(2500))
    assert_accessible(page)
    _pay_by_card(page, journey, journey.money(2500))
    page.goto(f"{shop.url}{journey.href('invoices.detail', number=journey.invoice)}")
    expect(page.locator(".page-heading .badge--paid")).to_have_text(
        journey.label(InvoiceStatus.PAID)
    )
    expect(page.locator(".summary__item--main dd")).to_have_text(journey.money(0))
    assert_accessible(page)
    page.goto(f"{shop.url}{journey.href('customers.account')}")
    expect(page.locator("#open-disputes")).to_have_count(0)
    assert_accessible(page)
