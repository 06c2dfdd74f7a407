"""Email to international addresses, and one bad email never holding back the others.

Every test delivers to a real SMTP server on loopback (aiosmtpd), with and without the
SMTPUTF8 extension (RFC 6531).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from portal.extensions import db
from portal.notifications.models import EmailCategory, OutboxMessage, OutboxStatus
from portal.notifications.policy import MAX_ATTEMPTS
from portal.notifications.sender import SmtpSender, SmtpSettings
from portal.notifications.services import deferred_email_row, deliver_due_messages, queue_email
from tests.factories import make_customer, make_invoice

NOON = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def _queue_notice(customer):
    invoice = make_invoice(customer)
    return queue_email(
        customer,
        kind="invoice_notice",
        template="invoice_notice",
        context={"payable": invoice.total},
        now=NOON - timedelta(minutes=1),
        category=EmailCategory.COLLECTION,
        invoice=invoice,
        with_portal_link=True,
    )


def _deliver(url, now=NOON):
    sender = SmtpSender(SmtpSettings.from_url(url))
    try:
        return deliver_due_messages(sender, now=now, runner="test-runner")
    finally:
        sender.close()


def _reload(message):
    db.session.expire_all()
    return db.session.get(OutboxMessage, message.id)


def test_a_non_ascii_domain_is_sent_in_its_ascii_form(db_session, smtp_server):
    # given a relay without SMTPUTF8 and an address at an internationalized domain
    customer = make_customer(email="anna@bücher.example", timezone="UTC")
    queued = _queue_notice(customer)
    # when
    report = _deliver(smtp_server.url)
    # then
    assert report.sent == 1
    assert smtp_server.handler.envelopes == [["anna@xn--bcher-kva.example"]]
    assert smtp_server.received[0]["To"] == "anna@xn--bcher-kva.example"
    assert _reload(queued).status == OutboxStatus.SENT


def test_a_non_ascii_local_part_is_sent_where_the_relay_supports_smtputf8(
    db_session, smtputf8_server
):
    customer = make_customer(email="jürgen@müller.example", timezone="UTC")
    queued = _queue_notice(customer)
    report = _deliver(smtputf8_server.url)
    assert report.sent == 1
    assert smtputf8_server.handler.envelopes == [["jürgen@xn--mller-kva.example"]]
    assert smtputf8_server.received[0]["To"] == "jürgen@xn--mller-kva.example"
    assert _reload(queued).status == OutboxStatus.SENT


def test_a_non_ascii_local_part_fails_at_once_without_smtputf8_and_the_rest_is_sent(
    db_session, smtp_server
):
    # given a relay without SMTPUTF8, one address it cannot take, queued first, and two it can
    international = _queue_notice(make_customer(email="jürgen@example.de", timezone="UTC"))
    others = [_queue_notice(make_customer(timezone="UTC")) for _ in range(2)]
    # when
    report = _deliver(smtp_server.url)
    # then the one fails with the reason, on its first attempt (no retry can help)
    failed = _reload(international)
    assert (failed.status, failed.attempts) == (OutboxStatus.FAILED, 1)
    assert "does not support SMTPUTF8" in failed.last_error
    assert (report.sent, report.failed, report.retried) == (2, 1, 0)
    assert sorted(m["To"] for m in smtp_server.received) == sorted(m.to_address for m in others)


def test_an_email_that_cannot_be_rendered_is_retried_then_failed_and_never_blocks_the_batch(
    db_session, smtp_server
):
    # given a receipt to render when sent, whose payment does not exist, queued first
    customer = make_customer(timezone="UTC")
    row = deferred_email_row(
        customer,
        kind="receipt",
        template="receipt",
        context={"payment_id": 999_999, "portal_url": "http://127.0.0.1:5000/"},
        now=NOON - timedelta(hours=1),
        dedupe_key="receipt:broken",
    )
    row["not_before"] = NOON - timedelta(hours=1)
    broken_id = db.session.execute(
        insert(OutboxMessage).returning(OutboxMessage.id), [row]
    ).scalar_one()
    others = [_queue_notice(make_customer(timezone="UTC")) for _ in range(2)]
    # when the batch is delivered
    report = _deliver(smtp_server.url)
    # then the others are sent and the broken one has used one attempt, not its lease
    assert (report.sent, report.retried) == (2, 1)
    assert len(smtp_server.received) == 2
    assert {_reload(m).status for m in others} == {OutboxStatus.SENT}
    broken = db.session.get(OutboxMessage, broken_id)
    assert (broken.status, broken.attempts, broken.claimed_by) == (OutboxStatus.QUEUED, 1, None)
    assert "LookupError" in broken.last_error
    # and after its last attempt it is failed, never sent
    now = NOON
    for _ in range(MAX_ATTEMPTS - 1):
        now = broken.not_before + timedelta(seconds=1)
        _deliver(smtp_server.url, now=now)
        broken = _reload(broken)
    assert (broken.status, broken.attempts) == (OutboxStatus.FAILED, MAX_ATTEMPTS)
    assert len(smtp_server.received) == 2
