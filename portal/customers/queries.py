"""Reads about one customer: their today, and everything their account page lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    func,
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
from portal.invoices.models import InvoiceStatus


def customer_today(customer: Customer | CustomerSnapshot, now: datetime) -> date:
    """Today's date where the customer lives: what 'overdue' means to them."""
    return now.astimezone(zone_or_default(customer.timezone)).date()


def get_customer_by_account(account_number: str) -> Customer | None:
    return db.session.scalar(select(Customer).where(Customer.account_number == account_number))


# --- the account page ---------------------------------------------------------------------
# Everything the account page lists comes from ONE statement, built once per process: a
# UNION ALL of one SELECT per kind of row, each in the same shape (the slots below, NULL
# where a kind has nothing to say) and numbered in its own order (`seq`). One round trip
# instead of a dozen, and no ORM objects: the page reads a few dozen plain values.
class _Kind(IntEnum):
    INVOICE = 1
    PAYMENT = 2  # one row per allocation (or one with no allocation)
    CREDIT = 3
    DISPUTE = 4
    PROMISE = 5
    PROMISED_INVOICE = 6
    PLAN = 7
    PLAN_HELD_INVOICE = 8
    CARD = 9
    OPT_OUT = 10


_SLOTS: dict[str, TypeEngine[Any]] = {
    "id": Integer(),
    "text1": String(),
    "text2": String(),
    "text3": String(),
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


_NULL = literal_column("NULL")  # rendered bare: null() would get a label in every part


def _part(
    kind: _Kind, order_by: Sequence[ColumnElement[Any]], **values: ColumnElement[Any]
) -> Select[Any]:
    """One kind of row in the shared shape: (kind, seq, *_SLOTS). The first part of the
    UNION names and types the columns; the others leave them bare (a label or CAST per
    slot and part would double the statement's length, past what the driver caches)."""
    first = kind == _Kind.INVOICE
    columns: list[ColumnElement[Any]] = [
        literal_column(str(int(kind)), Integer()),
        func.row_number().over(order_by=list(order_by)).label("q")
        if order_by
        else literal_column("0"),
    ]
    for name in _SLOTS:
        value = values.pop(name, None)
        columns.append(_NULL if value is None else value)
    if values:
        raise TypeError(f"no such slot: {sorted(values)}")
    if first:
        names = ["kind", "seq", *_SLOTS]
        types = [Integer(), Integer(), *_SLOTS.values()]
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

    # Untyped: with a type the driver's dialect writes a cast after each of its ten uses.
    customer = type_coerce(bindparam("customer_id"), NullType())
    allocated, refunded, credited, held, planned = balance_columns()
    invoices = _part(
        _Kind.INVOICE,
        (Invoice.due_date, Invoice.number),
        id=Invoice.id,
        text1=Invoice.number,
        text2=Invoice.currency,
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
            (Payment.paid_on.desc(), Payment.id.desc(), PaymentAllocation.id),
            id=Payment.id,
            text1=Payment.reference,
            text2=Payment.currency,
            text3=allocation_invoice.number,
            day1=Payment.paid_on,
            n1=Payment.amount_minor,
            n2=Payment.checkout_id,
            n3=payment_refunded.label("n3"),
            n4=PaymentAllocation.amount_minor.label("n4"),
        )
        .select_from(Payment)
        .outerjoin(PaymentAllocation, PaymentAllocation.payment_id == Payment.id)
        .outerjoin(allocation_invoice, allocation_invoice.id == PaymentAllocation.invoice_id)
        .where(Payment.customer_id == customer)
    )
    credits = (
        _part(
            _Kind.CREDIT,
            (CreditNote.issued_on.desc(), CreditNote.id.desc()),
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
            (Dispute.opened_at.desc(), Dispute.id.desc()),
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
    open_promise = (Promise.customer_id == customer, Promise.status == str(PromiseStatus.OPEN))
    promises = _part(
        _Kind.PROMISE,
        (Promise.promised_on, Promise.id),
        id=Promise.id,
        text2=Promise.currency,
        day1=Promise.promised_on,
        n1=Promise.amount_minor,
    ).where(*open_promise)
    promised = (
        _part(
            _Kind.PROMISED_INVOICE,
            (),
            id=PromiseInvoice.promise_id,
            n1=PromiseInvoice.invoice_id,
        )
        .join(Promise, Promise.id == PromiseInvoice.promise_id)
        .where(*open_promise)
    )
    plans = _part(
        _Kind.PLAN,
        (PaymentPlan.created_at.desc(), PaymentPlan.id.desc()),
        id=PaymentPlan.id,
        text1=PaymentPlan.status,
        text2=PaymentPlan.currency,
        n1=PaymentPlan.total_minor,
    ).where(PaymentPlan.customer_id == customer)
    plan_held = (
        _part(_Kind.PLAN_HELD_INVOICE, (), n1=PlanInvoice.invoice_id)
        .join(PaymentPlan, PaymentPlan.id == PlanInvoice.plan_id)
        .where(PaymentPlan.customer_id == customer, PlanInvoice.open_invoice_id.is_not(None))
    )
    card = _part(
        _Kind.CARD,
        (),
        id=SavedCard.id,
        text1=SavedCard.brand,
        text3=SavedCard.last4,
        n1=SavedCard.exp_month,
        n2=SavedCard.exp_year,
    ).where(SavedCard.customer_id == customer)
    opt_out = _part(_Kind.OPT_OUT, (), moment=EmailOptOut.opted_out_at).where(
        EmailOptOut.customer_id == customer
    )
    return union_all(
        invoices, payments, credits, disputes, promises, promised, plans, plan_held, card, opt_out
    ).order_by("kind", "seq")


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
        return self.status in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)

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
    snapshot = AccountSnapshot([], [], [], [], [], [], set(), None, None)
    payment: AccountPayment | None = None
    promises: dict[int, AccountPromise] = {}
    for kind, _seq, id_, text1, text2, text3, day1, day2, moment, *amounts in rows:
        n1, n2, n3, n4 = amounts[:4]
        if kind == _Kind.INVOICE:
            snapshot.invoices.append(
                _account_invoice(id_, text1, text2, day1, day2, moment, amounts, today)
            )
        elif kind == _Kind.PAYMENT:
            if payment is None or payment.id != id_:
                payment = AccountPayment(id_, text1, text2, day1, n1, n2, n3)
                snapshot.payments.append(payment)
            if n4 is not None:
                payment.allocations.append((text3, n4))
        elif kind == _Kind.CREDIT:
            snapshot.credits.append(AccountCredit(text1, text2, day1, text3, n1))
        elif kind == _Kind.DISPUTE:
            opened_at = moment.astimezone(UTC)  # the driver's gives the connection's zone
            snapshot.disputes.append(AccountDispute(id_, text1, text2, text3, opened_at, n1))
        elif kind == _Kind.PROMISE:
            promises[id_] = AccountPromise(id_, text2, day1, n1)
            snapshot.promises.append(promises[id_])
        elif kind == _Kind.PROMISED_INVOICE:
            promises[id_].invoice_ids.append(n1)
        elif kind == _Kind.PLAN:
            snapshot.plans.append(AccountPlan(id_, text1, text2, n1))
        elif kind == _Kind.PLAN_HELD_INVOICE:
            snapshot.plan_held_invoice_ids.add(n1)
        elif kind == _Kind.CARD:
            snapshot = replace(snapshot, card=AccountCard(text1, text3, n1, n2))
        elif kind == _Kind.OPT_OUT:
            snapshot = replace(snapshot, opted_out_at=moment.astimezone(UTC))
    return snapshot


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
    is_open = status in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)
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
