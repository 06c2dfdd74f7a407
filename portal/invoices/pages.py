"""The invoice page as it is shown: each cell and message as escaped markup, worked out
in Python once per request (as `customers.pages` does for the account page) instead of
by filters, macros and `url_for` per cell in the template.

Amounts, quantities, unit prices and dates go through the same formatters as the
`money`, `date` and `number` filters, cached per value and language and escaped once;
messages through the request's catalog with the semantics of the templates' `_`,
`ngettext` and `{% trans %}` (`customers.pages._Messages`: the translated text is markup,
the values put into it are escaped). The template writes the prepared values as they
are (`{% autoescape false %}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import quote_plus
from weakref import WeakKeyDictionary

from babel.numbers import format_decimal
from babel.support import NullTranslations
from markupsafe import Markup, escape

from portal.customers.pages import _day_html, _link, _Messages, page_url
from portal.i18n import current_locale, request_translations
from portal.invoices.detail import InvoicePage, PageAllocation, PageCredit, PageDispute
from portal.money import Money, UnitPrice

# What werkzeug leaves unquoted in a query string's values (`urls._urlencode`).
_QUERY_SAFE = "!$'()*,/:;?@"


@lru_cache(maxsize=16_384)
def _money_html(minor: int, currency: str, locale: str) -> Markup:
    """An amount as the `money` filter shows it, escaped (cached per value and language)."""
    return escape(Money.format_minor(minor, currency, locale))


@lru_cache(maxsize=4096)
def _quantity_html(quantity: Decimal, locale: str) -> Markup:
    """A line's quantity as the `number` filter shows it ("1,234.5"), escaped."""
    return escape(format_decimal(quantity, locale=locale))


@lru_cache(maxsize=4096)
def _unit_price_html(price: UnitPrice, locale: str) -> Markup:
    """A unit price with the decimals given (`UnitPrice.format`), escaped."""
    return escape(price.format(locale))


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
class _Captions:
    """The page's fixed messages in one language, escaped markup."""

    back: Markup
    summary: Markup
    balance_due: Markup
    issue_date: Markup
    due_date: Markup
    payable_now: Markup
    in_dispute: Markup
    pay: Markup
    dispute: Markup
    download: Markup
    line_items: Markup
    description: Markup
    quantity: Markup
    unit_price: Markup
    tax: Markup
    amount: Markup
    total: Markup
    paid: Markup
    credited: Markup
    history: Markup


_CAPTIONS: WeakKeyDictionary[NullTranslations, _Captions] = WeakKeyDictionary()


def _captions(translations: NullTranslations, messages: _Messages) -> _Captions:
    """The captions in the catalog's language, worked out once per catalog."""
    captions = _CAPTIONS.get(translations)
    if captions is None:
        _ = messages.gettext
        captions = _CAPTIONS[translations] = _Captions(
            back=_("Back to your account"),
            summary=_("Invoice summary"),
            balance_due=_("Balance due"),
            issue_date=_("Issue date"),
            due_date=_("Due date"),
            payable_now=_("Payable now"),
            in_dispute=_("In dispute (on hold)"),
            pay=_("Pay this invoice"),
            dispute=_("Dispute a charge"),
            download=_("Download invoice (PDF)"),
            line_items=_("Line items"),
            description=_("Description"),
            quantity=_("Quantity"),
            unit_price=_("Unit price"),
            tax=_("Tax"),
            amount=_("Amount"),
            total=_("Total"),
            paid=_("Paid"),
            credited=_("Credited"),
            history=_("Payments and credits"),
        )
    return captions


def invoice_page(page: InvoicePage, *, payments_enabled: bool) -> dict[str, Any]:
    """The template context of `invoices/detail.html`."""
    locale = current_locale()
    translations = request_translations()
    messages = _Messages(translations)
    invoice, balance = page.invoice, page.balance
    currency = invoice.currency

    def money(amount: Money) -> Markup:
        return _money_html(amount.minor, amount.currency, locale)

    number = invoice.number
    status = balance.status
    days_overdue = balance.days_overdue
    held = balance.held_minor > 0
    context: dict[str, Any] = {
        "_": messages.gettext,
        "gettext": messages.gettext,
        "ngettext": messages.ngettext,
        "url_for": page_url,
        "t": _captions(translations, messages),
        "title": messages.gettext("Invoice %(number)s", number=number),
        "account_url": page_url("customers.account"),
        "status": status.value,
        "status_label": messages.label_html(status),
        "overdue": (
            messages.ngettext("%(num)d day overdue", "%(num)d days overdue", days_overdue)
            if days_overdue
            else ""
        ),
        "balance_due": money(balance.balance),
        "issued": _day_html(invoice.issue_date, locale),
        "due": _day_html(invoice.due_date, locale),
        "is_overdue": days_overdue > 0,
        "held": money(balance.held) if held else "",
        "payable": money(balance.payable),
        "dispute_notice": "",
        "dispute_links": [],
        "pay_url": (_pay_link(number) if payments_enabled and balance.payable.minor > 0 else ""),
        "dispute_url": (
            escape(_link("disputes.new", number="0")(number)) if page.can_dispute else ""
        ),
        "pdf_url": escape(_link("invoices.pdf", number="0")(number)),
        "lines": _line_rows(page, messages, locale),
        "total": _money_html(invoice.total.minor, currency, locale),
        "paid": money(balance.paid) if balance.paid.minor > 0 else "",
        "credited": money(balance.credited) if balance.credited.minor > 0 else "",
        "payments": _payment_rows(page.allocations, messages, locale),
        "credits": _credit_rows(page.credits, messages, locale),
    }
    if page.open_disputes:
        context["dispute_notice"] = messages.gettext(
            "You dispute %(amount)s of this invoice. It is on hold while we look into it:"
            " you do not need to pay it for now.",
            amount=money(balance.held),
        )
        context["dispute_links"] = _dispute_links(page.open_disputes, messages, locale)
    return context


def _pay_link(number: str) -> Markup:
    """`url_for("payments.choose", invoice=number)`, escaped: built once, the number
    quoted into it as werkzeug quotes a query string's value."""
    head = page_url("payments.choose", invoice="0").rpartition("0")[0]
    return escape(head + quote_plus(number, safe=_QUERY_SAFE))


def _line_rows(page: InvoicePage, messages: _Messages, locale: str) -> list[LineRow]:
    dispute_url = _link("disputes.detail", dispute_id=1) if page.dispute_by_line else None
    rows = []
    for balance in page.lines:
        line = balance.line
        dispute = page.dispute_by_line.get(line.id) if dispute_url is not None else None
        if dispute is not None and dispute_url is not None and balance.held.minor > 0:
            url = escape(dispute_url(dispute.id))
            in_dispute = messages.gettext(
                "In dispute: %(amount)s",
                amount=_money_html(balance.held.minor, balance.held.currency, locale),
            )
        else:
            url = in_dispute = Markup("")
        rows.append(
            LineRow(
                escape(line.description),
                url,
                in_dispute,
                _quantity_html(line.quantity, locale),
                _unit_price_html(line.unit_price, locale),
                _money_html(line.tax.minor, line.tax.currency, locale),
                _money_html(line.amount.minor, line.amount.currency, locale),
            )
        )
    return rows


def _payment_rows(
    allocations: list[PageAllocation], messages: _Messages, locale: str
) -> list[PaymentRow]:
    """A payment as the customer knows it: a card payment by its receipt number, linked
    to its receipt; an offline payment by the reference the creditor's books give it.
    Never Stripe's id (as the `payment_label` macro)."""
    if not allocations:
        return []
    receipt_url = _link("payments.receipt", payment_id=1)
    rows = []
    for allocation in allocations:
        if allocation.checkout_id:
            label = Markup('<a href="{}" download>{}</a>').format(
                receipt_url(allocation.payment_id),
                messages.gettext("Receipt %(number)s (PDF)", number=allocation.receipt_number),
            )
        else:
            label = messages.gettext("Payment %(reference)s", reference=allocation.reference)
        amount = allocation.amount
        rows.append(
            PaymentRow(
                label,
                _day_html(allocation.paid_on, locale),
                _money_html(amount.minor, amount.currency, locale),
            )
        )
    return rows


def _credit_rows(credits: list[PageCredit], messages: _Messages, locale: str) -> list[CreditRow]:
    return [
        CreditRow(
            messages.gettext(
                "Credit note %(reference)s on %(date)s",
                date=_day_html(credit.issued_on, locale),
                reference=credit.reference,
            ),
            _money_html(credit.amount.minor, credit.amount.currency, locale),
        )
        for credit in credits
    ]


def _dispute_links(
    disputes: list[PageDispute], messages: _Messages, locale: str
) -> list[tuple[Markup, Markup]]:
    """(URL, text) of each open dispute, newest first: "See your dispute (Open)", with
    its amount when there are several."""
    url = _link("disputes.detail", dispute_id=1)
    links = []
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
        links.append((escape(url(dispute.id)), text))
    return links
