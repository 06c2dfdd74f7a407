"""How old a dispute is, in business days, against the resolution target.

Pure functions on dates (no database, no Flask). A business day is Monday to Friday;
public holidays are not known to the portal and count as business days. The age of a
dispute opened on day D and looked at on day T is the number of business days after D up
to and including T: opened on a Friday and looked at on the Monday after, it is 1 day old;
looked at on the day it was opened, 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

# Config DISPUTE_TARGET_BUSINESS_DAYS: the target a specialist resolves a dispute within.
DEFAULT_TARGET_BUSINESS_DAYS = 10
_WEEK = 7
_WORKDAYS = 5


def business_days_between(start: date, end: date) -> int:
    """Business days in (start, end]: Mondays to Fridays after `start` up to `end`.

    0 when `end` is on or before `start`. Exact for any span (whole weeks are counted,
    not walked day by day)."""
    if end <= start:
        return 0
    days = (end - start).days
    weeks, rest = divmod(days, _WEEK)
    count = weeks * _WORKDAYS
    day = start + timedelta(days=weeks * _WEEK)
    for _ in range(rest):
        day += timedelta(days=1)
        if day.weekday() < _WORKDAYS:
            count += 1
    return count


@dataclass(frozen=True)
class Age:
    """A dispute's age: `days` business days against a `target` (both ints)."""

    days: int
    target: int

    @property
    def is_over_target(self) -> bool:
        """Older than the target (on the target day itself it is still within)."""
        return self.days > self.target

    @property
    def days_left(self) -> int:
        """Business days left before the target passes (0 when it has)."""
        return max(0, self.target - self.days)


def age_of(opened_on: date, today: date, target: int) -> Age:
    """The age of something opened on `opened_on`, as seen on `today`."""
    return Age(business_days_between(opened_on, today), target)
