# ruff: noqa: F811 (`shop`, the card-taking live portal, is a fixture imported below)
"""Payment plans in a real browser: Chromium, the live portal, localstripe.

An in-policy plan from a ready-made offer to active, its down payment paid by card and
the card then kept for the installments; a proposal outside policy that a specialist
counters (the `plans-domain` service, called as the staff page would), accepted from the
email's link; and axe-core on every plan page in all four languages on a 390 px phone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.money import Money
from portal.plans.models import PaymentPlan, PlanStatus
from portal.plans.services import counter_offer
from tests.e2e.conftest import Ledger, LiveServer, new_context
from tests.e2e.test_payments import (
    assert_accessible,
    expect_paid,
    fill_card,
    shop,  # noqa: F401 (a fixture: the live portal taking cards through localstripe)
    sign_in,
)
from tests.stripe_journeys import CARD_OK

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.e2e
PHONE_WIDTH = 390
LANGUAGES = {"en": "English", "es": "Español", "fr": "Français", "de": "Deutsch"}


def _plan_of(shop: LiveServer, ledger: Ledger) -> PaymentPlan:
    with shop.app.app_context():
        plan = db.session.scalar(
            select(PaymentPlan)
            .join(Customer, Customer.id == PaymentPlan.customer_id)
            .where(Customer.account_number == ledger.account_number)
            .order_by(PaymentPlan.id.desc())
        )
        assert plan is not None
        db.session.expunge(plan)
        db.session.remove()
        return plan


def _installments(shop: LiveServer, plan_id: int) -> list[tuple[int, str]]:
    with shop.app.app_context():
        plan = db.session.get(PaymentPlan, plan_id)
        rows = [(i.number, i.status) for i in plan.installments]
        db.session.remove()
        return rows


def test_an_offer_becomes_an_active_plan_with_its_down_payment_and_a_saved_card(
    page: Page, shop: LiveServer, ledger: Ledger
) -> None:
    # given a customer owing $314.60
    sign_in(page, shop, ledger)
    page.get_by_role("link", name="Set up a payment plan").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up a payment plan")
    offers = page.get_by_role("region", name="Plans we can agree now")
    expect(offers).to_contain_text("For everything you owe now: $314.60.")
    # 10 % down ($31.46), then $283.14 in 3 monthly payments of $94.38
    expect(offers.get_by_role("heading", name="3 monthly payments of $94.38")).to_be_visible()
    assert_accessible(page)
    # when the customer takes it in one click
    offers.get_by_role("listitem").filter(has_text="3 monthly payments of $94.38").get_by_role(
        "button", name="Take this plan"
    ).click()
    # then the plan is agreed and the pay flow asks for the down payment
    expect(page.get_by_role("heading", level=1)).to_have_text("Pay by card")
    expect(page.locator("#charge-amount")).to_have_text("$31.46")
    expect(page.get_by_role("status")).to_contain_text("Your payment plan is agreed.")
    fill_card(page, CARD_OK)
    page.get_by_label("Save this card for my next payment").check()
    page.get_by_role("button", name="Pay $31.46").click()
    expect_paid(page, "$31.46", shop, ledger)
    # back on the plan: the down payment is paid, three installments to go
    page.get_by_role("link", name="Back to your plan").click()
    plan = _plan_of(shop, ledger)
    expect(page).to_have_url(f"{shop.url}/plans/{plan.id}")
    expect(page.locator("#plan-status")).to_have_text("Active")
    expect(page.locator("#plan-paid")).to_have_text("$31.46")
    expect(page.locator("#plan-remaining")).to_have_text("$283.14")
    assert _installments(shop, plan.id) == [
        (0, "paid"),
        (1, "scheduled"),
        (2, "scheduled"),
        (3, "scheduled"),
    ]
    assert_accessible(page)
    # when the customer keeps the saved card for the installments
    page.get_by_role("link", name="Pay automatically with a saved card").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("A card for your installments")
    expect(
        page.get_by_role("radio", name=re.compile("Your saved card: Visa ending in 4242"))
    ).to_be_checked()
    page.get_by_role("button", name="Use this card for my installments").click()
    # then autopay is on with that card
    expect(page.get_by_role("status")).to_contain_text(
        "Your installments will be paid with this card."
    )
    expect(page.locator("#autopay-card")).to_contain_text(
        "Each installment is charged automatically on its due date to your Visa ending in 4242."
    )
    with shop.app.app_context():
        stored = db.session.get(PaymentPlan, plan.id)
        assert stored.status == PlanStatus.ACTIVE
        assert stored.autopay
        assert stored.saved_card is not None
        assert stored.saved_card.last4 == "4242"
        db.session.remove()
    # and the agreement downloads
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the agreement (PDF)").click()
    assert download.value.suggested_filename == f"payment-plan-PP-{plan.id}.pdf"


def test_the_builder_previews_as_the_customer_types_and_names_the_broken_limit(
    page: Page, shop: LiveServer, ledger: Ledger
) -> None:
    sign_in(page, shop, ledger)
    page.goto(f"{shop.url}/plans/new")
    builder = page.locator("#plan-builder")
    builder.get_by_label("Down payment today").fill("14.60")
    builder.get_by_label("Number of payments").fill("12")
    preview = page.locator("#plan-preview")
    expect(preview).to_have_attribute("aria-live", "polite")
    # with JavaScript the preview follows the fields: 300.00 in 12 is 25.00 a month
    expect(preview).to_contain_text("12 installments is over the limit of 6.")
    expect(preview.locator("#plan-schedule tbody tr")).to_have_count(13)
    expect(preview.locator("#plan-total")).to_have_text("$314.60")
    expect(preview.locator("#plan-suggestion")).to_contain_text("This plan would be approved now: ")
    assert_accessible(page)


def test_a_proposal_outside_policy_is_countered_and_accepted_from_the_email_link(
    page: Page, shop: LiveServer, ledger: Ledger
) -> None:
    # given a proposal over the limit, with the customer's reason
    sign_in(page, shop, ledger)
    page.get_by_role("link", name="Set up a payment plan").click()
    builder = page.locator("#plan-builder")
    builder.get_by_label("Number of payments").fill("12")
    page.get_by_label("Why do you need this plan?").fill("Hardship: reduced hours this winter.")
    page.get_by_role("button", name="Accept this plan").click()
    expect(page.locator("#plan-status")).to_have_text("Waiting for review")
    expect(page.get_by_role("status")).to_contain_text("Your proposal was sent for review.")
    assert_accessible(page)
    plan = _plan_of(shop, ledger)
    # when a specialist counters with 6 monthly payments
    with shop.app.app_context():
        stored = db.session.get(PaymentPlan, plan.id)
        counter_offer(
            stored,
            down_payment=Money(1_460, "USD"),
            frequency="monthly",
            installments=6,
            first_payment_date=customer_today(stored.customer, utcnow()) + timedelta(days=20),
            note="Six months is the longest we can agree.",
            actor=Actor.system(),
            now=utcnow(),
        )
        db.session.commit()
        db.session.remove()
    # then an email carries a link; opened in the browser, it leads to the counter-offer
    bodies = shop.emails_to(ledger.email)
    link = next(
        match.group(0)
        for body in reversed(bodies)
        for match in [re.search(rf"{re.escape(shop.url)}/l/\S+", body)]
        if match is not None
    )
    page.context.clear_cookies()
    page.goto(link)
    page.get_by_role("button", name="Continue to my account").click()
    if f"/plans/{plan.id}" not in page.url:
        page.get_by_role("link", name=f"Payment plan PP-{plan.id}").click()
    expect(page).to_have_url(f"{shop.url}/plans/{plan.id}")
    expect(page.locator("#plan-status")).to_have_text("Counter-offer")
    expect(page.locator("#counter-summary")).to_have_text("6 monthly payments of $50.00")
    expect(page.get_by_role("region", name="A specialist proposes another plan")).to_contain_text(
        "Six months is the longest we can agree."
    )
    assert_accessible(page)
    page.get_by_role("button", name="Accept this plan").click()
    # the plan is active, and the down payment is asked for at once
    expect(page.get_by_role("heading", level=1)).to_have_text("Pay by card")
    expect(page.locator("#charge-amount")).to_have_text("$14.60")
    with shop.app.app_context():
        assert db.session.get(PaymentPlan, plan.id).status == PlanStatus.ACTIVE
        db.session.remove()


# --- every plan page, four languages, a 390 px phone ---------------------------------------
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


def _fits(page: Page) -> None:
    # the live preview has answered (static/js/plans.js marks the region busy meanwhile)
    expect(page.locator("#plan-preview[aria-busy]")).to_have_count(0)
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE_WIDTH, f"{page.url} is {width}px wide on a {PHONE_WIDTH}px phone"
    assert_accessible(page)


def test_every_plan_page_is_accessible_in_four_languages_on_a_phone(
    phone_page: Page, shop: LiveServer, ledger: Ledger
) -> None:
    page = phone_page
    sign_in(page, shop, ledger)
    # a pending proposal, then an active plan of the other invoice
    page.goto(f"{shop.url}/plans/new")
    builder = page.locator("#plan-builder")
    builder.get_by_label(re.compile(f"Invoice {ledger.upcoming_invoice}")).uncheck()
    builder.get_by_label("Number of payments").fill("12")
    page.get_by_label("Why do you need this plan?").fill("Hardship")
    page.get_by_role("button", name="Accept this plan").click()
    pending = _plan_of(shop, ledger)
    with shop.app.app_context():
        stored = db.session.get(PaymentPlan, pending.id)
        counter_offer(
            stored,
            down_payment=Money(1_510, "USD"),
            frequency="monthly",
            installments=5,
            first_payment_date=customer_today(stored.customer, utcnow()) + timedelta(days=20),
            actor=Actor.system(),
            now=utcnow(),
        )
        db.session.commit()
        db.session.remove()
    for code, name in LANGUAGES.items():
        page.goto(f"{shop.url}/plans/{pending.id}")
        page.get_by_role("button", name=name).click()
        expect(page.locator("html")).to_have_attribute("lang", code)
        _fits(page)  # a counter-offer
        page.goto(f"{shop.url}/plans/new")
        _fits(page)  # a proposal waiting: no offers, the notice
        page.locator("#plan-preview-button").click()
        expect(page.locator("#plan-schedule")).to_be_visible()
        _fits(page)  # the builder with its schedule
    page.get_by_role("button", name="English").click()
    page.goto(f"{shop.url}/plans/{pending.id}")
    page.get_by_role("button", name="Accept this plan").click()
    expect(page.locator("#charge-amount")).to_have_text("$15.10")
    for code, name in LANGUAGES.items():
        page.goto(f"{shop.url}/plans/{pending.id}")
        page.get_by_role("button", name=name).click()
        expect(page.locator("html")).to_have_attribute("lang", code)
        _fits(page)  # an active plan
        page.goto(f"{shop.url}/plans/{pending.id}/card")
        expect(page.locator("#card-element input")).to_have_count(5)
        _fits(page)  # its card
        page.goto(f"{shop.url}/account")
        _fits(page)  # the account page with its plans
