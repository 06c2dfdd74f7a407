"""Installment schedules: pure date and money arithmetic, no database, no Flask.

A plan of `total` with a down payment pays the down payment on the day it is agreed and
the rest, `total - down_payment`, in `count` installments numbered 1..count. The amounts
differ by at most one minor unit and sum exactly to `total - down_payment`; the
remainder of the division goes to the FIRST installments, one minor unit each (README,
"Payment plans"). 100.00 in 3 is 33.34, 33.33, 33.33.

Dates: weekly and biweekly installments fall every 7 and 14 days after the first date.
Monthly installments fall on the first date's day of the month, clamped to the length of
each month and always computed from the first date (never chained from the previous
installment), so 31 January gives 28 (or 29) February, then 31 March, 30 April.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum

from portal.money import CurrencyMismatch, InvalidAmount, Money

# The most installments any schedule has, whatever a policy says: a guard against a
# typed "1000000" turning into a million rows.
MAX_SCHEDULE_INSTALLMENTS = 520


class Frequency(StrEnum):
    WEEKLY = "weekly"
    BIWEEKLY = "biweekly"
    MONTHLY = "monthly"


# Nearest first: used when a proposal's frequency is not allowed (policy.suggest).
FREQUENCY_DAYS: dict[Frequency, int] = {
    Frequency.WEEKLY: 7,
    Frequency.BIWEEKLY: 14,
    Frequency.MONTHLY: 30,
}


@dataclass(frozen=True, slots=True)
class Installment:
    """One scheduled payment: `number` counts from 1, `amount` is never zero."""

    number: int
    due_date: date
    amount: Money


def add_months(start: date, months: int) -> date:
    """`start` moved by `months` calendar months, its day clamped to the month's length
    (31 Jan + 1 month = 28 or 29 Feb; 31 Jan + 2 months = 31 Mar). `months` may be < 0."""
    index = start.year * 12 + (start.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def due_dates(frequency: Frequency, count: int, first_date: date) -> list[date]:
    """The `count` due dates of a schedule starting on `first_date` (see module doc).

    Raises ValueError if `count` is below 1 or above MAX_SCHEDULE_INSTALLMENTS, and
    OverflowError if a date would pass 31 December 9999."""
    if not 1 <= count <= MAX_SCHEDULE_INSTALLMENTS:
        raise ValueError(f"a schedule has 1 to {MAX_SCHEDULE_INSTALLMENTS} installments")
    match Frequency(frequency):
        case Frequency.WEEKLY:
            return [first_date + timedelta(days=7 * i) for i in range(count)]
        case Frequency.BIWEEKLY:
            return [first_date + timedelta(days=14 * i) for i in range(count)]
        case Frequency.MONTHLY:
            return [add_months(first_date, i) for i in range(count)]


def last_due_date(frequency: Frequency, count: int, first_date: date) -> date:
    """The date of installment number `count` (the last)."""
    return due_dates(frequency, count, first_date)[-1]


def build_schedule(
    total: Money,
    down_payment: Money,
    frequency: Frequency,
    count: int,
    first_date: date,
) -> list[Installment]:
    """Installments 1..count for `total - down_payment` (the down payment is not one of
    them: it is due the day the plan is agreed, see services.propose_plan).

    Sums exactly: sum(amounts) + down_payment == total, in minor units; the remainder
    goes one minor unit each to the first installments. Raises InvalidAmount when the
    total is not positive, the down payment is negative or leaves less than one minor
    unit per installment; CurrencyMismatch across currencies; ValueError for a count
    outside 1..MAX_SCHEDULE_INSTALLMENTS.
    """
    if total.currency != down_payment.currency:
        raise CurrencyMismatch(f"{total.currency} and {down_payment.currency} do not mix")
    if not total.is_positive:
        raise InvalidAmount("a plan's total must be more than zero")
    if down_payment.is_negative:
        raise InvalidAmount("a down payment cannot be negative")
    dates = due_dates(frequency, count, first_date)
    financed = total - down_payment
    if financed.minor < count:
        raise InvalidAmount("too little is left after the down payment for that many installments")
    return [
        Installment(number=i + 1, due_date=day, amount=amount)
        for i, (day, amount) in enumerate(zip(dates, financed.split(count), strict=True))
    ]


def calendar_days_waiting(since: datetime, now: datetime, zone: tzinfo) -> int:
    """Whole calendar days from `since` to `now` (aware datetimes, any offset) as the
    calendar of `zone` (the creditor's time zone, where the specialists work) counts them:
    a request sent at 19:00 in New York (00:00 UTC the next day) and read at 20:00 the same
    evening waits 0 days, not 1. Never negative."""
    return max(0, (now.astimezone(zone).date() - since.astimezone(zone).date()).days)
