"""Card testing: someone with a list of stolen card numbers uses our card page to find the
ones that work. Stripe's advice (https://docs.stripe.com/disputes/prevention/card-testing,
https://support.stripe.com/questions/how-do-i-prevent-card-testing-attacks) is to layer
mitigations; the ones that belong in the portal are here:

- the pages that reach Stripe (opening a checkout, the card page, the charge) share a rate
  limit per session, per account and per IP (`limit_card_actions`; Flask-Limiter, with
  the app's RATELIMIT_STORAGE_URI); only requests that reach Stripe count
  (`reached_stripe`), not forms refused before anything is opened;
- the card page reuses the customer's open SetupIntent instead of creating one per page
  load (`services`/`prepare_card_form`), so reloading is not a way to mint Stripe objects;
- failed card attempts per customer are capped over 24 hours (CARD_FAILURES_PER_DAY):
  after that, the customer is told so, in their language, and no card is tried;
- a card declined while Stripe.js sets it up counts too. That confirmation is made
  between the browser and Stripe, and on a decline Stripe puts the SetupIntent back to
  `requires_payment_method`, so the same client secret can try card after card without
  our server seeing any: each failure reaches us only as a `setup_intent.setup_failed`
  event (https://docs.stripe.com/api/events/types#event_types-setup_intent.setup_failed,
  applied by `payments.inbox`). The failure that reaches the cap also cancels the
  customer's SetupIntents at Stripe (`cancel_setup_intents`), so the secret the browser
  holds stops working, and no new one is handed out while the cap holds;
- for the same reason a failed PaymentIntent, whose client secret the 3-D Secure step
  gave the browser, is cancelled once its failure is known (`checkouts.
  is_open_to_another_card`): the next attempt is a new PaymentIntent anyway.

Only accounts opened from an emailed link reach these pages at all (Stripe's "require
authentication"); Radar's rules, CAPTCHA and Stripe's own velocity limits are Stripe's side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from flask import Response, current_app, request
from flask_limiter.util import get_remote_address
from sqlalchemy import func, select

from portal.access.sessions import customer_session, signed_in_customer
from portal.extensions import db, limiter
from portal.payments.errors import CardAttemptsExhausted
from portal.payments.gateway import GatewayError, StripeGateway
from portal.payments.models import CardFailure

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
# An outage or a charge whose answer was lost is not the customer's failure.
NOT_A_CARD_FAILURE = frozenset({"gateway_unavailable", "attempt_in_doubt"})

F = TypeVar("F", bound=Callable[..., Any])


# --- rate limits --------------------------------------------------------------------------
def _per_session() -> str:
    # The server-side session (`access.sessions`): a new one each time a link is opened.
    loaded = customer_session()
    if loaded.row is None:
        return f"ip:{get_remote_address()}"
    return f"session:{loaded.row.id}"


def _per_account() -> str:
    customer = signed_in_customer()
    if customer is not None:
        return f"customer:{customer.id}"
    return f"ip:{get_remote_address()}"


def _account_limit() -> str:
    return str(current_app.config["CARD_RATE_LIMIT"])


def _ip_limit() -> str:
    return str(current_app.config["CARD_RATE_LIMIT_PER_IP"])


def reached_stripe(response: Response) -> bool:
    """Whether a request spends the budget: a checkout opened, a card page shown, a charge
    tried. A form refused before anything is opened (400: an amount mistyped, no invoice
    ticked), "Update total" (which only recomputes the page) and our own refusals
    (429 attempts exhausted, 503 Stripe down) reach no card and cost nothing: a customer
    who mistypes an amount ten times is not a card tester."""
    if response.status_code >= 400:
        return False
    return not (request.method == "POST" and request.form.get("update"))


_LIMITS = (
    limiter.shared_limit(
        _account_limit, scope="card-session", key_func=_per_session, deduct_when=reached_stripe
    ),
    limiter.shared_limit(
        _account_limit, scope="card-account", key_func=_per_account, deduct_when=reached_stripe
    ),
    limiter.shared_limit(
        _ip_limit, scope="card-ip", key_func=get_remote_address, deduct_when=reached_stripe
    ),
)


def limit_card_actions(view: F) -> F:
    """One shared budget, per session, account and IP, for every page that reaches Stripe."""
    limited: Callable[..., Any] = view
    for limit in _LIMITS:
        limited = limit(limited)
    return cast(F, limited)


# --- failed attempts ----------------------------------------------------------------------
def counts_as_failure(code: str | None) -> bool:
    return bool(code) and code not in NOT_A_CARD_FAILURE


def record_card_failure(
    customer_id: int, code: str | None, *, now: datetime, checkout_id: int | None = None
) -> None:
    """Count a failed card attempt (a decline, or a card not usable for this customer)."""
    if counts_as_failure(code):
        db.session.add(
            CardFailure(
                customer_id=customer_id, checkout_id=checkout_id, code=str(code)[:64], failed_at=now
            )
        )


def failures_in_window(customer_id: int, now: datetime) -> int:
    return (
        db.session.scalar(
            select(func.count(CardFailure.id)).where(
                CardFailure.customer_id == customer_id, CardFailure.failed_at > now - WINDOW
            )
        )
        or 0
    )


def attempts_exhausted(customer_id: int, *, now: datetime) -> bool:
    """Whether CARD_FAILURES_PER_DAY card attempts of the customer failed in 24 hours."""
    cap = int(current_app.config["CARD_FAILURES_PER_DAY"])
    return failures_in_window(customer_id, now) >= cap


def check_card_attempts_left(customer_id: int, *, now: datetime) -> None:
    """Raise CardAttemptsExhausted once CARD_FAILURES_PER_DAY attempts failed in 24 hours."""
    if attempts_exhausted(customer_id, now=now):
        raise CardAttemptsExhausted()


def cancel_setup_intents(gateway: StripeGateway, setup_intent_ids: Iterable[str]) -> None:
    """Cancel SetupIntents at Stripe once their customer reached the cap, so that Stripe.js
    can confirm no more cards with their client secrets. Called with no lock held, after
    the commit that recorded the failure. Best effort: one Stripe refuses (succeeded or
    canceled meanwhile: https://docs.stripe.com/api/setup_intents/cancel) takes no card
    anyway, and a failure on one that could not be cancelled (Stripe unreachable) is
    counted over the cap and tries again."""
    for setup_intent_id in setup_intent_ids:
        try:
            gateway.cancel_setup_intent(setup_intent_id)
        except GatewayError:
            log.warning("could not cancel SetupIntent %s", setup_intent_id)
