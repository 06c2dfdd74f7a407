"""Plan requests and policies in a real browser: an admin reviews a request, previews and
sends a counter-offer, approves another, saves a policy; axe on every page in en, es, fr
and de, and at 390 px."""

from __future__ import annotations

import re
from datetime import timedelta

from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.db import utcnow
from portal.extensions import db
from portal.money import Money
from portal.plans.models import PaymentPlan
from portal.plans.schedule import Frequency
from portal.plans.services import propose_plan
from portal.staff.models import StaffMember
from tests.e2e.conftest import LiveServer, assert_accessible
from tests.factories import STAFF_PASSWORD, make_customer, make_invoice, make_staff, next_totp_code


def _seed(app, tag: str):  # type: ignore[no-untyped-def]
    """An admin and two requests; customers of segment `wholesale` (its policy is the one
    edited, so that other browser tests keep the standard one)."""
    today = utcnow().date()
    with app.test_request_context():
        member = make_staff("admin")
        plans = []
        for n, name in enumerate(("Globex Plans", "Umbrella Plans")):
            customer = make_customer(
                account_number=f"PLAN-{tag}-{n}", name=name, timezone="UTC", segment="wholesale"
            )
            invoice = make_invoice(
                customer, number=f"PLAN-{tag}-{n}-A", lines=[("Services", "1", "1200.00")]
            )
            plans.append(
                propose_plan(
                    customer,
                    [invoice.number],
                    Money(12_000, "USD"),
                    Frequency.MONTHLY,
                    12,
                    today + timedelta(days=20),
                    "Hardship: a flood closed the shop",
                    False,
                    actor=Actor.customer(customer),
                    now=utcnow(),
                ).id
            )
        db.session.commit()
        return member.id, plans


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


def test_plan_requests_and_policies(page: Page, live_server: LiveServer) -> None:
    member_id, (first, second) = _seed(live_server.app, "E2E")
    _sign_in(page, live_server, member_id)
    expect(page.get_by_text("plan requests wait for review")).to_be_visible()

    # every page passes axe, in every language
    urls = [
        "/staff/plans",
        f"/staff/plans/{first}",
        "/staff/policies",
        "/staff/policies/wholesale",
        "/staff/reports/plans",
    ]
    for language in ("es", "fr", "de", "en"):
        page.goto(f"{live_server.url}/")  # the language switcher (kept by the session)
        page.locator(f"button[name=locale][value={language}]").click()
        for url in urls:
            page.goto(f"{live_server.url}{url}")
            expect(page.locator("html")).to_have_attribute("lang", language)
            assert_accessible(page)

    # the queue, oldest first, with the broken limits in words
    page.goto(f"{live_server.url}/staff/plans")
    row = page.locator("tbody tr", has_text="PLAN-E2E-0")
    expect(row).to_contain_text("12 installments is over the limit of 6.")

    # preview a counter-offer, then send it
    row.get_by_role("link", name="Review the request of Globex Plans").click()
    page.get_by_label("Down payment").fill("300.00")
    page.get_by_label("How often").select_option("monthly")
    page.get_by_label("Number of installments").fill("6")
    page.get_by_role("button", name="Preview the schedule").click()
    preview = page.get_by_role("status")
    expect(preview).to_contain_text("$150.00")  # 1,200.00 - 300.00 in 6
    assert_accessible(page)
    page.get_by_role("button", name="Send the counter-offer").click()
    expect(page.get_by_text("The counter-offer is on its way to the customer.")).to_be_visible()

    # approve the other one
    page.goto(f"{live_server.url}/staff/plans/{second}")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("The plan is approved and active")).to_be_visible()
    assert_accessible(page)

    # a policy saved as a new version
    page.goto(f"{live_server.url}/staff/policies/wholesale")
    page.get_by_label("Most installments").fill("8")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_text("of the wholesale policy is in force")).to_be_visible()
    assert_accessible(page)

    with live_server.app.app_context():
        statuses = dict(
            db.session.execute(
                select(PaymentPlan.id, PaymentPlan.status).where(
                    PaymentPlan.id.in_([first, second])
                )
            ).all()
        )
        assert statuses == {first: "countered", second: "active"}


def test_plan_pages_at_390_px(phone, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    member_id, (first, _second) = _seed(live_server.app, "PHONE")
    page = phone.new_page()
    _sign_in(page, live_server, member_id)
    for url in ("/staff/plans", f"/staff/plans/{first}", "/staff/policies/wholesale"):
        page.goto(f"{live_server.url}{url}")
        assert_accessible(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1, f"{url} is {width} px wide"
