"""A staff member's first sign-in in a real browser: password, enrolling an authenticator
app from the QR page's key, the dashboard, the admin pages, signing out and in again with
a code; axe-core on every staff page."""

from __future__ import annotations

import pyotp
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.extensions import db
from portal.staff.models import StaffMember
from tests.e2e.conftest import LiveServer, assert_accessible
from tests.factories import STAFF_PASSWORD, make_staff, next_totp_code

pytestmark = pytest.mark.e2e


def _new_admin(live_server: LiveServer) -> tuple[int, str]:
    with live_server.app.app_context():
        member = make_staff("admin", enrolled=False)
        db.session.commit()
        return member.id, member.email


def _password_step(page: Page, live_server: LiveServer, email: str) -> None:
    page.goto(f"{live_server.url}/staff/login")
    expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_admin_enrols_totp_then_signs_in_with_a_code(page: Page, live_server: LiveServer) -> None:
    member_id, email = _new_admin(live_server)
    # given a first sign-in: the password, then the enrolment page
    _password_step(page, live_server, email)
    expect(page.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
    expect(page.locator(".staff-qr svg")).to_be_visible()
    assert_accessible(page)
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    # a wrong code is refused with a message
    page.get_by_label("Code from your authenticator app").fill("000000")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("That code is not right").first).to_be_visible()
    assert_accessible(page)
    # when the app's code is entered
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Continue").click()
    # then the dashboard, under the dark staff bar
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    expect(page.get_by_text("Your authenticator app is set up.")).to_be_visible()
    assert_accessible(page)
    for name, heading in (("Staff", "Staff accounts"), ("Audit log", "Audit log")):
        page.get_by_role("navigation", name="Staff areas").get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        assert_accessible(page)
    # signing out, and in again with the next code
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    _password_step(page, live_server, email)
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    assert_accessible(page)
    with live_server.app.app_context():
        member = db.session.get(StaffMember, member_id)
        assert member is not None
        assert member.mfa_enrolled
        code = next_totp_code(member)
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    with live_server.app.app_context():
        signed_in = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "staff.signed_in", AuditEvent.actor == f"staff:{member_id}"
            )
        ).all()
        assert len(signed_in) == 2


def test_invite_page_shows_the_link_once(page: Page, live_server: LiveServer) -> None:
    with live_server.app.app_context():
        admin = make_staff("admin")
        db.session.commit()
        email, admin_id = admin.email, admin.id
    _password_step(page, live_server, email)
    with live_server.app.app_context():
        member = db.session.get(StaffMember, admin_id)
        assert member is not None
        code = next_totp_code(member)
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Continue").click()
    page.goto(f"{live_server.url}/staff/admin/staff")
    page.get_by_label("Email address").fill(f"invitee{admin_id}@northwind.example")
    page.get_by_label("Name").fill("Invited Person")
    page.get_by_label("Role").select_option("specialist")
    page.get_by_role("button", name="Invite").click()
    link = page.locator("#password-link").inner_text()
    assert "/staff/set-password/" in link
    assert_accessible(page)
    page.goto(link)
    expect(page.get_by_role("heading", name="Set your password")).to_be_visible()
    assert_accessible(page)
