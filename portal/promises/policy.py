"""Pure rules for promises to pay: how far ahead, how much, and kept or broken."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from portal.money import Money

# How far ahead a customer may promise from the portal (config PROMISE_MAX_DAYS): a
# promise pauses reminders, so an open-ended one would be an opt-out by another name.
PROMISE_MAX_DAYS = 14
# A specialist, on a call, may agree to a later date than the portal offers.
STAFF_PROMISE_MAX_DAYS = 90


class PromiseProblem(StrEnum):
    DATE_PAST = "date_past"
    DATE_TOO_FAR = "date_too_far"
    AMOUNT_NOT_POSITIVE = "amount_not_positive"
    AMOUNT_TOO_LARGE = "amount_too_large"
    NO_INVOICES = "no_invoices"


@dataclass(frozen=True)
class PromiseTerms:
    today: date  # the customer's today
    promised_on: date
    amount: Money
    open_amount: Money  # what the covered invoices still owe
    max_days: int


def promise_problem(terms: PromiseTerms) -> PromiseProblem | None:
    """What is wrong with these terms, or None. The date is inclusive and at most
    `max_days` after today; the amount is more than zero and at most what is open."""
    if terms.promised_on < terms.today:
        return PromiseProblem.DATE_PAST
    if terms.promised_on > terms.today + timedelta(days=terms.max_days):
        return PromiseProblem.DATE_TOO_FAR
    if not terms.open_amount.is_positive:
        return PromiseProblem.NO_INVOICES
    if not terms.amount.is_positive:
        return PromiseProblem.AMOUNT_NOT_POSITIVE
    if terms.amount > terms.open_amount:
        return PromiseProblem.AMOUNT_TOO_LARGE
    return None


def is_due_for_decision(promised_on: date, today: date) -> bool:
    """A promise is decided the day after its date: the whole date is the customer's."""
    return today > promised_on


def is_kept(amount: Money, paid: Money) -> bool:
    """Kept when what covering payments brought by the date reaches the amount; a
    promise kept in part is broken (the rest is chased), its `paid` shown."""
    return paid >= amount
