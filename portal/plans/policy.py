"""Plan policy: what a customer may agree without review, as pure functions.

A `PlanPolicy` (one per customer segment, versioned in `PlanPolicyVersion`) bounds a
`Proposal`. `check` lists every limit a proposal breaks, each explained in words;
`suggest` returns the nearest proposal that passes (same total and frequency first,
then fewer installments or a larger down payment), and whatever it returns passes
`check`; `offers` lists ready-made plans for a balance. No database here; messages are
translated into the current request's language when `check` runs.

The limits, as the README states them (section "Payment plans"):
- installments: at most `max_installments` (the down payment is not an installment);
- frequency: one of `frequencies`;
- duration: every installment falls within `max_duration_months` calendar months of the
  first one (last due date < first date + N months): 6 monthly installments fit 6 months;
- min installment: the smallest installment is at least `min_installment` for the
  currency's exponent (20.00 USD, 2,000 JPY, 20.000 KWD);
- down payment: at least `min_down_payment_percent` % of the total, rounded up to a
  whole minor unit;
- first payment: after today and at most `max_first_payment_days` days away;
- total: at most `max_total` for the currency's exponent (10,000.00 USD, 1,000,000 JPY,
  10,000.000 KWD);
- autopay: a saved card is required when `autopay_required`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from portal.i18n import date_filter, money_filter
from portal.money import InvalidAmount, Money
from portal.plans.schedule import (
    FREQUENCY_DAYS,
    MAX_SCHEDULE_INSTALLMENTS,
    Frequency,
    Installment,
    add_months,
    build_schedule,
    last_due_date,
)

DEFAULT_SEGMENT = "standard"

# Amounts per currency exponent (digits after the decimal point): 20.00 USD is 2,000
# cents, 2,000 JPY is 2,000 yen, 20.000 KWD is 20,000 fils.
DEFAULT_MIN_INSTALLMENT: dict[int, int] = {0: 2_000, 2: 2_000, 3: 20_000}
DEFAULT_MAX_TOTAL: dict[int, int] = {0: 1_000_000, 2: 1_000_000, 3: 10_000_000}
# The exponents a policy states amounts for (every currency Stripe settles has one).
EXPONENTS = (0, 2, 3)

# Bounds an admin may set (policy_problems): wide, but not absurd.
MAX_POLICY_INSTALLMENTS = 120
MAX_POLICY_DURATION_MONTHS = 120
MAX_POLICY_FIRST_PAYMENT_DAYS = 365
MAX_POLICY_COOLING_OFF_DAYS = 3_650

FREQUENCY_LABELS = {
    Frequency.WEEKLY: _l("weekly"),
    Frequency.BIWEEKLY: _l("every two weeks"),
    Frequency.MONTHLY: _l("monthly"),
}


def frequency_label(frequency: Frequency | str) -> str:
    """The frequency in words, in the current language ("every two weeks")."""
    return str(FREQUENCY_LABELS[Frequency(frequency)])


class Limit(StrEnum):
    INSTALLMENTS = "installments"
    FREQUENCY = "frequency"
    DURATION = "duration"
    MIN_INSTALLMENT = "min_installment"
    DOWN_PAYMENT = "down_payment"
    FIRST_PAYMENT = "first_payment"
    MAX_TOTAL = "max_total"
    AUTOPAY = "autopay"


@dataclass(frozen=True)
class PlanPolicy:
    """The limits of one segment's policy at one version (see module doc)."""

    segment: str = DEFAULT_SEGMENT
    version: int = 0  # 0: the built-in default, never saved
    max_installments: int = 6
    frequencies: frozenset[Frequency] = frozenset(Frequency)
    max_duration_months: int = 6
    min_installment: Mapping[int, int] = field(
        default_factory=lambda: dict(DEFAULT_MIN_INSTALLMENT)
    )
    min_down_payment_percent: int = 10
    max_first_payment_days: int = 30
    max_total: Mapping[int, int] = field(default_factory=lambda: dict(DEFAULT_MAX_TOTAL))
    autopay_required: bool = False
    cooling_off_days: int = 90

    def min_installment_for(self, currency: str) -> Money:
        """The smallest installment allowed in `currency`."""
        return Money(
            _for_exponent(self.min_installment, currency, DEFAULT_MIN_INSTALLMENT), currency
        )

    def max_total_for(self, currency: str) -> Money:
        """The largest plan total allowed in `currency`."""
        return Money(_for_exponent(self.max_total, currency, DEFAULT_MAX_TOTAL), currency)

    def min_down_payment_for(self, total: Money) -> Money:
        """`min_down_payment_percent` % of `total`, rounded up to a whole minor unit."""
        return Money(-(-total.minor * self.min_down_payment_percent // 100), total.currency)

    def to_limits(self) -> dict[str, Any]:
        """The limits as JSON-ready data (PlanPolicyVersion.limits); keys are strings."""
        return {
            "max_installments": self.max_installments,
            "frequencies": sorted(str(f) for f in self.frequencies),
            "max_duration_months": self.max_duration_months,
            "min_installment": {str(k): v for k, v in sorted(self.min_installment.items())},
            "min_down_payment_percent": self.min_down_payment_percent,
            "max_first_payment_days": self.max_first_payment_days,
            "max_total": {str(k): v for k, v in sorted(self.max_total.items())},
            "autopay_required": self.autopay_required,
            "cooling_off_days": self.cooling_off_days,
        }

    @classmethod
    def from_limits(cls, segment: str, version: int, limits: Mapping[str, Any]) -> PlanPolicy:
        """The inverse of `to_limits`; a missing key takes the default. Raises
        ValueError (or KeyError) on data that is not a policy."""
        default = cls()
        return cls(
            segment=segment,
            version=version,
            max_installments=int(limits.get("max_installments", default.max_installments)),
            frequencies=frozenset(
                Frequency(f) for f in limits.get("frequencies", default.frequencies)
            ),
            max_duration_months=int(limits.get("max_duration_months", default.max_duration_months)),
            min_installment={
                int(k): int(v)
                for k, v in dict(limits.get("min_installment", default.min_installment)).items()
            },
            min_down_payment_percent=int(
                limits.get("min_down_payment_percent", default.min_down_payment_percent)
            ),
            max_first_payment_days=int(
                limits.get("max_first_payment_days", default.max_first_payment_days)
            ),
            max_total={
                int(k): int(v) for k, v in dict(limits.get("max_total", default.max_total)).items()
            },
            autopay_required=bool(limits.get("autopay_required", default.autopay_required)),
            cooling_off_days=int(limits.get("cooling_off_days", default.cooling_off_days)),
        )


def default_policy(segment: str = DEFAULT_SEGMENT) -> PlanPolicy:
    """The built-in policy (README defaults) for a segment without a saved version."""
    return PlanPolicy(segment=segment)


def _for_exponent(amounts: Mapping[int, int], currency: str, default: Mapping[int, int]) -> int:
    """The amount stated for this currency's exponent, else the exponent-2 amount scaled
    (a currency with 1 or 4 decimals: 20.00 -> 20.0 or 20.0000)."""
    exponent = Money.zero(currency).exponent
    if exponent in amounts:
        return amounts[exponent]
    base = amounts.get(2, default[2])
    scale = int(10 ** abs(exponent - 2))
    return base * scale if exponent >= 2 else max(1, base // scale)


def policy_problems(policy: PlanPolicy) -> list[str]:
    """What makes a policy unusable, in words (the admin form shows them); [] if none."""
    problems: list[str] = []
    if not 1 <= policy.max_installments <= MAX_POLICY_INSTALLMENTS:
        problems.append(
            _("The number of installments must be from 1 to %(max)d.", max=MAX_POLICY_INSTALLMENTS)
        )
    if not policy.frequencies:
        problems.append(_("Allow at least one frequency."))
    if not 1 <= policy.max_duration_months <= MAX_POLICY_DURATION_MONTHS:
        problems.append(
            _("The duration must be from 1 to %(max)d months.", max=MAX_POLICY_DURATION_MONTHS)
        )
    if not 0 <= policy.min_down_payment_percent <= 99:
        problems.append(_("The down payment must be from 0 to 99 percent."))
    if not 1 <= policy.max_first_payment_days <= MAX_POLICY_FIRST_PAYMENT_DAYS:
        problems.append(
            _(
                "The first payment delay must be from 1 to %(max)d days.",
                max=MAX_POLICY_FIRST_PAYMENT_DAYS,
            )
        )
    if not 0 <= policy.cooling_off_days <= MAX_POLICY_COOLING_OFF_DAYS:
        problems.append(
            _(
                "The cooling-off period must be from 0 to %(max)d days.",
                max=MAX_POLICY_COOLING_OFF_DAYS,
            )
        )
    for exponent in EXPONENTS:
        minimum = policy.min_installment.get(exponent)
        maximum = policy.max_total.get(exponent)
        if minimum is None or maximum is None or minimum < 1:
            problems.append(_("The minimum installment must be more than zero."))
            break
        if maximum < minimum:
            problems.append(_("The maximum total must not be below the minimum installment."))
            break
    return problems


@dataclass(frozen=True)
class Proposal:
    """A plan as proposed: `total` (what the chosen invoices owe), paid as
    `down_payment` today plus `installments` payments of the rest at `frequency` from
    `first_payment_date`. `today` is the customer's today. Raises InvalidAmount when the
    currencies differ, the total is not positive, or the down payment is negative or not
    below the total; ValueError when `installments` is outside 1..MAX_SCHEDULE_INSTALLMENTS.
    """

    total: Money
    down_payment: Money
    frequency: Frequency
    installments: int
    first_payment_date: date
    today: date
    autopay: bool = False

    def __post_init__(self) -> None:
        if self.total.currency != self.down_payment.currency:
            raise InvalidAmount("the total and the down payment are in different currencies")
        if not self.total.is_positive:
            raise InvalidAmount("a plan's total must be more than zero")
        if self.down_payment.is_negative or self.down_payment >= self.total:
            raise InvalidAmount("the down payment must be zero or more and below the total")
        if not 1 <= self.installments <= MAX_SCHEDULE_INSTALLMENTS:
            raise ValueError(f"a plan has 1 to {MAX_SCHEDULE_INSTALLMENTS} installments")
        object.__setattr__(self, "frequency", Frequency(self.frequency))

    @property
    def financed(self) -> Money:
        """What the installments pay: the total less the down payment."""
        return self.total - self.down_payment

    @property
    def smallest_installment(self) -> Money:
        """The last installments' amount (the remainder goes to the first ones)."""
        return Money(self.financed.minor // self.installments, self.total.currency)

    @property
    def last_payment_date(self) -> date:
        return last_due_date(self.frequency, self.installments, self.first_payment_date)


@dataclass(frozen=True)
class Breach:
    """One limit a proposal breaks; `message` says so in the current language."""

    limit: Limit
    message: str


def _fits_duration(
    frequency: Frequency, installments: int, first: date, policy: PlanPolicy
) -> bool:
    try:
        last = last_due_date(frequency, installments, first)
        return last < add_months(first, policy.max_duration_months)
    except (OverflowError, ValueError):
        return False


def check(proposal: Proposal, policy: PlanPolicy) -> list[Breach]:
    """Every limit of `policy` that `proposal` breaks, in the order of the module doc;
    [] when the proposal may be approved at once."""
    breaches: list[Breach] = []
    currency = proposal.total.currency
    if proposal.installments > policy.max_installments:
        breaches.append(
            Breach(
                Limit.INSTALLMENTS,
                ngettext(
                    "%(count)d installment is over the limit of %(max)d.",
                    "%(count)d installments is over the limit of %(max)d.",
                    proposal.installments,
                    count=proposal.installments,
                    max=policy.max_installments,
                ),
            )
        )
    if proposal.frequency not in policy.frequencies:
        allowed = ", ".join(frequency_label(f) for f in Frequency if f in policy.frequencies)
        breaches.append(
            Breach(
                Limit.FREQUENCY,
                _(
                    "Payments %(frequency)s are not offered (allowed: %(allowed)s).",
                    frequency=frequency_label(proposal.frequency),
                    allowed=allowed or "-",
                ),
            )
        )
    if not _fits_duration(
        proposal.frequency, proposal.installments, proposal.first_payment_date, policy
    ):
        breaches.append(
            Breach(
                Limit.DURATION,
                ngettext(
                    "The plan runs longer than %(num)d month after its first payment.",
                    "The plan runs longer than %(num)d months after its first payment.",
                    policy.max_duration_months,
                ),
            )
        )
    minimum = policy.min_installment_for(currency)
    if proposal.smallest_installment < minimum:
        breaches.append(
            Breach(
                Limit.MIN_INSTALLMENT,
                _(
                    "Installments of %(amount)s are below the minimum of %(minimum)s.",
                    amount=money_filter(proposal.smallest_installment),
                    minimum=money_filter(minimum),
                ),
            )
        )
    min_down = policy.min_down_payment_for(proposal.total)
    if proposal.down_payment < min_down:
        breaches.append(
            Breach(
                Limit.DOWN_PAYMENT,
                _(
                    "A down payment of %(amount)s is below the minimum of %(percent)d%% of"
                    " the total (%(minimum)s).",
                    amount=money_filter(proposal.down_payment),
                    percent=policy.min_down_payment_percent,
                    minimum=money_filter(min_down),
                ),
            )
        )
    latest = proposal.today + timedelta(days=policy.max_first_payment_days)
    if proposal.first_payment_date <= proposal.today:
        breaches.append(Breach(Limit.FIRST_PAYMENT, _("The first payment must be after today.")))
    elif proposal.first_payment_date > latest:
        breaches.append(
            Breach(
                Limit.FIRST_PAYMENT,
                ngettext(
                    "The first payment on %(date)s is more than %(num)d day away (at the"
                    " latest %(latest)s).",
                    "The first payment on %(date)s is more than %(num)d days away (at the"
                    " latest %(latest)s).",
                    policy.max_first_payment_days,
                    date=date_filter(proposal.first_payment_date),
                    latest=date_filter(latest),
                ),
            )
        )
    maximum = policy.max_total_for(currency)
    if proposal.total > maximum:
        breaches.append(
            Breach(
                Limit.MAX_TOTAL,
                _(
                    "A plan of %(amount)s is over the limit of %(maximum)s.",
                    amount=money_filter(proposal.total),
                    maximum=money_filter(maximum),
                ),
            )
        )
    if policy.autopay_required and not proposal.autopay:
        breaches.append(
            Breach(Limit.AUTOPAY, _("Automatic payment from a saved card is required."))
        )
    return breaches


def _nearest_frequency(wanted: Frequency, allowed: frozenset[Frequency]) -> Frequency | None:
    """The allowed frequency closest in period to `wanted`; ties go to the longer one."""
    if wanted in allowed:
        return wanted
    if not allowed:
        return None
    return min(
        allowed,
        key=lambda f: (abs(FREQUENCY_DAYS[f] - FREQUENCY_DAYS[wanted]), -FREQUENCY_DAYS[f]),
    )


def suggest(proposal: Proposal, policy: PlanPolicy) -> Proposal | None:
    """The nearest proposal that `check` passes, or None when no plan of this total
    can (over the maximum total, or too small for one installment after the down
    payment). The proposal itself if it passes.

    Nearest means: the same total; the same frequency if allowed (else the closest
    allowed one); the first payment date moved into the allowed window only if outside
    it; the down payment raised to the minimum only if below it; then the most
    installments, up to the proposed number, that keep each installment at or above
    the minimum and the last one within the duration; if even one installment is too
    small, a smaller down payment (never below the minimum); autopay switched on when
    required.
    """
    if not check(proposal, policy):
        return proposal
    total = proposal.total
    if total > policy.max_total_for(total.currency):
        return None
    frequency = _nearest_frequency(proposal.frequency, policy.frequencies)
    if frequency is None:
        return None
    earliest = proposal.today + timedelta(days=1)
    latest = proposal.today + timedelta(days=max(1, policy.max_first_payment_days))
    first = min(max(proposal.first_payment_date, earliest), latest)
    min_down = policy.min_down_payment_for(total)
    down = max(proposal.down_payment, min_down)
    min_installment = policy.min_installment_for(total.currency)
    count = min(proposal.installments, policy.max_installments)
    candidate: Proposal | None = None
    for n in range(count, 0, -1):
        most_down = total - Money(min_installment.minor * n, total.currency)
        if most_down < min_down:
            continue  # n installments of the minimum cost more than the total allows
        if not _fits_duration(frequency, n, first, policy):
            continue
        candidate = replace(
            proposal,
            down_payment=min(down, most_down),
            frequency=frequency,
            installments=n,
            first_payment_date=first,
            autopay=proposal.autopay or policy.autopay_required,
        )
        break
    if candidate is None or check(candidate, policy):
        return None
    return candidate


def _first_date(frequency: Frequency, today: date, policy: PlanPolicy) -> date:
    """An offer's first payment: one period from today, within the allowed delay."""
    one_period = (
        add_months(today, 1)
        if frequency is Frequency.MONTHLY
        else today + timedelta(days=FREQUENCY_DAYS[frequency])
    )
    latest = today + timedelta(days=max(1, policy.max_first_payment_days))
    return max(today + timedelta(days=1), min(one_period, latest))


def offers(total: Money, policy: PlanPolicy, today: date) -> list[Proposal]:
    """Ready-made plans for `total` that pass `check`, fewest payments first: for each
    allowed frequency (monthly, then every two weeks, then weekly), 3 payments and the
    most the policy allows, with the minimum down payment and the first payment one
    period from today. Duplicates are dropped; [] when no plan fits (the total is over
    the maximum or too small for one installment)."""
    if not total.is_positive:
        return []
    found: list[Proposal] = []
    down = policy.min_down_payment_for(total)
    if down >= total:
        return []
    for frequency in (Frequency.MONTHLY, Frequency.BIWEEKLY, Frequency.WEEKLY):
        if frequency not in policy.frequencies:
            continue
        for count in sorted({min(3, policy.max_installments), policy.max_installments}):
            proposal = suggest(
                Proposal(
                    total=total,
                    down_payment=down,
                    frequency=frequency,
                    installments=count,
                    first_payment_date=_first_date(frequency, today, policy),
                    today=today,
                    autopay=policy.autopay_required,
                ),
                policy,
            )
            if proposal is not None and proposal not in found:
                found.append(proposal)
    return sorted(found, key=lambda p: (p.installments, -FREQUENCY_DAYS[p.frequency]))


def schedule_for(proposal: Proposal) -> list[Installment]:
    """The proposal's installments 1..n (schedule.build_schedule)."""
    return build_schedule(
        proposal.total,
        proposal.down_payment,
        proposal.frequency,
        proposal.installments,
        proposal.first_payment_date,
    )
