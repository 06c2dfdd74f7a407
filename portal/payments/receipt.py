"""The receipt of a card payment as a PDF, in the style of the invoice PDFs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from flask_babel import force_locale
from flask_babel import gettext as _

from portal.creditor import Creditor
from portal.i18n import card_brand_label
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
from portal.invoices.queries import InvoiceBalance, summarize
from portal.payments.models import Payment


def receipt_pdf(
    payment: Payment,
    balances: Sequence[InvoiceBalance],
    *,
    creditor: Creditor,
    locale: str,
    today: date,
) -> bytes:
    """What was paid, when, by which card, how it was applied to invoices, and what is still
    owed: on each of those invoices and in all, from `balances` (every invoice of the
    payment's customer with its balance as of `today`, the customer's day)."""
    checkout = payment.checkout
    still_owed = {b.invoice.id: b.balance for b in balances}
    with force_locale(locale):
        title = _("Receipt %(number)s", number=payment.receipt_number)
        pdf = _Document(title=title, creditor=creditor, locale=locale, as_of=payment.paid_on)
        _creditor_header(pdf, creditor)
        _title(pdf, title)
        facts = [
            Fact(_("Amount paid"), payment.amount.format(locale), strong=True),
            Fact(_("Date"), _date(payment.paid_on, locale)),
        ]
        if checkout is not None and checkout.card_last4:
            facts.append(Fact(_("Card"), _card_label(checkout.card_brand, checkout.card_last4)))
        facts.append(Fact(_("Reference"), payment.reference))
        _party_and_facts(
            pdf, heading=_("Received from"), party=_customer_lines(payment.customer), facts=facts
        )
        _heading(pdf, _("Applied to"))
        rows = [
            (
                a.invoice.number,
                _date(a.invoice.due_date, locale),
                a.amount.format(locale),
                still_owed[a.invoice_id].format(locale) if a.invoice_id in still_owed else "",
            )
            for a in sorted(
                payment.allocations, key=lambda a: (a.invoice.due_date, a.invoice.number)
            )
        ]
        if payment.unapplied.is_positive:
            rows.append((_("Not applied to an invoice"), "", payment.unapplied.format(locale), ""))
        _table(
            pdf,
            [
                Column(_("Invoice"), 5),
                Column(_("Due date"), 4),
                Column(_("Amount"), 4, "RIGHT"),
                Column(_("Still owed"), 4, "RIGHT"),
            ],
            rows,
        )
        total_due = summarize(balances, payment.currency).total_due
        if total_due.is_positive:
            owed = _(
                "Still owed on your account as of %(date)s: %(amount)s.",
                date=_date(today, locale),
                amount=total_due.format(locale),
            )
        else:
            owed = _(
                "As of %(date)s you owe nothing more on your account.", date=_date(today, locale)
            )
        _paragraph(pdf, owed)
        _paragraph(pdf, _("Thank you for your payment."))
        _paragraph(pdf, _questions(creditor))
        return pdf.rendered()


def _card_label(brand: str | None, last4: str) -> str:
    return str(_("%(brand)s ending in %(last4)s", brand=card_brand_label(brand), last4=last4))
