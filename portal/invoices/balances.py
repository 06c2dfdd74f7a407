"""The one place that says what an invoice's balance and payable amount are.

    balance = total − paid (net of refunds) − credited
    payable = max(0, balance − held − planned)

`held` is what open disputes contest on the invoice (disputes in `open` or
`waiting_on_customer`: `portal.disputes.models.OPEN_STATUSES`); `planned` is what an
active payment plan covers (`planned_subquery`). The payable amount is the only amount
that may be paid (`portal.payments`), reminded (`portal.notifications`) or planned;
pages, the import, reports and the demo read these subqueries and readers and copy no
SQL (DESIGN.md, Data and money); `balance_minor`, `payable_minor` and `status_of` are
the rule on plain integers, for `InvoiceBalance` and for a page that reads the amounts
without the ORM (`customers.queries.account_snapshot`). At line level
(`line_balances`), what a customer may still dispute on a line is its amount less what
was credited to it and what open disputes hold on it, never more than the invoice's
payable amount.

All amounts are integer minor units of the invoice's currency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ColumnExpressionArgument,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.orm import selectinload
from sqlalchemy.sql import Subquery
from sqlalchemy.sql.elements import SQLCoreOperations

from portal.customers.models import Customer
from portal.db import MinorUnits
from portal.disputes.models import OPEN_STATUSES, Dispute, DisputeLine
from portal.extensions import db
from portal.invoices.models import (
    OPEN_INVOICE_STATUSES,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
)
from portal.money import Money
from portal.payments.models import PaymentAllocation, RefundAllocation
from portal.payments.policy import is_small_balance
from portal.plans.models import PaymentPlan, PlanInvoice, PlanStatus

_OPEN_STATUS_VALUES = sorted(str(status) for status in OPEN_STATUSES)


def _sum_minor(column: ColumnExpressionArgument[int]) -> ColumnElement[int]:
    """SUM of a money column as an integer: PostgreSQL sums BIGINT into NUMERIC, which
    the driver would hand back as a Decimal."""
    return cast(func.coalesce(func.sum(column), literal_column("0")), MinorUnits)


def inline_values(values: Sequence[str]) -> list[ColumnElement[str]]:
    """Our own constants (status names, never user input) written into the SQL, for an
    IN list: a list of parameters is expanded again on every execution of a statement."""
    for value in values:
        if not value.replace("_", "").isalnum():
            raise ValueError(f"not a constant to write into SQL: {value!r}")
    return [literal_column(f"'{value}'") for value in values]


# --- the subqueries, each correlated to Invoice -----------------------------------------
def allocated_subquery() -> ColumnElement[int]:
    """Payments applied to the invoice (before refunds), minor units."""
    return (
        select(_sum_minor(PaymentAllocation.amount_minor).label("s"))
        .where(PaymentAllocation.invoice_id == Invoice.id)
        .correlate(Invoice)
        .scalar_subquery()
    )


def refunded_subquery() -> ColumnElement[int]:
    """What refunds took back from the invoice's payments, minor units."""
    return (
        select(_sum_minor(RefundAllocation.amount_minor).label("s"))
        .where(RefundAllocation.invoice_id == Invoice.id)
        .correlate(Invoice)
        .scalar_subquery()
    )


def net_paid_subquery() -> ColumnElement[int]:
    """Payments applied to the invoice, less what refunds took back from it."""
    return allocated_subquery() - refunded_subquery()


def credited_subquery() -> ColumnElement[int]:
    """Credit notes on the invoice (any kind: ERP, dispute, small-balance write-off)."""
    return (
        select(_sum_minor(CreditNote.amount_minor).label("s"))
        .where(CreditNote.invoice_id == Invoice.id)
        .correlate(Invoice)
        .scalar_subquery()
    )


def held_subquery() -> ColumnElement[int]:
    """What open disputes contest on the invoice: not payable, reminded or plannable."""
    return (
        select(_sum_minor(DisputeLine.amount_minor).label("s"))
        .join(Dispute, Dispute.id == DisputeLine.dispute_id)
        .where(
            Dispute.invoice_id == Invoice.id,
            Dispute.status.in_(inline_values(_OPEN_STATUS_VALUES)),
        )
        .correlate(Invoice)
        .scalar_subquery()
    )


def planned_subquery() -> ColumnElement[int]:
    """What active payment plans cover on the invoice and is not yet paid through them:
    the sum of `PlanInvoice.amount_minor - paid_minor` over the invoice's plans in
    status `active` (minor units). A pending or countered plan holds its invoices from
    other plans (`PlanInvoice.open_invoice_id`) but not from payment: only an agreed
    plan takes its amount out of what is payable and reminded."""
    return (
        select(_sum_minor(PlanInvoice.amount_minor - PlanInvoice.paid_minor).label("s"))
        .join(PaymentPlan, PaymentPlan.id == PlanInvoice.plan_id)
        .where(
            PlanInvoice.invoice_id == Invoice.id,
            PaymentPlan.status == inline_values([str(PlanStatus.ACTIVE)])[0],
        )
        .correlate(Invoice)
        .scalar_subquery()
    )


def open_balance_column() -> ColumnElement[int]:
    """total − paid − credited, correlated to Invoice: the open balance in SQL (for the
    import, the demo and reports; a void invoice still has one, callers filter it)."""
    return open_balance_of(
        Invoice.total_minor, allocated_subquery(), refunded_subquery(), credited_subquery()
    )


def open_balance_of(
    total: SQLCoreOperations[int],
    allocated: SQLCoreOperations[int],
    refunded: SQLCoreOperations[int],
    credited: SQLCoreOperations[int],
) -> ColumnElement[int]:
    """`open_balance_column` (`balance_minor`: total − (allocated − refunded) − credited)
    of amounts a statement has already read, e.g. the `balance_columns()` of a
    subquery: a filter on them then costs no second run of the subqueries."""
    return total - (allocated - refunded) - credited


# --- an invoice's balance --------------------------------------------------------------
def balance_minor(total_minor: int, net_paid_minor: int, credited_minor: int) -> int:
    """total − paid (net of refunds) − credited, minor units."""
    return total_minor - net_paid_minor - credited_minor


def payable_minor(balance: int, held: int, planned: int, *, is_void: bool) -> int:
    """What may be paid, reminded or planned now: the balance less what open disputes
    hold and active plans cover, never below zero; zero on a void invoice."""
    if is_void:
        return 0
    return max(0, balance - held - planned)


def status_of(balance: int, net_paid: int, credited: int, *, is_void: bool) -> InvoiceStatus:
    """The invoice's status from its balance, what was paid (net of refunds) and what
    credit notes took off (minor units): void; nothing left and something paid → paid;
    nothing left and nothing paid → credited (a credit note settled it; an invoice of
    total 0 counts as paid); something left: partially paid if something was paid,
    partially credited if only credit notes reduced it, else open. A payment names the
    status whenever there was one: a customer who paid nothing never reads "paid"."""
    if is_void:
        return InvoiceStatus.VOID
    if balance <= 0:
        if net_paid <= 0 and credited > 0:
            return InvoiceStatus.CREDITED
        return InvoiceStatus.PAID
    if net_paid > 0:
        return InvoiceStatus.PARTIALLY_PAID
    if credited > 0:
        return InvoiceStatus.PARTIALLY_CREDITED
    return InvoiceStatus.OPEN


def days_overdue_of(due_date: date, today: date, *, is_open: bool) -> int:
    """Days past the due date as of `today` (0 when not open or not yet due)."""
    return max(0, (today - due_date).days) if is_open else 0


@dataclass(frozen=True)
class InvoiceBalance:
    """An invoice with what was paid, credited, held and planned against it, as of `today`.

    A snapshot: `balance`, `status` and `days_overdue` are worked out once (a page reads
    each several times per row). `paid` is net of refunds; `held_minor`, `planned_minor`
    and `refunded_minor` are minor units of the invoice's currency (read them as Money
    through `held`, `planned`, `refunded`).
    """

    invoice: Invoice
    paid: Money
    credited: Money
    today: date
    held_minor: int = 0
    planned_minor: int = 0
    refunded_minor: int = 0

    @property
    def held(self) -> Money:
        """What open disputes contest on this invoice."""
        return Money(self.held_minor, self.invoice.currency)

    @property
    def planned(self) -> Money:
        """What an active payment plan covers on this invoice."""
        return Money(self.planned_minor, self.invoice.currency)

    @property
    def refunded(self) -> Money:
        """What refunds took back (already deducted from `paid`)."""
        return Money(self.refunded_minor, self.invoice.currency)

    @cached_property
    def balance(self) -> Money:
        """total − paid − credited (`balance_minor`)."""
        minor = balance_minor(self.invoice.total.minor, self.paid.minor, self.credited.minor)
        return Money(minor, self.invoice.currency)

    @cached_property
    def payable(self) -> Money:
        """What may be paid, reminded or planned now (`payable_minor`)."""
        return Money(
            payable_minor(
                self.balance.minor,
                self.held_minor,
                self.planned_minor,
                is_void=self.invoice.voided_at is not None,
            ),
            self.invoice.currency,
        )

    @property
    def is_in_dispute(self) -> bool:
        """An open dispute holds part of it (the "in dispute" flag)."""
        return self.held_minor > 0

    @property
    def is_in_plan(self) -> bool:
        return self.planned_minor > 0

    @cached_property
    def status(self) -> InvoiceStatus:
        return status_of(
            self.balance.minor,
            self.paid.minor,
            self.credited.minor,
            is_void=self.invoice.voided_at is not None,
        )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_INVOICE_STATUSES

    @cached_property
    def days_overdue(self) -> int:
        return days_overdue_of(self.invoice.due_date, self.today, is_open=self.is_open)

    @property
    def is_overdue(self) -> bool:
        return self.days_overdue > 0


def balance_columns() -> tuple[ColumnElement[int], ...]:
    """(allocated, refunded, credited, held, planned), correlated to Invoice, in the order
    `_balance` reads (minor units): what a query selects next to an invoice to work out
    its balance with `balance_minor`, `payable_minor` and `status_of`."""
    return (
        allocated_subquery(),
        refunded_subquery(),
        credited_subquery(),
        held_subquery(),
        planned_subquery(),
    )


def invoices_with_balance(
    columns: Sequence[ColumnElement[Any]], *where: ColumnExpressionArgument[bool]
) -> Subquery:
    """A subquery ("o") of the invoices `where` says, each with `columns` (of the
    invoices table), its `balance_columns()` labelled a, r, c, h, p (minor units) and its
    customer's `timezone`: what the invoice and pay pages read of an invoice.

    PostgreSQL runs it as written (OFFSET 0 keeps it from being merged into the statement
    that reads it), so the balance subqueries run once per invoice, however often the
    statement reads their columns (a filter on `open_balance_of` them, a join to lines)."""
    invoices, customers = Invoice.__table__, Customer.__table__
    allocated, refunded, credited, held, planned = balance_columns()
    return (
        select(
            *columns,
            allocated.label("a"),
            refunded.label("r"),
            credited.label("c"),
            held.label("h"),
            planned.label("p"),
            customers.c.timezone,
        )
        .select_from(invoices.join(customers, customers.c.id == invoices.c.customer_id))
        .where(*where)
        .offset(literal_column("0"))
        .subquery("o")
    )


def _balance(invoice: Invoice, amounts: Sequence[Any], today: date) -> InvoiceBalance:
    """The InvoiceBalance of `invoice` from the values of `balance_columns()`."""
    allocated, refunded, credited, held, planned = (int(value) for value in amounts)
    currency = invoice.currency
    return InvoiceBalance(
        invoice,
        Money(allocated - refunded, currency),
        Money(credited, currency),
        today,
        held_minor=held,
        planned_minor=planned,
        refunded_minor=refunded,
    )


def invoice_balances_for(customer: Customer, today: date) -> list[InvoiceBalance]:
    """Every invoice of this customer with its balance, oldest due first. One query."""
    return invoice_balances_by_customer({customer.id: today}).get(customer.id, [])


def invoice_balances_by_customer(
    today_by_customer: Mapping[int, date],
) -> dict[int, list[InvoiceBalance]]:
    """`invoice_balances_for` for several customers (each with their own today), one query."""
    rows = db.session.execute(
        select(Invoice, *balance_columns())
        .where(Invoice.customer_id.in_(list(today_by_customer)))
        .order_by(Invoice.customer_id, Invoice.due_date, Invoice.number)
    ).all()
    balances: dict[int, list[InvoiceBalance]] = {}
    for invoice, *amounts in rows:
        balances.setdefault(invoice.customer_id, []).append(
            _balance(invoice, amounts, today_by_customer[invoice.customer_id])
        )
    return balances


def invoice_balance(invoice: Invoice, today: date) -> InvoiceBalance:
    """One invoice's balance as of `today` (one query)."""
    amounts = db.session.execute(
        select(*balance_columns()).select_from(Invoice).where(Invoice.id == invoice.id)
    ).one()
    return _balance(invoice, list(amounts), today)


@dataclass(frozen=True)
class PayableInvoice:
    invoice: Invoice
    payable: Money
    held: Money


def payable_invoices() -> list[PayableInvoice]:
    """Every invoice, of every customer, with something payable; for the jobs runner.

    The payable rule is `InvoiceBalance.payable`, so what it leaves out (disputed or
    planned amounts) is never dunned; nor is a remainder no card can pay
    (`payments.policy.is_small_balance`: 0.49 USD, 0.005 KWD). `held` is what open
    disputes keep out of it (a reminder says it is on hold).
    """
    columns = balance_columns()
    allocated, refunded, credited, held, planned = columns
    rows = db.session.execute(
        select(Invoice, *columns)
        .where(
            Invoice.voided_at.is_(None),
            Invoice.total_minor - allocated + refunded - credited - held - planned > 0,
        )
        .options(selectinload(Invoice.customer))
        .order_by(Invoice.customer_id, Invoice.due_date, Invoice.id)
    ).all()
    result = []
    for invoice, *amounts in rows:
        balance = _balance(invoice, amounts, date.min)
        if balance.payable.is_positive and not is_small_balance(balance.payable):
            result.append(PayableInvoice(invoice, balance.payable, balance.held))
    return result


def small_balance_candidates(currencies: Sequence[str]) -> list[InvoiceBalance]:
    """Open invoices in these currencies with a positive balance, for the write-off job
    (it decides, with `is_small_balance` and the tolerance, which to write off)."""
    if not currencies:
        return []
    columns = balance_columns()
    rows = db.session.execute(
        select(Invoice, *columns)
        .where(
            Invoice.voided_at.is_(None),
            Invoice.currency.in_(list(currencies)),
            open_balance_column() > 0,
        )
        .order_by(Invoice.id)
    ).all()
    return [_balance(invoice, amounts, date.min) for invoice, *amounts in rows]


# --- lines ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineBalance:
    """One invoice line: what was credited to it, what open disputes hold on it, and
    what may still be disputed (`line_balances` states the rule)."""

    line: InvoiceLine
    credited: Money
    held: Money
    disputable: Money

    @property
    def is_disputable(self) -> bool:
        return self.disputable.is_positive


def credited_by_line(invoice_id: int) -> dict[int, int]:
    """Credit notes naming a line of this invoice, per invoice line id (minor units)."""
    rows = db.session.execute(
        select(CreditNote.invoice_line_id, _sum_minor(CreditNote.amount_minor))
        .where(CreditNote.invoice_id == invoice_id, CreditNote.invoice_line_id.is_not(None))
        .group_by(CreditNote.invoice_line_id)
    )
    return {int(line_id): int(amount) for line_id, amount in rows if line_id is not None}


def held_by_line(invoice_id: int) -> dict[int, int]:
    """What open disputes hold on each line of this invoice, per invoice line id."""
    rows = db.session.execute(
        select(DisputeLine.invoice_line_id, _sum_minor(DisputeLine.amount_minor))
        .join(Dispute, Dispute.id == DisputeLine.dispute_id)
        .where(Dispute.invoice_id == invoice_id, Dispute.status.in_(_OPEN_STATUS_VALUES))
        .group_by(DisputeLine.invoice_line_id)
    )
    return {int(line_id): int(amount) for line_id, amount in rows if line_id is not None}


def line_balances(invoice: Invoice, balance: InvoiceBalance | None = None) -> list[LineBalance]:
    """Each line of `invoice` in line-number order, with what may still be disputed on it.

    disputable = line amount − credited to that line − held on it by open disputes,
    never below zero and never above the invoice's payable amount (payments are not
    allocated to lines, so the payable amount bounds what is left to contest; a
    dispute of several lines is bounded by it in total: `disputes.services.open_dispute`).
    Zero on every line of a void invoice. Three queries (`balance` saves one).
    """
    if balance is None:
        balance = invoice_balance(invoice, date.min)
    return line_balances_from(
        invoice, balance.payable, credited_by_line(invoice.id), held_by_line(invoice.id)
    )


# --- the invoice page: its balance from one statement's values -----------------------------
def balance_from_amounts(invoice: Invoice, amounts: Sequence[Any], today: date) -> InvoiceBalance:
    """The InvoiceBalance of `invoice` from the values of `balance_columns()`."""
    return _balance(invoice, amounts, today)


def line_balances_from(
    invoice: Invoice, payable: Money, credited: Mapping[int, int], held: Mapping[int, int]
) -> list[LineBalance]:
    """The rule of `line_balances`, from what is credited and held per line id (minor units)."""
    currency = invoice.currency
    zero = Money.zero(currency)
    result = []
    for line in sorted(invoice.lines, key=_line_number):
        line_credited = Money(credited.get(line.id, 0), currency)
        line_held = Money(held.get(line.id, 0), currency)
        remaining = line.amount - line_credited - line_held
        disputable = min(remaining, payable) if remaining.is_positive else zero
        result.append(LineBalance(line, line_credited, line_held, disputable))
    return result


def _line_number(line: InvoiceLine) -> int:
    return line.line_number
