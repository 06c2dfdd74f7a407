"""What the invoice page reads, in as few statements as the invoice needs.

An invoice with nothing paid, credited or disputed (the usual one) costs one statement:
the invoice, the amounts of its balance (`balances.balance_columns`) and its lines,
joined, built once per process and read as plain rows (a round trip and the ORM's
bookkeeping cost more than the page's few rows). An invoice with something paid,
credited or held costs one more, read the same way (`_history_statement`): its payments'
allocations, its credit notes (with the lines they credit) and the lines of its open
disputes. It is read only when the invoice's own sums show there is something to find:
each is a positive amount, so zero sums mean there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import Date, Integer, bindparam, cast, func, literal_column, null, select, union_all

from portal.access.sessions import run_read
from portal.disputes.models import OPEN_STATUSES, Dispute, DisputeLine, DisputeStatus
from portal.i18n import zone_or_default
from portal.invoices.balances import (
    InvoiceBalance,
    LineBalance,
    balance_from_amounts,
    inline_values,
    invoices_with_balance,
    line_balances_from,
)
from portal.invoices.models import QUANTITY_SCALE, CreditNote, Invoice, InvoiceLine
from portal.money import Money, UnitPrice
from portal.payments.models import Payment, PaymentAllocation

_OPEN = sorted(str(status) for status in OPEN_STATUSES)


@dataclass(frozen=True, slots=True)
class PageLine:
    """An invoice line as the page shows it: its columns as stored (minor units of
    `currency`, quantity in thousandths, unit price as units x 10**-scale), with what
    `InvoiceLine` gives of them (`quantity`, `unit_price`, `tax`, `amount`)."""

    id: int
    line_number: int
    description: str
    quantity_milli: int
    unit_price_units: int
    unit_price_scale: int
    tax_minor: int
    amount: Money

    @property
    def currency(self) -> str:
        return self.amount.currency

    @property
    def quantity(self) -> Decimal:
        return (Decimal(self.quantity_milli) / QUANTITY_SCALE).normalize()  # as InvoiceLine's

    @property
    def unit_price(self) -> UnitPrice:
        return UnitPrice(self.unit_price_units, self.unit_price_scale, self.currency)

    @property
    def tax(self) -> Money:
        return Money(self.tax_minor, self.currency)


@dataclass(frozen=True, slots=True)
class PageInvoice:
    """An invoice as the page shows it: the attributes of `Invoice` that the page and
    `InvoiceBalance` read, with its lines in line-number order."""

    id: int
    number: str
    issue_date: date
    due_date: date
    currency: str
    total: Money
    voided_at: datetime | None
    lines: list[PageLine]


@dataclass(frozen=True, slots=True)
class PageAllocation:
    """What one payment paid on the invoice (`PaymentAllocation` and its `Payment`):
    `amount` is the allocation's, in the payment's currency."""

    payment_id: int
    reference: str
    checkout_id: int | None  # the portal checkout of a card payment; None when offline
    paid_on: date
    amount: Money

    @property
    def receipt_number(self) -> str:
        return f"R-{self.payment_id:06d}"  # as Payment.receipt_number


@dataclass(frozen=True, slots=True)
class PageCredit:
    """A credit note on the invoice; `invoice_line_id` is the line it credits, if any."""

    reference: str
    issued_on: date
    amount: Money
    invoice_line_id: int | None


@dataclass(frozen=True, slots=True)
class PageDispute:
    """An open dispute of the invoice: `amount` is what it contests (the sum of its
    lines, as `Dispute.amount`), `line_ids` the invoice lines it holds (in its lines'
    order)."""

    id: int
    status: str
    amount: Money
    line_ids: tuple[int, ...]

    @property
    def state(self) -> DisputeStatus:
        return DisputeStatus(self.status)


@dataclass(frozen=True)
class InvoicePage:
    """One invoice as its page shows it. `lines` are in line-number order; `open_disputes`
    are the invoice's open disputes, newest first, and `dispute_by_line` the first of them
    that holds each line (by invoice line id); `allocations` by payment date, `credits`
    by issue date."""

    balance: InvoiceBalance
    lines: list[LineBalance]
    open_disputes: list[PageDispute]
    dispute_by_line: dict[int, PageDispute]
    allocations: list[PageAllocation]
    credits: list[PageCredit]

    @property
    def invoice(self) -> PageInvoice:
        return self.balance.invoice  # type: ignore[return-value]

    @property
    def can_dispute(self) -> bool:
        """Something is left to dispute on some line."""
        return any(line.is_disputable for line in self.lines)


@cache
def _invoice_statement() -> Any:
    """The invoice page's statement: one row per line of the customer's invoice `number`
    (one with no line when it has none): the invoice, its `balance_columns()`, the
    line, the customer's time zone.

    The balance subqueries run once per invoice, not once per line: the invoice is read
    with them in `balances.invoices_with_balance` (a subquery PostgreSQL runs as written)
    before its lines are joined."""
    invoices, lines = Invoice.__table__, InvoiceLine.__table__
    invoice = invoices_with_balance(
        (
            invoices.c.id,
            invoices.c.number,
            invoices.c.issue_date,
            invoices.c.due_date,
            invoices.c.currency,
            invoices.c.total_minor,
            invoices.c.voided_at,
        ),
        invoices.c.customer_id == bindparam("customer_id"),
        invoices.c.number == bindparam("number"),
    )
    return (
        select(
            *list(invoice.c)[:12],
            lines.c.id,
            lines.c.line_number,
            lines.c.description,
            lines.c.quantity_milli,
            lines.c.unit_price_units,
            lines.c.unit_price_scale,
            lines.c.tax_minor,
            lines.c.amount_minor,
            invoice.c.timezone,
        )
        # In no order: `_invoice` puts the few lines in line-number order, which costs
        # less than a Sort node in every execution of the statement.
        .select_from(invoice.outerjoin(lines, lines.c.invoice_id == invoice.c.id))
    )


def _line_number(line: PageLine) -> int:
    return line.line_number


def _invoice(rows: Sequence[Any]) -> PageInvoice:
    """The invoice of the statement's rows (one per line, in no order; one with no line
    if it has none), its lines in line-number order."""
    invoice_id, number, issued, due, currency, total = rows[0][:6]
    lines = sorted(
        (
            PageLine(
                line_id, line_number, description, milli, units, scale, tax, Money(amount, currency)
            )
            for line_id, line_number, description, milli, units, scale, tax, amount in (
                row[12:20] for row in rows
            )
            if line_id is not None
        ),
        key=_line_number,
    )
    return PageInvoice(
        invoice_id, number, issued, due, currency, Money(total, currency), rows[0][6], lines
    )


def invoice_page_for(customer_id: int, number: str, now: datetime) -> InvoicePage | None:
    """The invoice page of this customer's invoice `number` as of `now` (read as the
    customer's date, as `customers.queries.customer_today` does: what "overdue" means);
    None if it is not theirs (the view answers 404)."""
    # Plain rows, read as the session lookup is (`sessions.run_read`): on PostgreSQL one
    # round trip in autocommit when the request has not begun a transaction.
    rows = run_read(_invoice_statement(), {"customer_id": customer_id, "number": number})
    if not rows:
        return None
    today = now.astimezone(zone_or_default(rows[0][20])).date()
    invoice = _invoice(rows)
    # InvoiceBalance and the line rule read only what PageInvoice has of an Invoice.
    balance = balance_from_amounts(invoice, rows[0][7:12], today)  # type: ignore[arg-type]
    allocated = balance.paid.minor + balance.refunded_minor
    if not (allocated or balance.credited.minor or balance.held_minor):
        return InvoicePage(
            balance=balance,
            lines=line_balances_from(invoice, balance.payable, {}, {}),  # type: ignore[arg-type]
            open_disputes=[],
            dispute_by_line={},
            allocations=[],
            credits=[],
        )
    history = _history(customer_id, invoice)
    dispute_by_line: dict[int, PageDispute] = {}
    for dispute in history.open_disputes:
        for line_id in dispute.line_ids:
            dispute_by_line.setdefault(line_id, dispute)
    return InvoicePage(
        balance=balance,
        lines=line_balances_from(
            invoice,  # type: ignore[arg-type]
            balance.payable,
            history.credited_by_line,
            history.held_by_line,
        ),
        open_disputes=history.open_disputes,
        dispute_by_line=dispute_by_line,
        allocations=history.allocations,
        credits=history.credits,
    )


# --- what was paid, credited and held: one more statement, when there is any --------------
_ALLOCATION, _CREDIT, _DISPUTE_LINE = 1, 2, 3  # the kinds of `_history_statement`'s rows


@cache
def _history_statement() -> Any:
    """The invoice's payment allocations (with their payments), credit notes, and the
    lines of its open disputes, as rows of one shape, in the page's order: kind
    (`_ALLOCATION`…), position within the kind, id (the payment's, the credit note's, the
    dispute's), day (paid on, issued on), text (payment or credit reference, dispute
    status), line or checkout id (a payment's checkout; the invoice line a credit note or
    a dispute line names), amount_minor, currency, and the dispute's customer.

    Allocations come by payment date (then payment id), credit notes by issue date (then
    id), as `queries.allocations_for_invoice` and `credits_for_invoice` order them;
    disputes newest first (then by id, highest first), each with its lines in id order."""
    allocations, payments = PaymentAllocation.__table__, Payment.__table__
    credits = CreditNote.__table__
    disputes, dispute_lines = Dispute.__table__, DisputeLine.__table__
    invoice_id = bindparam("invoice_id", type_=Integer)
    nothing = literal_column("0", Integer)
    return union_all(
        select(
            literal_column(str(_ALLOCATION)).label("kind"),
            func.row_number().over(order_by=(payments.c.paid_on, payments.c.id)).label("position"),
            payments.c.id.label("id"),
            payments.c.paid_on.label("day"),
            payments.c.reference.label("text"),
            payments.c.checkout_id.label("other_id"),
            allocations.c.amount_minor.label("amount_minor"),
            payments.c.currency.label("currency"),
            cast(null(), Integer).label("customer_id"),
            nothing.label("sub"),
        )
        .select_from(allocations.join(payments, payments.c.id == allocations.c.payment_id))
        .where(allocations.c.invoice_id == invoice_id),
        select(
            literal_column(str(_CREDIT)),
            func.row_number().over(order_by=(credits.c.issued_on, credits.c.id)),
            credits.c.id,
            credits.c.issued_on,
            credits.c.reference,
            credits.c.invoice_line_id,
            credits.c.amount_minor,
            credits.c.currency,
            cast(null(), Integer),
            nothing,
        ).where(credits.c.invoice_id == invoice_id),
        select(
            literal_column(str(_DISPUTE_LINE)),
            func.dense_rank().over(order_by=(disputes.c.opened_at.desc(), disputes.c.id.desc())),
            disputes.c.id,
            cast(null(), Date),
            disputes.c.status,
            dispute_lines.c.invoice_line_id,
            dispute_lines.c.amount_minor,
            dispute_lines.c.currency,
            disputes.c.customer_id,
            dispute_lines.c.id,
        )
        .select_from(dispute_lines.join(disputes, disputes.c.id == dispute_lines.c.dispute_id))
        .where(
            disputes.c.invoice_id == invoice_id,
            disputes.c.status.in_(inline_values(_OPEN)),
        ),
    ).order_by(literal_column("kind"), literal_column("position"), literal_column("sub"))


@dataclass(frozen=True, slots=True)
class _History:
    allocations: list[PageAllocation]
    credits: list[PageCredit]
    open_disputes: list[PageDispute]  # the customer's, newest first
    credited_by_line: dict[int, int]  # minor units credited per invoice line id
    held_by_line: dict[int, int]  # minor units open disputes hold per invoice line id


def _history(customer_id: int, invoice: PageInvoice) -> _History:
    """What `_history_statement` reads of `invoice`, with what is credited and held per
    line (as `balances.credited_by_line` and `held_by_line` sum them)."""
    allocations: list[PageAllocation] = []
    credits: list[PageCredit] = []
    credited_by_line: dict[int, int] = {}
    held_by_line: dict[int, int] = {}
    disputes: dict[int, tuple[str, list[Money], list[int]]] = {}  # in position order
    currency = invoice.currency
    for kind, _, item_id, day, text, other_id, amount, row_currency, owner, _ in run_read(
        _history_statement(), {"invoice_id": invoice.id}
    ):
        if kind == _ALLOCATION:
            allocations.append(
                PageAllocation(item_id, text, other_id, day, Money(amount, row_currency))
            )
        elif kind == _CREDIT:
            credits.append(PageCredit(text, day, Money(amount, row_currency), other_id))
            if other_id is not None:
                credited_by_line[other_id] = credited_by_line.get(other_id, 0) + amount
        else:
            held_by_line[other_id] = held_by_line.get(other_id, 0) + amount
            if owner == customer_id:  # as the page listed them (`Dispute.customer_id`)
                _, amounts, line_ids = disputes.setdefault(item_id, (text, [], []))
                amounts.append(Money(amount, row_currency))
                line_ids.append(other_id)
    return _History(
        allocations,
        credits,
        [
            PageDispute(dispute_id, status, Money.sum(amounts, currency), tuple(line_ids))
            for dispute_id, (status, amounts, line_ids) in disputes.items()
        ],
        credited_by_line,
        held_by_line,
    )
