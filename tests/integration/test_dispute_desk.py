"""The staff dispute desk over HTTP: who may use it, the queue (order, ages, filters,
pages), one dispute's page, every decision and every refusal, the staff home's count."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

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
    db.session.commit()  # a view's rollback of a refusal must not take the test's data
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
    assert (
        "No dispute matches these filters."
        in staff_client.get("/staff/disputes?status=accepted").text
    )


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
    assert 'for="credit-1"' in html
    assert 'for="credit-2"' in html
    assert 'name="credit-3"' not in html  # not disputed
    assert "Accept and credit $105.00" in html
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "an id is used twice"
    assert 'for="reject-reason"' in html
    assert 'for="partial-reason"' in html


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


# --- decisions -------------------------------------------------------------------------------
def _opened(invoice: Invoice, amounts: dict[int, str | None]) -> Dispute:
    """A dispute opened the way a customer opens one (the service: audit row, email)."""
    from portal.audit.actors import Actor
    from portal.disputes.services import open_dispute
    from portal.money import Money

    customer = db.session.get(Customer, invoice.customer_id)
    dispute = open_dispute(
        customer,
        invoice,
        {n: Money.from_decimal(a, invoice.currency) if a else None for n, a in amounts.items()},
        "damaged",
        "Two widgets arrived broken.",
        [],
        actor=Actor.customer(customer),
        now=utcnow() - timedelta(days=2),
    )
    db.session.commit()  # a view's rollback of a refusal must not take the test's data
    return dispute


def _decide(client: FlaskClient, dispute: Dispute, action: str, **fields: str):  # type: ignore[no-untyped-def]
    page = client.get(f"/staff/disputes/{dispute.id}")
    seen = re.search(r'name="messages_seen" value="(\d+)"', page.text)
    data = {
        "csrf_token": csrf_token_from(page.text),
        "messages_seen": seen.group(1) if seen else "0",
    }
    data.update(fields)
    return client.post(f"/staff/disputes/{dispute.id}/{action}", data=data)


def _flashes(client: FlaskClient, response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 302
    return client.get(response.headers["Location"]).text


def _emails(dispute: Dispute) -> list[str]:
    return list(
        db.session.scalars(
            select(OutboxMessage.kind)
            .where(OutboxMessage.customer_id == dispute.customer_id)
            .order_by(OutboxMessage.id)
        )
    )


def _audits(dispute: Dispute) -> list[tuple[str, str]]:
    return [
        (event.action, event.actor)
        for event in db.session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.action.like("dispute.%"), AuditEvent.customer_id == dispute.customer_id
            )
            .order_by(AuditEvent.id)
        )
    ]


def _credits(dispute: Dispute) -> list[tuple[int, int, str]]:
    return [
        (credit.invoice_line.line_number, credit.amount_minor, credit.kind)
        for credit in db.session.scalars(
            select(CreditNote).where(CreditNote.dispute_id == dispute.id).order_by(CreditNote.id)
        )
    ]


def test_accept_credits_every_disputed_line_and_goes_back_to_the_queue(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    dispute = _opened(invoice, {1: "80.00", 2: None})
    response = _decide(staff_client, dispute, "accept")
    assert response.headers["Location"].endswith("/staff/disputes")
    html = _flashes(staff_client, response)
    assert f"Dispute {dispute.id} accepted: $105.00 credited to invoice INV-DSP-1." in html
    db.session.refresh(dispute)
    member = staff_client.staff_member  # type: ignore[attr-defined]
    assert (dispute.status, dispute.resolved_by) == ("accepted", f"staff:{member.id}")
    assert _credits(dispute) == [(1, 8000, "dispute"), (2, 2500, "dispute")]
    assert _audits(dispute)[-1] == ("dispute.accepted", f"staff:{member.id}")
    assert _emails(dispute)[-1] == "dispute_accepted"


def test_accept_in_part_credits_what_is_typed_per_line(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    dispute = _opened(invoice, {1: "80.00", 2: None})
    response = _decide(
        staff_client,
        dispute,
        "accept-in-part",
        **{"credit-1": " 40.00 ", "credit-2": "", "reason": "One widget was fine."},
    )
    html = _flashes(staff_client, response)
    assert (
        f"Dispute {dispute.id} accepted in part: $40.00 credited; the rest of $105.00 is "
        "payable again." in html
    )
    db.session.refresh(dispute)
    assert (dispute.status, dispute.resolution_reason) == (
        "partly_accepted",
        "One widget was fine.",
    )
    assert _credits(dispute) == [(1, 4000, "dispute")]
    assert _emails(dispute)[-1] == "dispute_partly_accepted"
    assert _audits(dispute)[-1][0] == "dispute.partly_accepted"


def test_accept_in_part_takes_a_decimal_comma(staff_client: FlaskClient, invoice: Invoice) -> None:
    """ "40,00", as a specialist working in Spanish, French or German writes it (the page
    shows them "40,00 US$"), is 40.00, as on the customer's dispute form."""
    dispute = _opened(invoice, {1: "80.00", 2: None})
    _decide(staff_client, dispute, "accept-in-part", **{"credit-1": "40,00", "reason": "r"})
    db.session.refresh(dispute)
    assert dispute.status == "partly_accepted"
    assert _credits(dispute) == [(1, 4000, "dispute")]


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"credit-1": "90.00", "reason": "r"}, 302, "must be between zero and $80.00"),
        ({"credit-1": "80.00", "credit-2": "25.00", "reason": "r"}, 302, "less than the $105.00"),
        ({"credit-1": "0", "reason": "r"}, 302, "more than zero"),
        ({"credit-1": "-5.00", "reason": "r"}, None, None),
        ({"credit-1": "abc", "reason": "r"}, 400, "Please enter the amount as a number"),
        # in English "4,000" is four thousand dollars: more than the line's $80.00
        ({"credit-1": "4,000", "reason": "r"}, 302, "must be between zero and $80.00"),
        ({"credit-1": "40,0,0", "reason": "r"}, 400, "Please enter the amount as a number"),
        ({"credit-1": "40.005", "reason": "r"}, 400, "with at most 2 decimals"),
        ({"credit-1": "1e9999999", "reason": "r"}, None, None),
        ({"credit-1": "10.00", "reason": "  "}, 400, "Tell the customer why the rest"),
        ({"credit-1": "10.00", "reason": "x" * 2001}, 400, "At most 2000 characters."),
    ],
)
def test_accept_in_part_refusals_change_nothing(
    staff_client: FlaskClient, invoice: Invoice, fields: dict[str, str], status, message
) -> None:  # type: ignore[no-untyped-def]
    dispute = _opened(invoice, {1: "80.00", 2: None})
    emails, audits = _emails(dispute), _audits(dispute)
    response = _decide(staff_client, dispute, "accept-in-part", **fields)
    assert response.status_code in ((302, 400) if status is None else (status,))
    html = _flashes(staff_client, response) if response.status_code == 302 else response.text
    if message:
        assert message in html
    if response.status_code == 302:
        assert response.headers["Location"].endswith(f"/staff/disputes/{dispute.id}")
    db.session.refresh(dispute)
    assert dispute.status == "open"
    assert _credits(dispute) == []
    assert (_emails(dispute), _audits(dispute)) == (emails, audits)


def test_reject_needs_a_reason_the_customer_reads(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    dispute = _opened(invoice, {2: None})
    empty = _decide(staff_client, dispute, "reject", reason="")
    assert empty.status_code == 400
    assert "Tell the customer why the dispute is rejected." in empty.text
    assert 'aria-invalid="true"' in empty.text
    db.session.refresh(dispute)
    assert dispute.status == "open"
    done = _decide(staff_client, dispute, "reject", reason="Delivery was on time: tracking 123.")
    html = _flashes(staff_client, done)
    assert f"Dispute {dispute.id} rejected: $25.00 is payable again" in html
    db.session.refresh(dispute)
    assert (dispute.status, dispute.resolution_reason) == (
        "rejected",
        "Delivery was on time: tracking 123.",
    )
    assert _credits(dispute) == []
    assert _emails(dispute)[-1] == "dispute_rejected"


def test_ask_for_information_waits_on_the_customer_and_cannot_be_asked_twice(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    dispute = _opened(invoice, {1: None})
    empty = _decide(staff_client, dispute, "ask", question=" ")
    assert empty.status_code == 400
    assert "Write the question before sending it." in empty.text
    html = _flashes(
        staff_client, _decide(staff_client, dispute, "ask", question="Could you send a photo?")
    )
    assert f"Question sent on dispute {dispute.id}" in html
    db.session.refresh(dispute)
    assert dispute.status == "waiting_on_customer"
    assert dispute.reply_due_at is not None
    assert dispute.messages[-1].kind == "info_request"
    assert dispute.messages[-1].body == "Could you send a photo?"
    assert _emails(dispute)[-1] == "dispute_info_requested"
    page = staff_client.get(f"/staff/disputes/{dispute.id}").text
    assert "The customer is asked to reply by" in page
    assert "/ask" not in page  # no second question while waiting
    again = _decide(staff_client, dispute, "ask", question="And the invoice?")
    assert (
        f"Nothing was changed: dispute {dispute.id} is already “Waiting on the customer”."
        in _flashes(staff_client, again)
    )
    db.session.refresh(dispute)
    assert [m.kind for m in dispute.messages] == ["message", "info_request"]


def test_deciding_a_withdrawn_dispute_is_refused(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    from portal.audit.actors import Actor
    from portal.disputes.services import withdraw

    dispute = _opened(invoice, {1: "80.00"})
    page = staff_client.get(f"/staff/disputes/{dispute.id}").text  # opened before withdrawal
    token = csrf_token_from(page)
    withdraw(dispute, actor=Actor.customer(dispute.customer_id), now=utcnow())
    db.session.commit()
    for action, fields in (
        ("accept", {}),
        ("accept-in-part", {"credit-1": "10.00", "reason": "r"}),
        ("reject", {"reason": "r"}),
        ("ask", {"question": "q"}),
    ):
        response = staff_client.post(
            f"/staff/disputes/{dispute.id}/{action}",
            data={"csrf_token": token, "messages_seen": "1", **fields},
        )
        html = _flashes(staff_client, response)
        expected = f"Nothing was changed: dispute {dispute.id} is already “Withdrawn”."
        assert expected in html, action
    db.session.refresh(dispute)
    assert dispute.status == "withdrawn"
    assert _credits(dispute) == []


def test_a_double_submit_credits_once(staff_client: FlaskClient, invoice: Invoice) -> None:
    dispute = _opened(invoice, {1: "80.00"})
    page = staff_client.get(f"/staff/disputes/{dispute.id}").text
    data = {"csrf_token": csrf_token_from(page), "messages_seen": "1"}
    first = staff_client.post(f"/staff/disputes/{dispute.id}/accept", data=data)
    assert "accepted: $80.00 credited" in _flashes(staff_client, first)
    second = staff_client.post(f"/staff/disputes/{dispute.id}/accept", data=data)
    assert f"dispute {dispute.id} is already “Accepted”" in _flashes(staff_client, second)
    assert _credits(dispute) == [(1, 8000, "dispute")]
    assert [a for a, _actor in _audits(dispute)].count("dispute.accepted") == 1
    assert _emails(dispute).count("dispute_accepted") == 1


def test_a_decision_from_a_page_older_than_the_thread_is_refused(
    staff_client: FlaskClient, invoice: Invoice
) -> None:
    from portal.audit.actors import Actor
    from portal.disputes.services import reply

    dispute = _opened(invoice, {1: "80.00"})
    page = staff_client.get(f"/staff/disputes/{dispute.id}").text
    reply(
        dispute,
        "Here is one more thing.",
        [],
        actor=Actor.customer(dispute.customer_id),
        now=utcnow(),
    )
    db.session.commit()
    response = staff_client.post(
        f"/staff/disputes/{dispute.id}/accept",
        data={"csrf_token": csrf_token_from(page), "messages_seen": "1"},
    )
    html = _flashes(staff_client, response)
    assert "The thread changed since you opened this dispute" in html
    assert "Here is one more thing." in html
    db.session.refresh(dispute)
    assert dispute.status == "open"


@pytest.mark.parametrize("action", ["accept", "accept-in-part", "reject", "ask"])
def test_decisions_need_the_csrf_token(
    staff_client: FlaskClient, invoice: Invoice, action: str
) -> None:
    dispute = _opened(invoice, {1: "80.00"})
    response = staff_client.post(
        f"/staff/disputes/{dispute.id}/{action}",
        data={"messages_seen": "1", "reason": "r", "question": "q", "credit-1": "1.00"},
    )
    assert response.status_code == 400
    db.session.refresh(dispute)
    assert dispute.status == "open"
    assert _credits(dispute) == []


def test_a_tampered_messages_seen_is_a_400(staff_client: FlaskClient, invoice: Invoice) -> None:
    dispute = _opened(invoice, {1: "80.00"})
    for value in ("", "abc", "-1", "99999999999999999999"):
        response = _decide(staff_client, dispute, "accept", messages_seen=value)
        assert response.status_code == 400, value
    db.session.refresh(dispute)
    assert dispute.status == "open"
