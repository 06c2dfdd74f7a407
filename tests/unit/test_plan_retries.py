"""Autopay's calendar: when an installment is charged, tried again, reminded, given up."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from portal.plans.retries import (
    CollectionRules,
    CollectionRulesInvalid,
    is_past_grace,
    is_reminder_due,
    last_day_to_pay,
    may_charge,
    next_attempt_on,
    parse_retry_days,
    rules_from_config,
)

DUE = date(2026, 3, 10)
RULES = CollectionRules(retry_days=(1, 3, 5), grace_days=7, reminder_days=3)


def day(offset: int) -> date:
    return DUE + timedelta(days=offset)


def test_defaults_are_retries_on_days_1_3_5_and_seven_days_grace():
    rules = rules_from_config({})
    assert rules == CollectionRules((1, 3, 5), 7, 3)
    assert rules.attempt_days == (0, 1, 3, 5)


def test_config_values_are_read():
    rules = rules_from_config(
        {"INSTALLMENT_RETRY_DAYS": " 2, 4 ", "PLAN_GRACE_DAYS": 10, "INSTALLMENT_REMINDER_DAYS": 5}
    )
    assert rules == CollectionRules((2, 4), 10, 5)


def test_no_retries_is_allowed():
    assert parse_retry_days("") == ()
    rules = CollectionRules((), 7, 3)
    assert may_charge(DUE, DUE, failed_attempts=0, last_attempt_on=None, rules=rules)
    assert not may_charge(DUE, day(1), failed_attempts=1, last_attempt_on=DUE, rules=rules)


@pytest.mark.parametrize(
    ("text", "grace"),
    [("1,x", 7), ("3,1", 7), ("1,1", 7), ("0,2", 7), ("1,8", 7), ("-1", 7)],
)
def test_malformed_retry_days_are_refused(text, grace):
    with pytest.raises(CollectionRulesInvalid):
        CollectionRules(parse_retry_days(text), grace, 3)


def test_negative_grace_and_zero_reminder_days_are_refused():
    with pytest.raises(CollectionRulesInvalid):
        CollectionRules((), -1, 3)
    with pytest.raises(CollectionRulesInvalid):
        CollectionRules((), 7, 0)


def test_first_charge_on_the_due_date_not_before():
    assert not may_charge(DUE, day(-1), failed_attempts=0, last_attempt_on=None, rules=RULES)
    assert may_charge(DUE, DUE, failed_attempts=0, last_attempt_on=None, rules=RULES)


def test_retries_follow_the_schedule():
    # after the first failure on day 0: not again on day 0, yes on day 1
    assert not may_charge(DUE, DUE, failed_attempts=1, last_attempt_on=DUE, rules=RULES)
    assert may_charge(DUE, day(1), failed_attempts=1, last_attempt_on=DUE, rules=RULES)
    # second failure on day 1: nothing on day 2, again on day 3
    assert not may_charge(DUE, day(2), failed_attempts=2, last_attempt_on=day(1), rules=RULES)
    assert may_charge(DUE, day(3), failed_attempts=2, last_attempt_on=day(1), rules=RULES)
    assert may_charge(DUE, day(5), failed_attempts=3, last_attempt_on=day(3), rules=RULES)
    # four attempts made: no fifth
    assert not may_charge(DUE, day(6), failed_attempts=4, last_attempt_on=day(5), rules=RULES)


def test_a_runner_stopped_for_days_makes_one_attempt_a_day():
    assert may_charge(DUE, day(4), failed_attempts=0, last_attempt_on=None, rules=RULES)
    assert not may_charge(DUE, day(4), failed_attempts=1, last_attempt_on=day(4), rules=RULES)
    assert may_charge(DUE, day(5), failed_attempts=1, last_attempt_on=day(4), rules=RULES)


def test_no_charge_after_the_grace_period():
    assert last_day_to_pay(DUE, RULES) == day(7)
    assert not is_past_grace(DUE, day(7), RULES)
    assert is_past_grace(DUE, day(8), RULES)
    assert not may_charge(DUE, day(8), failed_attempts=0, last_attempt_on=None, rules=RULES)


def test_next_attempt_is_the_next_retry_day_and_none_when_none_is_left():
    assert next_attempt_on(DUE, DUE, failed_attempts=1, rules=RULES) == day(1)
    assert next_attempt_on(DUE, day(1), failed_attempts=2, rules=RULES) == day(3)
    # a late first attempt: the retry is tomorrow, not a day already gone
    assert next_attempt_on(DUE, day(4), failed_attempts=1, rules=RULES) == day(5)
    assert next_attempt_on(DUE, day(5), failed_attempts=4, rules=RULES) is None
    # a retry that would fall after the grace period is none
    assert next_attempt_on(DUE, day(7), failed_attempts=3, rules=RULES) is None


def test_reminder_window_is_three_days_before_until_the_day_before():
    assert not is_reminder_due(DUE, day(-4), RULES)
    assert is_reminder_due(DUE, day(-3), RULES)
    assert is_reminder_due(DUE, day(-1), RULES)
    assert not is_reminder_due(DUE, DUE, RULES)


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ({"INSTALLMENT_RETRY_DAYS": "1,two"}, "'two' is not a number of days"),
        ({"INSTALLMENT_RETRY_DAYS": "3,1"}, "increasing"),
        ({"INSTALLMENT_RETRY_DAYS": "1,9"}, "day 9 is after the grace period"),
        ({"PLAN_GRACE_DAYS": -2}, "PLAN_GRACE_DAYS must be zero or more"),
    ],
)
def test_a_bad_autopay_setting_stops_the_app_with_a_clear_message(setting, problem):
    from portal import create_app
    from portal.config import ConfigurationError

    with pytest.raises(ConfigurationError, match=problem):
        create_app(setting, env_name="testing")
