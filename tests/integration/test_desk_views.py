"""The specialist's desk over HTTP: search, the customer page, notes, promises, links,
the outbox and follow-up queue; every route refuses anonymous and customer sessions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, select

from portal.access.models import AccessLink, PrincipalSession
from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.extensions import db
from portal.notifications.models import OutboxMessage
from portal.promises.models import CustomerNote, Promise, PromiseStatus
from tests.factories import (
    csrf_token_from,
    login_as,
    make_credit,
    make_customer,
    make_invoice,
    make_payment,
)

GET_ROUTES = [
    "/staff/customers?q=a",
    "/staff/customers/{acc}",
    "/staff/customers/{acc}/outbox",
    "/staff/outbox",
    "/staff/follow-up",
]
POST_ROUTES = [
    "/staff/customers/{acc}/notes",
    "/staff/customers/{acc}/promises",
    "/staff/customers/{acc}/promises/1/cancel",
    "/staff/customers/{acc}/links/send",
    "/staff/customers/{acc}/links/revoke",
    "/staff/customers/{acc}/payments/1/refund",
    "/staff/follow-up/1/close",
]


@pytest.mark.parametrize("route", GET_ROUTES + POST_ROUTES)
def test_anonymous_and_customer_sessions_are_refused(client: FlaskClient, route: str) -> None:
    customer = make_customer()
    url = route.format(acc=customer.account_number)
    method = client.post if route in POST_ROUTES else client.get
    anonymous = method(url)
    assert anonymous.status_code in (302, 400)  # sign-in page, or CSRF refused first
    if anonymous.status_code == 302:
        assert "/staff/login" in anonymous.headers["Location"]
    login_as(client, customer)
    as_customer = method(url)
    assert as_customer.status_code in (302, 400)
    if as_customer.status_code == 302:
        assert "/staff/login" in as_customer.headers["Location"]
    assert db.session.scalar(select(CustomerNote)) is None


def test_search_finds_by_prefix_of_account_name_email_or_invoice(staff_client: FlaskClient) -> None:
    alice = make_customer(account_number="ZX-100", name="Alicia Brandt", email="ab@corp.example")
    bob = make_customer(account_number="QY-200", name="Bob Stone", email="Finance@Stone.example")
    make_invoice(bob, number="INV-ZZ-9")
    make_customer(account_number="AA_1", name="Under_score")

    def found(q: str) -> list[str]:
        page = staff_client.get("/staff/customers", query_string={"q": q})
        assert page.status_code == 200
        return [c for c in ("ZX-100", "QY-200", "AA_1") if f">{c}</a>" in page.text]

    assert found("zx-1") == ["ZX-100"]
    assert found("ALICIA") == ["ZX-100"]
    assert found("finance@") == ["QY-200"]
    assert found("inv-zz") == ["QY-200"]
    assert found("stone") == []  # a prefix of the name, not a word inside it... nor the email
    assert found("aa_") == ["AA_1"]
    assert found("a%") == []  # LIKE wildcards are literal
    assert "No customer matches" in staff_client.get("/staff/customers?q=nobody").text
    assert alice.id


def test_search_is_paginated(staff_client: FlaskClient) -> None:
    for n in range(27):
        make_customer(account_number=f"PG-{n:03d}", name=f"Page Person {n:03d}")
    first = staff_client.get("/staff/customers?q=pg-").text
    second = staff_client.get("/staff/customers?q=pg-&page=2").text
    assert first.count(">PG-") == 25
    assert "Next page" in first
    assert second.count(">PG-") == 2
    assert "Previous page" in second


def test_unknown_customer_is_404(staff_client: FlaskClient) -> None:
    assert staff_client.get("/staff/customers/NOPE").status_code == 404


def _history(customer):
    invoice = make_invoice(customer, issue_date=date(2026, 9, 1))
    make_payment(customer, [(invoice, "30.00")])
    make_credit(invoice, "5.00", reason="damaged box")
    db.session.add(
        OutboxMessage(
            message_id=f"<m{invoice.id}@x>",
            customer_id=customer.id,
            kind="reminder_overdue",
            to_address=customer.email,
            locale="en",
            subject="Invoice is overdue",
            body_text="Hello, the body as sent",
            status="sent",
            sent_at=utcnow(),
        )
    )
    db.session.flush()
    return invoice


def test_customer_page_shows_balances_and_the_whole_timeline(staff_client: FlaskClient) -> None:
    customer = make_customer(timezone="UTC")
    _history(customer)
    page = staff_client.get(f"/staff/customers/{customer.account_number}")
    assert page.status_code == 200
    text = page.text
    assert "$65.00" in text  # 100 - 30 paid - 5 credited, the total due
    for label in ("Invoice imported", "Payment", "Credit note", "Email queued", "Email sent"):
        assert label in text
    assert "Hello, the body as sent" in text
    assert "damaged box" in text


def _count_statements(app):
    statements: list[str] = []

    def listen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    return statements, listen


def test_customer_page_statements_do_not_grow_with_events(app, staff_client: FlaskClient) -> None:
    small, large = make_customer(), make_customer()
    _history(small)
    for _ in range(15):
        _history(large)
    counts = []
    for customer in (small, large):
        statements, listen = _count_statements(app)
        engine = db.engine
        event.listen(engine, "before_cursor_execute", listen)
        try:
            assert (
                staff_client.get(f"/staff/customers/{customer.account_number}").status_code == 200
            )
        finally:
            event.remove(engine, "before_cursor_execute", listen)
        counts.append(len(statements))
    assert counts[0] == counts[1], counts


def _post(client: FlaskClient, customer, path: str, data: dict[str, object]):  # type: ignore[no-untyped-def]
    # The setup is committed (into the test's outer transaction) as a request's would be,
    # so that a view rolling back a refused change rolls back only that.
    db.session.commit()
    page = client.get(f"/staff/customers/{customer.account_number}")
    return client.post(
        f"/staff/customers/{customer.account_number}{path}",
        data={"csrf_token": csrf_token_from(page.text), **data},
    )


def test_a_note_is_saved_audited_and_in_the_timeline(staff_client: FlaskClient) -> None:
    customer = make_customer()
    response = _post(staff_client, customer, "/notes", {"kind": "call", "body": "Called, will pay"})
    assert response.status_code == 302
    note = db.session.scalar(select(CustomerNote).where(CustomerNote.customer_id == customer.id))
    assert note.author == f"staff:{staff_client.staff_member.id}"  # type: ignore[attr-defined]
    page = staff_client.get(f"/staff/customers/{customer.account_number}").text
    assert "The note was saved." in page
    assert "Called, will pay" in page


def test_an_empty_note_is_refused_with_a_message(staff_client: FlaskClient) -> None:
    customer = make_customer()
    response = _post(staff_client, customer, "/notes", {"kind": "call", "body": "  "})
    assert response.status_code == 302
    page = staff_client.get(response.headers["Location"]).text
    assert "Write the note before saving it." in page
    assert db.session.scalar(select(CustomerNote)) is None


def test_a_post_without_csrf_is_refused(staff_client: FlaskClient) -> None:
    customer = make_customer()
    response = staff_client.post(
        f"/staff/customers/{customer.account_number}/notes", data={"kind": "call", "body": "x"}
    )
    assert response.status_code == 400
    assert db.session.scalar(select(CustomerNote)) is None


def test_a_promise_from_the_desk_and_a_bad_one(staff_client: FlaskClient) -> None:
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(customer, issue_date=date(2026, 9, 1))
    by = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    bad = _post(
        staff_client,
        customer,
        "/promises",
        {"invoices": [invoice.number], "amount": "100.01", "promised_on": by},
    )
    assert "more than these invoices still owe" in staff_client.get(bad.headers["Location"]).text
    words = _post(
        staff_client,
        customer,
        "/promises",
        {"invoices": [invoice.number], "amount": "ten", "promised_on": by},
    )
    assert words.status_code == 302, words.text[:3000]
    assert "as a number" in staff_client.get(words.headers["Location"]).text
    assert db.session.scalar(select(Promise)) is None
    good = _post(
        staff_client,
        customer,
        "/promises",
        {"invoices": [invoice.number], "amount": "60.00", "promised_on": by},
    )
    assert good.status_code == 302
    promise = db.session.scalar(select(Promise))
    assert (promise.amount_minor, promise.status, promise.source) == (6000, "open", "staff")
    page = staff_client.get(f"/staff/customers/{customer.account_number}").text
    assert "$60.00 by" in page
    cancel = _post(staff_client, customer, f"/promises/{promise.id}/cancel", {})
    assert cancel.status_code == 302
    assert promise.status == PromiseStatus.CANCELLED


def test_another_customers_promise_is_404(staff_client: FlaskClient) -> None:
    customer, other = make_customer(), make_customer()
    invoice = make_invoice(other, issue_date=date(2026, 9, 1))
    from portal.audit.actors import Actor
    from portal.money import Money
    from portal.promises.services import make_promise

    promise = make_promise(
        other,
        invoice_numbers=[invoice.number],
        amount=Money(100, "USD"),
        promised_on=datetime.now(UTC).date() + timedelta(days=2),
        actor=Actor("system"),
        now=utcnow(),
        source="staff",
    )
    response = _post(staff_client, customer, f"/promises/{promise.id}/cancel", {})
    assert response.status_code == 404
    assert promise.status == PromiseStatus.OPEN


def test_send_a_link_and_revoke_them_all(staff_client: FlaskClient, client: FlaskClient) -> None:
    customer = make_customer()
    response = _post(staff_client, customer, "/links/send", {})
    assert response.status_code == 302
    [message] = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.customer_id == customer.id)
    ).all()
    assert (message.kind, message.link_purpose) == ("account_link", "account_link")
    assert "As we discussed, here is a new link" in message.body_text
    # a customer session exists (from a link)
    from tests.factories import make_link_token

    make_link_token(customer)
    make_link_token(customer)
    response = _post(staff_client, customer, "/links/revoke", {})
    assert response.status_code == 302
    live = db.session.scalars(
        select(AccessLink).where(
            AccessLink.customer_id == customer.id, AccessLink.revoked_at.is_(None)
        )
    ).all()
    assert live == []
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "links.revoked_all"))
    assert audit.data == {"links": 2}
    open_sessions = db.session.scalars(
        select(PrincipalSession).where(
            PrincipalSession.customer_id == customer.id, PrincipalSession.ended_at.is_(None)
        )
    ).all()
    assert open_sessions == []


def test_outbox_pages_list_status_attempts_and_failures(staff_client: FlaskClient) -> None:
    customer = make_customer()
    db.session.add(
        OutboxMessage(
            message_id="<fail@x>",
            customer_id=customer.id,
            kind="receipt",
            to_address="x@y.example",
            locale="en",
            subject="Your receipt",
            body_text="b",
            status="failed",
            attempts=8,
            last_error="550 mailbox unavailable",
        )
    )
    db.session.flush()
    overall = staff_client.get("/staff/outbox?status=failed").text
    assert "550 mailbox unavailable" in overall
    assert ">8<" in overall
    assert (
        "Your receipt"
        in staff_client.get(f"/staff/customers/{customer.account_number}/outbox").text
    )
    assert staff_client.get("/staff/outbox?status=bogus&page=abc").status_code == 200


def test_follow_up_queue_lists_broken_promises_until_closed(staff_client: FlaskClient) -> None:
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(customer, issue_date=date(2026, 9, 1))
    promise = Promise(
        customer_id=customer.id,
        amount_minor=5000,
        currency="USD",
        made_on=date(2026, 11, 1),
        promised_on=date(2026, 11, 5),
        status="broken",
        source="customer",
        created_by="customer:1",
        paid_minor=1000,
        resolved_at=utcnow(),
    )
    db.session.add(promise)
    db.session.flush()
    page = staff_client.get("/staff/follow-up")
    assert customer.account_number in page.text
    assert "$10.00" in page.text
    response = staff_client.post(
        f"/staff/follow-up/{promise.id}/close", data={"csrf_token": csrf_token_from(page.text)}
    )
    assert response.status_code == 302
    assert "Nothing to follow up." in staff_client.get("/staff/follow-up").text
    assert invoice.id


@pytest.mark.parametrize(
    "query", ["\\", "%", "_", "a" * 5000, "Ünïcödé", "' OR 1=1 --", "\u202e", "   ", "page=-1"]
)
def test_odd_searches_answer_a_page_not_an_error(staff_client: FlaskClient, query: str) -> None:
    make_customer(name="Ünïcödé GmbH")
    response = staff_client.get("/staff/customers", query_string={"q": query, "page": "-3"})
    assert response.status_code == 200
    if query == "Ünïcödé":
        assert "Ünïcödé GmbH" in response.text


def test_moments_are_shown_in_the_creditors_time_zone_and_say_so(
    staff_client: FlaskClient,
) -> None:
    from datetime import UTC, datetime

    from portal.audit.actors import Actor
    from portal.promises.models import NoteKind
    from portal.promises.services import add_note

    # a note written at 02:00 UTC on 30 November: 21:00 the evening before in New York
    customer = make_customer(timezone="Europe/Berlin")  # the customer's own zone is not ours
    at = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    add_note(customer, kind=NoteKind.CALL, body="Late call", actor=Actor.system(), now=at)
    db.session.commit()
    page = staff_client.get(f"/staff/customers/{customer.account_number}").text
    assert "11/29/26, 9:00" in page
    assert "Times are shown in the America/New_York time zone." in page
