"""The webhook inbox: what is stored of an event, batches, a broken event, the worker.

No Stripe server is involved: applying an event never calls Stripe, so the checkouts
are made here as `begin_charge` leaves them (PROCESSING, holding the in-flight slot).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import InvoiceStatus
from portal.invoices.queries import invoice_balance
from portal.jobs import webhook_worker
from portal.jobs.webhook_worker import EventWaiter, apply_all_pending
from portal.notifications.models import OutboxMessage
from portal.payments import inbox
from portal.payments.gateway import GatewayEvent
from portal.payments.inbox import (
    MAX_ATTEMPTS,
    Receipt,
    apply_pending_events,
    receive_event,
)
from portal.payments.models import (
    CheckoutStatus,
    Payment,
    WebhookEvent,
)
from tests.factories import (
    make_checkout_in_flight,
    make_customer,
    make_invoice,
)
from tests.stripe_journeys import succeeded_event

pytestmark = pytest.mark.usefixtures("db_session")


def _row(event_id: str) -> WebhookEvent:
    return db.session.scalar(
        select(WebhookEvent)
        .where(WebhookEvent.event_id == event_id)
        .execution_options(populate_existing=True)  # the inbox writes with Core statements
    )


def test_what_is_stored_of_an_event_is_what_applying_needs_and_no_card_data():
    customer = make_customer()
    checkout = make_checkout_in_flight(customer, [make_invoice(customer)], 10000)
    # Stripe's last_payment_error carries the card's PaymentMethod, expiry date included
    card = {"brand": "visa", "last4": "0341", "exp_month": 11, "exp_year": 2041}
    error = {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
        "payment_method": {"id": "pm_x", "object": "payment_method", "card": card},
    }
    event = succeeded_event(checkout, "evt_kept", "pi_kept", last_payment_error=error)
    event = GatewayEvent(event.id, "payment_intent.payment_failed", event.created, event.data)
    assert receive_event(event, now=utcnow()) == Receipt.QUEUED
    row = _row("evt_kept")
    stored = json.dumps(row.payload)
    assert (row.outcome, row.processed_at, row.checkout_id) == ("pending", None, None)
    assert row.payload["data"]["last_payment_error"] == {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
    }
    for secret in ("exp_month", "2041", "0341", 'payment_method": {'):
        assert secret not in stored
    # and it still says everything applying needs
    kept = GatewayEvent(row.event_id, row.type, 0, row.payload["data"]).intent()
    original = event.intent()
    for field in ("id", "status", "amount", "customer_id", "payment_method_id", "metadata"):
        assert getattr(kept, field) == getattr(original, field)
    assert kept.error_code == "insufficient_funds"


def test_an_event_of_no_interest_is_stored_as_processed():
    event = GatewayEvent("evt_cus", "customer.created", 0, {"object": "customer", "id": "cus_1"})
    assert receive_event(event, now=utcnow()) == Receipt.IGNORED
    assert receive_event(event, now=utcnow()) == Receipt.DUPLICATE
    row = _row("evt_cus")
    assert (row.outcome, row.payload) == ("ignored", None)
    assert row.processed_at is not None
    assert apply_pending_events(now=utcnow()).claimed == 0


def test_a_batch_applies_every_event_once_with_one_receipt_each():
    checkouts = []
    for _ in range(12):
        customer = make_customer()
        checkouts.append(make_checkout_in_flight(customer, [make_invoice(customer)], 10000))
    for n, checkout in enumerate(checkouts):
        receive_event(succeeded_event(checkout, f"evt_batch_{n}", f"pi_batch_{n}"), now=utcnow())
    assert apply_pending_events(now=utcnow(), limit=5).claimed == 5  # oldest first, at most `limit`
    assert apply_all_pending(now=utcnow()) == 7
    assert db.session.scalar(select(func.count(Payment.id))) == 12
    assert db.session.scalar(select(func.count(OutboxMessage.id))) == 12
    assert {c.state for c in checkouts} == {CheckoutStatus.SUCCEEDED}
    assert {r.outcome for r in db.session.scalars(select(WebhookEvent)).all()} == {"applied"}
    audited = db.session.scalars(select(AuditEvent.action)).all()
    assert audited.count("payment.received") == 12
    # each receipt gets its portal link when it is sent, not in the payment's transaction
    assert audited.count("link.issued") == 0
    receipts = db.session.scalars(select(OutboxMessage)).all()
    assert {(m.kind, m.link_purpose) for m in receipts} == {("receipt", "receipt")}
    assert all("portal_url" not in (m.context or {}) for m in receipts)


def test_two_payments_of_one_customer_in_a_batch_never_credit_an_invoice_twice():
    # given a customer with two invoices, and two charges about the first one (a checkout
    # abandoned in flight whose charge went through after all, and the next checkout)
    customer = make_customer()
    first = make_invoice(customer, lines=[("A", "1", "100.00")], due_date=date(2026, 10, 20))
    second = make_invoice(customer, lines=[("B", "1", "30.00")], due_date=date(2026, 11, 20))
    abandoned = make_checkout_in_flight(customer, [first], 10000)
    abandoned.status, abandoned.in_flight_customer_id = CheckoutStatus.CANCELED, None
    db.session.flush()
    current = make_checkout_in_flight(customer, [first], 10000)
    # when both successes are applied in one batch
    receive_event(succeeded_event(abandoned, "evt_one", "pi_one"), now=utcnow())
    receive_event(succeeded_event(current, "evt_two", "pi_two"), now=utcnow())
    assert apply_pending_events(now=utcnow()).claimed == 2
    # then the first pays invoice A, the second finds A paid: B, then nothing owed
    payments = db.session.scalars(select(Payment).order_by(Payment.id)).all()
    assert [[(a.invoice_id, a.amount_minor) for a in p.allocations] for p in payments] == [
        [(first.id, 10000)],
        [(second.id, 3000)],
    ]
    assert payments[1].unapplied.minor == 7000
    today = date(2026, 11, 23)
    assert invoice_balance(first, today).status == InvoiceStatus.PAID
    assert invoice_balance(second, today).status == InvoiceStatus.PAID
    assert (
        db.session.scalar(select(func.count()).where(AuditEvent.action == "payment.unapplied")) == 1
    )


def test_a_broken_event_does_not_hold_back_the_others_and_fails_after_five_tries(
    monkeypatch,
):
    customers = [make_customer() for _ in range(3)]
    checkouts = []
    for customer in customers:
        checkouts.append(make_checkout_in_flight(customer, [make_invoice(customer)], 10000))
    for n, checkout in enumerate(checkouts):
        receive_event(succeeded_event(checkout, f"evt_p{n}", f"pi_p{n}"), now=utcnow())
    broken = checkouts[1].id
    real = inbox.apply_intent

    def apply_intent(checkout, intent, **kwargs):
        if checkout.id == broken:
            raise RuntimeError("a bug")
        return real(checkout, intent, **kwargs)

    monkeypatch.setattr(inbox, "apply_intent", apply_intent)
    # when the batch is applied
    assert apply_pending_events(now=utcnow()).claimed == 3
    # then the two good events are applied, the bad one waits with its error
    assert [_row(f"evt_p{n}").outcome for n in range(3)] == ["applied", "pending", "applied"]
    bad = _row("evt_p1")
    assert (bad.attempts, bad.last_error) == (1, "RuntimeError: a bug")
    assert db.session.scalar(select(func.count(Payment.id))) == 2
    # and after MAX_ATTEMPTS it is marked failed, for staff, and no longer taken
    for _ in range(MAX_ATTEMPTS - 1):
        apply_pending_events(now=utcnow())
    bad = _row("evt_p1")
    assert (bad.outcome, bad.attempts) == ("failed", MAX_ATTEMPTS)
    assert bad.processed_at is not None
    assert apply_pending_events(now=utcnow()).claimed == 0
    assert checkouts[1].state == CheckoutStatus.PROCESSING  # nothing half-applied


def test_the_worker_command_applies_stored_events(app):
    customer = make_customer()
    checkout = make_checkout_in_flight(customer, [make_invoice(customer)], 10000)
    receive_event(succeeded_event(checkout, "evt_cli", "pi_cli"), now=utcnow())
    result = CliRunner().invoke(
        app.cli, ["jobs", "run", "--once", "--only", "apply_webhooks"], catch_exceptions=False
    )
    assert "apply_webhooks: ok (1 webhook events applied)" in result.output
    assert _row("evt_cli").outcome == "applied"


def test_notify_wakes_the_worker_as_soon_as_an_event_commits(app):
    with app.app_context():
        url = db.engine.url
    if url.get_backend_name() != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite polls")
    waiter = EventWaiter(url, poll_seconds=1)
    woke: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        waiter.wait(10)
        woke.append(time.monotonic() - started)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)
    # an event stored and committed by another connection (the web process)
    now = utcnow()
    with db.engine.connect() as connection:
        connection.execute(
            inbox._STORE_AND_NOTIFY,
            {
                "event_id": "evt_notify",
                "type": "payment_intent.succeeded",
                "payment_intent_id": "pi_notify",
                "outcome": "pending",
                "payload": {"created": 0, "data": {}},
                "received_at": now,
                "processed_at": None,
            },
        )
        connection.commit()
        connection.execute(sa.delete(WebhookEvent).where(WebhookEvent.event_id == "evt_notify"))
        connection.commit()
    thread.join(timeout=10)
    waiter.close()
    assert woke
    assert woke[0] < 5  # woken by the notification, not by the 10-second timeout


def test_without_notify_the_waiter_polls():
    waiter = EventWaiter(db.engine.url.set(drivername="sqlite", database=":memory:"),
                         poll_seconds=0.05)  # fmt: skip
    started = time.monotonic()
    waiter.wait(10)
    assert time.monotonic() - started < 1
    waiter.close()


def test_the_dev_mailbox_previews_a_receipt_before_it_is_written(app, client):
    customer = make_customer(locale="de")
    checkout = make_checkout_in_flight(customer, [make_invoice(customer, number="INV-MB-1")], 10000)
    receive_event(succeeded_event(checkout, "evt_mb", "pi_mb"), now=utcnow())
    apply_pending_events(now=utcnow())
    receipt = db.session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "receipt"))
    app.config["DEV_MAILBOX"] = True
    try:
        assert "(receipt email, written when sent)" in client.get("/dev/mailbox/").text
        detail = client.get(f"/dev/mailbox/{receipt.id}")
        assert "INV-MB-1" in detail.text
        assert "100,00" in detail.text  # in the customer's language
        assert "INV-MB-1" in client.get(f"/dev/mailbox/{receipt.id}/html").text
    finally:
        app.config["DEV_MAILBOX"] = False
    db.session.expire_all()
    assert db.session.get(OutboxMessage, receipt.id).subject is None  # a preview only


def test_the_worker_loop_outlives_a_failing_pass(monkeypatch, caplog):
    passes = iter([RuntimeError("the database went away"), 2])

    def flaky(*, now):
        outcome = next(passes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(webhook_worker, "apply_all_pending", flaky)
    budget = iter([1.0, 1.0, 0.0])
    reported: list[int] = []
    webhook_worker.apply_as_they_arrive(
        lambda: next(budget), poll_seconds=0.01, report=reported.append
    )
    assert reported == [2]
    assert "applying webhook events failed; retrying" in caplog.text


def test_a_refund_in_the_same_batch_as_its_payment_is_recorded_after_it():
    customer = make_customer()
    invoice = make_invoice(customer, lines=[("A", "1", "100.00")])
    checkout = make_checkout_in_flight(customer, [invoice], 10000)
    receive_event(succeeded_event(checkout, "evt_paid", "pi_then_refunded"), now=utcnow())
    charge = {
        "object": "charge",
        "id": "ch_then_refunded",
        "payment_intent": "pi_then_refunded",
        "currency": "usd",
        "amount_refunded": 3000,
        "refunds": {"data": [{"id": "re_1", "status": "succeeded", "amount": 3000}]},
    }
    event = GatewayEvent("evt_refunded", "charge.refunded", int(time.time()), charge)
    assert receive_event(event, now=utcnow()) == Receipt.QUEUED
    assert apply_pending_events(now=utcnow()).claimed == 2
    assert [_row("evt_paid").outcome, _row("evt_refunded").outcome] == ["applied", "applied"]
    payment = db.session.scalar(select(Payment).where(Payment.reference == "pi_then_refunded"))
    assert [(r.reference, r.amount_minor) for r in payment.refunds] == [("re_1", 3000)]
    assert invoice_balance(invoice, date(2026, 11, 23)).balance.minor == 3000


def test_the_waiter_listens_again_after_losing_its_connection(app):
    with app.app_context():
        url = db.engine.url
    if url.get_backend_name() != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite polls")
    waiter = EventWaiter(url, poll_seconds=1)
    lost = waiter._connection.info.backend_pid
    with db.engine.connect() as connection:  # as a PostgreSQL restart would
        connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": lost})
    started = time.monotonic()
    waiter.wait(5)  # notices the loss, without raising
    waiter.wait(5)  # listens again, and returns at once: events may have come meanwhile
    assert time.monotonic() - started < 4
    assert waiter._connection.info.backend_pid != lost
    with db.engine.connect() as connection:
        connection.execute(sa.text(f"NOTIFY {inbox.NOTIFY_CHANNEL}"))
        connection.commit()
    started = time.monotonic()
    waiter.wait(10)
    assert time.monotonic() - started < 5  # woken by the notification
    waiter.close()
