"""No usable secret at rest: after the demo's emails are sent through a real SMTP server,
no stored string anywhere in the database holds a working link or session token.

Only SHA-256 hashes of tokens are stored (`access_links.token_hash`,
`principal_sessions.token_hash`); an email's stored copy keeps a placeholder where its
link was, the link being issued as the email is sent (README, Security model).
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import select

from portal.access.models import AccessLink, PrincipalSession
from portal.access.services import hash_token, match_link_requests, record_link_request
from portal.db import utcnow
from portal.demo.loader import load_demo
from portal.extensions import db
from portal.notifications.models import OutboxMessage, OutboxStatus
from portal.notifications.sender import SmtpSender, SmtpSettings
from portal.notifications.services import (
    OPT_OUT_LINK_SLOT,
    PORTAL_LINK_SLOT,
    customer_for_unsubscribe_token,
    deliver_due_messages,
    schedule_collection_emails,
)
from tests.factories import csrf_token_from

# Anything that could be a token: links and session tokens are URL-safe base64.
TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{20,}")
LINK = re.compile(r"https?://[^\s\"'<>]+/l/([A-Za-z0-9_-]+)")
OPT_OUT_LINK = re.compile(r"https?://[^\s\"'<>]+/email/opt-out/([A-Za-z0-9_.-]+)")


def _every_stored_string() -> list[tuple[str, str, str]]:
    """(table, column, value) for every text or JSON value in every table."""
    found = []
    connection = db.session.connection()
    for table in db.metadata.sorted_tables:
        columns = [
            column
            for column in table.columns
            if isinstance(column.type, sa.String | sa.Text | sa.JSON)
            or isinstance(getattr(column.type, "impl", None), sa.String | sa.Text | sa.JSON)
        ]
        if not columns:
            continue
        for row in connection.execute(select(*columns)):
            for column, value in zip(columns, row, strict=True):
                if value is not None:
                    found.append((table.name, column.name, str(value)))
    return found


def _deliver_everything(sender: SmtpSender) -> None:
    """Run the worker at each queued message's own delivery time (inside its window)."""
    times = sorted(
        set(
            db.session.scalars(
                select(OutboxMessage.not_before).where(OutboxMessage.status == OutboxStatus.QUEUED)
            )
        )
    )
    for at in times:
        deliver_due_messages(sender, now=at, runner="test")
    sender.close()


def test_after_the_demo_emails_are_sent_no_stored_string_holds_a_working_token(
    app, client, smtp_server, caplog
):
    # given the demo ledger, its due emails, a lost-link email, and a signed-in browser
    caplog.set_level(logging.DEBUG)
    now = utcnow()
    printed = load_demo(print_links=True)
    printed_tokens = [m.group(1) for line in printed for m in LINK.finditer(line)]
    assert len(printed_tokens) == 2  # printed for the operator, never stored
    schedule_collection_emails(now=now)
    first = db.session.scalar(select(OutboxMessage.customer_id).limit(1))
    from portal.customers.models import Customer

    customer = db.session.get(Customer, first)
    record_link_request(customer.account_number, customer.email, now=now)
    match_link_requests(now=now, ttl=timedelta(days=30))  # the worker's matching job
    db.session.commit()
    queued = db.session.scalar(select(sa.func.count(OutboxMessage.id)))
    assert queued >= 5
    # when the worker sends them through a real SMTP server
    _deliver_everything(SmtpSender(SmtpSettings.from_url(smtp_server.url)))
    db.session.commit()
    # then every email arrived with a link that works...
    received = smtp_server.received
    assert len(received) == queued
    sent_tokens = []
    opt_out_tokens = []
    for email in received:
        body = email.get_body(("plain",)).get_content()
        (token,) = {m.group(1) for m in LINK.finditer(body)}
        assert token != PORTAL_LINK_SLOT
        sent_tokens.append(token)
        opt_outs = {m.group(1) for m in OPT_OUT_LINK.finditer(body)}
        if email["List-Unsubscribe"]:
            (opt_out_token,) = opt_outs
            assert opt_out_token in email["List-Unsubscribe"]
            assert customer_for_unsubscribe_token(opt_out_token) is not None
            opt_out_tokens.append(opt_out_token)
        else:
            assert not opt_outs
    assert opt_out_tokens  # the demo has consumers with collection email
    hashes = set(db.session.scalars(select(AccessLink.token_hash)))
    assert all(hash_token(token) in hashes for token in sent_tokens)
    landing = client.get(f"/l/{sent_tokens[0]}")
    assert landing.status_code == 200
    client.post(f"/l/{sent_tokens[0]}", data={"csrf_token": csrf_token_from(landing.text)})
    assert client.get("/account").status_code == 200
    session_token = client.get_cookie("portal_customer").value
    # ...while the stored copies hold only the placeholder
    sent = db.session.scalars(select(OutboxMessage)).all()
    assert all(m.status == OutboxStatus.SENT for m in sent)
    assert all(PORTAL_LINK_SLOT in (m.body_text or "") for m in sent)
    assert all(
        OPT_OUT_LINK_SLOT in m.unsubscribe_url and OPT_OUT_LINK_SLOT in (m.body_text or "")
        for m in sent
        if m.unsubscribe_url
    )
    # and no stored string holds any working token, link or session
    secret_hashes = hashes | set(db.session.scalars(select(PrincipalSession.token_hash)))
    stored = _every_stored_string()
    assert len(stored) > 1000
    for table, column, value in stored:
        for candidate in TOKEN_LIKE.findall(value):
            assert hash_token(candidate) not in secret_hashes, (table, column)
        for token in [*sent_tokens, *printed_tokens, session_token, *opt_out_tokens]:
            assert token not in value, (table, column)
    # nor do the portal's logs of all this (mail.log is the receiving mail server's)
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail."))
    for token in [*sent_tokens, *printed_tokens, session_token, *opt_out_tokens]:
        assert token not in ours
