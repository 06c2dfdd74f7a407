"""Step 1 of paying (`payments/choose.html`) as it is shown: each invoice's cells, the
totals and the split of the amount as display strings, worked out in Python once per
request instead of by filters and `{% trans %}` per cell in the template.

As on the account page (`customers.pages`): amounts and dates go through the formatters
of the `money` and `date` filters (cached per locale), messages through the request's
catalog with the templates' semantics (the translation is markup, the values put into it
are escaped), each value escaped once; the page's table writes the rows as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from flask import current_app
from flask_babel import gettext as _
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from portal.cells import Format, Messages, html, page_url
from portal.i18n import current_locale, request_translations
from portal.inputs import amount_reading
from portal.money import Money
from portal.payments.forms import ChoosePaymentForm
from portal.payments.policy import PaymentPreview
from portal.payments.queries import PayableNow


class PayRow(NamedTuple):
    """An invoice the page offers, its cells already escaped (HTML): the table writes
    them as they are (`{% autoescape false %}`), without an `escape()` or a filter per
    cell. A tuple the template unpacks in its loop (an attribute read per cell through
    Jinja's `getattr` cost more than the cell)."""

    index: int  # 1, 2…: the checkbox is `invoice-<index>`
    number: str
    payable_minor: int  # the checkbox's data-payable (static/js/portal.js adds them up)
    due_iso: str  # its data-due-date, "2026-11-30"
    label: Markup  # "Invoice X"
    due: Markup  # the due date as the `date` filter writes it
    overdue: Markup  # "3 days overdue", or "" when not overdue
    amount: str  # what is payable, as the `money` filter writes it
    checked: bool


@dataclass(frozen=True, slots=True)
class AmountField:
    """The amount field's and the update button's texts as `ChoosePaymentForm` has them
    (its id, name, label, description and maxlength): the same for every reader of a
    language, so taken from a form once per process and language."""

    id: str
    name: str
    label: str
    description: str
    maxlength: int
    update_name: str
    update_label: str


def choose_page(
    items: list[PayableNow],
    chosen: list[str],
    *,
    amount: str,
    amount_errors: list[str],
    invoice_errors: list[str],
    minimum: Money,
    preview: PaymentPreview | None,
    card_notice: str | None,
) -> dict[str, Any]:
    """The template context of `payments/choose.html` for the payable `items` (oldest
    due first; none: "nothing to pay"), the invoice numbers `chosen` (ticked), the
    amount field's text as typed or proposed, and the messages of the field errors."""
    messages = Messages(request_translations())
    context = page_helpers(messages)
    context["items"] = items
    if not items:
        return context
    locale = current_locale()
    fmt = Format(locale)
    money_minor = fmt.money_html  # formatted and escaped once per process and language

    def money(value: Money) -> str:
        return money_minor(value.minor, value.currency)

    texts = _sentences(locale)
    ticked = set(chosen)
    rows = []
    numbers: dict[str, str] = {}
    for index, item in enumerate(items, start=1):
        number = numbers[item.number] = html(item.number)
        days = item.days_overdue
        rows.append(
            PayRow(
                index,
                number,
                item.payable_minor,
                item.due_date.isoformat(),
                _fill(texts["label"], number=number),
                fmt.day_html(item.due_date),
                messages.ngettext("%(num)d day overdue", "%(num)d days overdue", days)
                if days > 0
                else Markup(""),
                money_minor(item.payable_minor, item.currency),
                item.number in ticked,
            )
        )
    context.update(
        rows=rows,
        amount=amount,
        amount_errors=amount_errors,
        invoice_errors=invoice_errors,
        field=amount_field(locale),
        card_notice=card_notice,
        minimum=minimum,
        minimum_text=Markup(money(minimum)),  # noqa: S704 (escaped by money_html)
        # The script reads the amount typed as the server does (`inputs.amount_reading`).
        amount_reading=amount_reading(minimum.currency, locale),
        # A partial payment exists only above the minimum: 0.005 KWD has none to offer.
        partial_possible=preview is None or preview.total > minimum,
        preview_json=preview_json(locale),
        total=Markup(money(preview.total)) if preview is not None else None,  # noqa: S704 (escaped)
        split=None,
        split_intro=None,
        nothing=preview_messages(locale)["nothing"] if preview is None else None,
    )
    if preview is not None and not preview.problem and not amount_errors:
        split = []
        for invoice, share in preview.applied:
            number = numbers.get(invoice.number) or html(invoice.number)
            if share == invoice.balance:
                split.append(_fill(texts["full"], number=number, amount=money(share)))
            elif share.is_positive:
                due = money(invoice.balance)
                split.append(_fill(texts["part"], number=number, amount=money(share), due=due))
            else:
                split.append(_fill(texts["none"], number=number, due=money(invoice.balance)))
        context["split"] = split
        context["split_intro"] = _fill(texts["intro"], amount=money(preview.amount))
    return context


def page_helpers(messages: Messages | None = None) -> dict[str, Any]:
    """The page's `_`, `gettext`, `ngettext` (each message looked up once per language)
    and `url_for` (each of its links built once per process)."""
    if messages is None:
        messages = Messages(request_translations())
    return {
        "_": messages.gettext,
        "gettext": messages.gettext,
        "ngettext": messages.ngettext,
        "url_for": page_url,
    }


@lru_cache(maxsize=16)
def amount_field(locale: str) -> AmountField:
    """`AmountField` in `locale` (the request's), from a form made once per language."""
    form = ChoosePaymentForm(formdata=None, meta={"csrf": False})
    amount, update = form.amount, form.update
    return AmountField(
        amount.id,
        amount.name,
        str(amount.label.text),
        str(amount.description),
        int(amount.flags.maxlength),
        update.name,
        str(update.label.text),
    )


@lru_cache(maxsize=16)
def preview_messages(locale: str) -> dict[str, str]:
    """The step-1 sentences that static/js/portal.js fills in as the customer ticks and
    types (placeholders as in gettext: %(number)s, %(amount)s, %(due)s), in `locale`
    (the request's): the same for everyone, so once per process and language."""
    return {
        "full": _("%(number)s: %(amount)s, paid in full"),
        "part": _("%(number)s: %(amount)s of %(due)s"),
        "none": _("%(number)s: nothing this time (%(due)s stays due)"),
        "nothing": _("Tick at least one invoice to see the total."),
        "intro": _("How %(amount)s will be applied, oldest due first:"),
        # why an amount typed cannot be paid: the server's sentences (views._amount_errors)
        "ambiguous": _(
            "“%(text)s” could mean %(small)s or %(large)s. Please write the amount with "
            "its decimals."
        ),
        "negative": _("The amount cannot be below zero."),
        "decimals": _("Please enter the amount with at most %(digits)d decimals."),
        "whole": _("Please enter the amount without decimals."),
        "currency": _("This amount is in %(currency)s: please enter it without another currency."),
        "invalid": _("Please enter a valid amount."),
        "number": _("Please enter the amount as a number, for example 120.50."),
        "positive": _("Please enter an amount greater than zero."),
        "most": _("You can pay at most %(amount)s."),
        "smallest": _("The smallest amount you can pay is %(amount)s."),
    }


@lru_cache(maxsize=16)
def _sentences(locale: str) -> dict[str, Markup]:
    """The sentences the page fills in, in `locale` (the request's), as the catalog has
    them (markup, placeholders left in): a row's label and `preview_messages`."""
    texts = {"label": _("Invoice %(number)s"), **preview_messages(locale)}
    return {key: Markup(text) for key, text in texts.items()}  # noqa: S704 (our catalogs)


def _fill(sentence: Markup, **values: str) -> Markup:
    """`sentence % values` for values escaped already (HTML): what `Markup.__mod__`
    makes of them as Markup (it escapes each value, and escaping Markup leaves it as it
    is), without its escaping helpers, which cost three times the formatting."""
    return Markup(str.__mod__(sentence, values))  # noqa: S704 (a catalog's text; escaped values)


@lru_cache(maxsize=16)
def preview_json(locale: str) -> Markup:
    """`preview_messages` as the `tojson` filter writes them (the form's data-messages)."""
    policies = current_app.jinja_env.policies
    return htmlsafe_json_dumps(
        preview_messages(locale),
        dumps=policies["json.dumps_function"],
        **policies["json.dumps_kwargs"],
    )
