"""Pure rules for when customer email may go out, and how often it is retried."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Customer email is delivered only between these local times (08:00 to 21:00).
WINDOW_OPENS = time(8, 0)
WINDOW_CLOSES = time(21, 0)

MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)


def next_delivery_time(now: datetime, zone: ZoneInfo) -> datetime:
    """`now` if it falls inside the customer's window, else the window's next opening (UTC).

    Computed on local wall-clock dates, so a DST change moves the opening with the clock.
    """
    local = now.astimezone(zone)
    if WINDOW_OPENS <= local.time() < WINDOW_CLOSES:
        return now
    opening_day = local.date() if local.time() < WINDOW_OPENS else local.date() + timedelta(days=1)
    return datetime.combine(opening_day, WINDOW_OPENS, tzinfo=zone).astimezone(UTC)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff after `attempts` failed attempts: 1, 2, 4 … minutes, capped."""
    if attempts < 1:
        return timedelta(0)
    delay: timedelta = FIRST_RETRY * (2 ** (attempts - 1))
    return min(delay, LONGEST_RETRY)


def has_attempts_left(attempts: int) -> bool:
    return attempts < MAX_ATTEMPTS


def reminder_stage(due_date: date, today: date, offsets: Iterable[int]) -> int | None:
    """The latest cadence step (days from the due date) reached by `today`, if any.

    Only the latest step is ever sent: after an outage the customer gets one
    reminder, not every step that was missed.
    """
    reached = [offset for offset in offsets if due_date + timedelta(days=offset) <= today]
    return max(reached) if reached else None


def fell_while_held(step_date: date, holds: Iterable[tuple[date, date]]) -> bool:
    """Whether a reminder step dated `step_date` fell while a dispute held the invoice:
    inside some (opened on, decided on) window, the decision day excluded.

    Such a step is never sent late: after a rejection (or a withdrawal, or an acceptance
    in part) reminders resume with the next step from the day of the decision, never
    retroactively (issue 12; Regulation F § 1006.38 stops collection of a disputed amount
    until it is verified).
    """
    return any(opened_on <= step_date < decided_on for opened_on, decided_on in holds)
