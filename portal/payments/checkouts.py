"""A checkout's states, moved on Stripe's word, and the cards of a settled charge.

`move_checkout` is the only code that changes a checkout's status (CHECKOUT_TRANSITIONS,
audited); `apply_intent` brings a locked checkout up to what Stripe says of one of its
PaymentIntents, for the customer's pages and the webhook inbox alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flask import current_app

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.extensions import db
from portal.payments.card_testing import record_card_failure
from portal.payments.errors import CheckoutTransitionRefused, PaymentsUnavailable
from portal.payments.gateway import (
    AttemptInDoubt,
    GatewayError,
    GatewayUnavailable,
    IntentResult,
    StripeGateway,
    gateway_from_config,
    is_enabled,
)
from portal.payments.models import CHECKOUT_TRANSITIONS, Checkout, CheckoutStatus
from portal.payments.queries import saved_card_for_id

if TYPE_CHECKING:
    from portal.payments.ledger import Ledger

log = logging.getLogger(__name__)

# A checkout left in flight this long (a closed 3-D Secure window, a crashed worker) no
# longer blocks the customer: the next payment asks Stripe how it ended first.
STALE_AFTER = timedelta(minutes=10)
METADATA_CHECKOUT = "portal_checkout"
METADATA_CUSTOMER = "portal_customer"
METADATA_ATTEMPT = "portal_attempt"
# A charge whose outcome we do not know: its attempt key is kept for the next charge.
UNSETTLED_ATTEMPT = frozenset({GatewayUnavailable.code, AttemptInDoubt.code})


def current_gateway() -> StripeGateway:
    """The configured Stripe gateway; PaymentsUnavailable when card payments are off."""
    config = current_app.config
    if not is_enabled(config):
        raise PaymentsUnavailable()
    return gateway_from_config(config)


def customer_actor(customer_id: int) -> Actor:
    return Actor.customer(customer_id)


# --- the state machine ------------------------------------------------------------------
def move_checkout(
    checkout: Checkout,
    to: CheckoutStatus,
    *,
    actor: Actor,
    now: datetime,
    reason: str | None = None,
) -> None:
    """Move a checkout to `to` if CHECKOUT_TRANSITIONS allows it, and audit the move."""
    current = checkout.state
    if to not in CHECKOUT_TRANSITIONS[current]:
        raise CheckoutTransitionRefused(current, to)
    checkout.status = to
    checkout.in_flight_customer_id = checkout.customer_id if to.is_in_flight else None
    checkout.updated_at = now
    record_event(
        f"checkout.{to.value}",
        actor=actor,
        now=now,
        customer_id=checkout.customer_id,
        subject=checkout,
        data={
            "from": current.value,
            "amount_minor": checkout.amount_minor,
            "currency": checkout.currency,
            "attempt": checkout.attempt,
            **({"reason": reason} if reason else {}),
        },
    )


def apply_intent(checkout: Checkout, intent: IntentResult, *, actor: Actor, ledger: Ledger) -> bool:
    """Bring a locked checkout up to what Stripe says of one of its PaymentIntents.

    True if anything changed. Never moves backwards: a failure or a pending state
    matters only for the PaymentIntent of the attempt in flight. A payment is left in
    `ledger`, for the caller to `write`.
    """
    now = ledger.now
    if intent.is_succeeded:
        return ledger.record(checkout, intent, actor=actor)
    is_current = checkout.payment_intent_id in (None, intent.id) and _of_attempt(checkout, intent)
    if _ends_doubtful_attempt(checkout, intent):
        # The attempt whose answer we never got failed: the next charge is a new attempt.
        checkout.attempt_key = None
        checkout.last_error_code = intent.error_code or "card_declined"
        record_card_failure(
            checkout.customer_id, checkout.last_error_code, now=now, checkout_id=checkout.id
        )
        return True
    if not checkout.state.is_in_flight or not is_current:
        return False
    if intent.needs_action or intent.status == "processing":
        changed = checkout.payment_intent_id != intent.id
        checkout.payment_intent_id = intent.id
        if intent.needs_action and checkout.state == CheckoutStatus.PROCESSING:
            move_checkout(checkout, CheckoutStatus.REQUIRES_ACTION, actor=actor, now=now)
            return True
        return changed
    if intent.is_failed:
        checkout.payment_intent_id = intent.id
        checkout.last_error_code = intent.error_code or "card_declined"
        checkout.attempt_key = None
        record_card_failure(
            checkout.customer_id, checkout.last_error_code, now=now, checkout_id=checkout.id
        )
        move_checkout(
            checkout, CheckoutStatus.OPEN, actor=actor, now=now, reason=checkout.last_error_code
        )
        return True
    return False


def _of_attempt(checkout: Checkout, intent: IntentResult) -> bool:
    """Whether a PaymentIntent is the one of the checkout's attempt in flight, by the
    attempt our metadata names (an event about an earlier attempt's PaymentIntent can
    arrive late, while the next attempt is in flight)."""
    return intent.metadata.get(METADATA_ATTEMPT) in (None, str(checkout.attempt))


def _ends_doubtful_attempt(checkout: Checkout, intent: IntentResult) -> bool:
    return (
        intent.is_failed
        and checkout.state == CheckoutStatus.OPEN
        and checkout.last_error_code in UNSETTLED_ATTEMPT
        and checkout.attempt_key is not None
        and intent.metadata.get(METADATA_ATTEMPT) == str(checkout.attempt)
    )


def release_cards(checkout_id: int, gateway: StripeGateway, *, succeeded: bool) -> None:
    """After a charge settled: detach the cards `cards_to_detach` names. Best effort: a
    card left attached is never charged without a checkout."""
    checkout = db.session.get(Checkout, checkout_id)
    if checkout is None:
        return
    saved = saved_card_for_id(checkout.customer_id)
    detach_cards(
        gateway,
        cards_to_detach(checkout, saved.payment_method_id if saved else None, succeeded=succeeded),
    )


def cards_to_detach(checkout: Checkout, saved: str | None, *, succeeded: bool) -> list[str]:
    """The card of a settled charge goes unless the customer asked us to keep it and it
    worked; a newly kept card replaces the one saved before (`saved`), which goes."""
    used = checkout.payment_method_id
    if not used:
        return []
    if succeeded and checkout.save_card:
        return [saved] if saved and saved != used else []
    if saved == used:
        return []  # the saved card was used: it stays saved
    return [used]


def is_open_to_another_card(intent: IntentResult) -> bool:
    """A PaymentIntent back in `requires_payment_method` after a failure (a decline, a
    failed bank check). Stripe lets its client secret confirm it again with another card
    (https://docs.stripe.com/payments/paymentintents/lifecycle), and the 3-D Secure step
    gave the browser that secret: card after card could be tried from there, unseen by
    our server and uncounted (card testing, `payments.card_testing`). The portal never
    reuses one (a checkout's next attempt is a new PaymentIntent), so it is cancelled
    (`cancel_payments`)."""
    return intent.status == "requires_payment_method"


def cancel_payments(gateway: StripeGateway, payment_intent_ids: Sequence[str]) -> None:
    """Cancel failed PaymentIntents (`is_open_to_another_card`), with no lock held. Best
    effort: Stripe refuses to cancel one that succeeded or was cancelled meanwhile
    (https://docs.stripe.com/api/payment_intents/cancel), and a failure on one that
    could not be cancelled comes back as another event, which tries again."""
    for payment_intent_id in payment_intent_ids:
        try:
            gateway.cancel_payment(payment_intent_id)
        except GatewayError:
            log.warning("could not cancel PaymentIntent %s", payment_intent_id)


def detach_cards(gateway: StripeGateway, payment_method_ids: Sequence[str]) -> None:
    for payment_method_id in payment_method_ids:
        try:
            gateway.detach_card(payment_method_id)
        except GatewayError:
            log.warning("could not detach card %s", payment_method_id)
