"""Email: queued in the outbox, delivered over real SMTP, retried, held to quiet hours."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from portal.extensions import db
from portal.jobs.registry import sender_from_config
from portal.notifications.models import EmailCategory, OutboxMessage, OutboxStatus
from portal.notifications.policy import MAX_ATTEMPTS
from portal.notifications.sender import SmtpSender, SmtpSettings
from portal.notifications.services import deliver_due_messages, queue_email
from tests.factories import csrf_token_from, make_customer, make_invoice
from tests.smtp_server import free_port

# 15:00 UTC is inside 08:00-21:00 in New York, Madrid and UTC alike.
NOON = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def _queue_notice(customer, invoice, now=NOON, **kwargs):
    return queue_email(
        customer,
        kind="invoice_notice",
        template="invoice_notice",
        context={"payable": invoice.total},
        now=now,
        category=EmailCategory.COLLECTION,
        invoice=invoice,
        with_portal_link=True,
        **kwargs,
    )


def _deliver(url, now=NOON):
    sender = SmtpSender(SmtpSettings.from_url(url))
    try:
        return deliver_due_messages(sender, now=now, runner="test-runner")
    finally:
        sender.close()


def test_message_arrives_with_both_parts_headers_and_a_working_link(
    db_session, smtp_server, client
):
    # given a Spanish-speaking customer with an invoice notice queued
    customer = make_customer(
        name="Ana Pérez", locale="es", email="ana@example.com", timezone="Europe/Madrid"
    )
    invoice = make_invoice(customer, number="INV-ES-1", lines=[("Servicio", "1", "1234.50")])
    queued = _queue_notice(customer, invoice)
    # when the runner delivers
    report = _deliver(smtp_server.url)
    # then the SMTP server got one message, in Spanish, with text and HTML parts
    assert report.sent == 1
    (received,) = smtp_server.received
    assert received["To"] == "ana@example.com"
    assert received["Message-ID"] == queued.message_id
    assert "INV-ES-1" in received["Subject"]
    assert received["Content-Language"] == "es"
    text = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    assert "1.234,50" in text
    assert "Hola" in text or "Ana Pérez" in text
    assert '<html lang="es">' in html
    assert db.session.get(OutboxMessage, queued.id).status == OutboxStatus.SENT
    # and the link in it opens that invoice of that account
    url = re.search(r"https://portal\.example\.test/l/\S+", text).group(0)
    path = url.removeprefix("https://portal.example.test")
    with time_machine.travel(NOON + timedelta(hours=1), tick=False):  # the day it was sent
        landing = client.get(path)
        entered = client.post(path, data={"csrf_token": csrf_token_from(landing.text)})
    assert entered.headers["Location"] == "/invoices/INV-ES-1"


def test_server_down_keeps_message_and_retries_with_backoff(db_session):
    customer = make_customer(timezone="UTC")
    queued = _queue_notice(customer, make_invoice(customer))
    closed = f"smtp://127.0.0.1:{free_port()}?timeout=2"
    report = _deliver(closed)
    assert report.retried == 1
    message = db.session.get(OutboxMessage, queued.id)
    assert message.status == OutboxStatus.QUEUED
    assert message.attempts == 1
    assert message.not_before == NOON + timedelta(minutes=1)
    assert "ConnectionRefusedError" in message.last_error
    # not due again before the backoff has passed
    assert _deliver(closed, now=NOON + timedelta(seconds=30)).retried == 0
    assert _deliver(closed, now=NOON + timedelta(minutes=1)).retried == 1
    assert db.session.get(OutboxMessage, queued.id).not_before == NOON + timedelta(minutes=3)


def test_refusal_is_retried_then_marked_failed(db_session, smtp_server):
    smtp_server.handler.refuse_with = "550 5.7.1 message rejected"
    customer = make_customer(timezone="UTC")
    queued = _queue_notice(customer, make_invoice(customer))
    now = NOON
    for _ in range(MAX_ATTEMPTS):
        _deliver(smtp_server.url, now=now)
        now += timedelta(days=1)  # same time of day: inside the delivery window
    message = db.session.get(OutboxMessage, queued.id)
    assert message.status == OutboxStatus.FAILED
    assert message.attempts == MAX_ATTEMPTS
    assert "550" in message.last_error
    assert smtp_server.received == []
    # when the server accepts again, a failed message is not resent by itself
    smtp_server.handler.refuse_with = None
    assert _deliver(smtp_server.url, now=now).sent == 0


def test_recovered_server_gets_the_message_once(db_session, smtp_server):
    customer = make_customer(timezone="UTC")
    _queue_notice(customer, make_invoice(customer))
    _deliver(f"smtp://127.0.0.1:{free_port()}?timeout=2")
    assert _deliver(smtp_server.url, now=NOON + timedelta(minutes=2)).sent == 1
    assert _deliver(smtp_server.url, now=NOON + timedelta(minutes=5)).sent == 0
    assert len(smtp_server.received) == 1


def test_stale_claim_of_a_crashed_runner_is_sent_again_with_the_same_message_id(
    db_session, smtp_server
):
    customer = make_customer(timezone="UTC")
    queued = _queue_notice(customer, make_invoice(customer))
    # a runner claimed it and died before recording the outcome
    queued.status, queued.claimed_by, queued.lease_until = (
        "sending",
        "dead",
        NOON - timedelta(seconds=1),
    )
    db.session.flush()
    assert _deliver(smtp_server.url).sent == 1
    assert smtp_server.received[0]["Message-ID"] == queued.message_id


def test_live_claim_of_another_runner_is_left_alone(db_session, smtp_server):
    customer = make_customer(timezone="UTC")
    queued = _queue_notice(customer, make_invoice(customer))
    queued.status, queued.claimed_by, queued.lease_until = (
        "sending",
        "alive",
        NOON + timedelta(minutes=5),
    )
    db.session.flush()
    assert _deliver(smtp_server.url).sent == 0
    assert smtp_server.received == []


def test_development_sender_delivers_nowhere(db_session):
    assert type(sender_from_config()).__name__ == "ConsoleSender"


@pytest.mark.parametrize(
    ("url", "host", "port", "user", "password", "starttls", "implicit"),
    [
        (
            "smtp://user:p%40ss@mail.example.com:587?starttls=true",
            "mail.example.com",
            587,
            "user",
            "p@ss",
            True,
            False,
        ),
        ("smtps://mail.example.com", "mail.example.com", 465, None, None, False, True),
        ("smtp://localhost", "localhost", 25, None, None, False, False),
    ],
)
def test_smtp_url_forms(url, host, port, user, password, starttls, implicit):
    settings = SmtpSettings.from_url(url)
    assert (settings.host, settings.port, settings.username, settings.password) == (
        host,
        port,
        user,
        password,
    )
    assert (settings.starttls, settings.implicit_tls) == (starttls, implicit)


def test_bad_smtp_url_is_refused():
    with pytest.raises(ValueError, match="SMTP_URL"):
        SmtpSettings.from_url("http://mail.example.com")


def test_message_due_at_night_waits_for_the_morning(db_session, smtp_server):
    # 03:00 in New York
    night = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    customer = make_customer(timezone="America/New_York")
    queued = _queue_notice(customer, make_invoice(customer), now=night)
    assert queued.not_before == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert _deliver(smtp_server.url, now=night).sent == 0
    assert _deliver(smtp_server.url, now=datetime(2026, 11, 23, 13, 0, tzinfo=UTC)).sent == 1


def test_retry_falling_at_night_is_deferred_to_the_window(db_session, smtp_server):
    customer = make_customer(timezone="Europe/Berlin")
    queued = _queue_notice(customer, make_invoice(customer))
    late = datetime(2026, 11, 23, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
    queued.not_before = late
    db.session.flush()
    report = _deliver(smtp_server.url, now=late)
    assert report.deferred == 1
    assert db.session.get(OutboxMessage, queued.id).not_before == datetime(
        2026, 11, 24, 7, 0, tzinfo=UTC
    )
    assert smtp_server.received == []


def test_access_link_email_is_transactional(db_session):
    customer = make_customer()
    from portal.access.services import match_link_requests, record_link_request

    record_link_request(customer.account_number, customer.email, now=NOON)
    match_link_requests(now=NOON, ttl=timedelta(days=30))
    message = db.session.scalar(
        select(OutboxMessage).where(OutboxMessage.customer_id == customer.id)
    )
    assert message.category == EmailCategory.TRANSACTIONAL
    assert message.unsubscribe_url is None


def test_dates_in_email_follow_the_customer_locale(db_session):
    customer = make_customer(locale="de")
    invoice = make_invoice(customer, issue_date=date(2026, 11, 1), due_date=date(2026, 12, 1))
    message = _queue_notice(customer, invoice)
    assert "01.12.2026" in message.body_text


def test_a_batch_hands_back_what_it_could_not_send_within_its_lease(db_session, monkeypatch):
    from portal.notifications import services

    customers = [make_customer(timezone="UTC") for _ in range(3)]
    queued = [_queue_notice(c, make_invoice(c)) for c in customers]

    class SlowSender:
        sent: list[str] = []

        def send(self, email):  # a mail server so slow the lease is nearly over
            self.sent.append(email["Message-ID"])
            clock[0] += services.SEND_WITHIN_LEASE.total_seconds()

        def close(self):
            pass

    clock = [1000.0]
    monkeypatch.setattr(services.time, "monotonic", lambda: clock[0])
    report = deliver_due_messages(SlowSender(), now=NOON, runner="slow-runner")
    assert report.sent == 2  # the third would have gone out after its lease
    statuses = [db.session.get(OutboxMessage, q.id) for q in queued]
    db.session.expire_all()
    assert sorted(m.status for m in statuses) == ["queued", "sent", "sent"]
    left = next(m for m in statuses if m.status == "queued")
    assert (left.claimed_by, left.lease_until) == (None, None)
