"""The customer's plan builder: a proposal read from the form, its schedule, the limits it
breaks and the nearest plan within policy. Reads only; the services write.

The builder's numbers are the server's: the total is the sum of what the chosen invoices
have payable now (`InvoiceBalance.payable`: disputed amounts and invoices already in a
plan are not), whatever the browser shows. `read_proposal` turns the form's text into a
`policy.Proposal` or says, per field, what is wrong in the reader's language.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from flask_babel import gettext as _
from flask_babel import ngettext

from portal.i18n import date_filter, money_filter
from portal.inputs import AmountInputError, AmountProblem, form_language, parse_amount_input
from portal.money import AmountTooLarge, InvalidAmount, Money
from portal.payments.queries import PayableItem
from portal.plans.policy import Breach, PlanPolicy, Proposal, check, schedule_for, suggest
from portal.plans.schedule import Frequency, Installment


@dataclass(frozen=True)
class ProposalInput:
    """The builder form's values as typed (text) or chosen."""

    numbers: Sequence[str]
    down_payment: str | None
    frequency: str | None
    installments: int | None
    first_payment_date: date | None
    autopay: bool = False


@dataclass
class ReadProposal:
    """A proposal read from the form: `proposal` and `invoices`, or `errors` by field name."""

    proposal: Proposal | None = None
    invoices: list[PayableItem] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def refuse(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


def read_proposal(
    given: ProposalInput, payable: Sequence[PayableItem], today: date
) -> ReadProposal:
    """The proposal for `given`, the invoices it covers (among `payable`, this customer's
    payable invoices), or what is wrong with each field. Nothing here is a policy limit:
    a proposal outside policy is read like any other and `preview` says what it breaks."""
    read = ReadProposal()
    by_number = {item.invoice.number: item for item in payable}
    wanted = list(dict.fromkeys(n.strip() for n in given.numbers if n and n.strip()))
    unknown = [n for n in wanted if n not in by_number]
    chosen = [by_number[n] for n in wanted if n in by_number]
    if unknown:
        read.refuse(
            "invoices",
            _(
                "Invoice %(number)s has nothing that can be put in a plan now.",
                number=unknown[0][:64],
            ),
        )
    elif not chosen:
        read.refuse("invoices", _("Choose at least one invoice for the plan."))
    currencies = {item.payable.currency for item in chosen}
    if len(currencies) > 1:
        read.refuse("invoices", _("The invoices of one plan must be in one currency."))
    total = Money.sum((i.payable for i in chosen), chosen[0].payable.currency) if chosen else None

    down = None
    if total is not None and not read.errors:
        down = _read_down_payment(read, given.down_payment, total)
    frequency = _read_frequency(read, given.frequency)
    if given.first_payment_date is not None and given.first_payment_date < today:
        read.refuse("first_payment_date", _("The first payment cannot be in the past."))
    if (
        total is None
        or down is None
        or frequency is None
        or given.installments is None
        or given.first_payment_date is None
        or read.errors
    ):
        return read
    if (total - down).minor < given.installments:
        read.refuse(
            "installments",
            _("That is more payments than there is money left to pay after the down payment."),
        )
        return read
    try:
        read.proposal = Proposal(
            total=total,
            down_payment=down,
            frequency=frequency,
            installments=given.installments,
            first_payment_date=given.first_payment_date,
            today=today,
            autopay=given.autopay,
        )
        schedule_for(read.proposal)  # its dates exist (none past 31 December 9999)
    except (InvalidAmount, ValueError, OverflowError):
        read.proposal = None
        read.refuse("installments", _("Please check the number of payments and the first date."))
        return read
    read.invoices = sorted(chosen, key=lambda i: (i.invoice.due_date, i.invoice.number))
    return read


def _read_down_payment(read: ReadProposal, text: str | None, total: Money) -> Money | None:
    """The down payment typed, as the reader's language writes amounts
    (`inputs.parse_amount_input`); empty is none."""
    if not (text or "").strip():
        return Money.zero(total.currency)
    try:
        down = parse_amount_input(text, total.currency, form_language(), allow_zero=True)
    except AmountTooLarge:
        down = total  # a number, larger than anything owed: refused below
    except AmountInputError as refused:
        if refused.problem is AmountProblem.NEGATIVE:
            read.refuse("down_payment", _("The down payment cannot be below zero."))
        else:
            read.refuse("down_payment", refused.message)
        return None
    if down >= total:
        read.refuse(
            "down_payment",
            _(
                "The down payment must be less than the plan's total of %(total)s. To pay "
                "everything now, pay online instead.",
                total=money_filter(total),
            ),
        )
        return None
    return down


def _read_frequency(read: ReadProposal, value: str | None) -> Frequency | None:
    try:
        return Frequency(value or "")
    except ValueError:
        read.refuse("frequency", _("Please choose how often you will pay."))
        return None


@dataclass(frozen=True)
class PlanPreview:
    """What the builder shows before the customer commits."""

    proposal: Proposal
    schedule: list[Installment]
    breaches: list[Breach]
    suggestion: Proposal | None  # None when within policy, or no plan of this total passes
    suggestion_schedule: list[Installment]

    @property
    def is_within_policy(self) -> bool:
        return not self.breaches


def preview(proposal: Proposal, policy: PlanPolicy) -> PlanPreview:
    """The schedule of `proposal`, the limits of `policy` it breaks, and the nearest plan
    that passes (`policy.suggest`) when it breaks any."""
    breaches = check(proposal, policy)
    suggestion = suggest(proposal, policy) if breaches else None
    return PlanPreview(
        proposal=proposal,
        schedule=schedule_for(proposal),
        breaches=breaches,
        suggestion=suggestion,
        suggestion_schedule=schedule_for(suggestion) if suggestion else [],
    )


def regular_amount(schedule: Sequence[Installment]) -> Money:
    """The amount most installments have: the last one (the remainder of the division
    goes one minor unit each to the first installments)."""
    return schedule[-1].amount


def plan_summary(proposal: Proposal) -> str:
    """The plan in a phrase: "6 monthly payments of $312.50" (translated)."""
    amount = money_filter(regular_amount(schedule_for(proposal)))
    n = proposal.installments
    match proposal.frequency:
        case Frequency.WEEKLY:
            return str(
                ngettext(
                    "%(num)d weekly payment of %(amount)s",
                    "%(num)d weekly payments of %(amount)s",
                    n,
                    amount=amount,
                )
            )
        case Frequency.BIWEEKLY:
            return str(
                ngettext(
                    "%(num)d payment every two weeks of %(amount)s",
                    "%(num)d payments every two weeks of %(amount)s",
                    n,
                    amount=amount,
                )
            )
        case _:
            return str(
                ngettext(
                    "%(num)d monthly payment of %(amount)s",
                    "%(num)d monthly payments of %(amount)s",
                    n,
                    amount=amount,
                )
            )


def plan_details(proposal: Proposal) -> str:
    """The down payment and first date of a plan, in a sentence (translated); and, when
    the total does not divide evenly, which first payments carry the extra minor units
    (`plan_summary` gives the regular amount)."""
    if proposal.down_payment.is_positive:
        sentence = _(
            "%(down)s today, then the first payment on %(date)s.",
            down=money_filter(proposal.down_payment),
            date=date_filter(proposal.first_payment_date),
        )
    else:
        sentence = _(
            "No down payment; the first payment on %(date)s.",
            date=date_filter(proposal.first_payment_date),
        )
    schedule = schedule_for(proposal)
    regular = regular_amount(schedule)
    larger = [i for i in schedule if i.amount != regular]
    if not larger:
        return str(sentence)
    more = ngettext(
        "The first payment is %(amount)s.",
        "The first %(num)d payments are %(amount)s each.",
        len(larger),
        amount=money_filter(larger[0].amount),
    )
    return f"{sentence} {more}"
