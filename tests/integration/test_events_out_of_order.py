"""Stripe's events in any order: one about a payment not recorded yet is kept, then applied.

Stripe does not promise the order of its events (https://docs.stripe.com/webhooks,
"Event ordering"). Real localstripe charges and refunds, real signed deliveries to the
webhook; the answer to a charge is lost by `tests.stripe_idempotency`, as a dropped
network reply would be. Two workers racing on PostgreSQL are in test_payment_races.py.
"""

from __future__ import annotations

import json
import time

import pytest
from flask import current_app
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import InvoiceStatus
from portal.invoices.queries import invoice_balance
from portal.jobs.webhook_worker import apply_all_pending
from portal.money import Money
from portal.payments.inbox import apply_pending_events
from portal.payments.models import CheckoutStatus, Payment, Refund, WebhookEvent, WebhookOutcome
from portal.payments.services import start_checkout
from tests.factories import make_customer, make_invoice
from tests.stripe_journeys import CARD_OK, charge, event_body, set_up_card, signature

pytest_plugins = ["tests.stripe_server", "tests.stripe_idempotency"]
pytestmark = pytest.mark.usefixtures("stripe_app")

URL = "/stripe/webhook"


@pytest.fixture
def lossy(app, monkeypatch, idempotent_stripe):
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", idempotent_stripe.url)
    return idempotent_stripe


def _charged_answer_lost(localstripe, lossy, amount: str = "80.00"):
    """A customer's card charged at Stripe, whose answer never reached the portal."""
    customer = make_customer()
    invoice = make_invoice(customer, lines=[("Work", "1", amount)])
    with current_app.test_request_context():
        checkout = start_checkout(customer, [invoice.number], None, now=utcnow())
        setup = set_up_card(localstripe, customer, checkout, CARD_OK)
        lossy.lose_next_answer("/v1/payment_intents")
        checkout = charge(customer, checkout, setup_intent_id=setup)
    assert (checkout.state, checkout.last_error_code) == (
        CheckoutStatus.OPEN,
        "gateway_unavailable",
    )
    [intent] = localstripe.charged()
    return customer, invoice, checkout, setup, intent


def _refund_at_stripe(localstripe, intent_id: str, amount_minor: int | None = None) -> str:
    data: dict[str, object] = {"payment_intent": intent_id}
    if amount_minor is not None:
        data["amount"] = amount_minor
    return localstripe.post("/v1/refunds", data)["id"]


def _refunded_body(localstripe, intent_id: str, event_id: str) -> str:
    """Stripe's `charge.refunded` as it would send it now: the charge, refunds listed."""
    intent = localstripe.get(f"/v1/payment_intents/{intent_id}")
    charge_id = intent["latest_charge"]
    charge_id = charge_id if isinstance(charge_id, str) else charge_id["id"]
    charge_object = localstripe.get(f"/v1/charges/{charge_id}") | {"payment_intent": intent_id}
    return event_body(event_id, "charge.refunded", charge_object)


def _succeeded_body(localstripe, intent_id: str, event_id: str) -> str:
    intent = localstripe.get(f"/v1/payment_intents/{intent_id}")
    return event_body(event_id, "payment_intent.succeeded", intent)


def _post(client, body: str) -> None:
    headers = {"Content-Type": "application/json", "Stripe-Signature": signature(body)}
    response = client.post(URL, data=body, headers=headers)
    assert response.status_code == 200, response.data
    assert response.json["status"] == "queued"


def _stored(event_id: str) -> WebhookEvent:
    db.session.expire_all()
    return db.session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == event_id))


def _balance(invoice):
    return invoice_balance(invoice, customer_today(invoice.customer, utcnow()))


def _ledger(customer) -> tuple[list[Payment], list[Refund]]:
    db.session.expire_all()
    payments = db.session.scalars(select(Payment).where(Payment.customer_id == customer.id)).all()
    refunds = [refund for payment in payments for refund in payment.refunds]
    return list(payments), refunds


def test_a_refund_delivered_before_its_payment_is_kept_then_applied(client, localstripe, lossy):
    # given a charge made at Stripe whose answer was lost, then refunded in full there
    customer, invoice, _, _, intent = _charged_answer_lost(localstripe, lossy)
    refund_id = _refund_at_stripe(localstripe, intent["id"])
    # when Stripe delivers the refund first
    refunded = _refunded_body(localstripe, intent["id"], "evt_early_refund")
    _post(client, refunded)
    assert apply_pending_events(now=utcnow()).claimed == 1
    # then it is kept, with what it waits for, and nothing is recorded yet
    early = _stored("evt_early_refund")
    assert (early.outcome, early.last_error, early.processed_at) == (
        WebhookOutcome.DEFERRED,
        f"waiting for payment {intent['id']}",
        None,
    )
    assert _ledger(customer) == ([], [])
    assert apply_pending_events(now=utcnow()).claimed == 0  # kept aside, not retried in a loop
    # when the payment's event arrives, and the worker applies what is pending
    _post(client, _succeeded_body(localstripe, intent["id"], "evt_late_payment"))
    assert apply_all_pending(now=utcnow()) == 2
    # then the ledger shows the payment and the refund, and the invoice is owed again
    [payment], [refund] = _ledger(customer)
    assert (payment.reference, payment.amount) == (intent["id"], Money(8000, "USD"))
    assert (refund.reference, refund.amount, refund.actor) == (
        refund_id,
        Money(8000, "USD"),
        "stripe",
    )
    assert _balance(invoice).balance == Money(8000, "USD")
    assert _balance(invoice).status == InvoiceStatus.OPEN
    assert _stored("evt_early_refund").outcome == WebhookOutcome.APPLIED
    assert _stored("evt_late_payment").outcome == WebhookOutcome.APPLIED
    actions = db.session.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.customer_id == customer.id)
        .order_by(AuditEvent.id)
    ).all()
    assert actions.index("payment.received") < actions.index("payment.refunded")


def test_several_refund_events_before_the_payment_record_each_refund_once(
    client, localstripe, lossy
):
    # given a lost answer, then two partial refunds at Stripe, each reported by an event
    customer, invoice, _, _, intent = _charged_answer_lost(localstripe, lossy)
    first = _refund_at_stripe(localstripe, intent["id"], 3000)
    _post(client, _refunded_body(localstripe, intent["id"], "evt_partial_1"))
    second = _refund_at_stripe(localstripe, intent["id"], 1000)
    _post(client, _refunded_body(localstripe, intent["id"], "evt_partial_2"))
    apply_pending_events(now=utcnow())
    assert {_stored(e).outcome for e in ("evt_partial_1", "evt_partial_2")} == {"deferred"}
    # when the payment's event comes last
    _post(client, _succeeded_body(localstripe, intent["id"], "evt_payment_last"))
    apply_all_pending(now=utcnow())
    # then both refunds are in the ledger once (the second event lists the first again)
    _, refunds = _ledger(customer)
    assert sorted((r.reference, r.amount_minor) for r in refunds) == sorted(
        [(first, 3000), (second, 1000)]
    )
    assert _balance(invoice).balance == Money(4000, "USD")
    # each event added the refund it reported first
    assert {_stored(e).outcome for e in ("evt_partial_1", "evt_partial_2")} == {"applied"}


def test_a_payment_recorded_by_the_customers_retry_wakes_the_refund_that_waited(
    client, localstripe, lossy
):
    # given a lost answer, a full refund at Stripe, and its event kept aside
    customer, invoice, checkout, setup, intent = _charged_answer_lost(localstripe, lossy)
    _refund_at_stripe(localstripe, intent["id"])
    _post(client, _refunded_body(localstripe, intent["id"], "evt_refund_waits"))
    apply_pending_events(now=utcnow())
    assert _stored("evt_refund_waits").outcome == WebhookOutcome.DEFERRED
    # when the customer presses Pay again, and Stripe answers with the first charge
    with current_app.test_request_context():
        checkout = charge(customer, checkout, setup_intent_id=setup)
    assert checkout.state == CheckoutStatus.SUCCEEDED
    # then recording the payment makes the refund pending again, and the worker applies it
    assert _stored("evt_refund_waits").outcome == WebhookOutcome.PENDING
    assert apply_all_pending(now=utcnow()) == 1
    [payment], [refund] = _ledger(customer)
    assert refund.amount == payment.amount == Money(8000, "USD")
    assert _balance(invoice).balance == Money(8000, "USD")


def test_a_refund_of_a_charge_without_a_payment_intent_is_not_ours(client, localstripe):
    body = event_body(
        "evt_legacy_charge",
        "charge.refunded",
        {
            "object": "charge",
            "id": "ch_legacy",
            "currency": "usd",
            "amount_refunded": 500,
            "payment_intent": None,
            "refunds": {"data": []},
        },
    )
    _post(client, body)
    apply_pending_events(now=utcnow())
    assert _stored("evt_legacy_charge").outcome == WebhookOutcome.IGNORED


def test_a_deferred_event_is_never_counted_as_a_failed_attempt(client, localstripe, lossy):
    # given a refund kept aside, seen by many passes of the worker
    _, _, _, _, intent = _charged_answer_lost(localstripe, lossy)
    _refund_at_stripe(localstripe, intent["id"], 100)
    _post(client, _refunded_body(localstripe, intent["id"], "evt_patient"))
    for _ in range(7):
        apply_all_pending(now=utcnow())
        time.sleep(0)
    # then it is still kept, not failed for staff
    waiting = _stored("evt_patient")
    assert (waiting.outcome, waiting.attempts) == (WebhookOutcome.DEFERRED, 0)
    assert json.loads(json.dumps(waiting.payload))["data"]["payment_intent"] == intent["id"]
