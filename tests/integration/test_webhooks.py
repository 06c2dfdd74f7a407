"""Stripe's webhook: signed on the raw body, stored by event id on receipt, then applied by
the worker once, never backwards."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.extensions import db
from portal.jobs.webhook_worker import apply_all_pending
from portal.notifications.models import OutboxMessage
from portal.payments.gateway import GatewayEvent, StripeGateway
from portal.payments.inbox import apply_pending_events
from portal.payments.models import (
    CardFailure,
    Checkout,
    CheckoutStatus,
    Payment,
    SavedCard,
    WebhookEvent,
)
from tests.factories import make_customer, make_invoice
from tests.stripe_journeys import (
    CARD_3DS,
    WEBHOOK_SECRET,
    deliver,
    event_body,
    outcome_of,
    pay,
    signature,
)

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.usefixtures("stripe_app")

URL = "/stripe/webhook"


def _post(client, body: str, header: str | None = None):
    headers = {"Content-Type": "application/json"}
    if header is not False:
        headers["Stripe-Signature"] = header or signature(body)
    return client.post(URL, data=body, headers=headers)


def _deliver(client, body: str) -> str:
    """Post as Stripe does, then let the worker apply what is pending: the stored outcome."""
    response = _post(client, body)
    assert response.status_code == 200, response.data
    apply_pending_events(now=utcnow())
    return outcome_of(json.loads(body)["id"])


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _awaiting_bank(localstripe) -> Checkout:
    """A 3-D Secure payment the customer approved at the bank; the portal not told yet."""
    customer = make_customer()
    make_invoice(customer, number=f"INV-WH-{customer.id}", lines=[("A", "1", "42.00")])
    with client_context():
        checkout = pay(localstripe, customer, [f"INV-WH-{customer.id}"], card=CARD_3DS)
    assert checkout.state == CheckoutStatus.REQUIRES_ACTION
    localstripe.authenticate(checkout.payment_intent_id, success=True)
    return checkout


def client_context():
    from flask import current_app

    return current_app.test_request_context()


def _intent(localstripe, checkout) -> dict:
    return localstripe.get(f"/v1/payment_intents/{checkout.payment_intent_id}")


# --- applied once -------------------------------------------------------------------------
def test_succeeded_event_records_the_payment(client, localstripe):
    checkout = _awaiting_bank(localstripe)
    body = event_body("evt_ok_1", "payment_intent.succeeded", _intent(localstripe, checkout))
    response = _post(client, body)
    assert response.status_code == 200
    assert response.json == {"received": "evt_ok_1", "status": "queued"}
    assert _count(Payment) == 0  # stored, answered, not applied yet
    assert apply_pending_events(now=utcnow()).claimed == 1
    assert outcome_of("evt_ok_1") == "applied"
    assert checkout.state == CheckoutStatus.SUCCEEDED
    [payment] = db.session.scalars(select(Payment).where(Payment.checkout_id == checkout.id)).all()
    assert payment.reference == checkout.payment_intent_id
    assert payment.amount_minor == 4200
    event = db.session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_ok_1"))
    assert (event.outcome, event.checkout_id) == ("applied", checkout.id)


def test_a_duplicate_delivery_changes_nothing(client, localstripe):
    checkout = _awaiting_bank(localstripe)
    body = event_body("evt_dup", "payment_intent.succeeded", _intent(localstripe, checkout))
    assert _deliver(client, body) == "applied"
    again = _post(client, body)
    assert again.status_code == 200
    assert again.json["status"] == "duplicate"
    assert apply_pending_events(now=utcnow()).claimed == 0
    assert _count(Payment) == 1
    assert _count(WebhookEvent) == 1
    assert db.session.scalar(select(func.count()).where(OutboxMessage.kind == "receipt")) == 1


def test_two_events_about_one_payment_credit_it_once(client, localstripe):
    checkout = _awaiting_bank(localstripe)
    intent = _intent(localstripe, checkout)
    assert _deliver(client, event_body("evt_a", "payment_intent.succeeded", intent)) == "applied"
    assert _deliver(client, event_body("evt_b", "payment_intent.succeeded", intent)) == "ignored"
    assert _count(Payment) == 1


def test_a_late_failure_never_undoes_a_success(client, localstripe):
    # given a payment recorded on success
    checkout = _awaiting_bank(localstripe)
    intent = _intent(localstripe, checkout)
    _deliver(client, event_body("evt_s", "payment_intent.succeeded", intent))
    # when an older failure arrives late (out of order)
    failed = intent | {
        "status": "requires_payment_method",
        "last_payment_error": {"code": "card_declined", "message": "Your card was declined."},
    }
    outcome = _deliver(
        client,
        event_body("evt_f", "payment_intent.payment_failed", failed, created=int(time.time()) - 60),
    )
    # then it is stored and ignored
    assert outcome == "ignored"
    assert checkout.state == CheckoutStatus.SUCCEEDED
    assert _count(Payment) == 1


def test_a_failure_while_waiting_for_the_bank_reopens_the_checkout(client, localstripe):
    customer = make_customer()
    make_invoice(customer, number="INV-WH-FAIL")
    with client_context():
        checkout = pay(localstripe, customer, ["INV-WH-FAIL"], card=CARD_3DS)
    localstripe.authenticate(checkout.payment_intent_id, success=False)
    body = event_body("evt_fail", "payment_intent.payment_failed", _intent(localstripe, checkout))
    assert _deliver(client, body) == "applied"
    assert checkout.state == CheckoutStatus.OPEN
    assert checkout.last_error_code == "payment_intent_authentication_failure"
    assert _count(Payment) == 0


def test_a_failed_payment_intent_is_cancelled_so_the_browser_can_try_no_other_card(
    client, localstripe
):
    # given a customer who failed the bank's check and never came back to the portal
    customer = make_customer()
    make_invoice(customer, number="INV-WH-CANCEL")
    with client_context():
        checkout = pay(localstripe, customer, ["INV-WH-CANCEL"], card=CARD_3DS)
    localstripe.authenticate(checkout.payment_intent_id, success=False)
    failed = _intent(localstripe, checkout)
    assert failed["status"] == "requires_payment_method"  # its secret could try a new card
    # when Stripe's event arrives and the worker applies it
    _post(client, event_body("evt_fail_cancel", "payment_intent.payment_failed", failed))
    apply_all_pending(now=utcnow())
    # then the failure is counted once and the PaymentIntent is cancelled at Stripe
    assert outcome_of("evt_fail_cancel") == "applied"
    assert checkout.state == CheckoutStatus.OPEN
    assert _intent(localstripe, checkout)["status"] == "canceled"
    assert _count(CardFailure) == 1
    # and a further failure event on that PaymentIntent (a card tried from the browser
    # before the cancel took) changes nothing more
    _post(client, event_body("evt_fail_again", "payment_intent.payment_failed", failed))
    apply_all_pending(now=utcnow())
    assert outcome_of("evt_fail_again") == "ignored"
    assert _count(CardFailure) == 1


def test_the_webhook_may_arrive_before_stripes_answer(db_session, localstripe, monkeypatch):
    # given Stripe delivers the webhook while our create call is still waiting for its answer
    customer = make_customer()
    make_invoice(customer, number="INV-EARLY", lines=[("A", "1", "15.00")])
    original = StripeGateway.create_payment

    def create_then_deliver(self, **kwargs):
        intent = original(self, **kwargs)
        raw = localstripe.get(f"/v1/payment_intents/{intent.id}")
        event = GatewayEvent("evt_early", "payment_intent.succeeded", int(time.time()), raw)
        assert deliver(event) == "applied"
        return intent

    monkeypatch.setattr(StripeGateway, "create_payment", create_then_deliver)
    # when the answer comes back
    with client_context():
        checkout = pay(localstripe, customer, ["INV-EARLY"])
    # then the payment exists once
    assert checkout.state == CheckoutStatus.SUCCEEDED
    assert _count(Payment) == 1


# --- refused: nothing written ---------------------------------------------------------------
@pytest.mark.parametrize("problem", ["tampered", "stale", "wrong_secret", "missing", "garbage"])
def test_a_bad_signature_is_a_400_and_writes_nothing(client, localstripe, problem):
    checkout = _awaiting_bank(localstripe)
    body = event_body("evt_bad", "payment_intent.succeeded", _intent(localstripe, checkout))
    header = signature(body)
    match problem:
        case "tampered":
            body = body.replace('"amount": 4200', '"amount": 1')
        case "stale":  # signed ten minutes ago: past the five-minute tolerance
            header = signature(body, timestamp=int(time.time()) - 600)
        case "wrong_secret":
            header = signature(body, secret="whsec_someone_else")
        case "missing":
            header = False
        case "garbage":
            header = "t=notanumber,v1=deadbeef"
    response = _post(client, body, header)
    assert response.status_code == 400
    assert _count(WebhookEvent) == 0
    assert _count(Payment) == 0
    assert checkout.state == CheckoutStatus.REQUIRES_ACTION


def test_an_event_that_is_not_ours_is_stored_and_ignored(client):
    body = event_body("evt_customer", "customer.created", {"object": "customer", "id": "cus_x"})
    assert _post(client, body).json["status"] == "ignored"
    other = {"object": "payment_intent", "id": "pi_other", "amount": 500, "currency": "usd",
             "status": "succeeded", "metadata": {}}  # fmt: skip
    assert _deliver(client, event_body("evt_other", "payment_intent.succeeded", other)) == "ignored"
    assert _count(WebhookEvent) == 2
    assert _count(Payment) == 0


def test_an_amount_that_disagrees_with_our_record_is_never_credited(client, localstripe):
    checkout = _awaiting_bank(localstripe)
    forged = _intent(localstripe, checkout) | {"amount": 1}
    assert _deliver(client, event_body("evt_forged", "payment_intent.succeeded", forged)) == (
        "rejected"
    )
    assert _count(Payment) == 0
    assert checkout.state == CheckoutStatus.REQUIRES_ACTION
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "payment.mismatch"))
    assert audit.customer_id == checkout.customer_id


def test_metadata_naming_another_customer_is_rejected(client, localstripe):
    checkout = _awaiting_bank(localstripe)
    intent = _intent(localstripe, checkout)
    intent["metadata"] = dict(intent["metadata"], portal_customer="999999")
    outcome = _deliver(client, event_body("evt_meta", "payment_intent.succeeded", intent))
    assert outcome == "rejected"
    assert _count(Payment) == 0


def test_the_endpoint_needs_no_csrf_token_but_is_off_without_stripe(app, client, monkeypatch):
    body = event_body("evt_off", "customer.created", {"object": "customer"})
    assert _post(client, body).status_code == 200  # no CSRF token needed
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", None)
    assert _post(client, json.dumps({"id": "evt_x"})).status_code == 404


def test_a_signature_made_by_hand_as_stripe_documents_it_is_accepted(client):
    """HMAC-SHA256 of `timestamp.body` (what Stripe and localstripe send), not only our fixtures."""
    body = event_body("evt_hmac", "customer.created", {"object": "customer"})
    stamp = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.{body}".encode(), hashlib.sha256)
    assert _post(client, body, f"t={stamp},v1={mac.hexdigest()}").status_code == 200


def test_the_endpoint_takes_only_a_post_of_reasonable_size(client):
    assert client.get(URL).status_code == 405
    assert client.get(URL).headers["Allow"] == "POST"
    huge = event_body("evt_huge", "customer.created", {"object": "customer", "x": "a" * 2**20})
    response = _post(client, huge)
    assert response.status_code == 413
    assert _count(WebhookEvent) == 0


def test_a_failure_while_storing_is_a_500_that_stripe_retries(client, monkeypatch, caplog):
    from portal.payments import webhooks

    def broken(event, *, now):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(webhooks, "receive_event", broken)
    body = event_body("evt_500", "customer.created", {"object": "customer"})
    response = _post(client, body)
    assert response.status_code == 500
    assert response.json == {"error": "internal"}  # no stack trace, no detail
    assert "webhook delivery failed" in caplog.text
    assert _count(WebhookEvent) == 0


def test_the_answer_is_json_that_no_cache_keeps(client):
    response = _post(client, event_body("evt_hdr", "customer.created", {"object": "customer"}))
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in response.headers  # Stripe gets no session


# --- the card, when the webhook settles the payment ----------------------------------------
def test_a_card_not_saved_is_detached_when_the_webhook_settles_the_payment(client, localstripe):
    # given a customer who approved 3-D Secure and closed the window: only the webhook tells
    checkout = _awaiting_bank(localstripe)
    card = checkout.payment_method_id
    assert localstripe.get(f"/v1/payment_methods/{card}")["customer"] is not None
    _post(
        client, event_body("evt_leave", "payment_intent.succeeded", _intent(localstripe, checkout))
    )
    # when the worker applies it
    assert apply_all_pending(now=utcnow()) == 1
    # then the payment is recorded and the card, which was not to be kept, is detached
    assert db.session.get(Checkout, checkout.id).state == CheckoutStatus.SUCCEEDED
    assert localstripe.get(f"/v1/payment_methods/{card}")["customer"] is None


def test_a_card_the_customer_saved_stays_when_the_webhook_settles_the_payment(client, localstripe):
    customer = make_customer()
    make_invoice(customer, number=f"INV-KEEP-{customer.id}", lines=[("A", "1", "42.00")])
    with client_context():
        checkout = pay(
            localstripe, customer, [f"INV-KEEP-{customer.id}"], card=CARD_3DS, save_card=True
        )
    localstripe.authenticate(checkout.payment_intent_id, success=True)
    _post(
        client, event_body("evt_keep", "payment_intent.succeeded", _intent(localstripe, checkout))
    )
    assert apply_all_pending(now=utcnow()) == 1
    card = checkout.payment_method_id
    assert localstripe.get(f"/v1/payment_methods/{card}")["customer"] is not None
    saved = db.session.scalar(select(SavedCard).where(SavedCard.customer_id == customer.id))
    assert saved.payment_method_id == card
