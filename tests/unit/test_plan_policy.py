"""Plan policy: each limit explained in words, the suggestion always passes (README)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.money import InvalidAmount, Money
from portal.plans.policy import (
    Limit,
    PlanPolicy,
    Proposal,
    check,
    default_policy,
    offers,
    policy_problems,
    schedule_for,
    suggest,
)
from portal.plans.schedule import Frequency

TODAY = date(2026, 11, 30)


def proposal(**changes) -> Proposal:
    """6 monthly payments of 1,000.00 USD less 10 % down, starting in a month: passes."""
    base = Proposal(
        total=Money(100_000, "USD"),
        down_payment=Money(10_000, "USD"),
        frequency=Frequency.MONTHLY,
        installments=6,
        first_payment_date=date(2026, 12, 30),
        today=TODAY,
    )
    return replace(base, **changes)


def limits(p: Proposal, policy: PlanPolicy | None = None) -> list[Limit]:
    return [b.limit for b in check(p, policy or default_policy())]


def test_standard_defaults_match_the_readme():
    policy = default_policy()
    assert policy.segment == "standard"
    assert policy.max_installments == 6
    assert policy.frequencies == frozenset(Frequency)
    assert policy.max_duration_months == 6
    assert policy.min_installment_for("USD") == Money(2_000, "USD")
    assert policy.min_installment_for("JPY") == Money(2_000, "JPY")
    assert policy.min_installment_for("KWD") == Money(20_000, "KWD")
    assert policy.min_down_payment_percent == 10
    assert policy.max_first_payment_days == 30
    assert policy.max_total_for("EUR") == Money(1_000_000, "EUR")
    assert policy.max_total_for("JPY") == Money(1_000_000, "JPY")
    assert policy.max_total_for("KWD") == Money(10_000_000, "KWD")
    assert policy.autopay_required is False
    assert policy.cooling_off_days == 90
    assert policy_problems(policy) == []


def test_a_proposal_within_every_limit_passes():
    assert check(proposal(), default_policy()) == []
    assert suggest(proposal(), default_policy()) == proposal()


def test_too_many_installments_is_explained():
    breaches = check(proposal(installments=7, frequency=Frequency.WEEKLY), default_policy())
    assert [b.limit for b in breaches] == [Limit.INSTALLMENTS]
    assert breaches[0].message == "7 installments is over the limit of 6."


def test_a_frequency_not_allowed_is_explained():
    policy = replace(default_policy(), frequencies=frozenset({Frequency.MONTHLY}))
    breaches = check(proposal(frequency=Frequency.WEEKLY), policy)
    assert [b.limit for b in breaches] == [Limit.FREQUENCY]
    assert breaches[0].message == "Payments weekly are not offered (allowed: monthly)."


def test_a_plan_longer_than_the_duration_is_explained():
    policy = replace(default_policy(), max_installments=12, max_duration_months=3)
    breaches = check(proposal(installments=4), policy)
    assert [b.limit for b in breaches] == [Limit.DURATION]
    assert "longer than 3 months" in breaches[0].message
    assert limits(proposal(installments=3), policy) == []


def test_an_installment_below_the_minimum_is_explained():
    # 120.00 - 12.00 down = 108.00 in 6: 18.00 each, below 20.00.
    p = proposal(total=Money(12_000, "USD"), down_payment=Money(1_200, "USD"))
    breaches = check(p, default_policy())
    assert [b.limit for b in breaches] == [Limit.MIN_INSTALLMENT]
    assert breaches[0].message == "Installments of $18.00 are below the minimum of $20.00."


@pytest.mark.parametrize(("currency", "minimum"), [("JPY", 2_000), ("USD", 2_000), ("KWD", 20_000)])
def test_the_minimum_installment_scales_with_the_currency_exponent(currency, minimum):
    total = Money(minimum * 6 * 10 // 9 + 10, currency)  # just enough for 6 after 10 % down
    p = proposal(total=total, down_payment=default_policy().min_down_payment_for(total))
    assert limits(p) == []
    assert limits(replace(p, installments=6, total=total - Money(20, currency))) == [
        Limit.MIN_INSTALLMENT
    ]


def test_a_down_payment_below_the_percentage_is_explained():
    breaches = check(proposal(down_payment=Money(9_999, "USD")), default_policy())
    assert [b.limit for b in breaches] == [Limit.DOWN_PAYMENT]
    assert breaches[0].message == (
        "A down payment of $99.99 is below the minimum of 10% of the total ($100.00)."
    )


def test_the_minimum_down_payment_rounds_up():
    assert default_policy().min_down_payment_for(Money(1_001, "USD")) == Money(101, "USD")


def test_a_first_payment_too_late_is_explained():
    late = proposal(first_payment_date=TODAY + timedelta(days=31))
    breaches = check(late, default_policy())
    assert [b.limit for b in breaches] == [Limit.FIRST_PAYMENT]
    assert breaches[0].message == (
        "The first payment on Dec 31, 2026 is more than 30 days away (at the latest Dec 30, 2026)."
    )
    assert limits(proposal(first_payment_date=TODAY + timedelta(days=30))) == []


def test_a_first_payment_today_or_before_is_refused():
    assert limits(proposal(first_payment_date=TODAY)) == [Limit.FIRST_PAYMENT]
    assert check(proposal(first_payment_date=TODAY), default_policy())[0].message == (
        "The first payment must be after today."
    )


def test_a_total_over_the_maximum_is_explained():
    p = proposal(total=Money(1_000_001, "USD"), down_payment=Money(100_001, "USD"))
    breaches = check(p, default_policy())
    assert [b.limit for b in breaches] == [Limit.MAX_TOTAL]
    assert breaches[0].message == "A plan of $10,000.01 is over the limit of $10,000.00."
    assert suggest(p, default_policy()) is None


def test_autopay_required_is_explained():
    policy = replace(default_policy(), autopay_required=True)
    assert limits(proposal(), policy) == [Limit.AUTOPAY]
    assert limits(proposal(autopay=True), policy) == []
    assert suggest(proposal(), policy) == proposal(autopay=True)


def test_every_broken_limit_is_listed_at_once():
    p = proposal(
        installments=12,
        down_payment=Money(0, "USD"),
        first_payment_date=TODAY + timedelta(days=40),
    )
    assert limits(p) == [
        Limit.INSTALLMENTS,
        Limit.DURATION,
        Limit.DOWN_PAYMENT,
        Limit.FIRST_PAYMENT,
    ]


def test_messages_are_translated(app):
    with app.test_request_context(headers={"Accept-Language": "fr"}):
        message = check(proposal(installments=7, frequency=Frequency.WEEKLY), default_policy())[0]
        assert "7" in message.message
        assert message.message != "7 installments is over the limit of 6."


def test_suggestion_keeps_total_and_frequency_and_takes_fewer_installments():
    # 12 monthly payments of 1,000.00 less 10 %: 6 monthly payments of 150.00 pass.
    suggestion = suggest(proposal(installments=12), default_policy())
    assert suggestion == proposal(installments=6)


def test_suggestion_takes_fewer_installments_when_they_would_be_too_small():
    p = proposal(total=Money(10_000, "USD"), down_payment=Money(1_000, "USD"))
    suggestion = suggest(p, default_policy())
    assert suggestion is not None
    assert suggestion.installments == 4  # 90.00 in 4 is 22.50; in 5, 18.00
    assert suggestion.frequency is Frequency.MONTHLY
    assert suggestion.total == p.total


def test_suggestion_raises_the_down_payment_to_the_minimum():
    suggestion = suggest(proposal(down_payment=Money(0, "USD")), default_policy())
    assert suggestion == proposal()


def test_suggestion_moves_the_first_payment_into_the_window():
    suggestion = suggest(proposal(first_payment_date=TODAY + timedelta(days=90)), default_policy())
    assert suggestion is not None
    assert suggestion.first_payment_date == TODAY + timedelta(days=30)


def test_suggestion_picks_the_nearest_allowed_frequency():
    policy = replace(
        default_policy(), frequencies=frozenset({Frequency.BIWEEKLY, Frequency.MONTHLY})
    )
    suggestion = suggest(proposal(frequency=Frequency.WEEKLY), policy)
    assert suggestion is not None
    assert suggestion.frequency is Frequency.BIWEEKLY


def test_no_suggestion_when_one_installment_is_too_small():
    p = proposal(total=Money(2_100, "USD"), down_payment=Money(210, "USD"))
    assert suggest(p, default_policy()) is None


def test_proposal_shape_is_checked():
    with pytest.raises(InvalidAmount):
        proposal(down_payment=Money(100_000, "USD"))
    with pytest.raises(InvalidAmount):
        proposal(total=Money(0, "USD"), down_payment=Money(0, "USD"))
    with pytest.raises(InvalidAmount):
        proposal(down_payment=Money(10, "EUR"))
    with pytest.raises(ValueError, match="installments"):
        proposal(installments=0)


def test_policy_limits_round_trip_through_json():
    policy = replace(
        default_policy("vip"),
        version=3,
        frequencies=frozenset({Frequency.MONTHLY}),
        min_installment={0: 5, 2: 5, 3: 50},
        autopay_required=True,
    )
    assert PlanPolicy.from_limits("vip", 3, policy.to_limits()) == policy


def test_policy_problems_are_listed():
    bad = replace(
        default_policy(),
        max_installments=0,
        frequencies=frozenset(),
        min_down_payment_percent=100,
        max_first_payment_days=0,
        min_installment={0: 0, 2: 0, 3: 0},
    )
    assert len(policy_problems(bad)) == 5


def test_offers_all_pass_and_use_the_policy():
    found = offers(Money(187_500, "USD"), default_policy(), TODAY)
    assert found
    assert {(o.frequency, o.installments) for o in found} >= {
        (Frequency.MONTHLY, 3),
        (Frequency.MONTHLY, 6),
    }
    for offer in found:
        assert check(offer, default_policy()) == []
        assert offer.total == Money(187_500, "USD")
    monthly6 = next(o for o in found if (o.frequency, o.installments) == (Frequency.MONTHLY, 6))
    # 1,875.00 - 187.50 down = 1,687.50 in 6 payments of 281.25
    assert {i.amount for i in schedule_for(monthly6)} == {Money(28_125, "USD")}


def test_no_offers_over_the_maximum_total():
    assert offers(Money(1_000_001, "USD"), default_policy(), TODAY) == []


# --- properties -------------------------------------------------------------------------

currencies = st.sampled_from(["JPY", "USD", "KWD"])


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    currency = draw(currencies)
    total = draw(st.integers(min_value=1, max_value=50_000_000))
    down = draw(st.integers(min_value=0, max_value=total - 1))
    today = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2040, 12, 31)))
    return Proposal(
        total=Money(total, currency),
        down_payment=Money(down, currency),
        frequency=draw(st.sampled_from(list(Frequency))),
        installments=draw(st.integers(min_value=1, max_value=60)),
        first_payment_date=today + timedelta(days=draw(st.integers(-30, 120))),
        today=today,
        autopay=draw(st.booleans()),
    )


@st.composite
def policies(draw: st.DrawFn) -> PlanPolicy:
    minimum = draw(st.integers(min_value=1, max_value=10_000))
    return PlanPolicy(
        max_installments=draw(st.integers(1, 24)),
        frequencies=frozenset(draw(st.sets(st.sampled_from(list(Frequency)), min_size=1))),
        max_duration_months=draw(st.integers(1, 24)),
        min_installment={0: minimum, 2: minimum, 3: minimum * 10},
        min_down_payment_percent=draw(st.integers(0, 99)),
        max_first_payment_days=draw(st.integers(1, 60)),
        max_total={0: 10**7, 2: 10**7, 3: 10**8},
        autopay_required=draw(st.booleans()),
    )


@settings(deadline=None)  # a shared 2-core machine: time is not the property
@given(proposals(), policies())
def test_the_suggestion_always_passes(p, policy):
    suggestion = suggest(p, policy)
    if suggestion is not None:
        assert check(suggestion, policy) == []
        assert suggestion.total == p.total
        assert suggestion.installments <= p.installments
        assert suggestion.down_payment >= policy.min_down_payment_for(p.total)


@settings(deadline=None)  # a shared 2-core machine: time is not the property
@given(proposals())
def test_a_suggestion_exists_whenever_one_installment_can_pass(p):
    policy = default_policy()
    least = policy.min_down_payment_for(p.total) + policy.min_installment_for(p.total.currency)
    if p.total <= policy.max_total_for(p.total.currency) and p.total >= least:
        assert suggest(p, policy) is not None


@settings(deadline=None)  # a shared 2-core machine: time is not the property
@given(st.integers(1, 20_000_000), currencies, st.dates(date(2020, 1, 1), date(2040, 12, 31)))
def test_offers_always_pass(total, currency, today):
    for offer in offers(Money(total, currency), default_policy(), today):
        assert check(offer, default_policy()) == []
