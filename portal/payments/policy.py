"""Pure rules for applying money to invoices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

from portal.errors import DomainError
from portal.money import Money, minor_unit_exponent
from portal.payments.gateway import THREE_DECIMAL, stripe_exponent


class Overpayment(DomainError):
    """The payment is larger than what the targeted invoices still owe."""


class OpenItem(NamedTuple):
    """An invoice open to a payment (`balance`: what may be applied to it). A tuple: the
    pay page makes one per invoice on each request, a third of a frozen dataclass's time."""

    invoice_id: int
    due_date: date
    number: str
    balance: Money


def allocate(amount: Money, items: Sequence[OpenItem]) -> list[tuple[int, Money]]:
    """Apply `amount` to `items` oldest due first; every allocation is positive.

    Raises Overpayment when the amount exceeds the items' balances: an unapplied
    remainder would be money we cannot show the customer anywhere.
    """
    if not amount.is_positive:
        raise DomainError("a payment must be positive")
    remaining = amount
    allocations: list[tuple[int, Money]] = []
    for item in sorted(items, key=_oldest_due_first):
        if not remaining.is_positive:
            break
        if not item.balance.is_positive:
            continue
        applied = min(remaining, item.balance)
        allocations.append((item.invoice_id, applied))
        remaining = remaining - applied
    if remaining.is_positive:
        raise Overpayment(f"{remaining} more than the open balance")
    return allocations


def _oldest_due_first(item: OpenItem) -> tuple[date, str]:
    return (item.due_date, item.number)


# --- what a customer may pay ------------------------------------------------------------
class AmountProblem(StrEnum):
    NOT_POSITIVE = "not_positive"
    BELOW_MINIMUM = "below_minimum"
    ABOVE_PAYABLE = "above_payable"


@lru_cache(maxsize=256)
def minimum_payment(currency: str, default: str, overrides: str = "") -> Money:
    """The smallest partial payment, in major units: `default`, or `overrides` ("JPY=100,…")."""
    for entry in overrides.split(","):
        code, _sep, value = entry.partition("=")
        if code.strip().upper() == currency.upper() and value.strip():
            return Money.from_decimal(value.strip(), currency)
    return Money.from_decimal(default, currency)


def check_amount(amount: Money, payable: Money, minimum: Money) -> AmountProblem | None:
    """A payment is positive, at most what is payable, and at least the minimum.

    The minimum bounds partial payments only: paying everything that is payable is
    always allowed, even when that is less than the minimum.
    """
    if not amount.is_positive:
        return AmountProblem.NOT_POSITIVE
    if amount > payable:
        return AmountProblem.ABOVE_PAYABLE
    if amount < minimum and amount != payable:
        return AmountProblem.BELOW_MINIMUM
    return None


def allocate_received(
    amount: Money, chosen: Sequence[OpenItem], others: Sequence[OpenItem]
) -> tuple[list[tuple[int, Money]], Money]:
    """Apply money already received: the chosen invoices first, then the oldest due.

    Unlike `allocate`, this never refuses: the money is in. Whatever no invoice owes
    any more (the customer paid the same invoice twice) comes back as `unapplied`.
    """
    allocations: list[tuple[int, Money]] = []
    remaining = amount
    for group in (chosen, others):
        owed = [item for item in group if item.balance.is_positive]
        if not remaining.is_positive or not owed:
            continue
        capacity = Money.sum((item.balance for item in owed), amount.currency)
        applied = min(remaining, capacity)
        allocations.extend(allocate(applied, owed))
        remaining = remaining - applied
    return allocations, remaining


def planned_allocation(
    amount: Money, chosen: Sequence[OpenItem], others: Sequence[OpenItem]
) -> list[tuple[OpenItem, Money]]:
    """What `amount` will put on each invoice if it is received now (`allocate_received`,
    the rule the ledger applies): every chosen invoice, oldest due first, with its share
    (zero when a partial amount does not reach it), then any other invoice it reaches."""
    shares = dict(allocate_received(amount, chosen, others)[0])
    zero = Money.zero(amount.currency)
    ordered = sorted(chosen, key=lambda i: (i.due_date, i.number))
    reached = [
        i for i in sorted(others, key=lambda i: (i.due_date, i.number)) if i.invoice_id in shares
    ]
    return [(item, shares.get(item.invoice_id, zero)) for item in [*ordered, *reached]]


@dataclass(frozen=True)
class Applied:
    """What one payment put on one invoice, net of earlier refunds."""

    invoice_id: int
    due_date: date
    number: str
    amount: Money


def take_back(amount: Money, applied: Sequence[Applied]) -> list[tuple[int, Money]]:
    """Spread a refund over a payment's invoices, latest due first.

    The latest invoice reopens first, so the oldest debt stays paid. Raises
    Overpayment when the refund is larger than what the payment still covers.
    """
    if not amount.is_positive:
        raise DomainError("a refund must be positive")
    remaining = amount
    result: list[tuple[int, Money]] = []
    for item in sorted(applied, key=lambda a: (a.due_date, a.number), reverse=True):
        if not remaining.is_positive:
            break
        if not item.amount.is_positive:
            continue
        taken = min(remaining, item.amount)
        result.append((item.invoice_id, taken))
        remaining = remaining - taken
    if remaining.is_positive:
        raise Overpayment(f"{remaining} more than the payment still covers")
    return result


# --- what one card charge can take -------------------------------------------------------
# The figures per currency (card_step, card_minimum, card_maximum; minimum_payment per
# setting) are pure and asked for on every page that offers to pay: each is worked out
# once per process (they parse decimals).
# Stripe, "Minimum and maximum charge amounts" (docs.stripe.com/currencies#minimum-and-
# maximum-charge-amounts): a charge's amount has at most eight digits in Stripe's units
# (99,999,999: $999,999.99, ¥99,999,999, 99,999.990 KWD), and at least the listed
# minimum, "$0.50 US or equivalent" elsewhere. For currencies the table leaves out we
# know no exchange rate, so only the smallest amount Stripe can express is required.
STRIPE_MAX_AMOUNT = 99_999_999
STRIPE_MINIMUMS = {
    "USD": "0.50",
    "AED": "2.00",
    "AUD": "0.50",
    "BGN": "1.00",
    "BRL": "0.50",
    "CAD": "0.50",
    "CHF": "0.50",
    "CZK": "15.00",
    "DKK": "2.50",
    "EUR": "0.50",
    "GBP": "0.30",
    "HKD": "4.00",
    "HUF": "175.00",
    "INR": "0.50",
    "JPY": "50",
    "MXN": "10",
    "MYR": "2",
    "NOK": "3.00",
    "NZD": "0.50",
    "PLN": "2.00",
    "RON": "2.00",
    "SEK": "3.00",
    "SGD": "0.50",
    "THB": "10",
}


class CardProblem(StrEnum):
    BELOW_CARD_MINIMUM = "below_card_minimum"
    NOT_CARD_REPRESENTABLE = "not_card_representable"  # 1.235 KWD: Stripe wants a final 0
    ABOVE_CARD_MAXIMUM = "above_card_maximum"


@lru_cache(maxsize=256)
def card_step(currency: str) -> Money:
    """The smallest amount Stripe can express in this currency, in our minor units
    (0.01 USD, 1 JPY, 0.010 KWD: three-decimal currencies must end in 0)."""
    shift = stripe_exponent(currency) - minor_unit_exponent(currency)
    stripe_units = 10 if currency.upper() in THREE_DECIMAL else 1
    if shift >= 0:
        return Money(max(1, stripe_units // 10**shift), currency)
    return Money(stripe_units * 10**-shift, currency)


@lru_cache(maxsize=256)
def card_minimum(currency: str) -> Money:
    """The smallest single card charge Stripe accepts in this currency."""
    listed = STRIPE_MINIMUMS.get(currency.upper())
    step = card_step(currency)
    if listed is None:
        return step
    return max(Money.from_decimal(listed, currency), step)


@lru_cache(maxsize=256)
def card_maximum(currency: str) -> Money:
    """The largest single card charge (Stripe's eight digits), in our minor units."""
    shift = stripe_exponent(currency) - minor_unit_exponent(currency)
    most = STRIPE_MAX_AMOUNT // 10**shift if shift >= 0 else STRIPE_MAX_AMOUNT * 10**-shift
    return Money(most - most % card_step(currency).minor, currency)


def card_problem(amount: Money) -> CardProblem | None:
    """Why one card charge cannot take exactly `amount`, or None if it can."""
    if amount < card_minimum(amount.currency):
        return CardProblem.BELOW_CARD_MINIMUM
    if amount > card_maximum(amount.currency):
        return CardProblem.ABOVE_CARD_MAXIMUM
    if amount.minor % card_step(amount.currency).minor:
        return CardProblem.NOT_CARD_REPRESENTABLE
    return None


def card_chargeable_part(amount: Money) -> Money:
    """The most of `amount` one card charge can take: rounded down to what Stripe can
    express and capped at its maximum; zero when even that is below the minimum."""
    step = card_step(amount.currency).minor
    part = Money(
        min(amount.minor - amount.minor % step, card_maximum(amount.currency).minor),
        amount.currency,
    )
    return part if part >= card_minimum(amount.currency) else Money.zero(amount.currency)


def effective_minimum(configured: Money) -> Money:
    """The smallest partial payment the portal takes: the creditor's minimum for the
    currency (PAYMENT_MINIMUM, PAYMENT_MINIMUMS) or Stripe's card minimum, whichever is
    larger, rounded up to what a card can charge (a final 0 for KWD). One rule for the
    page's hint, the form's check and `start_checkout`: JPY 1 configured -> 50 (Stripe's
    JPY minimum), so a partial ¥10 is refused as below ¥50, not sent to bank transfer."""
    floor = max(configured, card_minimum(configured.currency))
    step = card_step(floor.currency).minor
    return Money(-(-floor.minor // step) * step, floor.currency)


def card_payable_now(total: Money) -> bool:
    """True if a card can take all of `total` or a part of it in one charge now (the pay
    page then offers that part); False for a balance no card can pay (¥2, 0.005 KWD)."""
    return card_chargeable_part(total).is_positive


def is_small_balance(amount: Money) -> bool:
    """A positive remainder no card can pay, even in part (below Stripe's minimum once
    rounded down to what Stripe can express: 0.49 USD, 0.005 KWD). Never dunned; a
    creditor's tolerance writes it off (`invoices.services.write_off_small_balances`)."""
    return amount.is_positive and not card_chargeable_part(amount).is_positive


@dataclass(frozen=True)
class CardAdvice:
    """Why one card charge cannot take `total`, and what it can take instead."""

    problem: CardProblem
    total: Money
    chargeable: Money  # the most one charge can take now; zero when none can
    minimum: Money
    maximum: Money
    step: Money

    @property
    def rest(self) -> Money:
        return self.total - self.chargeable


def card_advice(total: Money) -> CardAdvice | None:
    """None when one card charge can take `total` exactly; else the advice to show."""
    problem = card_problem(total)
    if problem is None:
        return None
    return CardAdvice(
        problem,
        total,
        card_chargeable_part(total),
        card_minimum(total.currency),
        card_maximum(total.currency),
        card_step(total.currency),
    )


# --- what the pay page shows before the card page ---------------------------------------
@dataclass(frozen=True)
class PaymentPreview:
    """Step 1 of paying: the total of the ticked invoices and what each would receive
    of `amount`, oldest due first, as `allocate` will apply it once the money is in.

    `applied` lists every ticked invoice, oldest due first, with its share (zero when a
    partial amount does not reach it). `problem` says why `amount` cannot be paid; the
    shares are then empty.
    """

    total: Money
    amount: Money
    applied: tuple[tuple[OpenItem, Money], ...]
    problem: AmountProblem | None

    @property
    def is_partial(self) -> bool:
        return self.problem is None and self.amount < self.total


def preview_payment(
    items: Sequence[OpenItem], amount: Money | None, minimum: Money
) -> PaymentPreview:
    """The preview for paying `amount` (None: everything) on `items` (one currency, at
    least one item). Raises nothing for a bad amount: `problem` says what is wrong."""
    currency = items[0].balance.currency
    total = Money.sum((item.balance for item in items), currency)
    wanted = total if amount is None else amount
    problem = check_amount(wanted, total, minimum)
    shares = dict(allocate(wanted, items)) if problem is None else {}
    zero = Money.zero(currency)
    applied = tuple(
        (item, shares.get(item.invoice_id, zero)) for item in sorted(items, key=_oldest_due_first)
    )
    return PaymentPreview(total, wanted, applied, problem)
