"""Plan schedules: exact sums, calendar-correct months, increasing dates (README)."""

from __future__ import annotations

import itertools
from calendar import monthrange
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.money import InvalidAmount, Money
from portal.plans.schedule import Frequency, build_schedule, calendar_days_waiting, due_dates

# One currency per exponent: 0 (JPY), 2 (USD), 3 (KWD).
currencies = st.sampled_from(["JPY", "USD", "KWD"])
frequencies = st.sampled_from(list(Frequency))
first_dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Money, Money, Frequency, int, date]:
    currency = draw(currencies)
    count = draw(st.integers(min_value=1, max_value=60))
    total = draw(st.integers(min_value=count, max_value=10**12))
    down = draw(st.integers(min_value=0, max_value=total - count))
    return (
        Money(total, currency),
        Money(down, currency),
        draw(frequencies),
        count,
        draw(first_dates),
    )


@settings(deadline=None)  # a shared 2-core machine: time is not the property
@given(schedules())
def test_installments_sum_exactly_to_total_less_down_payment(case):
    total, down, frequency, count, first = case
    installments = build_schedule(total, down, frequency, count, first)
    assert sum(i.amount.minor for i in installments) + down.minor == total.minor
    assert all(i.amount.currency == total.currency for i in installments)
    amounts = [i.amount.minor for i in installments]
    assert max(amounts) - min(amounts) <= 1
    assert amounts == sorted(amounts, reverse=True)  # the remainder goes to the first


@settings(deadline=None)  # a shared 2-core machine: time is not the property
@given(schedules())
def test_count_numbers_and_increasing_dates(case):
    total, down, frequency, count, first = case
    installments = build_schedule(total, down, frequency, count, first)
    assert [i.number for i in installments] == list(range(1, count + 1))
    assert installments[0].due_date == first
    days = [i.due_date for i in installments]
    assert all(a < b for a, b in itertools.pairwise(days))


@settings(deadline=None)  # a shared 2-core machine: time is not the property
@given(schedules())
def test_frequency_is_respected(case):
    total, down, frequency, count, first = case
    days = [i.due_date for i in build_schedule(total, down, frequency, count, first)]
    for i, day in enumerate(days):
        if frequency is Frequency.WEEKLY:
            assert day == first + timedelta(days=7 * i)
        elif frequency is Frequency.BIWEEKLY:
            assert day == first + timedelta(days=14 * i)
        else:
            months = (day.year - first.year) * 12 + day.month - first.month
            assert months == i
            # The first date's day, clamped to the month's length (not chained).
            assert day.day == min(first.day, monthrange(day.year, day.month)[1])


def test_month_end_dates_are_clamped_from_the_first_date_not_chained():
    assert due_dates(Frequency.MONTHLY, 4, date(2027, 1, 31)) == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
    ]
    assert due_dates(Frequency.MONTHLY, 2, date(2028, 1, 31))[1] == date(2028, 2, 29)
    assert due_dates(Frequency.MONTHLY, 3, date(2027, 11, 30))[2] == date(2028, 1, 30)


def test_remainder_goes_to_the_first_installments_one_unit_each():
    installments = build_schedule(
        Money(10_000, "USD"), Money(0, "USD"), Frequency.MONTHLY, 3, date(2027, 1, 1)
    )
    assert [i.amount.minor for i in installments] == [3334, 3333, 3333]
    jpy = build_schedule(
        Money(1000, "JPY"), Money(100, "JPY"), Frequency.WEEKLY, 7, date(2027, 1, 1)
    )
    assert [i.amount.minor for i in jpy] == [129, 129, 129, 129, 128, 128, 128]


@pytest.mark.parametrize(
    ("total", "down", "count"),
    [(0, 0, 1), (100, -1, 1), (100, 100, 1), (100, 98, 3)],
)
def test_impossible_schedules_are_refused(total, down, count):
    with pytest.raises(InvalidAmount):
        build_schedule(
            Money(total, "USD"), Money(down, "USD"), Frequency.WEEKLY, count, date(2027, 1, 1)
        )


@pytest.mark.parametrize("count", [0, -1, 521])
def test_count_out_of_range_is_refused(count):
    with pytest.raises(ValueError, match="installments"):
        build_schedule(
            Money(10**9, "USD"), Money(0, "USD"), Frequency.WEEKLY, count, date(2027, 1, 1)
        )


NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("since", "now", "days"),
    [
        # 19:00 and 20:00 in New York on 29 November: the same evening, though UTC has
        # already turned to the 30th at the second one.
        (datetime(2026, 11, 29, 23, 59, tzinfo=UTC), datetime(2026, 11, 30, 1, 0, tzinfo=UTC), 0),
        # 23:30 on the 29th in New York, read at 00:30 on the 30th: a day, though UTC
        # (04:30 and 05:30 on the 30th) says none.
        (datetime(2026, 11, 30, 4, 30, tzinfo=UTC), datetime(2026, 11, 30, 5, 30, tzinfo=UTC), 1),
        (datetime(2026, 11, 1, 12, 0, tzinfo=UTC), datetime(2026, 11, 30, 12, 0, tzinfo=UTC), 29),
        (datetime(2026, 11, 30, 12, 0, tzinfo=UTC), datetime(2026, 11, 29, 12, 0, tzinfo=UTC), 0),
    ],
)
def test_days_waiting_are_counted_on_the_creditors_calendar(since, now, days):
    assert calendar_days_waiting(since, now, NEW_YORK) == days
