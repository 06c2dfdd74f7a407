"""Pure rules for applying money to invoices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

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
