"""The plan activation email carries the agreement PDF, made when it is sent (issue 13).

Delivered to a real SMTP server on loopback (aiosmtpd); the PDF is read back with pypdf.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta

from pypdf import PdfReader

from portal.audit.actors import Actor
from portal.extensions import db
from portal.money import Money
from portal.notifications.models import EmailCategory, OutboxMessage, OutboxStatus
from portal.notifications.sender import SmtpSender, SmtpSettings
from portal.notifications.services import deliver_due_messages, queue_email
from portal.plans.schedule import Frequency
from portal.plans.services import propose_plan
from tests.factories import make_customer, make_invoice

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
SPACES = re.compile(r"[\s\u00a0\u202f]+")


def _plan(customer):
    """1,000.00 as 100.00 down and 6 monthly payments of 150.00 from 30 Dec: in policy."""
    invoices = [
        make_invoice(customer, lines=[("Services", "1", "600.00")], number=f"AG-{customer.id}-1"),
        make_invoice(customer, lines=[("Goods", "1", "400.00")], number=f"AG-{customer.id}-2"),
    ]
    return propose_plan(
        customer,
        [i.number for i in invoices],
        actor=Actor.customer(customer),
        now=NOW,
        down_payment=Money.from_decimal("100.00", customer.currency),
        frequency=Frequency.MONTHLY,
        installments=6,
        first_payment_date=date(2026, 12, 30),
        reason="",
        autopay=False,
    )


def _deliver(url, now=NOW):
    sender = SmtpSender(SmtpSettings.from_url(url))
    try:
        return deliver_due_messages(sender, now=now, runner="test-runner")
    finally:
        sender.close()


def _text(pdf: bytes) -> str:
    return SPACES.sub(" ", "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages))


def _attachments(email):
    return [
        (part.get_filename(), part.get_content_type(), part.get_content())
        for part in email.iter_attachments()
    ]


def test_the_activation_email_carries_the_agreement_pdf_in_french(db_session, smtp_server):
    # given a French-speaking customer whose plan within policy is active
    customer = make_customer(locale="fr", currency="EUR", timezone="Europe/Paris")
    plan = _plan(customer)
    queued = db.session.query(OutboxMessage).filter_by(kind="plan_activated").one()
    # the outbox names the document; it holds no file
    assert queued.attachment == f"plan_agreement:{plan.id}"
    # when the runner delivers it over SMTP
    report = _deliver(smtp_server.url)
    # then it arrived once, in French, saying the agreement is attached, with the link
    assert report.sent == 1
    (received,) = smtp_server.received
    body = received.get_body(("plain",)).get_content()
    assert "est joint à cet e-mail en PDF" in body
    assert re.search(r"https?://\S+/l/\S+", body)
    # with one PDF attachment, named in French, whose text is the plan's schedule
    ((filename, mimetype, pdf),) = _attachments(received)
    assert (filename, mimetype) == (f"plan-de-paiement-PP-{plan.id}.pdf", "application/pdf")
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf)
    assert f"Accord de plan de paiement PP-{plan.id}" in text
    assert "Total du plan 1 000,00 € Acompte 100,00 €" in text
    # the schedule, row by row: the down payment today, then six monthly payments
    assert "Calendrier" in text
    assert "Acompte 30 nov. 2026 100,00 €" in text
    for n, due in enumerate(
        ("30 déc. 2026", "30 janv. 2027", "28 févr. 2027", "30 mars 2027", "30 avr. 2027"), 1
    ):
        assert f"Échéance {n} {due} 150,00 €" in text
    assert "Échéance 6 30 mai 2027 150,00 € Total 1 000,00 €" in text
    # and what happens when an installment is missed
    assert "Si une échéance n’est pas payée" in text
    # the outbox keeps what was sent, still without the file
    db.session.expire_all()
    sent = db.session.get(OutboxMessage, queued.id)
    assert (sent.status, sent.attempts, sent.attachment) == (
        OutboxStatus.SENT,
        1,
        f"plan_agreement:{plan.id}",
    )


def test_an_english_activation_email_names_the_file_in_english(db_session, smtp_server):
    customer = make_customer(locale="en", timezone="UTC")
    plan = _plan(customer)
    assert _deliver(smtp_server.url).sent == 1
    ((filename, mimetype, pdf),) = _attachments(smtp_server.received[0])
    assert (filename, mimetype) == (f"payment-plan-PP-{plan.id}.pdf", "application/pdf")
    text = _text(pdf)
    assert "$150.00" in text
    assert "$1,000.00" in text
    assert "If an installment is missed" in text


def _queue_notice(customer):
    invoice = make_invoice(customer)
    return queue_email(
        customer,
        kind="invoice_notice",
        template="invoice_notice",
        context={"payable": invoice.total},
        now=NOW - timedelta(minutes=1),
        category=EmailCategory.COLLECTION,
        invoice=invoice,
        with_portal_link=True,
    )


def _queue_activation_naming(customer, plan_id):
    """An activation email of a plan as the outbox would hold it, naming `plan_id`."""
    plan = _plan(customer)
    message = db.session.query(OutboxMessage).filter_by(customer_id=customer.id).one()
    message.attachment = f"plan_agreement:{plan_id}"
    message.not_before = NOW - timedelta(hours=1)
    db.session.flush()
    return plan, message


def test_a_missing_plan_fails_the_attempt_and_never_blocks_the_batch(db_session, smtp_server):
    # given an activation email, queued first, whose plan does not exist
    customer = make_customer(timezone="UTC")
    _plan_row, broken = _queue_activation_naming(customer, 999_999)
    others = [_queue_notice(make_customer(timezone="UTC")) for _ in range(2)]
    # when the batch is delivered
    report = _deliver(smtp_server.url)
    # then the others are sent, and the broken one used one attempt and waits to retry
    assert (report.sent, report.retried, report.failed) == (2, 1, 0)
    assert sorted(m["To"] for m in smtp_server.received) == sorted(m.to_address for m in others)
    db.session.expire_all()
    broken = db.session.get(OutboxMessage, broken.id)
    assert (broken.status, broken.attempts, broken.claimed_by) == (OutboxStatus.QUEUED, 1, None)
    assert "LookupError" in broken.last_error
    assert "999999" in broken.last_error
    assert broken.sent_at is None
    assert {db.session.get(OutboxMessage, m.id).status for m in others} == {OutboxStatus.SENT}


def test_someone_elses_plan_is_never_attached(db_session, smtp_server):
    # given an activation email to one customer naming another customer's plan
    other_plan = _plan(make_customer(timezone="UTC"))
    db.session.query(OutboxMessage).delete()
    customer = make_customer(timezone="UTC")
    _own, message = _queue_activation_naming(customer, other_plan.id)
    # when delivered, nothing is sent: the plan is not found for this customer
    report = _deliver(smtp_server.url)
    assert (report.sent, report.retried) == (0, 1)
    assert smtp_server.received == []
    db.session.expire_all()
    assert "LookupError" in db.session.get(OutboxMessage, message.id).last_error


def test_the_dev_mailbox_and_console_name_the_attachment(app, client, db_session, capsys):
    from portal.notifications.sender import ConsoleSender

    customer = make_customer(locale="de", timezone="UTC")
    plan = _plan(customer)
    message = db.session.query(OutboxMessage).filter_by(customer_id=customer.id).one()
    app.config["DEV_MAILBOX"] = True
    try:
        detail = client.get(f"/dev/mailbox/{message.id}")
    finally:
        app.config["DEV_MAILBOX"] = False
    assert f"plan_agreement:{plan.id}" in detail.text
    # the console sender (development) shows the file made for this send, in German
    assert deliver_due_messages(ConsoleSender(), now=NOW, runner="console").sent == 1
    assert f"attached: ratenplan-PP-{plan.id}.pdf" in capsys.readouterr().out


def test_the_approval_email_carries_the_agreement_pdf_too(db_session, smtp_server):
    """A request outside policy that a specialist approves is active too: its email
    carries the same agreement, made when sent."""
    from portal.plans.services import approve_plan
    from tests.factories import make_staff

    customer = make_customer(timezone="Europe/Paris")
    invoice = make_invoice(customer, lines=[("Services", "1", "1200.00")], number="AP-1")
    plan = propose_plan(
        customer,
        [invoice.number],
        actor=Actor.customer(customer),
        now=NOW,
        down_payment=Money.from_decimal("120.00", customer.currency),
        frequency=Frequency.MONTHLY,
        installments=12,  # over the standard limit of 6: a request for review
        first_payment_date=date(2026, 12, 30),
        reason="Hardship: reduced hours this winter.",
        autopay=False,
    )
    assert plan.status == "pending"
    approve_plan(plan, actor=Actor.staff(make_staff()), now=NOW)
    queued = db.session.query(OutboxMessage).filter_by(kind="plan_approved").one()
    assert queued.attachment == f"plan_agreement:{plan.id}"
    assert _deliver(smtp_server.url).sent >= 1
    approved = next(
        m for m in smtp_server.received if "attached" in m.get_body(("plain",)).get_content()
    )
    [(name, kind, pdf)] = _attachments(approved)
    assert kind == "application/pdf"
    assert name.endswith(".pdf")
    assert "1,200.00" in _text(pdf)
