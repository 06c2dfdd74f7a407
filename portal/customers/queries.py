"""Reads about one customer: their today, and everything their account page lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import IntEnum
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Date,
    Integer,
    Select,
    String,
    bindparam,
    literal_column,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import aliased
from sqlalchemy.types import NullType, TypeEngine

from portal.access.sessions import run_read
from portal.customers.models import Customer, CustomerSnapshot
from portal.db import MinorUnits, UTCDateTime
from portal.extensions import db
from portal.i18n import zone_or_default
from portal.invoices.balances import balance_minor, days_overdue_of, payable_minor, status_of
from portal.invoices.models import OPEN_INVOICE_STATUSES, InvoiceStatus


def customer_today(customer: Customer | CustomerSnapshot, now: datetime) -> date:
    """Today's date where the customer lives: what 'overdue' means to them."""
    return now.astimezone(zone_or_default(customer.timezone)).date()


def get_customer_by_account(account_number: str) -> Customer | None:
    return db.session.scalar(select(Customer).where(Customer.account_number == account_number))


# --- the account page ---------------------------------------------------------------------
# Everything the account page lists comes from ONE statement, built once per process: a
# UNION ALL of one SELECT per kind of row, each in the same shape (the slots below, NULL
# where a kind has nothing to say). One round trip instead of a dozen, and no ORM objects:
# the page reads a few dozen plain values.
class _Kind(IntEnum):
    INVOICE = 1
    PAYMENT = 2  # one row per allocation (or one with no allocation)
    CREDIT = 3
    DISPUTE = 4
    PROMISE = 5  # one row per promised invoice (or one with none)
    PLAN = 6  # one row per invoice it holds from other plans (or one with none)
    SETTINGS = 7  # always one row: the saved card and the email opt-out, if any


_SLOTS: dict[str, TypeEngine[Any]] = {
    "id": Integer(),
    "text1": String(),
    "text2": String(),
    "text3": String(),
    "key": String(),
    "day1": Date(),
    "day2": Date(),
    "moment": UTCDateTime(),
    "n1": MinorUnits,
    "n2": MinorUnits,
    "n3": MinorUnits,
    "n4": MinorUnits,
    "n5": MinorUnits,
    "n6": MinorUnits,
}

# One ORDER BY puts every kind in its own order (no window function numbering each part:
# PostgreSQL would sort each part and start two more plan nodes for it on every run).
# Each kind puts its sort keys in these slots and leaves NULL in those before its own:
#   invoices   day2 (due date), key (number)                  oldest due first
#   promises   day2 (promised on), n6 (id), n5 (an invoice)   soonest first
#   payments   day1 (paid on), id, n5 (an allocation's id)    newest first
#   credits    day1 (issued on), id                           newest first
#   disputes   moment (opened at), id                         newest first
#   plans      moment (created at), id, n5 (an invoice)       newest first
# Within a kind a key slot is NULL on every row, or only on the one row of a payment with
# no allocation, a promise with no invoice, a plan holding none: where SQLite and
# PostgreSQL put NULLs changes no order.
_ORDER = ("kind", "day2", "key", "n6", "day1 DESC", "moment DESC", "id DESC", "n5")

_NULL = literal_column("NULL")  # rendered bare: null() would get a label in every part


def _part(kind: _Kind, **values: ColumnElement[Any]) -> Select[Any]:
    """One kind of row in the shared shape: (kind, *_SLOTS). The first part of the UNION
    names and types the columns; the others leave them bare (a label or CAST per slot and
    part would double the statement's length, past what the driver caches)."""
    columns: list[ColumnElement[Any]] = [literal_column(str(int(kind)), Integer())]
    for name in _SLOTS:
        value = values.pop(name, None)
        columns.append(_NULL if value is None else value)
    if values:
        raise TypeError(f"no such slot: {sorted(values)}")
    if kind == _Kind.INVOICE:
        names = ["kind", *_SLOTS]
        types = [Integer(), *_SLOTS.values()]
        columns = [
            type_coerce(column, type_).label(name)
            for column, name, type_ in zip(columns, names, types, strict=True)
        ]
    return select(*columns)


@cache
def _account_statement() -> CompoundSelect:
    """The account page's statement; its one parameter is `customer_id`."""
    from portal.disputes.models import OPEN_STATUSES as OPEN_DISPUTES
    from portal.disputes.models import Dispute, DisputeLine
    from portal.invoices.balances import _sum_minor, balance_columns, inline_values
    from portal.invoices.models import CreditNote, Invoice
    from portal.notifications.models import EmailOptOut
    from portal.payments.models import Payment, PaymentAllocation, Refund, SavedCard
    from portal.plans.models import PaymentPlan, PlanInvoice
    from portal.promises.models import Promise, PromiseInvoice, PromiseStatus

    # Untyped: with a type the driver's dialect writes a cast after each of its uses.
    customer = type_coerce(bindparam("customer_id"), NullType())
    allocated, refunded, credited, held, planned = balance_columns()
    invoices = _part(
        _Kind.INVOICE,
        id=Invoice.id,
        text2=Invoice.currency,
        key=Invoice.number,
        day1=Invoice.issue_date,
        day2=Invoice.due_date,
        moment=Invoice.voided_at,
        n1=Invoice.total_minor,
        n2=allocated,
        n3=refunded,
        n4=credited,
        n5=held,
        n6=planned,
    ).where(Invoice.customer_id == customer)
    # Short names in the other parts keep the statement under the 4 KB up to which the
    # driver caches a statement's conversion (psycopg's MAX_CACHED_STATEMENT_LENGTH).
    Payment = aliased(Payment, name="p")  # noqa: N806
    PaymentAllocation = aliased(PaymentAllocation, name="a")  # noqa: N806
    Refund = aliased(Refund, name="r")  # noqa: N806
    allocation_invoice = aliased(Invoice, name="ai")
    Invoice = aliased(Invoice, name="i")  # noqa: N806
    CreditNote = aliased(CreditNote, name="c")  # noqa: N806
    Dispute = aliased(Dispute, name="d")  # noqa: N806
    DisputeLine = aliased(DisputeLine, name="dl")  # noqa: N806
    Promise = aliased(Promise, name="pr")  # noqa: N806
    PromiseInvoice = aliased(PromiseInvoice, name="pi")  # noqa: N806
    PaymentPlan = aliased(PaymentPlan, name="pp")  # noqa: N806
    PlanInvoice = aliased(PlanInvoice, name="ppi")  # noqa: N806
    SavedCard = aliased(SavedCard, name="sc")  # noqa: N806
    EmailOptOut = aliased(EmailOptOut, name="eo")  # noqa: N806
    payment_refunded = (
        select(_sum_minor(Refund.amount_minor).label("s"))
        .where(Refund.payment_id == Payment.id)
        .correlate(Payment)
        .scalar_subquery()
    )
    payments = (
        _part(
            _Kind.PAYMENT,
            id=Payment.id,
            text1=Payment.reference,
            text2=Payment.currency,
            text3=allocation_invoice.number,
            day1=Payment.paid_on,
            n1=Payment.amount_minor,
            n2=Payment.checkout_id,
            n3=payment_refunded.label("n3"),
            n4=PaymentAllocation.amount_minor.label("n4"),
            n5=PaymentAllocation.id.label("n5"),
        )
        .select_from(Payment)
        .outerjoin(PaymentAllocation, PaymentAllocation.payment_id == Payment.id)
        .outerjoin(allocation_invoice, allocation_invoice.id == PaymentAllocation.invoice_id)
        .where(Payment.customer_id == customer)
    )
    credits = (
        _part(
            _Kind.CREDIT,
            id=CreditNote.id,
            text1=CreditNote.reference,
            text2=CreditNote.currency,
            text3=Invoice.number,
            day1=CreditNote.issued_on,
            n1=CreditNote.amount_minor,
        )
        .join(Invoice, Invoice.id == CreditNote.invoice_id)
        .where(Invoice.customer_id == customer)
    )
    disputed = (
        select(_sum_minor(DisputeLine.amount_minor).label("s"))
        .where(DisputeLine.dispute_id == Dispute.id)
        .correlate(Dispute)
        .scalar_subquery()
    )
    disputes = (
        _part(
            _Kind.DISPUTE,
            id=Dispute.id,
            text1=Dispute.status,
            text2=Invoice.currency,
            text3=Invoice.number,
            moment=Dispute.opened_at,
            n1=disputed.label("n1"),
        )
        .join(Invoice, Invoice.id == Dispute.invoice_id)
        .where(
            Dispute.customer_id == customer,
            Dispute.status.in_(inline_values(sorted(str(s) for s in OPEN_DISPUTES))),
        )
    )
    promises = (
        _part(
            _Kind.PROMISE,
            id=Promise.id,
            text2=Promise.currency,
            day2=Promise.promised_on,
            n1=Promise.amount_minor,
            n5=PromiseInvoice.invoice_id,
            n6=Promise.id,
        )
        .outerjoin(PromiseInvoice, PromiseInvoice.promise_id == Promise.id)
        .where(
            Promise.customer_id == customer,
            Promise.status == inline_values([str(PromiseStatus.OPEN)])[0],
        )
    )
    plans = (
        _part(
            _Kind.PLAN,
            id=PaymentPlan.id,
            text1=PaymentPlan.status,
            text2=PaymentPlan.currency,
            moment=PaymentPlan.created_at,
            n1=PaymentPlan.total_minor,
            n5=PlanInvoice.invoice_id,
        )
        .outerjoin(
            PlanInvoice,
            (PlanInvoice.plan_id == PaymentPlan.id) & PlanInvoice.open_invoice_id.is_not(None),
        )
        .where(PaymentPlan.customer_id == customer)
    )
    one_row = select(literal_column("1")).subquery("o")
    settings = (
        _part(
            _Kind.SETTINGS,
            text1=SavedCard.brand,
            text3=SavedCard.last4,
            moment=EmailOptOut.opted_out_at,
            n1=SavedCard.exp_month,
            n2=SavedCard.exp_year,
        )
        .select_from(one_row)
        .outerjoin(SavedCard, SavedCard.customer_id == customer)
        .outerjoin(EmailOptOut, EmailOptOut.customer_id == customer)
    )
    return union_all(invoices, payments, credits, disputes, promises, plans, settings).order_by(
        *map(literal_column, _ORDER)
    )


@dataclass(slots=True)
class AccountInvoice:
    """An invoice with its balance as of the customer's today (the rule: `balances`).
    Amounts are minor units of `currency`."""

    id: int
    number: str
    currency: str
    issue_date: date
    due_date: date
    total_minor: int
    balance_minor: int
    payable_minor: int
    held_minor: int
    status: InvoiceStatus
    days_overdue: int

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_INVOICE_STATUSES

    @property
    def is_overdue(self) -> bool:
        return self.days_overdue > 0


@dataclass(slots=True)
class AccountPayment:
    """A payment, newest first; `allocations` is (invoice number, minor units) per invoice
    it paid, `refunded_minor` what refunds gave back of it."""

    id: int
    reference: str
    currency: str
    paid_on: date
    amount_minor: int
    checkout_id: int | None
    refunded_minor: int
    allocations: list[tuple[str, int]] = field(default_factory=list)

    @property
    def receipt_number(self) -> str:
        return f"R-{self.id:06d}"  # as Payment.receipt_number


@dataclass(slots=True)
class AccountCredit:
    reference: str
    currency: str
    issued_on: date
    invoice_number: str
    amount_minor: int


@dataclass(slots=True)
class AccountDispute:
    """An open dispute: what its lines contest (`amount_minor`), when it was opened (UTC)."""

    id: int
    status: str
    currency: str
    invoice_number: str
    opened_at: datetime
    amount_minor: int


@dataclass(slots=True)
class AccountPromise:
    id: int
    currency: str
    promised_on: date
    amount_minor: int
    invoice_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class AccountPlan:
    id: int
    status: str
    currency: str
    total_minor: int


@dataclass(slots=True)
class AccountCard:
    """The saved card as the page names it (the attributes of `SavedCard` it shows)."""

    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


@dataclass(frozen=True)
class AccountSnapshot:
    """Everything the account page lists for one customer, read in one statement.

    `invoices` oldest due first, `payments` and `credits` newest first, open `disputes`
    newest first, open `promises` soonest first, `plans` newest first;
    `plan_held_invoice_ids` are invoices a pending, countered or active plan holds (no
    other plan may take them); `opted_out_at` is when collection email was stopped."""

    invoices: list[AccountInvoice]
    payments: list[AccountPayment]
    credits: list[AccountCredit]
    disputes: list[AccountDispute]
    promises: list[AccountPromise]
    plans: list[AccountPlan]
    plan_held_invoice_ids: set[int]
    card: AccountCard | None
    opted_out_at: datetime | None


def account_snapshot(customer: Customer | CustomerSnapshot, today: date) -> AccountSnapshot:
    """The account page's rows for this customer as of `today` (their local date): one
    statement, however many invoices, payments and credits they have. Run as the
    session lookup runs (`sessions.run_read`): a request that has not begun an ORM
    session opens none for it."""
    rows = run_read(_account_statement(), {"customer_id": customer.id})
    invoices: list[AccountInvoice] = []
    payments: list[AccountPayment] = []
    credits: list[AccountCredit] = []
    disputes: list[AccountDispute] = []
    promises: list[AccountPromise] = []
    plans: list[AccountPlan] = []
    plan_held: set[int] = set()
    card: AccountCard | None = None
    opted_out_at: datetime | None = None
    payment: AccountPayment | None = None
    promise: AccountPromise | None = None
    for kind, id_, text1, text2, text3, key, day1, day2, moment, *amounts in rows:
        n1, n2, n3, n4, n5 = amounts[:5]
        if kind == _Kind.INVOICE:
            invoices.append(_account_invoice(id_, key, text2, day1, day2, moment, amounts, today))
        elif kind == _Kind.PAYMENT:
            if payment is None or payment.id != id_:
                payment = AccountPayment(id_, text1, text2, day1, n1, n2, n3)
                payments.append(payment)
            if n4 is not None:
                payment.allocations.append((text3, n4))
        elif kind == _Kind.CREDIT:
            credits.append(AccountCredit(text1, text2, day1, text3, n1))
        elif kind == _Kind.DISPUTE:
            opened_at = moment.astimezone(UTC)  # the driver's gives the connection's zone
            disputes.append(AccountDispute(id_, text1, text2, text3, opened_at, n1))
        elif kind == _Kind.PROMISE:
            if promise is None or promise.id != id_:
                promise = AccountPromise(id_, text2, day2, n1)
                promises.append(promise)
            if n5 is not None:
                promise.invoice_ids.append(n5)
        elif kind == _Kind.PLAN:
            if not plans or plans[-1].id != id_:
                plans.append(AccountPlan(id_, text1, text2, n1))
            if n5 is not None:
                plan_held.add(n5)
        elif kind == _Kind.SETTINGS:
            if text1 is not None:  # a card's brand is never NULL
                card = AccountCard(text1, text3, n1, n2)
            if moment is not None:
                opted_out_at = moment.astimezone(UTC)
    return AccountSnapshot(
        invoices, payments, credits, disputes, promises, plans, plan_held, card, opted_out_at
    )


def _account_invoice(
    id_: int,
    number: str,
    currency: str,
    issue_date: date,
    due_date: date,
    voided_at: datetime | None,
    amounts: Sequence[Any],
    today: date,
) -> AccountInvoice:
    total, allocated, refunded, credited, held, planned = map(int, amounts)
    is_void = voided_at is not None
    net_paid = allocated - refunded
    balance = balance_minor(total, net_paid, credited)
    status = status_of(balance, net_paid, credited, is_void=is_void)
    is_open = status in OPEN_INVOICE_STATUSES
    return AccountInvoice(
        id_,
        number,
        currency,
        issue_date,
        due_date,
        total,
        balance,
        payable_minor(balance, held, planned, is_void=is_void),
        held,
        status,
        days_overdue_of(due_date, today, is_open=is_open),
    )
