"""Pure rules for applying money to invoices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from portal.errors import DomainError
from portal.money import Money


class Overpayment(DomainError):
    """The payment is larger than what the targeted invoices still owe."""


@dataclass(frozen=True)
class OpenItem:
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
    for item in sorted(items, key=lambda i: (i.due_date, i.number)):
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


# --- what a customer may pay ------------------------------------------------------------
class AmountProblem(StrEnum):
    NOT_POSITIVE = "not_positive"
    BELOW_MINIMUM = "below_minimum"
    ABOVE_PAYABLE = "above_payable"


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
    ordered = sorted(items, key=lambda i: (i.due_date, i.number))
    applied = tuple((item, shares.get(item.invoice_id, Money.zero(currency))) for item in ordered)
    return PaymentPreview(total, wanted, applied, problem)
