"""The invoice page as it is shown: each cell and message as escaped markup, worked out
in Python once per request (as `customers.pages` does for the account page) instead of
by filters, macros and `url_for` per cell in the template.

Amounts, quantities, unit prices and dates go through the same formatters as the
`money`, `date` and `number` filters, cached per value and language and escaped once;
messages with values through the request's catalog with the semantics of the templates'
`ngettext` and `{% trans %}` (`customers.pages.Messages`: the translated text is markup,
the values put into it are escaped); links once per process. The template writes the
prepared values as they are (`{% autoescape false %}`); its captions are constant
messages, translated when it is compiled for a language (`portal.site.localized`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import quote_plus

from babel.numbers import format_decimal
from flask import request
from markupsafe import Markup, escape

from portal.cells import Messages, day_html, link, page_url
from portal.i18n import current_locale, request_translations
from portal.invoices.detail import (
    InvoicePage,
    PageAllocation,
    PageCredit,
    PageDispute,
    PageLine,
)
from portal.invoices.models import QUANTITY_SCALE
from portal.money import Money, UnitPrice

# What werkzeug leaves unquoted in a query string's values (`urls._urlencode`).
_QUERY_SAFE = "!$'()*,/:;?@"


@lru_cache(maxsize=16_384)
def _money_html(minor: int, currency: str, locale: str) -> Markup:
    """An amount as the `money` filter shows it, escaped (cached per value and language)."""
    return escape(Money.format_minor(minor, currency, locale))


@lru_cache(maxsize=4096)
def _quantity_html(quantity_milli: int, locale: str) -> Markup:
    """A line's quantity (in thousandths, as stored) as the `number` filter shows
    `InvoiceLine.quantity` ("1,234.5"), escaped."""
    quantity = (Decimal(quantity_milli) / QUANTITY_SCALE).normalize()
    return escape(format_decimal(quantity, locale=locale))


@lru_cache(maxsize=4096)
def _unit_price_html(units: int, scale: int, currency: str, locale: str) -> Markup:
    """A unit price with the decimals given (`UnitPrice.format`), escaped."""
    return escape(UnitPrice(units, scale, currency).format(locale))


class LineRow(NamedTuple):
    """A line's cells, each escaped; `dispute_url` and `in_dispute` ("In dispute: $30.00")
    are empty unless an open dispute holds part of the line."""

    description: Markup
    dispute_url: Markup
    in_dispute: Markup
    quantity: Markup
    unit_price: Markup
    tax: Markup
    amount: Markup


class PaymentRow(NamedTuple):
    """What a payment paid on the invoice: its label (a card payment's links to its
    receipt), the day it was made and the amount, each escaped."""

    label: Markup
    paid_on: Markup
    amount: Markup


class CreditRow(NamedTuple):
    """A credit note: "Credit note CN-1 on Oct 20, 2026" and its amount, escaped."""

    label: Markup
    amount: Markup


@dataclass(frozen=True, slots=True)
class _Links:
    """`url_for` of the page's links, built once per process (and mount point); the
    ones naming an invoice, dispute or payment take its number or id."""

    account: Markup
    pay_head: str  # "/pay?invoice=", the number follows, quoted as a query value
    dispute_new: Callable[[str | int], str]
    pdf: Callable[[str | int], str]
    dispute: Callable[[str | int], str]
    receipt: Callable[[str | int], str]

    def pay(self, number: str) -> Markup:
        """`url_for("payments.choose", invoice=number)`, escaped."""
        return escape(self.pay_head + quote_plus(number, safe=_QUERY_SAFE))


@lru_cache(maxsize=16)
def _links(script_root: str) -> _Links:
    return _Links(
        account=escape(page_url("customers.account")),
        pay_head=page_url("payments.choose", invoice="0").rpartition("0")[0],
        dispute_new=link("disputes.new", number="0"),
        pdf=link("invoices.pdf", number="0"),
        dispute=link("disputes.detail", dispute_id=1),
        receipt=link("payments.receipt", payment_id=1),
    )


def invoice_page(page: InvoicePage, *, payments_enabled: bool) -> dict[str, Any]:
    """The template context of `invoices/detail.html`."""
    locale = current_locale()
    messages = Messages(request_translations())
    links = _links(request.script_root)
    invoice, balance = page.invoice, page.balance
    currency = invoice.currency
    number = invoice.number
    status = balance.status
    days_overdue = balance.days_overdue
    payable = balance.payable.minor
    held = balance.held_minor
    paid = balance.paid.minor
    credited = balance.credited.minor
    context: dict[str, Any] = {
        "_": messages.gettext,
        "gettext": messages.gettext,
        "ngettext": messages.ngettext,
        "url_for": page_url,
        "title": messages.gettext("Invoice %(number)s", number=number),
        "account_url": links.account,
        "status": status.value,
        "status_label": messages.label_html(status),
        "overdue": (
            messages.ngettext("%(num)d day overdue", "%(num)d days overdue", days_overdue)
            if days_overdue
            else ""
        ),
        "balance_due": _money_html(balance.balance.minor, currency, locale),
        "issued": day_html(invoice.issue_date, locale),
        "due": day_html(invoice.due_date, locale),
        "is_overdue": days_overdue > 0,
        "held": _money_html(held, currency, locale) if held > 0 else "",
        "payable": _money_html(payable, currency, locale),
        "dispute_notice": "",
        "dispute_links": [],
        "pay_url": links.pay(number) if payments_enabled and payable > 0 else "",
        "dispute_url": escape(links.dispute_new(number)) if page.can_dispute else "",
        "pdf_url": escape(links.pdf(number)),
        "lines": _line_rows(page, links, messages, locale),
        "total": _money_html(invoice.total.minor, currency, locale),
        "paid": _money_html(paid, currency, locale) if paid > 0 else "",
        "credited": _money_html(credited, currency, locale) if credited > 0 else "",
        "payments": _payment_rows(page.allocations, links, messages, locale),
        "credits": _credit_rows(page.credits, messages, locale),
    }
    if page.open_disputes:
        context["dispute_notice"] = messages.gettext(
            "You dispute %(amount)s of this invoice. It is on hold while we look into it:"
            " you do not need to pay it for now.",
            amount=_money_html(held, currency, locale),
        )
        context["dispute_links"] = _dispute_links(page.open_disputes, links, messages, locale)
    return context


def _line_rows(page: InvoicePage, links: _Links, messages: Messages, locale: str) -> list[LineRow]:
    rows = []
    by_line = page.dispute_by_line
    for balance in page.lines:
        line: PageLine = balance.line
        currency = line.currency
        dispute = by_line.get(line.id) if by_line else None
        if dispute is not None and balance.held.minor > 0:
            url = escape(links.dispute(dispute.id))
            in_dispute = messages.gettext(
                "In dispute: %(amount)s",
                amount=_money_html(balance.held.minor, currency, locale),
            )
        else:
            url = in_dispute = Markup("")
        rows.append(
            LineRow(
                escape(line.description),
                url,
                in_dispute,
                _quantity_html(line.quantity_milli, locale),
                _unit_price_html(line.unit_price_units, line.unit_price_scale, currency, locale),
                _money_html(line.tax_minor, currency, locale),
                _money_html(line.amount.minor, currency, locale),
            )
        )
    return rows


def _payment_rows(
    allocations: list[PageAllocation], links: _Links, messages: Messages, locale: str
) -> list[PaymentRow]:
    """A payment as the customer knows it: a card payment by its receipt number, linked
    to its receipt; an offline payment by the reference the creditor's books give it.
    Never Stripe's id (as the `payment_label` macro)."""
    rows = []
    for allocation in allocations:
        if allocation.checkout_id:
            label = Markup('<a href="{}" download>{}</a>').format(
                links.receipt(allocation.payment_id),
                messages.gettext("Receipt %(number)s (PDF)", number=allocation.receipt_number),
            )
        else:
            label = messages.gettext("Payment %(reference)s", reference=allocation.reference)
        amount = allocation.amount
        rows.append(
            PaymentRow(
                label,
                day_html(allocation.paid_on, locale),
                _money_html(amount.minor, amount.currency, locale),
            )
        )
    return rows


def _credit_rows(credits: list[PageCredit], messages: Messages, locale: str) -> list[CreditRow]:
    return [
        CreditRow(
            messages.gettext(
                "Credit note %(reference)s on %(date)s",
                date=day_html(credit.issued_on, locale),
                reference=credit.reference,
            ),
            _money_html(credit.amount.minor, credit.amount.currency, locale),
        )
        for credit in credits
    ]


def _dispute_links(
    disputes: list[PageDispute], links: _Links, messages: Messages, locale: str
) -> list[tuple[Markup, Markup]]:
    """(URL, text) of each open dispute, newest first: "See your dispute (Open)", with
    its amount when there are several."""
    result = []
    for dispute in disputes:
        status = messages.label(dispute.state)
        if len(disputes) > 1:
            text = messages.gettext(
                "See your dispute of %(amount)s (%(status)s)",
                amount=_money_html(dispute.amount.minor, dispute.amount.currency, locale),
                status=status,
            )
        else:
            text = messages.gettext("See your dispute (%(status)s)", status=status)
        result.append((escape(links.dispute(dispute.id)), text))
    return result
