"""A specialist opens the aging report in a real browser, reads it, downloads its CSV, and
visits the other reports; axe-core on every report page."""

from __future__ import annotations

import csv
import io

import pytest
from playwright.sync_api import Page, expect

from portal.db import utcnow
from portal.extensions import db
from portal.staff.models import StaffMember
from tests.e2e.conftest import Ledger, LiveServer, assert_accessible
from tests.factories import STAFF_PASSWORD, make_staff, next_totp_code

pytestmark = pytest.mark.e2e


def _sign_in_specialist(page: Page, live_server: LiveServer) -> None:
    with live_server.app.app_context():
        member = make_staff("specialist")
        db.session.commit()
        member_id, email = member.id, member.email
    page.goto(f"{live_server.url}/staff/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    with live_server.app.app_context():
        signed = db.session.get(StaffMember, member_id)
        assert signed is not None
        code = next_totp_code(signed)
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def test_specialist_reads_the_aging_report_and_downloads_its_csv(
    page: Page, live_server: LiveServer, ledger: Ledger
) -> None:
    today = utcnow().date().isoformat()
    _sign_in_specialist(page, live_server)
    # given the aging report, from the staff bar
    page.get_by_role("navigation", name="Staff areas").get_by_role("link", name="Reports").click()
    expect(page.get_by_role("heading", name="Aging report")).to_be_visible()
    page.get_by_label("As of").fill(today)
    page.get_by_label("Currency").select_option("USD")
    page.get_by_role("button", name="Show").click()
    # then the chart and its table, and this customer among those owing the most
    expect(page.locator("figure.report-chart svg")).to_be_visible()
    expect(page.get_by_role("row", name=ledger.name)).to_contain_text(ledger.total_due)
    assert_accessible(page)
    # when the CSV is downloaded
    with page.expect_download() as event:
        page.get_by_role("link", name="Download CSV (every customer)").click()
    download = event.value
    assert download.suggested_filename == f"aging-{today}-USD.csv"
    with open(download.path(), encoding="utf-8") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    # then it holds the customer's buckets: 99.50 not yet due, 215.10 ten days late
    mine = next(r for r in rows if r["account_number"] == ledger.account_number)
    assert (mine["current"], mine["1-30"], mine["total"]) == ("99.50", "215.10", "314.60")
    assert rows[-1]["account_number"] == "TOTAL"
    # a bad date is answered on the page, in words
    page.goto(f"{live_server.url}/staff/reports/aging?as_of=2026-02-30")
    expect(page.get_by_text("Please enter a date as YYYY-MM-DD.")).to_be_visible()
    assert_accessible(page)
    # the other reports
    for tab, heading in (
        ("DSO and CEI", "DSO and CEI"),
        ("Collections and promises", "Collections"),
    ):
        page.goto(f"{live_server.url}/staff/reports/aging")
        page.get_by_role("navigation", name="Reports").get_by_role("link", name=tab).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        expect(page.locator("figure.report-chart svg").first).to_be_visible()
        assert_accessible(page)
