"""The dunning cadence over an invoice's whole life, driven through `portal jobs run`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from portal.cli import jobs_run
from portal.db import utcnow
from portal.extensions import db
from portal.notifications.models import OutboxMessage, ReminderStep
from portal.notifications.services import opt_out, schedule_collection_emails
from tests.factories import make_customer, make_invoice, make_payment

DAY_ZERO = datetime(2026, 10, 1, 15, 0, tzinfo=UTC)  # 11:00 in New York: inside the window


@pytest.fixture
def smtp_app(app, smtp_server):
    app.config["SMTP_URL"] = smtp_server.url
    yield app
    app.config["SMTP_URL"] = None


def _run_jobs(app):
    result = app.test_cli_runner().invoke(jobs_run, [])
    assert result.exit_code == 0, result.output
    return result.output


def test_invoice_life_sends_exactly_the_expected_emails_and_none_after_payment(
    smtp_app, db_session, smtp_server
):
    # given an invoice issued on day 0, due on day 30, for a customer in New York
    with time_machine.travel(DAY_ZERO, tick=False):
        customer = make_customer(timezone="America/New_York", email="payer@example.com")
        invoice = make_invoice(
            customer, number="INV-LIFE", issue_date=date(2026, 10, 1), due_date=date(2026, 10, 31)
        )
    received: list[tuple[date, str]] = []
    # when the runner runs every day, and the customer pays on day 38
    for day in range(0, 60):
        moment = DAY_ZERO + timedelta(days=day)
        with time_machine.travel(moment, tick=False):
            if day == 38:
                make_payment(customer, [(invoice, "100.00")], paid_on=moment.date())
            before = len(smtp_server.received)
            _run_jobs(smtp_app)
            for email in smtp_server.received[before:]:
                received.append((moment.date(), email["Subject"]))
    # then: the notice on day 0, a reminder 3 days before the due date, overdue reminders
    # on days +1 and +7 after it, and nothing once it is paid (no +14 or +30)
    assert received == [
        (date(2026, 10, 1), "New invoice INV-LIFE from Northwind Supplies Ltd"),
        (date(2026, 10, 28), "Reminder: invoice INV-LIFE is due on Oct 31, 2026"),
        (date(2026, 11, 1), "Invoice INV-LIFE is overdue"),
        (date(2026, 11, 7), "Invoice INV-LIFE is overdue"),
    ]


def test_schedule_is_idempotent(db_session):
    now = utcnow()
    customer = make_customer(timezone="UTC")
    make_invoice(
        customer,
        issue_date=now.date() - timedelta(days=60),
        due_date=now.date() - timedelta(days=20),
    )
    first = schedule_collection_emails(now=now)
    assert (first.notices, first.reminders) == (0, 1)  # imported overdue: the +14 reminder
    second = schedule_collection_emails(now=now)
    assert (second.notices, second.reminders) == (0, 0)
    keys = set(db.session.scalars(select(OutboxMessage.dedupe_key)))
    assert any(k.endswith(":14") for k in keys if k and k.startswith("reminder:"))


def test_after_an_outage_only_the_latest_step_is_sent(db_session):
    now = utcnow()
    customer = make_customer(timezone="UTC")
    with time_machine.travel(now - timedelta(days=90), tick=False):
        make_invoice(
            customer,
            issue_date=now.date() - timedelta(days=90),
            due_date=now.date() - timedelta(days=60),
        )
    report = schedule_collection_emails(now=now)
    assert (report.notices, report.reminders) == (0, 1)
    (message,) = db.session.scalars(select(OutboxMessage)).all()
    assert message.dedupe_key.endswith(":30")


def test_paid_invoices_are_not_reminded(db_session):
    now = utcnow()
    customer = make_customer(timezone="UTC")
    with time_machine.travel(now - timedelta(days=90), tick=False):
        invoice = make_invoice(
            customer,
            due_date=now.date() - timedelta(days=10),
            issue_date=now.date() - timedelta(days=40),
        )
    make_payment(customer, [(invoice, "100.00")])
    assert schedule_collection_emails(now=now).reminders == 0


def test_cadence_is_data(db_session):
    now = utcnow()
    customer = make_customer(timezone="UTC")
    with time_machine.travel(now - timedelta(days=90), tick=False):
        make_invoice(
            customer,
            due_date=now.date() - timedelta(days=2),
            issue_date=now.date() - timedelta(days=30),
        )
    db.session.execute(ReminderStep.__table__.update().values(is_active=False))
    db.session.add(ReminderStep(offset_days=2, is_active=True))
    db.session.flush()
    schedule_collection_emails(now=now)
    (message,) = db.session.scalars(select(OutboxMessage)).all()
    assert message.dedupe_key.endswith(":2")


def test_opted_out_customer_gets_no_collection_email(db_session):
    now = utcnow()
    customer = make_customer(timezone="UTC", kind="consumer")
    make_invoice(
        customer,
        due_date=now.date() - timedelta(days=10),
        issue_date=now.date() - timedelta(days=40),
    )
    opt_out(customer, source="page", now=now)
    report = schedule_collection_emails(now=now)
    assert (report.notices, report.reminders) == (0, 0)


def test_reminder_link_opens_the_invoice_it_is_about(db_session):
    now = utcnow()
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(
        customer,
        due_date=now.date() - timedelta(days=1),
        issue_date=now.date() - timedelta(days=31),
    )
    schedule_collection_emails(now=now)
    message = db.session.scalar(select(OutboxMessage))
    assert message.invoice_id == invoice.id
    assert "https://portal.example.test/l/" in message.body_text
