"""Regulation F opt-out: a page with one button, RFC 8058 one-click, honoured at once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import current_app
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.extensions import db
from portal.notifications.models import EmailCategory, EmailOptOut, OutboxMessage, OutboxStatus
from portal.notifications.sender import SmtpSender, SmtpSettings
from portal.notifications.services import (
    OPT_OUT_LINK_MAX_AGE,
    OPT_OUT_LINK_SLOT,
    UNSUBSCRIBE_SALT,
    customer_for_unsubscribe_token,
    deliver_due_messages,
    queue_email,
    unsubscribe_token,
)
from tests.factories import make_customer, make_invoice

NOON = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)


def _queue(customer, category=EmailCategory.COLLECTION):
    invoice = make_invoice(customer)
    return queue_email(
        customer,
        kind="invoice_notice",
        template="invoice_notice",
        context={"payable": invoice.total},
        now=NOON,
        category=category,
        invoice=invoice,
        with_portal_link=True,
    )


def _opted_out(customer):
    return db.session.scalar(select(EmailOptOut).where(EmailOptOut.customer_id == customer.id))


def test_consumer_collection_email_carries_opt_out_notice_and_headers(db_session, smtp_server):
    customer = make_customer(kind="consumer", timezone="UTC")
    message = _queue(customer)
    # the stored copy holds a placeholder that opens nothing...
    slot = f"https://portal.example.test/email/opt-out/{OPT_OUT_LINK_SLOT}"
    assert message.unsubscribe_url == slot
    assert "stop receiving collection emails" in message.body_text
    assert slot in message.body_text
    assert slot in message.body_html
    sender = SmtpSender(SmtpSettings.from_url(smtp_server.url))
    deliver_due_messages(sender, now=NOON, runner="t")
    sender.close()
    # ...and the copy the mail server got carries a working link, in header and bodies
    (email,) = smtp_server.received
    header = email["List-Unsubscribe"].strip()
    assert header.startswith("<https://portal.example.test/email/opt-out/")
    url = header.strip("<>")
    token = url.rsplit("/", 1)[1]
    assert token != OPT_OUT_LINK_SLOT
    assert customer_for_unsubscribe_token(token).id == customer.id
    assert url in email.get_body(("plain",)).get_content()
    assert url in email.get_body(("html",)).get_content()
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    stored = db.session.get(OutboxMessage, message.id)
    assert token not in (stored.body_text + stored.body_html + stored.unsubscribe_url)


def test_business_and_transactional_email_has_no_opt_out(db_session):
    business = _queue(make_customer(kind="business"))
    receipt = _queue(make_customer(kind="consumer"), category=EmailCategory.TRANSACTIONAL)
    assert business.unsubscribe_url is None
    assert receipt.unsubscribe_url is None


def test_get_and_head_never_opt_out(client):
    customer = make_customer(kind="consumer")
    token = unsubscribe_token(customer)
    page = client.get(f"/email/opt-out/{token}")
    assert page.status_code == 200
    assert "Stop collection emails" in page.text
    assert client.head(f"/email/opt-out/{token}").status_code == 200
    assert _opted_out(customer) is None


def test_confirm_button_opts_out_without_a_session(client):
    customer = make_customer(kind="consumer")
    response = client.post(f"/email/opt-out/{unsubscribe_token(customer)}")
    assert response.status_code == 200
    assert "Collection emails stopped" in response.text
    assert _opted_out(customer).source == "page"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "email.opted_out"))
    assert event.customer_id == customer.id


def test_rfc8058_one_click_post_opts_out_directly(client):
    customer = make_customer(kind="consumer")
    response = client.post(
        f"/email/opt-out/{unsubscribe_token(customer)}",
        data={"List-Unsubscribe": "One-Click"},
    )
    assert response.status_code == 204
    assert _opted_out(customer).source == "one-click"


@pytest.mark.parametrize("token", ["forged", "eyJmb28iOjF9.abc"])
def test_forged_token_is_not_found_and_changes_nothing(client, token):
    assert client.post(f"/email/opt-out/{token}").status_code == 404
    assert client.get(f"/email/opt-out/{token}").status_code == 404
    assert db.session.scalar(select(db.func.count(EmailOptOut.id))) == 0


def test_the_placeholder_opens_nothing(client):
    assert client.get(f"/email/opt-out/{OPT_OUT_LINK_SLOT}").status_code == 404
    assert client.post(f"/email/opt-out/{OPT_OUT_LINK_SLOT}").status_code == 404


def _token_made(customer, ago):
    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - ago.total_seconds())

    serializer = URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt=UNSUBSCRIBE_SALT, signer=Then
    )
    return serializer.dumps(customer.id)


def test_an_opt_out_link_works_for_its_lifetime_then_expires(client):
    customer = make_customer(kind="consumer")
    still = _token_made(customer, OPT_OUT_LINK_MAX_AGE - timedelta(hours=1))
    assert client.get(f"/email/opt-out/{still}").status_code == 200
    old = _token_made(customer, OPT_OUT_LINK_MAX_AGE + timedelta(hours=1))
    page = client.get(f"/email/opt-out/{old}")
    assert page.status_code == 410
    assert "This link has expired" in page.text
    one_click = client.post(f"/email/opt-out/{old}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 410
    assert _opted_out(customer) is None
    assert client.post(f"/email/opt-out/{still}").status_code == 200
    assert _opted_out(customer) is not None


def test_opting_out_twice_is_harmless(client):
    customer = make_customer(kind="consumer")
    url = f"/email/opt-out/{unsubscribe_token(customer)}"
    client.post(url)
    assert client.post(url).status_code == 200
    assert "already" in client.get(url).text
    assert db.session.scalar(select(db.func.count(EmailOptOut.id))) == 1


def test_opt_out_is_honoured_by_the_next_run(client, smtp_server):
    # given a collection email already queued and a receipt
    customer = make_customer(kind="consumer", timezone="UTC")
    reminder = _queue(customer)
    receipt = _queue(customer, category=EmailCategory.TRANSACTIONAL)
    # when the customer opts out before the runner gets to them
    client.post(f"/email/opt-out/{unsubscribe_token(customer)}")
    sender = SmtpSender(SmtpSettings.from_url(smtp_server.url))
    report = deliver_due_messages(sender, now=NOON, runner="t")
    sender.close()
    # then the reminder is suppressed and the receipt still goes
    assert (report.sent, report.suppressed) == (1, 1)
    assert db.session.get(OutboxMessage, reminder.id).status == OutboxStatus.SUPPRESSED
    assert db.session.get(OutboxMessage, receipt.id).status == OutboxStatus.SENT


def test_debt_collector_disclosure_in_every_collection_email(app, db_session):
    app.config["CREDITOR_IS_DEBT_COLLECTOR"] = True
    try:
        for locale, phrase in [("en", "from a debt collector"), ("de", "Inkasso")]:
            message = _queue(make_customer(locale=locale))
            assert phrase in message.body_text, message.body_text
            assert phrase in message.body_html
        receipt = _queue(make_customer(), category=EmailCategory.TRANSACTIONAL)
        assert "debt collector" not in receipt.body_text
    finally:
        app.config["CREDITOR_IS_DEBT_COLLECTOR"] = False


def test_no_fee_is_ever_mentioned_for_paying_online(db_session):
    message = _queue(make_customer(kind="consumer"))
    assert "fee" not in message.body_text.lower()
