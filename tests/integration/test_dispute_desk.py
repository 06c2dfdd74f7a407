"""The staff dispute desk over HTTP: who may use it, the queue (order, ages, filters,
pages), one dispute's page, every decision and every refusal, the staff home's count."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.customers.models import Customer
from portal.db import utcnow
from portal.disputes.ages import business_days_between
from portal.disputes.models import (
    Dispute,
    DisputeFile,
    DisputeLine,
    DisputeMessage,
    DisputeStatus,
)
from portal.extensions import db
from portal.invoices.models import CreditNote, Invoice
from portal.notifications.models import OutboxMessage
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice

LINES = [("Widgets", "3", "40.00"), ("Delivery", "1", "25.00"), ("Setup", "1", "60.00")]


def make_dispute(
    invoice: Invoice,
    amounts: dict[int, str],
    *,
    reason: str = "damaged",
    status: DisputeStatus = DisputeStatus.OPEN,
    opened_at: datetime | None = None,
    message: str = "Two widgets arrived broken.",
    flagged: bool = False,
) -> Dispute:
    """A dispute as `open_dispute` leaves it (lines, the customer's message), written
    directly: these tests are about the staff pages, not about opening one."""
    opened_at = opened_at or utcnow() - timedelta(hours=1)
    dispute = Dispute(
        customer_id=invoice.customer_id,
        invoice_id=invoice.id,
        status=status.value,
        reason=reason,
        opened_at=opened_at,
        updated_at=opened_at,
    )
    if status == DisputeStatus.WAITING_ON_CUSTOMER:
        dispute.reply_due_at = opened_at + timedelta(days=14)
    elif not status.is_open:
        dispute.resolved_at = opened_at + timedelta(days=1)
        dispute.resolved_by = f"customer:{invoice.customer_id}"
    if flagged:
        dispute.flagged_at = opened_at + timedelta(days=15)
    by_number = {line.line_number: line for line in invoice.lines}
    for number, amount in amounts.items():
        minor = int(amount.replace(".", ""))
        dispute.lines.append(
            DisputeLine(
                invoice_line_id=by_number[number].id,
                amount_minor=minor,
                currency=invoice.currency,
            )
        )
    dispute.messages.append(
        DisputeMessage(
            author=f"customer:{invoice.customer_id}",
            body=message,
            kind="message",
            created_at=opened_at,
        )
    )
    db.session.add(dispute)
    db.session.flush()
    return dispute


@pytest.fixture
def invoice(db_session) -> Invoice:
    customer = make_customer(name="Initech Ltd", account_number="DSP-0001")
    return make_invoice(customer, number="INV-DSP-1", lines=LINES)


# --- who may use it --------------------------------------------------------------------------
GET_ROUTES = ["/staff/disputes", "/staff/disputes/{id}", "/staff/disputes/{id}/files/1"]
POST_ROUTES = [
    "/staff/disputes/{id}/accept",
    "/staff/disputes/{id}/accept-in-part",
    "/staff/disputes/{id}/reject",
    "/staff/disputes/{id}/ask",
]


@pytest.mark.parametrize("route", GET_ROUTES + POST_ROUTES)
def test_anonymous_and_customer_sessions_go_to_the_staff_sign_in(
    client: FlaskClient, invoice: Invoice, route: str
) -> None:
    dispute = make_dispute(invoice, {1: "80.00"})
    url = route.format(id=dispute.id)
    method = client.post if route in POST_ROUTES else client.get
    anonymous = method(url)
    assert anonymous.status_code in (302, 400)  # to the sign-in, or CSRF refused first
    if anonymous.status_code == 302:
        assert "/staff/login" in anonymous.headers["Location"]
    customer = db.session.get(Customer, invoice.customer_id)
    login_as(client, customer)
    as_customer = method(url)
    assert as_customer.status_code in (302, 400)
    if as_customer.status_code == 302:
        assert "/staff/login" in as_customer.headers["Location"]
    db.session.refresh(dispute)
    assert dispute.status == "open"


@pytest.mark.parametrize("who", ["staff_client", "admin_client"])
def test_specialists_and_admins_see_the_queue_and_a_dispute(
    request: pytest.FixtureRequest, invoice: Invoice, who: str
) -> None:
    client = request.getfixturevalue(who)
    dispute = make_dispute(invoice, {1: "80.00"})
    assert client.get("/staff/disputes").status_code == 200
    assert client.get(f"/staff/disputes/{dispute.id}").status_code == 200


def test_unknown_dispute_is_404(staff_client: FlaskClient, invoice: Invoice) -> None:
    dispute = make_dispute(invoice, {1: "80.00"})
    assert staff_client.get(f"/staff/disputes/{dispute.id + 1000}").status_code == 404
    assert staff_client.get("/staff/disputes/99999999999").status_code == 404
    token = csrf_token_from(staff_client.get(f"/staff/disputes/{dispute.id}").text)
    response = staff_client.post(
        f"/staff/disputes/{dispute.id + 1000}/accept",
        data={"csrf_token": token, "messages_seen": "1"},
    )
    assert response.status_code == 404


def test_a_file_of_another_dispute_is_404(staff_client: FlaskClient, invoice: Invoice) -> None:
    first = make_dispute(invoice, {1: "10.00"})
    second = make_dispute(invoice, {2: "5.00"})
    stored = DisputeFile(
        dispute_id=second.id,
        storage_name="a" * 32,
        original_name="photo.png",
        content_type="image/png",
        size_bytes=10,
        sha256="0" * 64,
    )
    db.session.add(stored)
    db.session.flush()
    assert staff_client.get(f"/staff/disputes/{first.id}/files/{stored.id}").status_code == 404
    assert staff_client.get(f"/staff/disputes/{first.id}/files/999999").status_code == 404


# --- the queue -------------------------------------------------------------------------------
def _queue_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'href="/staff/disputes/(\d+)"', html)]


def test_queue_lists_open_disputes_oldest_first_with_what_a_specialist_needs(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    now = utcnow()
    newer = make_dispute(invoice, {2: "25.00"}, reason="wrong_price", opened_at=now)
    older = make_dispute(invoice, {1: "80.00"}, opened_at=now - timedelta(days=3))
    make_dispute(invoice, {3: "60.00"}, status=DisputeStatus.WITHDRAWN)
    page = staff_client.get("/staff/disputes")
    assert page.status_code == 200
    assert _queue_ids(page.text) == [older.id, newer.id]
    row = page.text[page.text.index(f"/staff/disputes/{older.id}") :]
    row = row[: row.index("</tr>")]
    for expected in ("Initech Ltd", "DSP-0001", "INV-DSP-1", "$80.00", "Damaged or defective"):
        assert expected in row
    assert "2 disputes match." in page.text


def test_age_is_counted_in_business_days_and_over_target_is_said_in_words(
    app, staff_client: FlaskClient, invoice: Invoice
) -> None:
    now = utcnow()
    long_ago = now - timedelta(days=30)
    old = make_dispute(invoice, {1: "80.00"}, opened_at=long_ago)
    fresh = make_dispute(invoice, {2: "25.00"}, opened_at=now)
    html = staff_client.get("/staff/disputes").text
    zone = app.config["CREDITOR_TIMEZONE"]
    from zoneinfo import ZoneInfo

    days = business_days_between(
        long_ago.astimezone(ZoneInfo(zone)).date(), now.astimezone(ZoneInfo(zone)).date()
    )
    assert days > 10
    old_row = html[html.index(f"/staff/disputes/{old.id}") :]
    old_row = old_row[: old_row.index("</tr>")]
    assert f"{days} business days: over target" in old_row
    assert 'class=" is-over-target"' in html or "is-over-target" in html
    fresh_row = html[html.index(f"/staff/disputes/{fresh.id}") :]
    fresh_row = fresh_row[: fresh_row.index("</tr>")]
    assert "0 business days" in fresh_row
    assert "10 days left" in fresh_row
    assert "over target" not in fresh_row


def test_the_target_comes_from_configuration(
    app, staff_client: FlaskClient, invoice: Invoice
) -> None:
    make_dispute(invoice, {1: "80.00"}, opened_at=utcnow() - timedelta(days=8))
    saved = app.config["DISPUTE_TARGET_BUSINESS_DAYS"]
    assert saved == 10  # the default
    app.config["DISPUTE_TARGET_BUSINESS_DAYS"] = 2
    try:
        html = staff_client.get("/staff/disputes").text
    finally:
        app.config["DISPUTE_TARGET_BUSINESS_DAYS"] = saved
    assert "over target" in html
    assert "within 2 business days" in html


def test_a_flagged_dispute_stands_out(staff_client: FlaskClient, invoice: Invoice) -> None:
    flagged = make_dispute(
        invoice,
        {1: "80.00"},
        status=DisputeStatus.WAITING_ON_CUSTOMER,
        opened_at=utcnow() - timedelta(days=20),
        flagged=True,
    )
    make_dispute(invoice, {2: "25.00"})
    html = staff_client.get("/staff/disputes").text
    row = html[html.rindex("<tr", 0, html.index(f"/staff/disputes/{flagged.id}")) :]
    row = row[: row.index("</tr>")]
    assert "is-flagged" in row
    assert "Flagged: no reply by the deadline" in row
    assert html.count("Flagged: no reply") == 1
    detail = staff_client.get(f"/staff/disputes/{flagged.id}").text
    assert "the customer did not reply by the deadline" in detail


def test_filters_by_reason_and_status(staff_client: FlaskClient, invoice: Invoice) -> None:
    damaged = make_dispute(invoice, {1: "80.00"}, reason="damaged")
    price = make_dispute(invoice, {2: "25.00"}, reason="wrong_price")
    rejected = make_dispute(invoice, {3: "60.00"}, status=DisputeStatus.REJECTED)
    waiting = make_dispute(
        invoice, {1: "10.00"}, reason="other", status=DisputeStatus.WAITING_ON_CUSTOMER
    )

    def ids(query: str) -> set[int]:
        response = staff_client.get(f"/staff/disputes?{query}")
        assert response.status_code == 200
        return set(_queue_ids(response.text))

    assert ids("") == {damaged.id, price.id, waiting.id}
    assert ids("reason=wrong_price") == {price.id}
    assert ids("status=rejected") == {rejected.id}
    assert ids("status=waiting_on_customer") == {waiting.id}
    assert ids("status=all") == {damaged.id, price.id, rejected.id, waiting.id}
    assert ids("status=all&reason=damaged") == {damaged.id, rejected.id}
    assert ids("status=accepted") == set()
    assert "No dispute matches these filters." in staff_client.get(
        "/staff/disputes?status=accepted"
    ).text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("reason=<script>alert(1)</script>", "Please choose one of the reasons listed."),
        ("reason=DAMAGED", "Please choose one of the reasons listed."),
        ("status=open' OR 1=1 --", "Please choose one of the statuses listed."),
        ("status=" + "x" * 5000, "Please choose one of the statuses listed."),
        ("status=open&status=all&reason=%E2%80%AE", "Please choose one of the reasons listed."),
    ],
)
def test_hostile_filter_values_get_a_clear_message(
    staff_client: FlaskClient, invoice: Invoice, query: str, message: str
) -> None:
    make_dispute(invoice, {1: "80.00"})
    response = staff_client.get(f"/staff/disputes?{query}")
    assert response.status_code == 400
    assert message in response.text
    assert "<script>alert(1)</script>" not in response.text
    assert _queue_ids(response.text) == []


@pytest.mark.parametrize("page", ["-1", "0", "abc", "99999999999999999999", "1e3", "٣"])
def test_a_bad_page_number_shows_the_first_page(
    staff_client: FlaskClient, invoice: Invoice, page: str
) -> None:
    dispute = make_dispute(invoice, {1: "80.00"})
    response = staff_client.get("/staff/disputes", query_string={"page": page})
    assert response.status_code == 200
    assert _queue_ids(response.text) == [dispute.id]


def test_the_queue_is_paginated_keeping_the_filters(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    start = utcnow() - timedelta(days=40)
    made = [
        make_dispute(invoice, {1: "1.00"}, reason="other", opened_at=start + timedelta(hours=n))
        for n in range(27)
    ]
    first = staff_client.get("/staff/disputes?reason=other").text
    assert _queue_ids(first) == [d.id for d in made[:25]]
    assert "Page 1 of 2" in first
    assert 'href="/staff/disputes?page=2&amp;reason=other"' in first
    second = staff_client.get("/staff/disputes?reason=other&page=2").text
    assert _queue_ids(second) == [d.id for d in made[25:]]
    assert "Previous page" in second
    assert "Next page" not in second


def test_staff_home_and_nav_show_the_open_count(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    make_dispute(invoice, {1: "80.00"})
    make_dispute(
        invoice,
        {2: "25.00"},
        status=DisputeStatus.WAITING_ON_CUSTOMER,
        opened_at=utcnow() - timedelta(days=30),
        flagged=True,
    )
    make_dispute(invoice, {3: "60.00"}, status=DisputeStatus.ACCEPTED)
    home = staff_client.get("/staff/").text
    assert "2 open disputes" in home
    assert "1 to decide" in home
    assert "1 waiting on the customer" in home
    assert "1 flagged: no reply by the deadline" in home
    assert "1 over the target age" in home
    nav = home[home.index('aria-label="Staff areas"') :]
    nav = nav[: nav.index("</nav>")]
    assert re.search(r'href="/staff/disputes"[^>]*>Disputes <span[^>]*>2 open</span>', nav)


# --- one dispute -----------------------------------------------------------------------------
def test_detail_shows_invoice_lines_message_files_thread_and_timeline_link(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    dispute = make_dispute(invoice, {1: "80.00", 2: "25.00"}, message="Box <b>crushed</b>.")
    first = dispute.messages[0]
    stored = DisputeFile(
        dispute_id=dispute.id,
        message_id=first.id,
        storage_name="b" * 32,
        original_name="crushed box.jpg",
        content_type="image/jpeg",
        size_bytes=2048,
        sha256="1" * 64,
    )
    db.session.add(stored)
    db.session.flush()
    html = staff_client.get(f"/staff/disputes/{dispute.id}").text
    assert f"Dispute {dispute.id}: Initech Ltd" in html
    assert "Invoice INV-DSP-1" in html
    for description, amount in (("Widgets", "$120.00"), ("Delivery", "$25.00")):
        assert description in html
        assert amount in html
    assert "<strong>$80.00</strong>" in html  # line 1: disputed in part
    assert "<strong>$25.00</strong>" in html
    assert "$105.00" in html  # the dispute's amount
    assert "Box &lt;b&gt;crushed&lt;/b&gt;." in html
    assert "Initech Ltd (customer)" in html
    assert f'href="/staff/disputes/{dispute.id}/files/{stored.id}"' in html
    assert "crushed box.jpg" in html
    assert 'href="/staff/customers/DSP-0001#timeline-heading"' in html
    assert 'for="credit-1"' in html and 'for="credit-2"' in html
    assert 'name="credit-3"' not in html  # not disputed
    assert "Accept and credit $105.00" in html


def test_a_closed_dispute_has_no_decision_forms(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    dispute = make_dispute(invoice, {1: "80.00"}, status=DisputeStatus.WITHDRAWN)
    html = staff_client.get(f"/staff/disputes/{dispute.id}").text
    assert "This dispute is closed (Withdrawn)" in html
    assert "/accept" not in html


def test_staff_download_evidence_as_a_sandboxed_attachment(
    app, staff_client: FlaskClient, invoice: Invoice, tmp_path, monkeypatch
) -> None:
    from portal.disputes.evidence import accept_uploads
    from tests.evidence_files import png_image, upload

    monkeypatch.setitem(app.config, "UPLOAD_DIR", str(tmp_path))
    dispute = make_dispute(invoice, {1: "80.00"})
    [stored] = accept_uploads([upload(png_image(), "box.png", "image/png")])
    row = DisputeFile(
        dispute_id=dispute.id,
        message_id=dispute.messages[0].id,
        storage_name=stored.storage_name,
        original_name=stored.original_name,
        content_type=stored.content_type,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
    )
    db.session.add(row)
    db.session.flush()
    url = f"/staff/disputes/{dispute.id}/files/{row.id}"
    assert url in staff_client.get(f"/staff/disputes/{dispute.id}").text
    response = staff_client.get(url)
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert "box.png" in response.headers["Content-Disposition"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert response.data == (tmp_path / stored.storage_name).read_bytes()
