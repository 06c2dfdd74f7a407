"""Card payments as the customer makes them: checkouts and charges.

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

This module holds the actions of the customer's payment pages: open a checkout, show
the card form, charge, ask Stripe how a charge ended, forget a saved card. The rest is
one module per concern: refusals in `portal.payments.errors`, row locks and their order
in `portal.payments.locks`, the checkout state machine in `portal.payments.checkouts`,
the ledger and refunds in `portal.payments.ledger`, the webhook inbox in
`portal.payments.inbox` and its worker loop in `portal.jobs.webhook_worker`. None of them
commits: the view, CLI command or job that calls them does.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from flask import current_app, has_request_context
from flask_babel import gettext as _
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.extensions import db
from portal.i18n import current_locale
from portal.inputs import AmountInputError, parse_amount_input
from portal.inputs import AmountProblem as InputProblem
from portal.money import AmountTooLarge, Money
from portal.payments.card_advice import card_advice_message
from portal.payments.card_testing import check_card_attempts_left, record_card_failure
from portal.payments.checkouts import (
    METADATA_ATTEMPT,
    METADATA_CHECKOUT,
    METADATA_CUSTOMER,
    STALE_AFTER,
    UNSETTLED_ATTEMPT,
    apply_intent,
    cancel_payments,
    cards_to_detach,
    current_gateway,
    customer_actor,
    detach_cards,
    is_open_to_another_card,
    move_checkout,
    release_cards,
)
from portal.payments.errors import (
    AmountNoLongerPayable,
    CardNotUsable,
    CheckoutNotOpen,
    CheckoutTransitionRefused,
    InvalidPaymentAmount,
    MixedCurrencies,
    NothingToPay,
    PaymentInProgress,
    PaymentsUnavailable,
    RefundRefused,
    card_form_messages,
    decline_message,
)
from portal.payments.gateway import (
    AmountNotRepresentable,
    AttemptInDoubt,
    CardDeclined,
    GatewayError,
    GatewayRejected,
    GatewayUnavailable,
    IntentResult,
    SetupResult,
    StripeGateway,
    to_stripe_amount,
)
from portal.payments.ledger import Ledger, record_stripe_refunds, refund_payment
from portal.payments.locks import lock_account, lock_checkout
from portal.payments.models import (
    Checkout,
    CheckoutInvoice,
    CheckoutStatus,
    PaymentAccount,
    SavedCard,
)
from portal.payments.policy import (
    AmountProblem,
    card_advice,
    check_amount,
    effective_minimum,
    minimum_payment,
)
from portal.payments.queries import (
    PayableItem,
    account_for,
    in_flight_checkout,
    payable_items,
    saved_card_for,
)
from portal.plans.models import PaymentPlan
from portal.plans.payments import (
    InstallmentNotPayable,
    checkout_installment,
    installment_owed,
    open_checkout_for,
    payable_installment,
)

# Names this module held before it was split, importable from here too.
__all__ = [
    "METADATA_ATTEMPT",
    "METADATA_CHECKOUT",
    "METADATA_CUSTOMER",
    "AmountNoLongerPayable",
    "CardForm",
    "CardNotUsable",
    "ChargeClaim",
    "CheckoutNotOpen",
    "CheckoutTransitionRefused",
    "InvalidPaymentAmount",
    "Ledger",
    "MixedCurrencies",
    "NothingToPay",
    "PaymentInProgress",
    "PaymentsUnavailable",
    "RefundRefused",
    "Selection",
    "apply_intent",
    "authentication_secret",
    "begin_charge",
    "card_form_messages",
    "card_setup_secret",
    "cards_to_detach",
    "current_gateway",
    "decline_message",
    "detach_cards",
    "finish_charge",
    "lock_account",
    "move_checkout",
    "payment_minimum",
    "prepare_card_form",
    "record_stripe_refunds",
    "refund_payment",
    "remove_saved_card",
    "save_card_from_setup",
    "select_invoices",
    "start_checkout",
    "start_installment_checkout",
    "sync_checkout",
]

log = logging.getLogger(__name__)


# --- opening a checkout -----------------------------------------------------------------
def payment_minimum(currency: str) -> Money:
    """The smallest partial payment in `currency` (`policy.effective_minimum`)."""
    config = current_app.config
    return effective_minimum(
        minimum_payment(
            currency, config["PAYMENT_MINIMUM"], config.get("PAYMENT_MINIMUMS", "") or ""
        )
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
    locale = _request_locale()
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


def _request_locale() -> str:
    return current_locale() if has_request_context() else "en"


def _checked_amount(selection: Selection, amount_text: str | None, locale: str) -> Money:
    """The amount to charge: all that is payable in `selection`, or `amount_text` (major
    units, as `locale` writes them: `inputs.parse_amount_input`) if given;
    InvalidPaymentAmount if it is not a number Stripe can take, above what is payable
    (even as a partial payment), or below the minimum."""
    amount = selection.total
    if amount_text and amount_text.strip():
        try:
            amount = parse_amount_input(
                amount_text, selection.total.currency, locale, allow_zero=True
            )
        except AmountTooLarge:  # a number, larger than anything payable
            raise _amount_error(AmountProblem.ABOVE_PAYABLE, selection) from None
        except AmountInputError as refused:
            if refused.problem in _OWN_WORDS:
                raise InvalidPaymentAmount(refused.message) from None
            raise InvalidPaymentAmount() from None  # "Please enter a valid amount."
    problem = check_amount(amount, selection.total, selection.minimum)
    if problem is not None:
        raise _amount_error(problem, selection)
    return amount


# Refusals of a typed amount said in the parser's words; the others keep the pay page's
# "Please enter a valid amount." (zero and below: "greater than zero", by check_amount).
_OWN_WORDS = frozenset(
    {
        InputProblem.AMBIGUOUS,
        InputProblem.OTHER_CURRENCY,
        InputProblem.TOO_MANY_DECIMALS,
        InputProblem.NEGATIVE,
    }
)


def start_checkout(
    customer: Customer,
    numbers: Sequence[str],
    amount_text: str | None,
    *,
    now: datetime,
    locale: str | None = None,
) -> Checkout:
    """Open a checkout for the chosen invoices: in full, or `amount_text` (major units,
    as `locale` writes them; default: the request's language, else English).

    The amount is checked against what is payable (`InvoiceBalance.payable`: never what
    an open dispute holds) twice: first to refuse at once, then again under the
    customer's lock 1 (`locks.lock_account`), which every dispute service also takes, so
    a dispute opened meanwhile cannot leave a checkout for its amount."""
    check_card_attempts_left(customer.id, now=now)
    gateway = current_gateway()
    selection = select_invoices(customer, numbers, now=now)
    locale = locale or _request_locale()
    amount = _checked_amount(selection, amount_text, locale)
    # One card charge has Stripe's limits (minimum, maximum, three-decimal step): say
    # why and what to do rather than let Stripe refuse it (payments.policy.card_problem).
    advice = card_advice(amount)
    if advice is not None:
        raise InvalidPaymentAmount(card_advice_message(advice))
    try:
        to_stripe_amount(amount)
    except AmountNotRepresentable:
        raise InvalidPaymentAmount(decline_message("amount_not_representable")) from None
    _ensure_stripe_customer(customer, gateway)  # calls Stripe: before the lock
    lock_account(customer.id)
    selection = select_invoices(customer, numbers, now=now)
    if _checked_amount(selection, amount_text, locale) != amount:
        raise AmountNoLongerPayable()
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
        actor=customer_actor(customer.id),
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


# A SetupIntent in one of these states can still take a card (Stripe.js confirms it again
# after a decline): https://docs.stripe.com/payments/setupintents/lifecycle
REUSABLE_SETUP_STATES = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action"}
)


def prepare_card_form(customer: Customer, checkout: Checkout, *, now: datetime) -> CardForm:
    """The SetupIntent for the Card Element (Stripe.js confirms it in the browser).

    The customer's open SetupIntent is reused while it can still take a card; a new one
    is created only when there is none (card testing: a page load is not a new Stripe
    object). Refused with CardAttemptsExhausted after too many failed attempts.
    """
    setup = _setup_intent_for(customer, f"checkout-{checkout.id}", now=now)
    return CardForm(setup.client_secret, saved_card_for(customer))


def card_setup_secret(customer: Customer, *, now: datetime) -> str:
    """The client secret of a SetupIntent for saving a card without a payment (a plan's
    autopay card); the customer's open one is reused, as on the card page."""
    return _setup_intent_for(customer, f"customer-{customer.id}", now=now).client_secret


def _setup_intent_for(customer: Customer, purpose: str, *, now: datetime) -> SetupResult:
    """The customer's open SetupIntent while it can still take a card, else a new one
    (idempotency key `<purpose>-setup-<random>`). CardAttemptsExhausted after too many
    failed attempts; PaymentsUnavailable when Stripe does not answer."""
    check_card_attempts_left(customer.id, now=now)
    gateway = current_gateway()
    account = _ensure_stripe_customer(customer, gateway)
    try:
        setup = _open_setup_intent(account, gateway)
        if setup is None:
            setup = gateway.create_setup_intent(
                customer_id=str(account.stripe_customer_id),
                key=f"{purpose}-setup-{uuid.uuid4().hex}",
                portal_id=customer.id,
            )
            account.open_setup_intent_id = setup.id
    except GatewayError as error:
        raise PaymentsUnavailable() from error
    return setup


def save_card_from_setup(
    customer: Customer, *, setup_intent_id: str | None, now: datetime
) -> SavedCard:
    """Keep the card of a SetupIntent that Stripe.js confirmed as the customer's saved
    card (one per customer: a previous one is forgotten here and at Stripe). The browser
    sends only the SetupIntent id; Stripe says whether it succeeded and whose it is
    (`_card_for_charge`). CardNotUsable otherwise; nothing is charged."""
    check_card_attempts_left(customer.id, now=now)
    gateway = current_gateway()
    account = account_for(customer.id)
    if account is None or not account.stripe_customer_id:
        raise CardNotUsable("card_not_usable")
    card = _card_for_charge(
        customer, account, gateway, setup_intent_id=setup_intent_id, use_saved_card=False
    )
    lock_account(customer.id)
    saved = saved_card_for(customer)
    if saved is not None and saved.payment_method_id != card.payment_method_id:
        detach_cards(gateway, [saved.payment_method_id])
    if saved is None:
        saved = SavedCard(customer_id=customer.id)
        db.session.add(saved)
    saved.payment_method_id = card.payment_method_id
    saved.brand, saved.last4 = card.brand, card.last4
    saved.exp_month, saved.exp_year = card.exp_month, card.exp_year
    saved.saved_at = now
    if account.open_setup_intent_id == setup_intent_id:
        account.open_setup_intent_id = None  # used: the next card form starts a new one
    db.session.flush()
    record_event(
        "card.saved",
        actor=customer_actor(customer.id),
        now=now,
        customer_id=customer.id,
        data={"brand": card.brand, "last4": card.last4},
    )
    return saved


def _open_setup_intent(account: PaymentAccount, gateway: StripeGateway) -> SetupResult | None:
    """The account's last SetupIntent, if it is this customer's and can still take a card."""
    if not account.open_setup_intent_id:
        return None
    setup = gateway.retrieve_setup_intent(account.open_setup_intent_id)
    if (
        setup.customer_id != account.stripe_customer_id
        or setup.status not in REUSABLE_SETUP_STATES
        or not setup.client_secret
    ):
        return None
    return setup


def authentication_secret(checkout: Checkout) -> str:
    """The client secret with which Stripe.js runs the bank's check (3-D Secure)."""
    if not checkout.payment_intent_id:
        raise CheckoutNotOpen()
    try:
        intent = current_gateway().retrieve_payment(checkout.payment_intent_id)
    except GatewayError as error:
        raise PaymentsUnavailable() from error
    return intent.client_secret


def _lock_checkout(checkout_id: int) -> Checkout:
    """Lock 2 (`portal.payments.locks`) for a checkout this request works on."""
    checkout = lock_checkout(checkout_id)
    if checkout is None:
        raise CheckoutNotOpen()
    return checkout


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
    check_card_attempts_left(customer.id, now=now)
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
    owed = _owed(customer, checkout, now)
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
        # The last attempt's PaymentIntent (one that failed 3-D Secure, say) is not this
        # attempt's: this one's is recorded when Stripe answers (`apply_intent`).
        checkout.payment_intent_id = None
    checkout.payment_method_id = card.payment_method_id
    checkout.card_brand, checkout.card_last4 = card.brand, card.last4
    checkout.card_exp_month, checkout.card_exp_year = card.exp_month, card.exp_year
    checkout.save_card = save_card or use_saved_card
    checkout.last_error_code = None
    move_checkout(checkout, CheckoutStatus.PROCESSING, actor=customer_actor(customer.id), now=now)
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


def checkout_overtaken(customer: Customer, checkout: Checkout, *, now: datetime) -> bool:
    """True when an open checkout asks more than its invoices (or installment) have payable
    now (a dispute opened, an offline payment or a credit note since it was started):
    `begin_charge` would refuse it (AmountNoLongerPayable), so the card page sends the
    customer back to step 1 rather than offer an amount that cannot be charged. Always
    False for a plan's installment (its plan page leads the way)."""
    return (
        checkout.state == CheckoutStatus.OPEN
        and checkout.plan_installment_id is None
        and _owed(customer, checkout, now) < checkout.amount
    )


def _owed(customer: Customer, checkout: Checkout, now: datetime) -> Money:
    """What the checkout may still charge: what its invoices have payable now, or for a
    plan's installment what that installment still asks (`portal.plans.payments`)."""
    installment = checkout_installment(checkout)
    if installment is not None:
        return installment_owed(installment)
    payable = {
        item.invoice.id: item.payable
        for item in payable_items(customer, customer_today(customer, now))
    }
    chosen = [payable.get(ci.invoice_id) for ci in checkout.invoices]
    return Money.sum((p for p in chosen if p is not None), checkout.currency)


def start_installment_checkout(
    customer: Customer, plan: PaymentPlan, number: int, *, now: datetime
) -> Checkout:
    """Open a checkout for what installment `number` of the customer's active `plan` still
    asks (0: the down payment), on the plan's invoices. InstallmentNotPayable when it is
    paid or the plan is not active; InvalidPaymentAmount when one card charge cannot take
    it (Stripe's limits). A checkout already open for it at that amount is reused."""
    check_card_attempts_left(customer.id, now=now)
    gateway = current_gateway()
    if plan.customer_id != customer.id:
        raise InstallmentNotPayable()
    installment = payable_installment(plan, number)
    amount = installment_owed(installment)
    existing = open_checkout_for(installment, amount)
    if existing is not None:
        return existing
    advice = card_advice(amount)
    if advice is not None:
        raise InvalidPaymentAmount(card_advice_message(advice))
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
        plan_installment_id=installment.id,
        invoices=[CheckoutInvoice(invoice_id=covered.invoice_id) for covered in plan.invoices],
    )
    db.session.add(checkout)
    db.session.flush()
    record_event(
        "checkout.opened",
        actor=customer_actor(customer.id),
        now=now,
        customer_id=customer.id,
        subject=checkout,
        data={
            "amount_minor": amount.minor,
            "currency": amount.currency,
            "invoices": [covered.invoice.number for covered in plan.invoices],
            "plan_id": plan.id,
            "installment": installment.number,
        },
    )
    return checkout


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
    actor = customer_actor(claim.customer_id)
    if intent is not None:
        ledger = Ledger(now=now)
        apply_intent(checkout, intent, actor=actor, ledger=ledger)
        ledger.write()
    elif checkout.state == CheckoutStatus.PROCESSING and checkout.attempt == claim.attempt:
        record_card_failure(claim.customer_id, failure, now=now, checkout_id=checkout.id)
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
    if is_open_to_another_card(intent):  # the browser holds its client secret
        cancel_payments(gateway, [intent.id])
    lock_account(customer.id)
    checkout = _lock_checkout(checkout.id)
    ledger = Ledger(now=now)
    apply_intent(checkout, intent, actor=customer_actor(customer.id), ledger=ledger)
    ledger.write()
    db.session.flush()
    return checkout


def _settle_stale(checkout: Checkout, gateway: StripeGateway, *, now: datetime) -> None:
    """Free the in-flight slot of a checkout abandoned long ago, on Stripe's word."""
    if now - checkout.updated_at < STALE_AFTER:
        return
    actor = Actor.system()
    if checkout.payment_intent_id is None:
        # Interrupted before Stripe answered. If it did charge, its webhook still records it.
        move_checkout(checkout, CheckoutStatus.CANCELED, actor=actor, now=now, reason="interrupted")
        db.session.flush()
        return
    try:
        intent = gateway.retrieve_payment(checkout.payment_intent_id)
        if intent.needs_action or is_open_to_another_card(intent):
            # Given up here, so closed at Stripe too: an old tab must not pay it later.
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
        actor=customer_actor(customer.id),
        now=now,
        customer_id=customer.id,
        data={"brand": saved.brand, "last4": saved.last4},
    )
    return True
