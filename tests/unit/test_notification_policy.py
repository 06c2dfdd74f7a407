"""Quiet hours across time zones and DST, backoff, and the reminder stage rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.notifications.policy import (
    LONGEST_RETRY,
    next_delivery_time,
    reminder_stage,
    retry_delay,
)

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    ("now", "zone", "expected"),
    [
        # inside the window: now
        (
            datetime(2026, 6, 1, 14, 0, tzinfo=UTC),
            NEW_YORK,
            datetime(2026, 6, 1, 14, 0, tzinfo=UTC),
        ),
        # 20:59 local is still inside; 21:00 is not
        (
            datetime(2026, 6, 2, 0, 59, tzinfo=UTC),
            NEW_YORK,
            datetime(2026, 6, 2, 0, 59, tzinfo=UTC),
        ),
        (datetime(2026, 6, 2, 1, 0, tzinfo=UTC), NEW_YORK, datetime(2026, 6, 2, 12, 0, tzinfo=UTC)),
        # early morning waits for 08:00 the same day
        (datetime(2026, 6, 1, 9, 0, tzinfo=UTC), NEW_YORK, datetime(2026, 6, 1, 12, 0, tzinfo=UTC)),
        # Tokyo is ahead of UTC: 23:00 UTC is 08:00 the next day there
        (datetime(2026, 6, 1, 22, 0, tzinfo=UTC), TOKYO, datetime(2026, 6, 1, 23, 0, tzinfo=UTC)),
        # DST ends in New York on 2026-11-01: 22:00 EDT on Oct 31 waits for 08:00 EST
        (
            datetime(2026, 11, 1, 2, 0, tzinfo=UTC),
            NEW_YORK,
            datetime(2026, 11, 1, 13, 0, tzinfo=UTC),
        ),
        # DST starts on 2026-03-08: 23:00 EST on Mar 7 waits for 08:00 EDT
        (datetime(2026, 3, 8, 4, 0, tzinfo=UTC), NEW_YORK, datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
    ],
)
def test_delivery_window_is_eight_to_nine_local(now, zone, expected):
    assert next_delivery_time(now, zone) == expected


def test_window_opening_is_always_eight_local_all_year():
    start = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    for day in range(366):
        now = start + timedelta(days=day)
        opening = next_delivery_time(now, NEW_YORK).astimezone(NEW_YORK)
        assert (opening.hour, opening.minute) == (8, 0)


def test_backoff_doubles_and_is_capped():
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert retry_delay(30) == LONGEST_RETRY
    assert retry_delay(0) == timedelta(0)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 11, 27), None),
        (date(2026, 11, 28), -3),
        (date(2026, 11, 30), -3),
        (date(2026, 12, 1), -3),  # due today: still the "before" step
        (date(2026, 12, 2), 1),
        (date(2026, 12, 8), 7),
        (date(2026, 12, 31), 30),
        (date(2027, 6, 1), 30),
    ],
)
def test_reminder_stage_is_latest_step_reached(today, expected):
    assert reminder_stage(date(2026, 12, 1), today, [-3, 1, 7, 14, 30]) == expected
