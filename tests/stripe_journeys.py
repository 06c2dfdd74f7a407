"""The customer's and Stripe's parts in payment tests: cards, journeys, signed events.

Plain helpers (no fixtures); the localstripe fixtures are in `tests.stripe_server`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import stripe
from sqlalchemy import select

from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.payments.gateway import GatewayEvent
from portal.payments.inbox import apply_pending_events, receive_event
from portal.payments.models import Checkout, WebhookEvent
from portal.payments.services import (
    ChargeClaim,
    begin_charge,
    finish_charge,
    prepare_card_form,
    start_checkout,
)

SECRET_KEY = "sk_test_portal_localstripe"
PUBLISHABLE_KEY = "pk_test_portal_localstripe"
WEBHOOK_SECRET = "whsec_portal_localstripe"

CARD_OK = "4242424242424242"
CARD_3DS = "4000002500003155"  # asks for 3-D Secure
CARD_DECLINED_AT_PAYMENT = "4000000000000341"  # sets up fine, then the charge is declined
CARD_DECLINED_AT_SETUP = "4000000000000002"


class StripeServer(Protocol):
    def set_up_card(self, client_secret: str, number: str = ...) -> str: ...


# --- the customer's part, driven through the services ---------------------------------------
def set_up_card(
    server: StripeServer, customer: Customer, checkout: Checkout, number: str = CARD_OK
) -> str:
    """Open the card form and confirm a card in it, as the browser would."""
    form = prepare_card_form(customer, checkout, now=utcnow())
    return server.set_up_card(form.setup_client_secret, number)


def claim(
    customer: Customer,
    checkout: Checkout,
    setup_intent_id: str | None = None,
    *,
    use_saved_card: bool = False,
    save_card: bool = False,
) -> ChargeClaim:
    """Press Pay: the checkout is claimed for one charge (`begin_charge`)."""
    return begin_charge(
        customer,
        checkout,
        setup_intent_id=setup_intent_id,
        use_saved_card=use_saved_card,
        save_card=save_card,
        now=utcnow(),
    )


def charge(
    customer: Customer,
    checkout: Checkout,
    *,
    setup_intent_id: str | None = None,
    use_saved_card: bool = False,
    save_card: bool = False,
) -> Checkout:
    claimed = claim(
        customer,
        checkout,
        setup_intent_id,
        use_saved_card=use_saved_card,
        save_card=save_card,
    )
    return finish_charge(claimed, now=utcnow())


def pay(
    server: StripeServer,
    customer: Customer,
    numbers: list[str],
    *,
    amount: str | None = None,
    card: str = CARD_OK,
    save_card: bool = False,
) -> Checkout:
    """Choose invoices, enter a card, press Pay: the whole journey through the services."""
    checkout = start_checkout(customer, numbers, amount, now=utcnow())
    setup_intent_id = set_up_card(server, customer, checkout, card)
    return charge(customer, checkout, setup_intent_id=setup_intent_id, save_card=save_card)


# --- signed webhook events -------------------------------------------------------------
def event_body(
    event_id: str, event_type: str, obj: dict[str, Any], created: int | None = None
) -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": created or int(time.time()),
            "api_version": "2017-08-15",
            "data": {"object": obj},
        }
    )


def succeeded_event(
    checkout: Checkout, event_id: str, intent_id: str, **extra: Any
) -> GatewayEvent:
    """Stripe's `payment_intent.succeeded` about a charge of `checkout` (already verified)."""
    intent = {
        "object": "payment_intent",
        "id": intent_id,
        "amount": checkout.amount_minor,
        "currency": checkout.currency.lower(),
        "status": "succeeded",
        "customer": f"cus_{checkout.customer_id}",
        "payment_method": checkout.payment_method_id,
        "metadata": {
            "portal_checkout": str(checkout.id),
            "portal_customer": str(checkout.customer_id),
        },
        **extra,
    }
    return GatewayEvent(event_id, "payment_intent.succeeded", int(time.time()), intent)


def deliver(event: GatewayEvent) -> str:
    """Receive a verified event as the webhook does, then apply what is pending as the
    worker does; the event's outcome as stored."""
    now = utcnow()
    receive_event(event, now=now)
    apply_pending_events(now=now)
    return str(outcome_of(event.id))


def outcome_of(event_id: str) -> str | None:
    """The stored outcome of a Stripe event (None if it was never stored)."""
    return db.session.scalar(select(WebhookEvent.outcome).where(WebhookEvent.event_id == event_id))


def signature(body: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send with `body`."""
    return str(stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp))
