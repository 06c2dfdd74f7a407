"""When autopay charges an installment, tries again, reminds, and gives up: pure dates.

Day 0 is the installment's due date, in the customer's time zone. The first charge is
made on day 0; a charge that fails (declined, or the bank wants the customer to
authenticate) is tried again on each day of INSTALLMENT_RETRY_DAYS ("1,3,5": days 1, 3
and 5), at most once a day, never after the grace period. An installment still unpaid
after day PLAN_GRACE_DAYS (default 7) breaks the plan on day 8. A reminder goes
INSTALLMENT_REMINDER_DAYS (default 3) before the due date. README, "Payment plans:
autopay".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

DEFAULT_RETRY_DAYS = (1, 3, 5)
DEFAULT_GRACE_DAYS = 7
DEFAULT_REMINDER_DAYS = 3


class CollectionRulesInvalid(ValueError):
    """INSTALLMENT_RETRY_DAYS, PLAN_GRACE_DAYS or INSTALLMENT_REMINDER_DAYS is malformed."""


@dataclass(frozen=True)
class CollectionRules:
    """`retry_days`: days after the due date, strictly increasing, each within the grace
    period; `grace_days`: days after the due date an installment may still be paid;
    `reminder_days`: days before the due date the reminder goes."""

    retry_days: tuple[int, ...] = DEFAULT_RETRY_DAYS
    grace_days: int = DEFAULT_GRACE_DAYS
    reminder_days: int = DEFAULT_REMINDER_DAYS

    def __post_init__(self) -> None:
        if self.grace_days < 0:
            raise CollectionRulesInvalid("PLAN_GRACE_DAYS must be zero or more")
        if self.reminder_days < 1:
            raise CollectionRulesInvalid("INSTALLMENT_REMINDER_DAYS must be 1 or more")
        previous = 0
        for day in self.retry_days:
            if day <= previous:
                raise CollectionRulesInvalid(
                    "INSTALLMENT_RETRY_DAYS must be whole days after the due date, "
                    "increasing, e.g. 1,3,5"
                )
            if day > self.grace_days:
                raise CollectionRulesInvalid(
                    f"INSTALLMENT_RETRY_DAYS: day {day} is after the grace period "
                    f"(PLAN_GRACE_DAYS={self.grace_days})"
                )
            previous = day

    @property
    def attempt_days(self) -> tuple[int, ...]:
        """The day of each charge attempt: the due date, then the retries."""
        return (0, *self.retry_days)


def parse_retry_days(text: str) -> tuple[int, ...]:
    """ "1,3,5" -> (1, 3, 5); "" -> no retries. CollectionRulesInvalid if not integers."""
    days = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        if not part.isdigit():
            raise CollectionRulesInvalid(
                f"INSTALLMENT_RETRY_DAYS: {part!r} is not a number of days"
            )
        days.append(int(part))
    return tuple(days)


def rules_from_config(config: Mapping[str, Any]) -> CollectionRules:
    """The rules the app is configured with; CollectionRulesInvalid names a bad setting."""
    return CollectionRules(
        retry_days=parse_retry_days(
            str(config.get("INSTALLMENT_RETRY_DAYS", ",".join(map(str, DEFAULT_RETRY_DAYS))))
        ),
        grace_days=int(config.get("PLAN_GRACE_DAYS", DEFAULT_GRACE_DAYS)),
        reminder_days=int(config.get("INSTALLMENT_REMINDER_DAYS", DEFAULT_REMINDER_DAYS)),
    )


def last_day_to_pay(due_date: date, rules: CollectionRules) -> date:
    """The last day an installment may be paid before the plan breaks (inclusive)."""
    return due_date + timedelta(days=rules.grace_days)


def is_past_grace(due_date: date, today: date, rules: CollectionRules) -> bool:
    """True once the grace period is over: an unpaid installment then breaks the plan."""
    return today > last_day_to_pay(due_date, rules)


def may_charge(
    due_date: date,
    today: date,
    *,
    failed_attempts: int,
    last_attempt_on: date | None,
    rules: CollectionRules,
) -> bool:
    """Whether autopay may try the installment today.

    `failed_attempts`: charges of it that failed so far; `last_attempt_on`: the day (in
    the customer's time zone) of the latest. One attempt a day at most, so a runner
    that was stopped for days does not fire the missed retries one after another.
    """
    days = rules.attempt_days
    if failed_attempts >= len(days) or is_past_grace(due_date, today, rules):
        return False
    if last_attempt_on is not None and last_attempt_on >= today:
        return False
    return today >= due_date + timedelta(days=days[failed_attempts])


def next_attempt_on(
    due_date: date, today: date, *, failed_attempts: int, rules: CollectionRules
) -> date | None:
    """The day autopay tries again after `failed_attempts` failures (the latest today);
    None when no retry is left."""
    days = rules.attempt_days
    if failed_attempts >= len(days):
        return None
    retry_on = max(due_date + timedelta(days=days[failed_attempts]), today + timedelta(days=1))
    return retry_on if retry_on <= last_day_to_pay(due_date, rules) else None


def is_reminder_due(due_date: date, today: date, rules: CollectionRules) -> bool:
    """From `reminder_days` before the due date until the day before it (a runner that
    missed the exact day still reminds; the outbox's dedupe key makes it once)."""
    return due_date - timedelta(days=rules.reminder_days) <= today < due_date
