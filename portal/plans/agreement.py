"""The payment-plan agreement as a PDF, in the style of the invoice PDFs (fpdf2).

What the customer agreed to, on one or two pages: who and which invoices, the amounts
(total, down payment, installments), the schedule, how installments are paid (autopay
with a saved card or by hand), and plainly what happens when an installment is missed
(reminder, retries within the grace period, then the plan ends and the remainder is due
again, with no new self-service plan during the cooling-off period). Every label follows
`locale` (through `force_locale`), as for invoices; the creation date is the day the plan
was agreed, so the same plan gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from flask_babel import force_locale, ngettext
from flask_babel import gettext as _

from portal.creditor import Creditor
from portal.customers.models import Customer
from portal.invoices.pdf import (
    Column,
    Fact,
    _creditor_header,
    _customer_lines,
    _date,
    _Document,
    _heading,
    _paragraph,
    _party_and_facts,
    _questions,
    _table,
    _title,
)
from portal.money import Money
from portal.plans.policy import frequency_label


@dataclass(frozen=True)
class AgreementLine:
    """One payment of the agreement: the down payment (number 0) or an installment."""

    number: int
    due_date: date
    amount: Money
    paid: Money | None = None  # None while nothing was paid on it


@dataclass(frozen=True)
class AgreementTerms:
    """What the agreement PDF says: everything in it comes from here.

    Amounts are `Money` in the plan's currency; `frequency` is a `schedule.Frequency`
    value (weekly, biweekly, monthly); `grace_days` is how long after a due date a missed
    installment may still be paid before the plan ends; `cooling_off_days` how long after
    that no plan is approved on the spot (both from the policy version the plan was agreed
    under).
    """

    reference: str
    customer: Customer
    agreed_on: date
    invoices: Sequence[tuple[str, Money]]  # (invoice number, amount the plan covers)
    total: Money
    down_payment: Money
    frequency: str
    lines: Sequence[AgreementLine]
    autopay_card: str | None  # "Visa ending in 4242", or None: paid by hand
    grace_days: int
    cooling_off_days: int
    policy_version: str


def agreement_pdf(terms: AgreementTerms, *, creditor: Creditor, locale: str) -> bytes:
    """The agreement for `terms`, in `locale` (en, es, fr, de)."""
    with force_locale(locale):
        title = _("Payment plan agreement %(reference)s", reference=terms.reference)
        pdf = _Document(title=title, creditor=creditor, locale=locale, as_of=terms.agreed_on)
        _creditor_header(pdf, creditor)
        _title(pdf, title)
        installments = [line for line in terms.lines if line.number > 0]
        _party_and_facts(
            pdf,
            heading=_("Agreed with"),
            party=_customer_lines(terms.customer),
            facts=[
                Fact(_("Plan total"), terms.total.format(locale), strong=True),
                Fact(_("Down payment"), terms.down_payment.format(locale)),
                Fact(
                    _("Installments"),
                    ngettext("%(num)d payment", "%(num)d payments", len(installments)),
                ),
                Fact(_("Agreed on"), _date(terms.agreed_on, locale)),
            ],
        )
        _heading(pdf, _("Invoices in this plan"))
        _table(
            pdf,
            [Column(_("Invoice"), 6), Column(_("Amount in the plan"), 4, "RIGHT")],
            [(number, amount.format(locale)) for number, amount in terms.invoices],
        )
        _heading(pdf, _("Schedule"))
        _table(
            pdf,
            [
                Column(_("Payment"), 5),
                Column(_("Due date"), 4),
                Column(_("Amount"), 4, "RIGHT"),
            ],
            [
                (
                    _("Down payment")
                    if line.number == 0
                    else _("Installment %(n)s", n=line.number),
                    _date(line.due_date, locale),
                    line.amount.format(locale),
                )
                for line in terms.lines
            ]
            + [(_("Total"), "", terms.total.format(locale))],
        )
        _heading(pdf, _("Terms"))
        _paragraph(
            pdf,
            _(
                "You agree to pay %(total)s for the invoices above: %(down)s as a down "
                "payment, then %(count)s, %(frequency)s, from %(first)s to %(last)s, as in "
                "the schedule.",
                total=terms.total.format(locale),
                down=terms.down_payment.format(locale),
                count=ngettext("%(num)d payment", "%(num)d payments", len(installments)),
                frequency=frequency_label(terms.frequency),
                first=_date(installments[0].due_date, locale) if installments else "",
                last=_date(installments[-1].due_date, locale) if installments else "",
            ),
        )
        if terms.autopay_card:
            _paragraph(
                pdf,
                _(
                    "Each installment is charged on its due date to your %(card)s. You can "
                    "change the card, or pay an installment earlier, from your account.",
                    card=terms.autopay_card,
                ),
            )
        else:
            _paragraph(
                pdf,
                _(
                    "You pay each installment yourself, by its due date, from your account. "
                    "We remind you by email three days before each due date."
                ),
            )
        _paragraph(
            pdf,
            _(
                "While the plan is kept, we send no payment reminders for these invoices "
                "and charge nothing beyond this schedule. You may pay more, or earlier, at "
                "any time."
            ),
        )
        _heading(pdf, _("If an installment is missed"))
        _paragraph(
            pdf,
            ngettext(
                "If an installment is not paid on its due date, we tell you by email and "
                "you can still pay it within %(num)d day.",
                "If an installment is not paid on its due date, we tell you by email and "
                "you can still pay it within %(num)d days.",
                terms.grace_days,
            ),
        )
        _paragraph(
            pdf,
            ngettext(
                "If it is still unpaid after that, the plan ends: what remains of these "
                "invoices is due again at once, and no new plan can be approved on the spot "
                "for %(num)d day.",
                "If it is still unpaid after that, the plan ends: what remains of these "
                "invoices is due again at once, and no new plan can be approved on the spot "
                "for %(num)d days.",
                terms.cooling_off_days,
            ),
        )
        _paragraph(
            pdf,
            _(
                "Approved under payment plan policy %(version)s.",
                version=terms.policy_version,
            ),
        )
        _paragraph(pdf, _questions(creditor))
        return pdf.rendered()
