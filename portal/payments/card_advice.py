"""What the customer reads when one card charge cannot take an amount, and what to do.

The rule is `payments.policy.card_problem` (Stripe's minimum and maximum charge, and the
final 0 of three-decimal currencies); this module only words it, in the customer's
language, for the pay page and for the refusal of a checkout.
"""

from __future__ import annotations

from flask import has_request_context
from flask_babel import gettext as _

from portal.creditor import current_creditor
from portal.i18n import current_locale
from portal.payments.policy import CardAdvice, CardProblem


def card_advice_message(advice: CardAdvice) -> str:
    """One or two sentences: why this amount cannot be charged by card, and what to do."""
    locale = current_locale() if has_request_context() else "en"
    total, chargeable = advice.total.format(locale), advice.chargeable.format(locale)
    match advice.problem:
        case CardProblem.ABOVE_CARD_MAXIMUM:
            return _(
                "One card payment can be at most %(maximum)s, so %(total)s is paid in "
                "parts: pay up to %(maximum)s now, then the rest in further payments.",
                maximum=advice.maximum.format(locale),
                total=total,
            )
        case CardProblem.NOT_CARD_REPRESENTABLE:
            return _(
                "Cards can pay %(currency)s only in steps of %(step)s, so %(total)s cannot "
                "be paid in one card payment. Pay %(chargeable)s by card; for the remaining "
                "%(rest)s, please pay by bank transfer or write to %(email)s.",
                currency=advice.total.currency,
                step=advice.step.format(locale),
                total=total,
                chargeable=chargeable,
                rest=advice.rest.format(locale),
                email=current_creditor().email,
            )
        case _:
            return _(
                "Card payments start at %(minimum)s, so %(total)s cannot be paid by card. "
                "Please pay it by bank transfer or write to %(email)s.",
                minimum=advice.minimum.format(locale),
                total=total,
                email=current_creditor().email,
            )
