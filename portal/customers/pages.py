"""The account page as it is shown: each row's cells as display strings, worked out in
Python once per request (a small dataclass per row) instead of by macros per cell.

Amounts and dates go through the same formatters as the `money` and `date` filters
(cached per locale), messages through the request's catalog with the semantics of the
templates' `_`/`ngettext`/`{% trans %}`: the translated text is markup, the values put
into it are escaped. Links are built by `url_for` once per kind of link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple

from flask.globals import _cv_request
from markupsafe import Markup, escape

from portal.cells import NEEDS_NO_QUOTING, Format, Messages, html, link, page_url
from portal.customers.models import CustomerSnapshot
from portal.customers.queries import AccountInvoice, AccountSnapshot
from portal.disputes.models import DisputeStatus
from portal.i18n import (
    LANGUAGE_NAMES,
    current_locale,
    request_translations,
    supported_locale,
    zone_or_default,
)
from portal.invoices.models import InvoiceStatus
from portal.invoices.queries import AccountSummary
from portal.money import CurrencyMismatch, Money
from portal.payments.card_advice import card_advice_message
from portal.payments.policy import card_advice, card_maximum, card_minimum, card_step
from portal.plans.models import PlanStatus
from portal.plans.pages import plan_reference
from portal.promises.services import promise_max_days


class _InvoiceLinks:
    """An invoice's number and the URL of its page (`invoices.detail`), both escaped for
    HTML. Most numbers are plain ("INV-000123": nothing to quote in the path, nothing to
    escape in the page): those are put into the URL built once, without escaping again."""

    __slots__ = ("_head", "_tail", "url")

    def __init__(self) -> None:
        self.url = link("invoices.detail", number="0")
        head, _, tail = page_url("invoices.detail", number="0").rpartition("0")
        self._head, self._tail = str(escape(head)), str(escape(tail))

    def cells(self, number: str) -> tuple[str, str]:
        """(number, URL), each escaped once."""
        if NEEDS_NO_QUOTING.fullmatch(number):  # no & < > ' " and nothing to quote
            return number, f"{self._head}{number}{self._tail}"
        return str(escape(number)), str(escape(self.url(number)))


@lru_cache(maxsize=16)
def _invoice_links(script_root: str) -> _InvoiceLinks:
    """`_InvoiceLinks` built once per mount point (`request.script_root`) and process."""
    return _InvoiceLinks()


class PageLinks(NamedTuple):
    """The page's own links (`url_for` of each), the same for every customer: built once
    per mount point and process (a `url_for` call from the template costs about 2 µs,
    and the page has up to seven of them)."""

    pay_overdue: str
    pay: str
    statement: str
    remove_card: str
    resume_email: str
    promise: str
    new_plan: str


@lru_cache(maxsize=16)
def _page_links(script_root: str) -> PageLinks:
    return PageLinks(
        pay_overdue=page_url("payments.choose", overdue=1),
        pay=page_url("payments.choose"),
        statement=page_url("customers.statement"),
        remove_card=page_url("customers.remove_card"),
        resume_email=page_url("customers.resume_email"),
        promise=page_url("promises.promise_to_pay"),
        new_plan=page_url("plans.new"),
    )


# An invoice status's badge modifier ("partially_paid"), escaped once.
_STATUS_HTML = {status: str(escape(status.value)) for status in InvoiceStatus}


class InvoiceRow(NamedTuple):
    """An invoice's cells, each already escaped HTML: the invoices' tables write them as
    they are, the ~10 cells of each row and their headings without an `escape()` per
    cell (which costs more than the rest of the row). A tuple: the table's loop unpacks
    it instead of looking each cell up by name."""

    number: str
    url: str
    issued: str
    due: str
    status: str  # the badge's modifier: open, partially_paid, paid, void
    status_label: str
    overdue: str  # "3 days overdue", or "" when not overdue
    total: str
    balance: str


class PaymentRow(NamedTuple):
    """A payment's cells, each already escaped HTML (the table writes them as they are;
    a tuple its loop unpacks)."""

    label: Markup  # "Receipt R-000012 (PDF)" (linked to `receipt_url`) or "Payment X"
    receipt_url: str | None
    paid_on: str
    allocations: list[tuple[str, str, str]]  # (invoice number, its URL, amount)
    amount: str
    refunded: Markup  # "$5.00 refunded", or "" when nothing was


class CreditRow(NamedTuple):
    """A credit note's cells, each already escaped HTML (written as they are; a tuple its
    loop unpacks)."""

    reference: str
    issued: str
    invoice_number: str
    invoice_url: str
    amount: str


@dataclass(slots=True)
class DisputeRow:
    url: str
    title: Markup  # "Dispute of invoice X"
    sent: str
    status: str
    status_label: str
    amount: str


class PromiseChoice(NamedTuple):
    """An invoice the promise form offers, its cells already escaped (written as they
    are; a tuple the form's loop unpacks); `checked` only when the form is shown again
    after a refusal with it ticked (`promises.views`)."""

    number: str
    payable: str
    checked: bool


@dataclass(slots=True)
class PlanRow:
    url: str
    title: Markup  # "Payment plan PP-3"
    status: str
    status_label: str
    total: str


def account_page(
    customer: CustomerSnapshot, snapshot: AccountSnapshot, today: date
) -> dict[str, Any]:
    """The template context of `customers/account.html` (and its sections' partials)."""
    locale = current_locale()
    messages = Messages(request_translations())
    currency = customer.currency
    fmt = Format(locale)
    money_html, day_html = fmt.money_html, fmt.day_html
    invoice_label_html = messages.invoice_labels_html().__getitem__
    script_root = _cv_request.get().request.root_path  # = request.script_root
    links = _invoice_links(script_root)
    invoice_cells = links.cells

    def invoice_row(b: AccountInvoice) -> InvoiceRow:
        overdue = (
            messages.ngettext("%(num)d day overdue", "%(num)d days overdue", b.days_overdue)
            if b.days_overdue
            else ""
        )
        number, url = invoice_cells(b.number)
        return InvoiceRow(
            number,
            url,
            day_html(b.issue_date),
            day_html(b.due_date),
            _STATUS_HTML[b.status],
            invoice_label_html(b.status),
            overdue,
            money_html(b.total_minor, b.currency),
            money_html(b.balance_minor, b.currency),
        )

    open_: list[AccountInvoice] = []
    closed: list[AccountInvoice] = []  # newest due first
    for b in snapshot.invoices:
        (open_ if b.is_open else closed).append(b)
    closed.reverse()
    context: dict[str, Any] = {
        "_": messages.gettext,
        "gettext": messages.gettext,
        "ngettext": messages.ngettext,
        "url_for": page_url,
        "links": _page_links(script_root),
        "customer": customer,
        "open_invoices": [invoice_row(b) for b in open_],
        "closed_invoices": [invoice_row(b) for b in closed],
        **_summary_context(open_, currency),
        **_history_context(snapshot, fmt, messages, links),
        **_dispute_context(customer, snapshot, fmt, messages),
        **_promise_context(snapshot, open_, fmt, messages, today),
        **_plans_context(snapshot, open_, fmt, messages),
        "saved_card": snapshot.card,
        # The language of their emails, as `notifications.services.locale_for` picks it.
        "email_language": LANGUAGE_NAMES[supported_locale(customer.locale) or "en"],
        "opted_out_at": snapshot.opted_out_at,
        # The day it was stopped, where the customer lives (as the `date` filter shows a
        # moment, in `i18n.select_timezone`'s zone, without loading the Customer for it).
        "opted_out_on": fmt.day(
            snapshot.opted_out_at.astimezone(zone_or_default(customer.timezone)).date()
        )
        if snapshot.opted_out_at is not None
        else "",
    }
    return context


def _summary_context(open_: list[AccountInvoice], currency: str) -> dict[str, Any]:
    """The summary's figures and which "pay" buttons to offer (a card payment only when
    one can succeed; else the advice why not and what to do instead)."""
    if any(b.currency != currency for b in open_):  # as Money.sum would refuse them
        raise CurrencyMismatch(f"an invoice is not in the account's currency {currency}")

    def total(minors: list[int]) -> Money:
        return Money(sum(minors), currency)

    overdue = [b for b in open_ if b.is_overdue]
    upcoming = [b.due_date for b in open_ if not b.is_overdue]
    all_payable = total([b.payable_minor for b in open_ if b.payable_minor > 0])
    overdue_payable = total([b.payable_minor for b in overdue if b.payable_minor > 0])
    payable_now = {amount: _card_payable_now(amount) for amount in (overdue_payable, all_payable)}
    card_notice = None
    for amount in (overdue_payable, all_payable):
        if amount.is_positive and not payable_now[amount]:
            advice = card_advice(amount)
            if advice is not None:
                card_notice = card_advice_message(advice)
                break
    summary = AccountSummary(
        total_due=total([b.balance_minor for b in open_]),
        overdue=total([b.balance_minor for b in overdue]),
        next_due_date=min(upcoming) if upcoming else None,
        open_count=len(open_),
        overdue_count=len(overdue),
        payable=all_payable,
        held=total([b.held_minor for b in open_]),
    )
    return {
        "summary": summary,
        "offer_overdue": overdue_payable.is_positive and payable_now[overdue_payable],
        "offer_choose": all_payable.is_positive and payable_now[all_payable],
        "card_notice": card_notice,
    }


@lru_cache(maxsize=64)
def _card_limits(currency: str) -> tuple[int, int, int]:
    """(step, minimum, maximum) of one card charge in `currency`, minor units, as
    `payments.policy` has them (they depend on the currency alone)."""
    return card_step(currency).minor, card_minimum(currency).minor, card_maximum(currency).minor


def _card_payable_now(amount: Money) -> bool:
    """`payments.policy.card_payable_now(amount)` (a card can take all of it or a part
    now: `card_chargeable_part` is positive), from the currency's limits looked up once."""
    step, minimum, maximum = _card_limits(amount.currency)
    part = min(amount.minor - amount.minor % step, maximum)
    return part >= minimum and part > 0


def _history_context(
    snapshot: AccountSnapshot,
    fmt: Format,
    messages: Messages,
    links: _InvoiceLinks,
) -> dict[str, Any]:
    """Payments (with what each paid and what refunds gave back) and credit notes, each
    cell escaped once (the tables write them as they are)."""
    payments = []
    receipt_url = link("payments.receipt", payment_id=1) if snapshot.payments else None
    invoice_cells, money_html, day_html = links.cells, fmt.money_html, fmt.day_html
    for p in snapshot.payments:
        if p.checkout_id is not None and receipt_url is not None:
            label = messages.gettext("Receipt %(number)s (PDF)", number=p.receipt_number)
            url: str | None = str(escape(receipt_url(p.id)))
        else:
            label = messages.gettext("Payment %(reference)s", reference=p.reference)
            url = None
        refunded = (
            messages.gettext("%(amount)s refunded", amount=fmt.money(p.refunded_minor, p.currency))
            if p.refunded_minor > 0
            else Markup("")
        )
        payments.append(
            PaymentRow(
                label,
                url,
                day_html(p.paid_on),
                [
                    (*invoice_cells(number), money_html(amount, p.currency))
                    for number, amount in p.allocations
                ],
                money_html(p.amount_minor, p.currency),
                refunded,
            )
        )
    credits = [
        CreditRow(
            html(c.reference),
            day_html(c.issued_on),
            *invoice_cells(c.invoice_number),
            money_html(c.amount_minor, c.currency),
        )
        for c in snapshot.credits
    ]
    return {"payments": payments, "credits": credits}


def _dispute_context(
    customer: CustomerSnapshot,
    snapshot: AccountSnapshot,
    fmt: Format,
    messages: Messages,
) -> dict[str, Any]:
    """Open disputes, each sent on the customer's local date (as their emails say)."""
    if not snapshot.disputes:
        return {"open_disputes": []}
    zone = zone_or_default(customer.timezone)
    dispute_url = link("disputes.detail", dispute_id=1)
    return {
        "open_disputes": [
            DisputeRow(
                dispute_url(d.id),
                messages.gettext("Dispute of invoice %(number)s", number=d.invoice_number),
                fmt.day(d.opened_at.astimezone(zone).date()),
                d.status,
                messages.label(DisputeStatus(d.status)),
                fmt.money(d.amount_minor, d.currency),
            )
            for d in snapshot.disputes
        ]
    }


def _promise_context(
    snapshot: AccountSnapshot,
    open_: list[AccountInvoice],
    fmt: Format,
    messages: Messages,
    today: date,
) -> dict[str, Any]:
    """Open promises, and the open invoices no promise covers yet (the form's choices)."""
    promised = {invoice_id for p in snapshot.promises for invoice_id in p.invoice_ids}
    max_days = promise_max_days("customer")
    # nothing to promise on an invoice whose balance is all in a plan or a dispute
    unpromised = [b for b in open_ if b.id not in promised and b.payable_minor > 0]
    choices = [
        PromiseChoice(
            html(b.number),
            fmt.money_html(b.payable_minor, b.currency),
            False,
        )
        for b in unpromised
    ]
    return {
        "promise_notes": [
            messages.gettext(
                "You promised to pay %(amount)s by %(date)s. We will not send reminders for"
                " it until then.",
                amount=fmt.money(p.amount_minor, p.currency),
                date=fmt.day(p.promised_on),
            )
            for p in snapshot.promises
        ],
        "promise_choices": choices,
        "promise_max_days": max_days,
        # The date field's bounds (ISO dates, as the input takes them).
        "promise_today": today.isoformat(),
        "promise_latest": today.fromordinal(today.toordinal() + max_days).isoformat(),
    }


def _plans_context(
    snapshot: AccountSnapshot,
    open_: list[AccountInvoice],
    fmt: Format,
    messages: Messages,
) -> dict[str, Any]:
    """The customer's plans, and whether a new one could take anything: an invoice with
    something payable that no pending, countered or active plan holds (`plans.plannable`)."""
    plan_url = link("plans.detail", plan_id=1) if snapshot.plans else None
    plans = [
        PlanRow(
            plan_url(p.id),
            messages.gettext("Payment plan %(reference)s", reference=plan_reference(p)),
            p.status,
            messages.label(PlanStatus(p.status)),
            fmt.money(p.total_minor, p.currency),
        )
        for p in snapshot.plans
        if plan_url is not None
    ]
    held = snapshot.plan_held_invoice_ids
    can_plan = any(b.payable_minor > 0 and b.id not in held for b in open_)
    return {"plans": plans, "can_plan": can_plan}
