"""Why a payment or a refund is refused, in words the customer reads."""

from __future__ import annotations

import logging

from flask_babel import lazy_gettext as _l

from portal.errors import DomainError
from portal.payments.models import CheckoutStatus

log = logging.getLogger(__name__)


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


class CardAttemptsExhausted(DomainError):
    """Too many failed card attempts on this account in 24 hours (`card_testing`)."""

    message = _l(
        "For your security, card payments on your account are paused after several "
        "declined attempts. Please try again tomorrow, or contact us."
    )


class CheckoutTransitionRefused(DomainError):
    def __init__(self, current: CheckoutStatus, target: CheckoutStatus) -> None:
        super().__init__(f"a checkout cannot go from {current.value} to {target.value}")
        self.current, self.target = current, target


class RefundRefused(DomainError):
    message = _l("This refund is not possible.")


class RefundNotByCard(RefundRefused):
    message = _l(
        "Only card payments can be refunded here. Refund an offline payment the way it was "
        "paid (for example by bank transfer)."
    )


class RefundAmountNotPositive(RefundRefused):
    message = _l("The amount must be more than zero.")


class RefundAboveRemaining(RefundRefused):
    message = _l("This is more than what is left to refund on this payment.")


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
