"""Card payments: checkouts, charges, the ledger, webhooks and refunds.

Exactly once — read this before changing anything here.

* The amount is fixed on the server when the checkout opens (`start_checkout`) and
  checked again against what is payable when the card is charged; the browser sends
  invoice numbers and, for a partial payment, an amount that is validated like any input.
* A charge is made only by a checkout that moved OPEN -> PROCESSING under the
  customer's lock; while one checkout of a customer is PROCESSING or REQUIRES_ACTION it
  holds the customer's single in-flight slot (`checkouts.in_flight_customer_id`,
  unique), so a double click, a second tab or a second device cannot start another
  charge before the first one is settled.
* Money is recorded in one place, `Ledger`, only on Stripe's word (the synchronous
  answer, a webhook event, or a retrieve), once per PaymentIntent: the
  `payments.reference` column is unique and `Ledger.record` first looks for the row.
  A failure never undoes a success (CHECKOUT_TRANSITIONS has no way out of SUCCEEDED).
* Webhook events are stored once by id on receipt and applied by the worker in a
  transaction that records their outcome (`portal.payments.inbox`).

Lock order (PostgreSQL row locks; on SQLite a write takes the single writer lock):
  0. the inbox's claimed `webhook_events` rows (SKIP LOCKED: nobody waits for them)
  1. the customer's `payment_accounts` row  (`lock_account`; the inbox locks a batch's
     accounts in ascending customer order)
  2. the `checkouts` row(s)                  (`_lock_checkout`; the inbox: ascending ids)
  3. inserts: payments, payment_allocations, refunds, links, audit, outbox; the event's
     outcome.
Foreign keys lock too: writing a row that references a checkout takes a KEY SHARE lock
on it, which waits for a FOR UPDATE, so no such write may come before step 2 (the
webhook event's checkout id is written only with its outcome; tests/integration/
test_payment_races.py found the deadlock this prevents).

Calls to Stripe are made with no lock held, except when settling a checkout that was
abandoned in flight (`_settle_stale`, rare) and for refunds, which keep the customer's
lock across the call so that two refunds cannot both spend what is left to refund; both
are bounded by STRIPE_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_request_context
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from portal.access.models import AccessLink
from portal.access.services import build_link_url, link_issued_row, new_link_row
from portal.audit.models import AuditEvent
from portal.audit.services import audit_row, record_event
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.errors import DomainError
from portal.extensions import db
from portal.i18n import current_locale
from portal.money import InvalidAmount, Money
from portal.notifications.models import OutboxMessage
from portal.notifications.services import deferred_email_row, renders_later
from portal.payments.gateway import (
    AmountNotRepresentable,
    AttemptInDoubt,
    CardDeclined,
    ChargeRefunds,
    GatewayError,
    GatewayRejected,
    GatewayUnavailable,
    IntentResult,
    RefundResult,
    StripeGateway,
    gateway_from_config,
    is_enabled,
    to_stripe_amount,
)
from portal.payments.models import (
    CHECKOUT_TRANSITIONS,
    Checkout,
    CheckoutInvoice,
    CheckoutStatus,
    Payment,
    PaymentAccount,
    PaymentAllocation,
    PaymentSource,
    Refund,
    RefundAllocation,
    SavedCard,
)
from portal.payments.policy import (
    AmountProblem,
    Applied,
    Overpayment,
    allocate_received,
    check_amount,
    minimum_payment,
    take_back,
)
from portal.payments.queries import (
    PayableItem,
    account_for,
    get_payment_for,
    in_flight_checkout,
    payable_items,
    payable_items_by_customer,
    payment_by_reference,
    payment_references_of,
    saved_card_for,
    saved_card_for_id,
    saved_cards_by_customer,
)

log = logging.getLogger(__name__)

# A checkout left in flight this long (a closed 3-D Secure window, a crashed worker) no
# longer blocks the customer: the next payment asks Stripe how it ended first.
STALE_AFTER = timedelta(minutes=10)
METADATA_CHECKOUT = "portal_checkout"
METADATA_CUSTOMER = "portal_customer"
METADATA_ATTEMPT = "portal_attempt"
# A charge whose outcome we do not know: its attempt key is kept for the next charge.
UNSETTLED_ATTEMPT = frozenset({GatewayUnavailable.code, AttemptInDoubt.code})


# --- refusals ---------------------------------------------------------------------------
class PaymentsUnavailable(DomainError):
    message = _l("Card payments are not available right now. Please try again later.")


class NothingToPay(DomainError):
    message = _l("Choose at least one invoice with an amount to pay.")


class MixedCurrencies(DomainError):
    message = _l("Please pay invoices in one currency at a time.")


class InvalidPaymentAmount(DomainError):
    message = _l("Please enter a valid amount.")


class CheckoutNotOpen(DomainError):
    message = _l("This payment is already under way or finished.")


class PaymentInProgress(DomainError):
    message = _l(
        "Another payment of yours is being processed. Please wait a moment, then try again."
    )


class AmountNoLongerPayable(DomainError):
    message = _l("What you owe has changed since you started. Please review your payment again.")


class CardNotUsable(DomainError):
    """The card could not be used; `code` says why (Stripe's decline code or ours)."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(decline_message(code))


class CheckoutTransitionRefused(DomainError):
    def __init__(self, current: CheckoutStatus, target: CheckoutStatus) -> None:
        super().__init__(f"a checkout cannot go from {current.value} to {target.value}")
        self.current, self.target = current, target


class RefundRefused(DomainError):
    message = _l("This refund is not possible.")


DECLINE_MESSAGES = {
    "card_declined": _l("Your card was declined. Please use another card, or call your bank."),
    "generic_decline": _l("Your card was declined. Please use another card, or call your bank."),
    "insufficient_funds": _l("Your card has insufficient funds. Please use another card."),
    "lost_card": _l("Your card was declined. Please use another card, or call your bank."),
    "stolen_card": _l("Your card was declined. Please use another card, or call your bank."),
    "expired_card": _l("Your card has expired. Please use another card."),
    "incorrect_cvc": _l("The security code (CVC) is not correct. Please check it and try again."),
    "incorrect_number": _l("The card number is not correct. Please check it and try again."),
    "invalid_expiry": _l("The expiry date is not correct. Please check it and try again."),
    "processing_error": _l("Your bank could not process the card. Please try again."),
    "payment_intent_authentication_failure": _l(
        "Your bank could not confirm it is you, so nothing was charged. "
        "Please try again or use another card."
    ),
    "authentication_required": _l("Your bank asks you to confirm this payment. Please try again."),
    "gateway_unavailable": _l(
        "We could not reach our card processor. Please try again in a minute."
    ),
    "gateway_rejected": _l("Your card could not be charged. Please try again or contact us."),
    "card_not_usable": _l("This card cannot be used. Please enter your card again."),
    "setup_failed": _l(
        "We could not check your card. Please check its details, or use another card."
    ),
    "amount_not_representable": _l(
        "This amount cannot be charged by card. Please choose another amount."
    ),
    "attempt_in_doubt": _l(
        "Your previous attempt may still go through, so to avoid charging you twice we "
        "did not charge this card. Please check your account again in a few minutes "
        "before you try again."
    ),
}


def card_form_messages() -> dict[str, str]:
    """The reasons the card form shows in the browser, by Stripe.js error code."""
    codes = ("card_declined", "insufficient_funds", "expired_card", "incorrect_cvc")
    messages = {code: decline_message(code) for code in (*codes, "incorrect_number")}
    # A mistyped month or year is a typo to correct, not an expired card.
    messages["invalid_expiry_year"] = decline_message("invalid_expiry")
    messages["invalid_expiry_month"] = decline_message("invalid_expiry")
    messages["processing_error"] = decline_message("processing_error")
    messages["default"] = decline_message("setup_failed")
    return messages


def decline_message(code: str | None) -> str:
    """A plain-language reason for a card problem, in the customer's language."""
    return str(DECLINE_MESSAGES.get(code or "", DECLINE_MESSAGES["card_declined"]))


# --- seams ------------------------------------------------------------------------------
def current_gateway() -> StripeGateway:
    config = current_app.config
    if not is_enabled(config):
        raise PaymentsUnavailable()
    return gateway_from_config(config)


def lock_account(customer_id: int) -> PaymentAccount | None:
    """Lock 1: the customer's payment account row, held to the end of the transaction.

    PostgreSQL: SELECT … FOR UPDATE. SQLite has no row locks: a write takes the
    database's one writer lock, so a no-op UPDATE gives the same serialization.
    """
    query = (
        select(PaymentAccount)
        .where(PaymentAccount.customer_id == customer_id)
        .execution_options(populate_existing=True)
    )
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(
            update(PaymentAccount)
            .where(PaymentAccount.customer_id == customer_id)
            .values(customer_id=PaymentAccount.customer_id)
        )
        return db.session.scalar(query)
    return db.session.scalar(query.with_for_update())


def _lock_checkout(checkout_id: int) -> Checkout:
    """Lock 2: a checkout row (and only it), re-read with its customer, never from the
    identity map's copy."""
    checkout = _lock_checkout_if_any(checkout_id)
    if checkout is None:
        raise CheckoutNotOpen()
    return checkout


def _lock_checkout_if_any(checkout_id: int) -> Checkout | None:
    return db.session.scalar(
        select(Checkout)
        .where(Checkout.id == checkout_id)
        .options(joinedload(Checkout.customer, innerjoin=True))
        .with_for_update(of=Checkout)
        .execution_options(populate_existing=True)
    )


def _customer_actor(customer_id: int) -> str:
    return f"customer:{customer_id}"


# --- the state machine ------------------------------------------------------------------
def move_checkout(
    checkout: Checkout,
    to: CheckoutStatus,
    *,
    actor: str,
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


# --- opening a checkout -----------------------------------------------------------------
def payment_minimum(currency: str) -> Money:
    config = current_app.config
    return minimum_payment(
        currency, config["PAYMENT_MINIMUM"], config.get("PAYMENT_MINIMUMS", "") or ""
    )


@dataclass(frozen=True)
class Selection:
    items: list[PayableItem]
    total: Money
    minimum: Money


def select_invoices(customer: Customer, numbers: Sequence[str], *, now: datetime) -> Selection:
    """The payable invoices among `numbers`, their total and the minimum partial payment."""
    wanted = set(numbers)
    items = [
        i
        for i in payable_items(customer, customer_today(customer, now))
        if i.invoice.number in wanted
    ]
    if not items:
        raise NothingToPay()
    currencies = {item.invoice.currency for item in items}
    if len(currencies) > 1:
        raise MixedCurrencies()
    currency = currencies.pop()
    total = Money.sum((item.payable for item in items), currency)
    return Selection(items, total, payment_minimum(currency))


def _amount_error(problem: AmountProblem, selection: Selection) -> InvalidPaymentAmount:
    locale = current_locale() if has_request_context() else "en"
    match problem:
        case AmountProblem.ABOVE_PAYABLE:
            return InvalidPaymentAmount(
                _("You can pay at most %(amount)s.", amount=selection.total.format(locale))
            )
        case AmountProblem.BELOW_MINIMUM:
            return InvalidPaymentAmount(
                _(
                    "The smallest amount you can pay is %(amount)s.",
                    amount=selection.minimum.format(locale),
                )
            )
        case _:
            return InvalidPaymentAmount(_("Please enter an amount greater than zero."))


def start_checkout(
    customer: Customer, numbers: Sequence[str], amount_text: str | None, *, now: datetime
) -> Checkout:
    """Open a checkout for the chosen invoices: in full, or `amount_text` (major units)."""
    gateway = current_gateway()
    selection = select_invoices(customer, numbers, now=now)
    amount = selection.total
    if amount_text and amount_text.strip():
        try:
            amount = Money.from_decimal(amount_text.strip(), selection.total.currency)
        except InvalidAmount:
            raise InvalidPaymentAmount() from None
    problem = check_amount(amount, selection.total, selection.minimum)
    if problem is not None:
        raise _amount_error(problem, selection)
    try:
        to_stripe_amount(amount)
    except AmountNotRepresentable:
        raise InvalidPaymentAmount(decline_message("amount_not_representable")) from None
    _ensure_stripe_customer(customer, gateway)
    checkout = Checkout(
        customer_id=customer.id,
        status=CheckoutStatus.OPEN,
        amount_minor=amount.minor,
        currency=amount.currency,
        attempt=0,
        created_at=now,
        updated_at=now,
        invoices=[CheckoutInvoice(invoice_id=item.invoice.id) for item in selection.items],
    )
    db.session.add(checkout)
    db.session.flush()
    record_event(
        "checkout.opened",
        actor=_customer_actor(customer.id),
        now=now,
        customer_id=customer.id,
        subject=checkout,
        data={
            "amount_minor": amount.minor,
            "currency": amount.currency,
            "invoices": [item.invoice.number for item in selection.items],
        },
    )
    return checkout


def _ensure_stripe_customer(customer: Customer, gateway: StripeGateway) -> PaymentAccount:
    """The customer's payment account, with a Stripe Customer (created once, no lock held)."""
    account = account_for(customer.id)
    if account is not None and account.stripe_customer_id:
        return account
    try:
        stripe_id = gateway.create_customer(
            name=customer.name, email=customer.email, portal_id=customer.id
        )
    except GatewayError as error:
        raise PaymentsUnavailable() from error
    if account is None:
        try:
            with db.session.begin_nested():
                account = PaymentAccount(customer_id=customer.id, stripe_customer_id=stripe_id)
                db.session.add(account)
            return account
        except IntegrityError:  # a concurrent request created it first
            account = _existing_account(customer.id)
    # Only the first of two racing requests sets it; the other Stripe Customer stays empty.
    db.session.execute(
        update(PaymentAccount)
        .where(PaymentAccount.id == account.id, PaymentAccount.stripe_customer_id.is_(None))
        .values(stripe_customer_id=stripe_id)
    )
    db.session.refresh(account)
    return account


def _existing_account(customer_id: int) -> PaymentAccount:
    account = account_for(customer_id)
    if account is None:
        raise PaymentsUnavailable()
    return account


@dataclass(frozen=True)
class CardForm:
    """What the card page needs: a SetupIntent for a new card, and the saved card if any."""

    setup_client_secret: str
    saved_card: SavedCard | None


def prepare_card_form(customer: Customer, checkout: Checkout) -> CardForm:
    """A fresh SetupIntent for the Card Element (Stripe.js confirms it in the browser)."""
    gateway = current_gateway()
    account = _ensure_stripe_customer(customer, gateway)
    try:
        setup = gateway.create_setup_intent(
            customer_id=str(account.stripe_customer_id),
            key=f"checkout-{checkout.id}-setup-{uuid.uuid4().hex}",
        )
    except GatewayError as error:
        raise PaymentsUnavailable() from error
    return CardForm(setup.client_secret, saved_card_for(customer))


def authentication_secret(checkout: Checkout) -> str:
    """The client secret with which Stripe.js runs the bank's check (3-D Secure)."""
    if not checkout.payment_intent_id:
        raise CheckoutNotOpen()
    try:
        intent = current_gateway().retrieve_payment(checkout.payment_intent_id)
    except GatewayError as error:
        raise PaymentsUnavailable() from error
    return intent.client_secret


# --- charging ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ChargeClaim:
    """A checkout this request may charge: it holds the customer's in-flight slot."""

    checkout_id: int
    customer_id: int
    attempt: int
    idempotency_key: str
    amount: Money
    stripe_customer_id: str
    payment_method_id: str


@dataclass(frozen=True)
class _Card:
    payment_method_id: str
    brand: str
    last4: str
    exp_month: int | None = None
    exp_year: int | None = None


def _card_for_charge(
    customer: Customer,
    account: PaymentAccount,
    gateway: StripeGateway,
    *,
    setup_intent_id: str | None,
    use_saved_card: bool,
) -> _Card:
    """The card to charge: the saved one, or the one the browser just set up with Stripe.js.

    The browser sends only a SetupIntent id; we ask Stripe whether it succeeded and
    belongs to this customer, so a forged id cannot charge someone else's card.
    """
    if use_saved_card:
        saved = saved_card_for(customer)
        if saved is None:
            raise CardNotUsable("card_not_usable")
        return _Card(
            saved.payment_method_id, saved.brand, saved.last4, saved.exp_month, saved.exp_year
        )
    if not setup_intent_id or not setup_intent_id.startswith("seti_"):
        raise CardNotUsable("card_not_usable")
    try:
        setup = gateway.retrieve_setup_intent(setup_intent_id)
        if (
            setup.customer_id != account.stripe_customer_id
            or setup.status != "succeeded"
            or not setup.payment_method_id
        ):
            raise CardNotUsable("card_not_usable")
        card = gateway.retrieve_card(setup.payment_method_id)
        if card.customer_id is None:
            # Real Stripe attaches a card set up for a customer; localstripe does not.
            card = gateway.attach_card(
                card.payment_method_id, customer_id=str(account.stripe_customer_id)
            )
    except CardDeclined as error:
        raise CardNotUsable(error.code) from error
    except GatewayRejected as error:
        raise CardNotUsable("card_not_usable") from error
    except GatewayUnavailable as error:
        raise CardNotUsable("gateway_unavailable") from error
    if card.customer_id != account.stripe_customer_id:
        raise CardNotUsable("card_not_usable")
    return _Card(card.payment_method_id, card.brand, card.last4, card.exp_month, card.exp_year)


def begin_charge(
    customer: Customer,
    checkout: Checkout,
    *,
    setup_intent_id: str | None,
    use_saved_card: bool,
    save_card: bool,
    now: datetime,
) -> ChargeClaim:
    """Claim an open checkout for one charge; the caller commits, then `finish_charge`."""
    gateway = current_gateway()
    account = account_for(customer.id)
    if account is None or not account.stripe_customer_id:
        raise CheckoutNotOpen()
    card = _card_for_charge(
        customer,
        account,
        gateway,
        setup_intent_id=setup_intent_id,
        use_saved_card=use_saved_card,
    )
    lock_account(customer.id)
    checkout = _lock_checkout(checkout.id)
    if checkout.state != CheckoutStatus.OPEN:
        raise CheckoutNotOpen()
    other = in_flight_checkout(customer.id)
    if other is not None:
        _settle_stale(other, gateway, now=now)
        if other.state.is_in_flight:
            raise PaymentInProgress()
    payable = {
        item.invoice.id: item.payable
        for item in payable_items(customer, customer_today(customer, now))
    }
    chosen = [payable.get(ci.invoice_id) for ci in checkout.invoices]
    owed = Money.sum((p for p in chosen if p is not None), checkout.currency)
    if owed < checkout.amount:
        raise AmountNoLongerPayable()
    # After an outage (or a doubtful attempt) the next charge reuses the key of the
    # attempt whose end we never heard: if that request did reach Stripe, Stripe answers
    # the same card with that attempt's result instead of charging again, and refuses
    # another card (AttemptInDoubt) instead of charging twice; if it never arrived, the
    # new charge simply goes through. Otherwise each charge is a new attempt.
    if not (checkout.last_error_code in UNSETTLED_ATTEMPT and checkout.attempt_key):
        checkout.attempt += 1
        checkout.attempt_key = f"checkout-{checkout.id}-attempt-{checkout.attempt}"
    checkout.payment_method_id = card.payment_method_id
    checkout.card_brand, checkout.card_last4 = card.brand, card.last4
    checkout.card_exp_month, checkout.card_exp_year = card.exp_month, card.exp_year
    checkout.save_card = save_card or use_saved_card
    checkout.last_error_code = None
    move_checkout(checkout, CheckoutStatus.PROCESSING, actor=_customer_actor(customer.id), now=now)
    db.session.flush()
    return ChargeClaim(
        checkout_id=checkout.id,
        customer_id=customer.id,
        attempt=checkout.attempt,
        idempotency_key=str(checkout.attempt_key),
        amount=checkout.amount,
        stripe_customer_id=str(account.stripe_customer_id),
        payment_method_id=card.payment_method_id,
    )


def finish_charge(claim: ChargeClaim, *, now: datetime) -> Checkout:
    """Charge the claimed checkout at Stripe, then record what Stripe answered."""
    gateway = current_gateway()
    intent: IntentResult | None = None
    failure: str | None = None
    try:
        intent = gateway.create_payment(
            amount=claim.amount,
            customer_id=claim.stripe_customer_id,
            payment_method_id=claim.payment_method_id,
            metadata={
                METADATA_CHECKOUT: str(claim.checkout_id),
                METADATA_CUSTOMER: str(claim.customer_id),
                METADATA_ATTEMPT: str(claim.attempt),
            },
            idempotency_key=claim.idempotency_key,
        )
    except CardDeclined as error:
        failure = error.code
    except (GatewayUnavailable, AttemptInDoubt, GatewayRejected) as error:
        failure = error.code
    settled = intent is None or (not intent.needs_action and intent.status != "processing")
    if settled and failure not in UNSETTLED_ATTEMPT:
        succeeded = intent is not None and intent.is_succeeded
        release_cards(claim.checkout_id, gateway, succeeded=succeeded)
    lock_account(claim.customer_id)
    checkout = _lock_checkout(claim.checkout_id)
    actor = _customer_actor(claim.customer_id)
    if intent is not None:
        ledger = Ledger(now=now)
        apply_intent(checkout, intent, actor=actor, ledger=ledger)
        ledger.write()
    elif checkout.state == CheckoutStatus.PROCESSING and checkout.attempt == claim.attempt:
        checkout.last_error_code = failure
        if failure not in UNSETTLED_ATTEMPT:
            checkout.attempt_key = None
        move_checkout(checkout, CheckoutStatus.OPEN, actor=actor, now=now, reason=failure)
    db.session.flush()
    return checkout


def sync_checkout(customer: Customer, checkout: Checkout, *, now: datetime) -> Checkout:
    """Ask Stripe how an in-flight charge ended (after 3-D Secure, or on the return page)."""
    if not checkout.state.is_in_flight or not checkout.payment_intent_id:
        return checkout
    gateway = current_gateway()
    try:
        intent = gateway.retrieve_payment(checkout.payment_intent_id)
    except GatewayError:
        return checkout  # the webhook, or the next visit, will tell
    if not intent.needs_action and intent.status != "processing":
        release_cards(checkout.id, gateway, succeeded=intent.is_succeeded)
    lock_account(customer.id)
    checkout = _lock_checkout(checkout.id)
    ledger = Ledger(now=now)
    apply_intent(checkout, intent, actor=_customer_actor(customer.id), ledger=ledger)
    ledger.write()
    db.session.flush()
    return checkout


def apply_intent(checkout: Checkout, intent: IntentResult, *, actor: str, ledger: Ledger) -> bool:
    """Bring a locked checkout up to what Stripe says of one of its PaymentIntents.

    True if anything changed. Never moves backwards: a failure or a pending state
    matters only for the PaymentIntent of the attempt in flight. A payment is left in
    `ledger`, for the caller to `write`.
    """
    now = ledger.now
    if intent.is_succeeded:
        return ledger.record(checkout, intent, actor=actor)
    is_current = checkout.payment_intent_id in (None, intent.id)
    if _ends_doubtful_attempt(checkout, intent):
        # The attempt whose answer we never got failed: the next charge is a new attempt.
        checkout.attempt_key = None
        checkout.last_error_code = intent.error_code or "card_declined"
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
        move_checkout(
            checkout, CheckoutStatus.OPEN, actor=actor, now=now, reason=checkout.last_error_code
        )
        return True
    return False


def _ends_doubtful_attempt(checkout: Checkout, intent: IntentResult) -> bool:
    return (
        intent.is_failed
        and checkout.state == CheckoutStatus.OPEN
        and checkout.last_error_code in UNSETTLED_ATTEMPT
        and checkout.attempt_key is not None
        and intent.metadata.get(METADATA_ATTEMPT) == str(checkout.attempt)
    )


def _settle_stale(checkout: Checkout, gateway: StripeGateway, *, now: datetime) -> None:
    """Free the in-flight slot of a checkout abandoned long ago, on Stripe's word."""
    if now - checkout.updated_at < STALE_AFTER:
        return
    actor = "system"
    if checkout.payment_intent_id is None:
        # Interrupted before Stripe answered. If it did charge, its webhook still records it.
        move_checkout(checkout, CheckoutStatus.CANCELED, actor=actor, now=now, reason="interrupted")
        db.session.flush()
        return
    try:
        intent = gateway.retrieve_payment(checkout.payment_intent_id)
        if intent.needs_action:
            intent = gateway.cancel_payment(intent.id)
    except GatewayError:
        return
    if intent.is_succeeded:
        ledger = Ledger(now=now)
        ledger.record(checkout, intent, actor=actor)
        ledger.write()
    elif intent.status != "processing":
        move_checkout(checkout, CheckoutStatus.CANCELED, actor=actor, now=now, reason="abandoned")
    db.session.flush()


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


def detach_cards(gateway: StripeGateway, payment_method_ids: Sequence[str]) -> None:
    for payment_method_id in payment_method_ids:
        try:
            gateway.detach_card(payment_method_id)
        except GatewayError:
            log.warning("could not detach card %s", payment_method_id)


# --- the ledger -------------------------------------------------------------------------
@dataclass
class _Recorded:
    payment: dict[str, Any]  # the payments row
    customer: Customer
    checkout_id: int
    allocations: list[tuple[int, Money]]
    unapplied: Money
    actor: str


class Ledger:
    """Payments recorded in one transaction, their rows written together by `write`.

    One payment (a checkout, a return page) or a batch of webhook events go through the
    same code. For a batch, `prefetch` reads in three queries what each payment needs,
    and `write` inserts the payments, their allocations, audit rows, receipt links and
    receipts with one statement per table; receipts are rendered when sent.
    """

    def __init__(self, *, now: datetime) -> None:
        self.now = now
        self._payable: dict[int, list[PayableItem]] = {}
        self._references: set[str] = set()
        self._prefetched: set[int] = set()  # checkouts whose recorded references are known
        self._saved: dict[int, SavedCard | None] = {}
        self._recorded: list[_Recorded] = []

    def prefetch(self, checkouts: Sequence[Checkout]) -> None:
        if not checkouts:
            return
        ids = [c.id for c in checkouts]
        self._references |= payment_references_of(ids)
        self._prefetched.update(ids)
        customers = {c.customer_id: c.customer for c in checkouts}
        today = {cid: customer_today(customer, self.now) for cid, customer in customers.items()}
        self._payable |= {cid: [] for cid in customers} | payable_items_by_customer(today)
        keeping = [c.customer_id for c in checkouts if c.save_card]
        if keeping:
            saved = saved_cards_by_customer(keeping)
            self._saved |= {cid: saved.get(cid) for cid in keeping}

    def _is_recorded(self, checkout: Checkout, reference: str) -> bool:
        if reference in self._references:
            return True
        if checkout.id in self._prefetched:
            return False
        return payment_by_reference(reference) is not None

    def _payable_items(self, customer: Customer) -> list[PayableItem]:
        if customer.id not in self._payable:
            self._payable[customer.id] = payable_items(customer, customer_today(customer, self.now))
        return self._payable[customer.id]

    def _saved_card(self, customer_id: int) -> SavedCard | None:
        if customer_id not in self._saved:
            self._saved[customer_id] = saved_card_for_id(customer_id)
        return self._saved[customer_id]

    def saved_payment_method(self, customer_id: int) -> str | None:
        """The card the customer has saved now (prefetched for the checkouts keeping one)."""
        saved = self._saved_card(customer_id)
        return saved.payment_method_id if saved is not None else None

    def record(self, checkout: Checkout, intent: IntentResult, *, actor: str) -> bool:
        """Record money Stripe took, once per PaymentIntent. True if this call recorded it.

        Every payment of a checkout is recorded here, which leaves the checkout
        SUCCEEDED in the same transaction; so a checkout in any other state has no
        payment yet, and only a SUCCEEDED one needs the look-up (the unique reference
        backs this).
        """
        if checkout.state == CheckoutStatus.SUCCEEDED and self._is_recorded(checkout, intent.id):
            return False
        customer = checkout.customer
        items = self._payable_items(customer)
        chosen_ids = {ci.invoice_id for ci in checkout.invoices}
        allocations, unapplied = allocate_received(
            intent.amount,
            [i.open_item for i in items if i.invoice.id in chosen_ids],
            [i.open_item for i in items if i.invoice.id not in chosen_ids],
        )
        # A later payment in the same batch sees what this one took.
        taken = dict(allocations)
        self._payable[customer.id] = [
            replace(item, payable=item.payable - taken[item.invoice.id])
            if item.invoice.id in taken
            else item
            for item in items
            if taken.get(item.invoice.id) != item.payable
        ]
        self._references.add(intent.id)
        payment = {
            "customer_id": customer.id,
            "reference": intent.id,
            "source": PaymentSource.CARD,
            "amount_minor": intent.amount.minor,
            "currency": intent.amount.currency,
            "paid_on": customer_today(customer, self.now),
            "created_at": self.now,
            "checkout_id": checkout.id,
        }
        if checkout.payment_intent_id is None:
            checkout.payment_intent_id = intent.id
        if checkout.state != CheckoutStatus.SUCCEEDED:
            move_checkout(checkout, CheckoutStatus.SUCCEEDED, actor=actor, now=self.now)
        if checkout.save_card and checkout.payment_method_id == intent.payment_method_id:
            self._keep_card(checkout)
        self._recorded.append(
            _Recorded(payment, customer, checkout.id, allocations, unapplied, actor)
        )
        return True

    def _keep_card(self, checkout: Checkout) -> None:
        """The customer's saved card becomes the one just used (one per customer)."""
        saved = self._saved_card(checkout.customer_id)
        if saved is not None and saved.payment_method_id == checkout.payment_method_id:
            return
        if saved is None:
            saved = SavedCard(customer_id=checkout.customer_id)
            db.session.add(saved)
            self._saved[checkout.customer_id] = saved
        saved.payment_method_id = str(checkout.payment_method_id)
        saved.brand = checkout.card_brand or "card"
        saved.last4 = checkout.card_last4 or ""
        saved.exp_month, saved.exp_year = checkout.card_exp_month, checkout.card_exp_year
        saved.saved_at = self.now
        record_event(
            "card.saved",
            actor=_customer_actor(checkout.customer_id),
            now=self.now,
            customer_id=checkout.customer_id,
            data={"brand": checkout.card_brand, "last4": checkout.card_last4},
        )

    def write(self) -> None:
        """Insert what `record` recorded: payments, allocations, audit rows, receipts."""
        recorded, self._recorded = self._recorded, []
        if not recorded:
            return
        now = self.now
        db.session.flush()  # the checkouts' moves, which the payments rows reference
        payment_ids = db.session.scalars(
            insert(Payment).returning(Payment.id, sort_by_parameter_order=True),
            [entry.payment for entry in recorded],
        ).all()
        allocations = [
            {"payment_id": payment_id, "invoice_id": invoice_id, "amount_minor": amount.minor}
            for entry, payment_id in zip(recorded, payment_ids, strict=True)
            for invoice_id, amount in entry.allocations
        ]
        if allocations:
            db.session.execute(insert(PaymentAllocation), allocations)
        ttl = timedelta(days=current_app.config["ACCESS_LINK_TTL_DAYS"])
        links = [
            new_link_row(entry.customer.id, now=now, ttl=ttl, purpose="receipt")
            for entry in recorded
        ]
        link_ids = db.session.scalars(
            insert(AccessLink).returning(AccessLink.id, sort_by_parameter_order=True),
            [row for row, _ in links],
        ).all()
        base_url = current_app.config["PORTAL_BASE_URL"]
        audits: list[dict[str, Any]] = []
        receipts = []
        for entry, payment_id, link_id, (_row, token) in zip(
            recorded, payment_ids, link_ids, links, strict=True
        ):
            audits += self._audit_rows(entry, payment_id)
            audits.append(
                link_issued_row(
                    link_id, entry.customer.id, purpose="receipt", actor="system", now=now
                )
            )
            receipts.append(
                deferred_email_row(
                    entry.customer,
                    kind="receipt",
                    template="receipt",
                    context={
                        "payment_id": payment_id,
                        "portal_url": build_link_url(base_url, token),
                    },
                    now=now,
                    dedupe_key=f"receipt:{payment_id}",
                )
            )
        db.session.execute(insert(AuditEvent), audits)
        db.session.execute(insert(OutboxMessage), receipts)

    def _audit_rows(self, entry: _Recorded, payment_id: int) -> list[dict[str, Any]]:
        payment = entry.payment
        rows = [
            audit_row(
                "payment.received",
                actor=entry.actor,
                now=self.now,
                customer_id=entry.customer.id,
                subject=("payments", payment_id),
                data={
                    "reference": payment["reference"],
                    "amount_minor": payment["amount_minor"],
                    "currency": payment["currency"],
                    "checkout_id": entry.checkout_id,
                    "allocations": {str(i): m.minor for i, m in entry.allocations},
                },
            )
        ]
        if entry.unapplied.is_positive:
            log.warning(
                "payment %s: %s received that no invoice owes",
                payment["reference"],
                entry.unapplied,
            )
            rows.append(
                audit_row(
                    "payment.unapplied",
                    actor=entry.actor,
                    now=self.now,
                    customer_id=entry.customer.id,
                    subject=("payments", payment_id),
                    data={
                        "amount_minor": entry.unapplied.minor,
                        "currency": entry.unapplied.currency,
                    },
                )
            )
        return rows


@renders_later("receipt")
def _receipt_context(customer: Customer, context: Mapping[str, Any]) -> dict[str, Any]:
    """What the receipt email shows, read when it is sent (`Ledger.write` queues it)."""
    payment = get_payment_for(customer, context["payment_id"])
    if payment is None:
        raise LookupError(f"payment {context['payment_id']} is not this customer's")
    return {"payment": payment, "checkout": payment.checkout, "portal_url": context["portal_url"]}


def remove_saved_card(customer: Customer, *, now: datetime) -> bool:
    """Forget the customer's saved card here and at Stripe. True if there was one."""
    saved = saved_card_for(customer)
    if saved is None:
        return False
    try:
        current_gateway().detach_card(saved.payment_method_id)
    except GatewayError:
        log.warning("could not detach card %s at Stripe", saved.payment_method_id)
    db.session.delete(saved)
    record_event(
        "card.removed",
        actor=_customer_actor(customer.id),
        now=now,
        customer_id=customer.id,
        data={"brand": saved.brand, "last4": saved.last4},
    )
    return True


# --- refunds ----------------------------------------------------------------------------
def refund_payment(
    payment: Payment,
    amount: Money | None,
    *,
    actor: str,
    now: datetime,
    reason: str = "",
) -> Refund:
    """Give back all or part of a card payment; the invoices it paid reopen, latest due first."""
    if payment.source != PaymentSource.CARD:
        raise RefundRefused()
    gateway = current_gateway()
    lock_account(payment.customer_id)
    db.session.refresh(payment)
    amount = payment.amount - payment.refunded if amount is None else amount
    try:
        parts = _refund_parts(payment, amount)
    except Overpayment:
        raise RefundRefused() from None
    try:
        result = gateway.refund(
            payment_intent_id=payment.reference,
            amount=amount,
            idempotency_key=f"refund-{payment.id}-{len(payment.refunds) + 1}-{amount.minor}",
        )
    except GatewayError as error:
        raise RefundRefused(decline_message(error.code)) from error
    return _record_refund(
        payment, amount, parts, reference=result.id, actor=actor, reason=reason, now=now
    )


def record_stripe_refunds(payment: Payment, state: ChargeRefunds, *, now: datetime) -> bool:
    """Bring the ledger up to the refunds Stripe reports on the payment's charge (made in
    Stripe's dashboard, say). True if anything was recorded.

    The caller holds the customer's lock: `refund_payment` holds it across its own call
    to Stripe, so a refund made here is in the ledger before its event is applied.
    Refunds the event lists are recorded by their ids; without a list (newer API
    versions) what the ledger lacks of the charge's refunded total is recorded as one.
    """
    db.session.refresh(payment)
    known = {refund.reference for refund in payment.refunds}
    missing = [r for r in state.refunds if r.status == "succeeded" and r.id not in known]
    listed = Money.sum((r.amount for r in missing), payment.currency)
    rest = state.refunded - payment.refunded - listed
    if rest.is_positive:
        reference = f"{state.charge_id}:refunded-{state.refunded.minor}"
        missing.append(RefundResult(reference, "succeeded", rest))
    if not missing:
        return False
    for refund in missing:
        parts = _refund_parts(payment, refund.amount)  # Overpayment: not ours to guess
        _record_refund(
            payment,
            refund.amount,
            parts,
            reference=refund.id,
            actor="stripe",
            reason="refunded at Stripe",
            now=now,
        )
    return True


def _refund_parts(payment: Payment, amount: Money) -> list[tuple[int, Money]]:
    """What a refund of `amount` takes back from each invoice; Overpayment if more than
    is left to refund."""
    if not amount.is_positive or amount > payment.amount - payment.refunded:
        raise Overpayment(f"{amount} is more than is left to refund")
    from_invoices = _refund_from_invoices(payment, amount)
    return take_back(from_invoices, _net_applied(payment)) if from_invoices else []


def _record_refund(
    payment: Payment,
    amount: Money,
    parts: list[tuple[int, Money]],
    *,
    reference: str,
    actor: str,
    reason: str,
    now: datetime,
) -> Refund:
    refund = Refund(
        payment=payment,
        reference=reference,
        amount_minor=amount.minor,
        currency=amount.currency,
        refunded_on=customer_today(payment.customer, now),
        reason=reason,
        actor=actor,
        created_at=now,
        allocations=[RefundAllocation(invoice_id=i, amount_minor=m.minor) for i, m in parts],
    )
    db.session.add(refund)
    db.session.flush()
    record_event(
        "payment.refunded",
        actor=actor,
        now=now,
        customer_id=payment.customer_id,
        subject=refund,
        data={
            "payment": payment.reference,
            "refund": reference,
            "amount_minor": amount.minor,
            "currency": amount.currency,
            "reason": reason,
        },
    )
    return refund


def _refunded_from_invoices(payment: Payment) -> dict[int, int]:
    taken: dict[int, int] = {}
    for refund in payment.refunds:
        for part in refund.allocations:
            taken[part.invoice_id] = taken.get(part.invoice_id, 0) + part.amount_minor
    return taken


def _net_applied(payment: Payment) -> list[Applied]:
    """What the payment still covers on each invoice, after earlier refunds."""
    taken = _refunded_from_invoices(payment)
    return [
        Applied(
            a.invoice_id,
            a.invoice.due_date,
            a.invoice.number,
            a.amount - Money(taken.get(a.invoice_id, 0), payment.currency),
        )
        for a in payment.allocations
    ]


def _refund_from_invoices(payment: Payment, amount: Money) -> Money:
    """The part of a refund that reopens invoices. Money no invoice owed (the customer
    paid twice) goes back first, so a duplicate's refund reopens nothing."""
    taken = sum(_refunded_from_invoices(payment).values())
    unapplied_left = payment.unapplied.minor - (payment.refunded.minor - taken)
    return amount - Money(min(amount.minor, max(0, unapplied_left)), amount.currency)
