"""What the invoice page reads, in as few statements as the invoice needs.

An invoice with nothing paid, credited or disputed (the usual one) costs one statement:
the invoice, the amounts of its balance (`balances.balance_columns`) and its lines,
joined, built once per process and read as plain rows (a round trip and the ORM's
bookkeeping cost more than the page's few rows). Payments, credit notes, per-line credits
and holds, and open disputes are read only when the invoice's own sums show there is
something to find: each is a positive amount, so a zero sum means there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from babel.numbers import format_decimal
from sqlalchemy import bindparam, literal_column, select
from sqlalchemy.orm import selectinload

from portal.access.sessions import run_read
from portal.customers.models import Customer
from portal.disputes.models import OPEN_STATUSES, Dispute
from portal.extensions import db
from portal.i18n import zone_or_default
from portal.invoices.balances import (
    InvoiceBalance,
    LineBalance,
    balance_columns,
    balance_from_amounts,
    line_balances_of,
)
from portal.invoices.models import QUANTITY_SCALE, CreditNote, Invoice, InvoiceLine
from portal.invoices.queries import allocations_for_invoice, credits_for_invoice
from portal.money import Money, UnitPrice
from portal.payments.models import PaymentAllocation

_OPEN = sorted(str(status) for status in OPEN_STATUSES)


@dataclass(frozen=True, slots=True)
class PageLine:
    """An invoice line as the page shows it (what `InvoiceLine` gives, read-only)."""

    id: int
    line_number: int
    description: str
    quantity: Decimal
    unit_price: UnitPrice
    tax: Money
    amount: Money


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


@dataclass(frozen=True)
class InvoicePage:
    """One invoice as its page shows it. `lines` are in line-number order; `open_disputes`
    are the invoice's open disputes, newest first, and `dispute_by_line` the first of them
    that holds each line (by invoice line id)."""

    balance: InvoiceBalance
    lines: list[LineBalance]
    open_disputes: list[Dispute]
    dispute_by_line: dict[int, Dispute]
    allocations: list[PaymentAllocation]
    credits: list[CreditNote]

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
    with them in a subquery that PostgreSQL runs as written (OFFSET 0 keeps it from
    merging it into this statement) before its lines are joined."""
    invoices, lines, customers = Invoice.__table__, InvoiceLine.__table__, Customer.__table__
    allocated, refunded, credited, held, planned = balance_columns()
    invoice = (
        select(
            invoices.c.id,
            invoices.c.number,
            invoices.c.issue_date,
            invoices.c.due_date,
            invoices.c.currency,
            invoices.c.total_minor,
            invoices.c.voided_at,
            allocated.label("a"),
            refunded.label("r"),
            credited.label("c"),
            held.label("h"),
            planned.label("p"),
            customers.c.timezone,  # the customer's "today" (customer_today), no Customer loaded
        )
        .select_from(invoices.join(customers, customers.c.id == invoices.c.customer_id))
        .where(
            invoices.c.customer_id == bindparam("customer_id"),
            invoices.c.number == bindparam("number"),
        )
        .offset(literal_column("0"))
        .subquery("o")
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
        .select_from(invoice.outerjoin(lines, lines.c.invoice_id == invoice.c.id))
        .order_by(lines.c.line_number)
    )


def _invoice(rows: Sequence[Any]) -> PageInvoice:
    """The invoice of the statement's rows (one per line; one with no line if it has none)."""
    invoice_id, number, issued, due, currency, total = rows[0][:6]
    lines = [
        PageLine(
            line_id,
            line_number,
            description,
            (Decimal(quantity_milli) / QUANTITY_SCALE).normalize(),  # as InvoiceLine.quantity
            UnitPrice(price_units, price_scale, currency),
            Money(tax, currency),
            Money(amount, currency),
        )
        for (
            line_id,
            line_number,
            description,
            quantity_milli,
            price_units,
            price_scale,
            tax,
            amount,
        ) in (row[12:20] for row in rows)
        if line_id is not None
    ]
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
    open_disputes = _open_disputes(customer_id, invoice.id) if balance.held_minor else []
    dispute_by_line: dict[int, Dispute] = {}
    for dispute in open_disputes:
        for line in dispute.lines:
            dispute_by_line.setdefault(line.invoice_line_id, dispute)
    allocated = balance.paid.minor + balance.refunded_minor
    return InvoicePage(
        balance=balance,
        lines=line_balances_of(invoice, balance),  # type: ignore[arg-type]
        open_disputes=open_disputes,
        dispute_by_line=dispute_by_line,
        allocations=allocations_for_invoice(invoice) if allocated else [],  # type: ignore[arg-type]
        credits=credits_for_invoice(invoice) if balance.credited.minor else [],  # type: ignore[arg-type]
    )


def _open_disputes(customer_id: int, invoice_id: int) -> list[Dispute]:
    return list(
        db.session.scalars(
            select(Dispute)
            .where(
                Dispute.customer_id == customer_id,
                Dispute.invoice_id == invoice_id,
                Dispute.status.in_(_OPEN),
            )
            .options(selectinload(Dispute.lines))
            .order_by(Dispute.opened_at.desc(), Dispute.id.desc())
        )
    )


# A line's quantity and unit price as the page writes them: pure functions of their
# arguments, formatted through Babel once per distinct value and language per process
# (as `portal.money` does for amounts and `portal.i18n` for dates).
@lru_cache(maxsize=4096)
def format_quantity(quantity: Decimal, locale: str) -> str:
    """A quantity in `locale` ("1,234.5"), as the `number` filter writes it."""
    return str(format_decimal(quantity, locale=locale))


@lru_cache(maxsize=4096)
def format_unit_price(price: UnitPrice, locale: str) -> str:
    """A unit price in `locale` with the decimals given (`UnitPrice.format`)."""
    return price.format(locale)
