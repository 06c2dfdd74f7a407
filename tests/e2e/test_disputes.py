"""Disputing a line in a real browser: Chromium, the live portal, localstripe.

The journey of issue 12: a customer disputes one of three lines with a photo, sees
"payable now" drop, pays the other two lines by card; staff accept in part (through the
service: the staff pages are another branch's); the customer pays the rest. And axe-core
on the dispute form and the dispute page in all four languages, on a 390 px phone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.db import utcnow
from portal.disputes import services
from portal.disputes.evidence import accept_uploads
from portal.disputes.models import Dispute
from portal.extensions import db
from portal.money import Money
from tests import evidence_files as files
from tests.e2e.conftest import LiveServer
from tests.e2e.test_payments import (
    assert_accessible,
    continue_to_card,
    expect_paid,
    fill_card,
    shop,  # noqa: F401  (the module's fixture: the live portal taking cards)
)
from tests.factories import make_customer, make_invoice, make_staff
from tests.stripe_journeys import CARD_OK

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.e2e

LANGUAGES = {"en": "English", "es": "Español", "fr": "Français", "de": "Deutsch"}
_numbers = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def uploads(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("uploads")
    saved = live_server.app.config.get("UPLOAD_DIR")
    live_server.app.config["UPLOAD_DIR"] = str(directory)
    try:
        yield directory
    finally:
        live_server.app.config["UPLOAD_DIR"] = saved


def _seed(server: LiveServer) -> SimpleNamespace:
    """A customer with one invoice of three lines: $100.00, $40.00 and $10.00."""
    n = next(_numbers)
    today = utcnow().date()
    with server.app.app_context():
        customer = make_customer(
            account_number=f"DSP-{n:04d}",
            name=f"Initech {n}",
            email=f"ap{n}@initech.example",
            timezone="UTC",
        )
        invoice = make_invoice(
            customer,
            number=f"DSP-{n:04d}-A",
            issue_date=today - timedelta(days=5),
            due_date=today + timedelta(days=25),
            lines=[
                ("Pallet of rivets", "1", "100.00"),
                ("Crate of glass panels", "1", "40.00"),
                ("Delivery", "1", "10.00"),
            ],
        )
        db.session.commit()
        return SimpleNamespace(
            account_number=customer.account_number,
            customer_id=customer.id,
            invoice=invoice.number,
        )


def _sign_in(page: Page, server: LiveServer, account_number: str) -> None:
    page.goto(server.link(account_number))
    page.get_by_role("button", name="Continue to my account").click()
    expect(page).to_have_url(f"{server.url}/account")


def _summary(page: Page, label: str):  # type: ignore[no-untyped-def]
    return page.locator(".summary__item").filter(has_text=label).locator("dd")


def _wait_for_payment(server: LiveServer, account_number: str) -> None:
    from tests.e2e.test_payments import wait_for_webhook

    ledger = SimpleNamespace(account_number=account_number)
    wait_for_webhook(server, ledger, "payment_intent.succeeded")  # type: ignore[arg-type]


def test_dispute_one_line_pay_the_rest_then_the_part_not_credited(
    page: Page,
    shop: LiveServer,  # noqa: F811  (the fixture imported above)
    uploads: Path,
) -> None:
    seeded = _seed(shop)
    _sign_in(page, shop, seeded.account_number)
    # given the invoice of three lines, $150.00 in all
    page.goto(f"{shop.url}/invoices/{seeded.invoice}")
    page.get_by_role("link", name="Dispute a charge").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Dispute a charge on invoice {seeded.invoice}"
    )
    assert_accessible(page)
    # when the customer disputes the glass panels with a photo of the broken crate
    page.get_by_label(re.compile("Crate of glass panels")).check()
    page.get_by_label("Damaged or defective").check()
    page.get_by_label("Tell us what happened").fill("The crate arrived broken; all panels cracked.")
    page.get_by_label("Photos or documents (optional)").set_input_files(
        [{"name": "crate.jpg", "mimeType": "image/jpeg", "buffer": files.jpeg_photo((320, 240))}]
    )
    page.get_by_role("button", name="Send my dispute").click()
    # then the dispute's page says it is on hold, with the photo
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Your dispute of invoice {seeded.invoice}"
    )
    expect(page.locator(".flash--success")).to_contain_text("We received your dispute of $40.00.")
    expect(page.locator(".page-heading .badge")).to_have_text("Open")
    expect(page.get_by_role("link", name="crate.jpg")).to_be_visible()
    assert_accessible(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="crate.jpg").click()
    assert download.value.suggested_filename == "crate.jpg"
    assert Path(download.value.path()).read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    assert len(list(uploads.iterdir())) == 1
    # and the invoice's payable amount leaves the disputed line out
    page.get_by_role("link", name=seeded.invoice).first.click()
    expect(_summary(page, "Payable now")).to_have_text("$110.00")
    expect(_summary(page, "In dispute (on hold)")).to_have_text("$40.00")
    expect(page.get_by_role("row", name=re.compile("Crate of glass panels"))).to_contain_text(
        "In dispute: $40.00"
    )
    # when the customer pays the two other lines by card
    page.get_by_role("link", name="Pay this invoice").click()
    continue_to_card(page)
    expect(page.locator("#charge-amount")).to_have_text("$110.00")
    fill_card(page, CARD_OK)
    page.get_by_role("button", name="Pay $110.00").click()
    expect_paid(page, "$110.00", shop, seeded)  # type: ignore[arg-type]
    # then nothing is payable while the dispute is open
    page.goto(f"{shop.url}/invoices/{seeded.invoice}")
    expect(_summary(page, "Payable now")).to_have_text("$0.00")
    expect(page.get_by_role("link", name="Pay this invoice")).to_have_count(0)
    # when staff accept $15.00 of the $40.00 (the staff pages are another branch's)
    with shop.app.app_context():
        dispute = db.session.scalar(
            select(Dispute).join(Customer).where(Customer.account_number == seeded.account_number)
        )
        staff = make_staff()
        services.accept_in_part(
            dispute,
            {2: Money(1500, "USD")},
            "Two of the five panels were already cracked when they left our warehouse.",
            actor=Actor.staff(staff),
            now=utcnow(),
        )
        db.session.commit()
        dispute_id = dispute.id
    # then the customer reads the decision and its reason
    page.goto(f"{shop.url}/disputes/{dispute_id}")
    expect(page.locator(".page-heading .badge")).to_have_text("Partly accepted")
    expect(page.locator("#dispute-state")).to_contain_text(
        "We credited $15.00 of the $40.00 you disputed. The rest, $25.00, is payable again."
    )
    expect(page.locator("#dispute-state")).to_contain_text("already cracked")
    assert_accessible(page)
    # and pays the rest
    page.get_by_role("link", name=re.compile("pay what is due")).click()
    expect(_summary(page, "Balance due")).to_have_text("$25.00")
    page.get_by_role("link", name="Pay this invoice").click()
    continue_to_card(page)
    expect(page.locator("#charge-amount")).to_have_text("$25.00")
    fill_card(page, CARD_OK)
    page.get_by_role("button", name="Pay $25.00").click()
    expect_paid(page, "$25.00", shop, seeded)  # type: ignore[arg-type]
    page.goto(f"{shop.url}/invoices/{seeded.invoice}")
    expect(page.locator(".page-heading .badge").first).to_have_text("Paid")
    page.goto(f"{shop.url}/account")
    expect(page.locator("#open-disputes")).to_have_count(0)


def _dispute_waiting_on_the_customer(server: LiveServer, seeded: SimpleNamespace) -> int:
    """A dispute of two lines with a PDF, on which staff asked a question."""
    with server.app.app_context():
        customer = db.session.get(Customer, seeded.customer_id)
        from portal.invoices.queries import get_invoice_for

        invoice = get_invoice_for(customer, seeded.invoice)
        with server.app.test_request_context("/"):
            stored = accept_uploads([files.upload(files.clean_pdf(), "delivery note.pdf")])
        dispute = services.open_dispute(
            customer,
            invoice,
            {1: Money(2500, "USD"), 3: None},
            "wrong_price",
            "The rivets were quoted at $75.00.\nDelivery was meant to be free.",
            stored,
            actor=Actor.customer(customer),
            now=utcnow(),
        )
        services.ask_for_information(
            dispute,
            "Could you send the quote you received?",
            actor=Actor.staff(make_staff()),
            now=utcnow(),
        )
        db.session.commit()
        return dispute.id


@pytest.mark.parametrize("locale", list(LANGUAGES))
def test_the_dispute_pages_are_accessible_on_a_phone_in_every_language(
    phone: BrowserContext, live_server: LiveServer, uploads: Path, locale: str
) -> None:
    seeded = _seed(live_server)
    dispute_id = _dispute_waiting_on_the_customer(live_server, seeded)
    page = phone.new_page()
    _sign_in(page, live_server, seeded.account_number)
    if locale != "en":
        page.get_by_role("button", name=LANGUAGES[locale]).tap()
        expect(page.locator("html")).to_have_attribute("lang", locale)
    for path in (f"/invoices/{seeded.invoice}/dispute", f"/disputes/{dispute_id}"):
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("html")).to_have_attribute("lang", locale)
        assert_accessible(page)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            f"{path} scrolls sideways at 390 px in {locale}"
        )
    # the refused form, with its error summary, in the same language
    page.goto(f"{live_server.url}/invoices/{seeded.invoice}/dispute")
    page.locator("button.button--primary").click()
    expect(page.locator("#error-summary")).to_be_visible()
    assert_accessible(page)
    # the withdrawal's confirmation opens without JavaScript's help (a <details>)
    page.goto(f"{live_server.url}/disputes/{dispute_id}")
    page.locator("details.withdraw summary").tap()
    expect(page.locator("#confirm")).to_be_visible()
    assert_accessible(page)
