"""Receivables reports computed in SQL: aging as of a date, DSO, CEI, collections, channels.

Every amount is an integer number of minor units in one currency (`Money`); a report never
adds across currencies. Ratios (DSO in days, CEI in percent) are exact `Decimal`s rounded
half-up to one place, computed from integers: no float is involved.

The open amount of an invoice *as of* a day D is reconstructed from dated records, the
same terms as the balances module (`invoices.balances`: total − paid − credited +
refunded), each counted only when its date is on or before D:

- the invoice exists from its `issue_date`, and not once voided (`voided_at` before the
  end of D, UTC);
- a payment allocation counts from its payment's `paid_on` (so an invoice paid on D is
  not open on D);
- a refund allocation gives back from its refund's `refunded_on`;
- a credit note reduces from its `issued_on`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Subquery,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)

from portal.customers.models import Customer
from portal.db import MinorUnits
from portal.extensions import db
from portal.invoices.models import CreditNote, Invoice
from portal.money import Money
from portal.payments.models import Payment, PaymentAllocation, Refund, RefundAllocation

# Bucket keys, in order, with the days past due each holds (inclusive; None: no bound).
# Days past due = as-of date − due date; "current" is not yet due or due on the day.
BUCKETS: tuple[tuple[str, int | None, int | None], ...] = (
    ("current", None, 0),
    ("1-30", 1, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("91-120", 91, 120),
    ("120+", 121, None),
)
BUCKET_KEYS: tuple[str, ...] = tuple(key for key, _, _ in BUCKETS)

ONE_PLACE = Decimal("0.1")


def _minor(column: ColumnElement[int]) -> ColumnElement[int]:
    """SUM of a money column as an integer (PostgreSQL sums BIGINT into NUMERIC)."""
    return cast(func.coalesce(func.sum(column), 0), MinorUnits)


# PostgreSQL's default work_mem (4 MB) makes the per-customer aggregation of a million
# invoices sort and hash on disk (EXPLAIN: "external merge", "Batches: 8"); a report's
# transaction gets more, for itself only (SET LOCAL ends with the transaction).
# https://www.postgresql.org/docs/current/runtime-config-resource.html#GUC-WORK-MEM
REPORT_WORK_MEM = "64MB"


def _room_to_aggregate() -> None:
    """On PostgreSQL, give this transaction REPORT_WORK_MEM; nothing elsewhere."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def _exists_on(as_of: date) -> ColumnElement[bool]:
    """The invoice was issued by `as_of` and not voided by the end of it."""
    return and_(
        Invoice.issue_date <= as_of,
        or_(Invoice.voided_at.is_(None), Invoice.voided_at >= _end_of_day(as_of)),
    )


def _movements_on(as_of: date, *, only_refunded: bool = False) -> Subquery:
    """Every dated record that changed an invoice's balance on or before `as_of`:
    (invoice_id, amount in minor units), negative when it reduced the balance; with
    `only_refunded`, only those of invoices a refund touched."""
    parts = [
        select(PaymentAllocation.invoice_id, (-PaymentAllocation.amount_minor).label("amount"))
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(Payment.paid_on <= as_of),
        select(RefundAllocation.invoice_id, RefundAllocation.amount_minor.label("amount"))
        .join(Refund, Refund.id == RefundAllocation.refund_id)
        .where(Refund.refunded_on <= as_of),
        select(CreditNote.invoice_id, (-CreditNote.amount_minor).label("amount")).where(
            CreditNote.issued_on <= as_of
        ),
    ]
    if only_refunded:
        refunded = select(RefundAllocation.invoice_id)
        parts = [part.where(part.selected_columns[0].in_(refunded)) for part in parts]
    return union_all(*parts).subquery("movements")


def _invoice_filter(as_of: date, currency: str | None) -> list[ColumnElement[bool]]:
    conditions = [_exists_on(as_of)]
    if currency is not None:
        conditions.append(Invoice.currency == currency)
    return conditions


def open_invoices_on(
    as_of: date, currency: str | None = None, *, only_refunded: bool = False
) -> Subquery:
    """Invoices with their open amount on `as_of`, one row each: id, customer_id,
    currency, due_date, open_minor. Every existing invoice, including those with nothing
    open (0) and, with `only_refunded`, only invoices that a refund touched."""
    movements = _movements_on(as_of, only_refunded=only_refunded)
    settled = (
        select(movements.c.invoice_id, func.sum(movements.c.amount).label("delta"))
        .group_by(movements.c.invoice_id)
        .subquery("settled")
    )
    query = (
        select(
            Invoice.id,
            Invoice.customer_id,
            Invoice.currency,
            Invoice.due_date,
            (Invoice.total_minor + func.coalesce(settled.c.delta, 0)).label("open_minor"),
        )
        .outerjoin(settled, settled.c.invoice_id == Invoice.id)
        .where(*_invoice_filter(as_of, currency))
    )
    if only_refunded:
        query = query.where(Invoice.id.in_(select(RefundAllocation.invoice_id)))
    return query.subquery("open_invoices")


def _entry_parts(as_of: date, currency: str | None) -> list[Subquery]:
    """What the aging sums, in three parts of rows (currency, due_date, customer_id,
    amount): each existing invoice's total; each of its records dated by `as_of`
    (signed); and, for an invoice those records took below zero, what brings it back to
    zero.

    Summing these rows per invoice gives max(open, 0), as grouping per invoice first
    would, without grouping a million invoices: only an invoice a refund touched can be
    below zero on a past day (without refunds, open on D ≥ the balance today ≥ 0, which
    the ledger's triggers guarantee), so only those are grouped (the third part). Each
    part is aggregated on its own by the caller, which PostgreSQL does in parallel.
    """
    movements = _movements_on(as_of)
    refunded = open_invoices_on(as_of, currency, only_refunded=True)
    keys = (Invoice.currency, Invoice.due_date, Invoice.customer_id)
    return [
        select(*keys, Invoice.total_minor.label("amount"))
        .where(*_invoice_filter(as_of, currency))
        .subquery("invoice_totals"),
        select(*keys, movements.c.amount)
        .join(movements, movements.c.invoice_id == Invoice.id)
        .where(*_invoice_filter(as_of, currency))
        .subquery("invoice_records"),
        select(
            refunded.c.currency,
            refunded.c.due_date,
            refunded.c.customer_id,
            (-refunded.c.open_minor).label("amount"),
        )
        .where(refunded.c.open_minor < 0)
        .subquery("over_settled"),
    ]


def _bucket_columns(as_of: date, due: ColumnElement[date], amount: ColumnElement[int]) -> list:
    """One SUM per bucket; boundaries as dates so that no dialect's date arithmetic is needed."""
    columns = []
    for key, low, high in BUCKETS:
        conditions = []
        if low is not None:  # at least `low` days past due: due on or before as_of − low
            conditions.append(due <= as_of - timedelta(days=low))
        if high is not None:  # at most `high` days past due
            conditions.append(due >= as_of - timedelta(days=high))
        columns.append(_minor(case((and_(*conditions), amount), else_=literal(0))).label(key))
    return columns


@dataclass(frozen=True)
class AgingRow:
    """One currency's (or one customer's) open receivables by bucket."""

    currency: str
    buckets: dict[str, Money]
    account_number: str | None = None
    name: str | None = None

    @property
    def total(self) -> Money:
        return Money.sum(self.buckets.values(), self.currency)


@dataclass(frozen=True)
class Aging:
    as_of: date
    totals: list[AgingRow]  # one per currency, by currency code
    customers: list[AgingRow] = field(default_factory=list)  # largest total first

    def total_for(self, currency: str) -> AgingRow:
        for row in self.totals:
            if row.currency == currency:
                return row
        return AgingRow(currency, {key: Money.zero(currency) for key in BUCKET_KEYS})


def _row(currency: str, values: Sequence[int]) -> dict[str, Money]:
    return {key: Money(int(v), currency) for key, v in zip(BUCKET_KEYS, values, strict=True)}


def aging(
    as_of: date,
    *,
    currency: str | None = None,
    customer_limit: int | None = 0,
) -> Aging:
    """Open receivables on `as_of` by bucket, per currency, and per customer.

    `customer_limit`: 0 for no per-customer rows, None for all of them, N for the N
    customers owing the most. Two queries (one without customers).
    """
    _room_to_aggregate()
    parts = _entry_parts(as_of, currency)
    if customer_limit != 0:
        return _aging_with_customers(as_of, parts, customer_limit)
    # Summed per due date first (a few thousand rows), then into buckets: the CASEs run
    # on those rows rather than on every invoice.
    by_due = union_all(
        *(
            select(p.c.currency, p.c.due_date, _minor(p.c.amount).label("amount")).group_by(
                p.c.currency, p.c.due_date
            )
            for p in parts
        )
    ).subquery("by_due_date")
    totals = [
        AgingRow(row[0], _row(row[0], row[1:]))
        for row in db.session.execute(
            select(by_due.c.currency, *_bucket_columns(as_of, by_due.c.due_date, by_due.c.amount))
            .group_by(by_due.c.currency)
            .having(_minor(by_due.c.amount) != 0)
            .order_by(by_due.c.currency)
        )
    ]
    return Aging(as_of, totals)


def _aging_with_customers(as_of: date, parts: list[Subquery], customer_limit: int | None) -> Aging:
    """The totals and the per-customer rows in ONE statement: the per-customer buckets
    are computed once (a CTE), the currency totals are their sums, and the top
    `customer_limit` rows (None: all) come from the same CTE. The totals equal the
    per-due-date computation of `aging`: every invoice counts max(open, 0) >= 0, so a
    customer whose total is 0 has every bucket at 0 and leaving it out changes no sum.
    (Before: a separate totals query, then this aggregation: 3.3 s on 1M invoices.)"""
    by_part = union_all(
        *(
            select(
                p.c.currency,
                p.c.customer_id,
                *_bucket_columns(as_of, p.c.due_date, p.c.amount),
                _minor(p.c.amount).label("total"),
            ).group_by(p.c.currency, p.c.customer_id)
            for p in parts
        )
    ).subquery("by_part")
    per_customer = (
        select(
            by_part.c.currency,
            by_part.c.customer_id,
            *(_minor(by_part.c[key]).label(key) for key in BUCKET_KEYS),
            _minor(by_part.c.total).label("total"),
        )
        .group_by(by_part.c.currency, by_part.c.customer_id)
        .having(_minor(by_part.c.total) != 0)
        .cte("per_customer")
    )
    top: Select = (
        select(
            per_customer.c.currency,
            Customer.account_number,
            Customer.name,
            *(per_customer.c[key] for key in BUCKET_KEYS),
            per_customer.c.total,
        )
        .join(Customer, Customer.id == per_customer.c.customer_id)
        .order_by(per_customer.c.currency, per_customer.c.total.desc(), Customer.account_number)
    )
    if customer_limit is not None:
        top = top.limit(customer_limit)
    top_rows = top.subquery("top_customers")
    totals_part = select(
        literal(0).label("part"),
        per_customer.c.currency,
        cast(null(), String).label("account_number"),
        cast(null(), String).label("name"),
        *(_minor(per_customer.c[key]).label(key) for key in BUCKET_KEYS),
        _minor(per_customer.c.total).label("total"),
    ).group_by(per_customer.c.currency)
    customers_part = select(
        literal(1).label("part"),
        top_rows.c.currency,
        top_rows.c.account_number,
        top_rows.c.name,
        *(top_rows.c[key] for key in BUCKET_KEYS),
        top_rows.c.total,
    )
    merged = union_all(totals_part, customers_part).subquery("aging")
    rows = db.session.execute(
        select(merged).order_by(
            merged.c.part, merged.c.currency, merged.c.total.desc(), merged.c.account_number
        )
    ).all()
    totals = [
        AgingRow(row.currency, _row(row.currency, [row._mapping[key] for key in BUCKET_KEYS]))
        for row in rows
        if row.part == 0
    ]
    customers = [
        AgingRow(
            row.currency,
            _row(row.currency, [row._mapping[key] for key in BUCKET_KEYS]),
            account_number=row.account_number,
            name=row.name,
        )
        for row in rows
        if row.part == 1
    ]
    return Aging(as_of, totals, customers)


def receivables_on(as_of: date, currency: str) -> tuple[Money, Money]:
    """(total open, current part: not yet past due) on `as_of`, in `currency`."""
    row = aging(as_of, currency=currency).total_for(currency)
    return row.total, row.buckets["current"]


def credit_sales(start: date, end: date, currency: str) -> Money:
    """Invoices issued from `start` to `end` inclusive and not voided by `end`."""
    total = db.session.scalar(
        select(_minor(Invoice.total_minor)).where(
            Invoice.currency == currency,
            Invoice.issue_date >= start,
            _exists_on(end),
        )
    )
    return Money(int(total or 0), currency)


def _ratio(numerator: int, denominator: int) -> Decimal | None:
    """numerator / denominator, rounded half-up to one place; None when undefined."""
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(ONE_PLACE, ROUND_HALF_UP)


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class Effectiveness:
    """DSO and CEI of one currency over a period, with every term they are made of.

    DSO (the "standard" or period-end method) = receivables at the end of the period
    / credit sales in the period × days in the period.
    CEI = (beginning receivables + credit sales − ending total receivables)
    / (beginning receivables + credit sales − ending current receivables) × 100, where
    beginning receivables are those open at the end of the day before the period.
    """

    period: Period
    currency: str
    beginning: Money
    sales: Money
    ending: Money
    ending_current: Money

    @property
    def dso(self) -> Decimal | None:
        """Days; None when there were no credit sales in the period."""
        return _ratio(self.ending.minor * self.period.days, self.sales.minor)

    @property
    def cei(self) -> Decimal | None:
        """Percent; None when the denominator is zero."""
        start = self.beginning.minor + self.sales.minor
        return _ratio((start - self.ending.minor) * 100, start - self.ending_current.minor)


def effectiveness(period: Period, currency: str) -> Effectiveness:
    """The terms of DSO and CEI over `period` in `currency` (four queries)."""
    beginning, _ = receivables_on(period.start - timedelta(days=1), currency)
    ending, ending_current = receivables_on(period.end, currency)
    return Effectiveness(
        period,
        currency,
        beginning,
        credit_sales(period.start, period.end, currency),
        ending,
        ending_current,
    )


@dataclass(frozen=True)
class DailyCollections:
    day: date
    received: Money
    refunded: Money
    count: int

    @property
    def net(self) -> Money:
        return self.received - self.refunded


def collections_per_day(period: Period, currency: str) -> list[DailyCollections]:
    """Payments received and refunds given back per day (days with either), oldest first."""
    received = {
        row[0]: (int(row[1]), int(row[2]))
        for row in db.session.execute(
            select(Payment.paid_on, _minor(Payment.amount_minor), func.count(Payment.id))
            .where(
                Payment.currency == currency,
                Payment.paid_on >= period.start,
                Payment.paid_on <= period.end,
            )
            .group_by(Payment.paid_on)
        )
    }
    refunded = {
        row[0]: int(row[1])
        for row in db.session.execute(
            select(Refund.refunded_on, _minor(Refund.amount_minor))
            .where(
                Refund.currency == currency,
                Refund.refunded_on >= period.start,
                Refund.refunded_on <= period.end,
            )
            .group_by(Refund.refunded_on)
        )
    }
    return [
        DailyCollections(
            day,
            Money(received.get(day, (0, 0))[0], currency),
            Money(refunded.get(day, 0), currency),
            received.get(day, (0, 0))[1],
        )
        for day in sorted(set(received) | set(refunded))
    ]


@dataclass(frozen=True)
class ChannelTotal:
    channel: str  # payments.models.PaymentSource: "card" or "offline"
    amount: Money
    count: int


def payments_by_channel(period: Period, currency: str) -> list[ChannelTotal]:
    """Payments received in `period` by source (card, offline), each listed even when zero."""
    found = {
        row[0]: (int(row[1]), int(row[2]))
        for row in db.session.execute(
            select(Payment.source, _minor(Payment.amount_minor), func.count(Payment.id))
            .where(
                Payment.currency == currency,
                Payment.paid_on >= period.start,
                Payment.paid_on <= period.end,
            )
            .group_by(Payment.source)
        )
    }
    return [
        ChannelTotal(
            channel, Money(found.get(channel, (0, 0))[0], currency), found.get(channel, (0, 0))[1]
        )
        for channel in ("card", "offline")
    ]


def currencies_in_use() -> list[str]:
    """The customers' currencies, by code: every invoice is in its customer's currency
    (a ledger trigger, migration a3f1c2d4b5e6), and there are ten times fewer customers
    than invoices to read."""
    return list(
        db.session.scalars(select(Customer.currency).distinct().order_by(Customer.currency))
    )


@dataclass(frozen=True)
class PromiseOutcome:
    status: str  # promises.models.PromiseStatus
    amount: Money  # what was promised
    paid: Money  # what was paid towards it (kept or broken promises)
    count: int


def promises_by_outcome(period: Period, currency: str) -> list[PromiseOutcome]:
    """Promises to pay falling due in `period` (their `promised_on`), by status: kept,
    broken, still open, cancelled; each listed even when there is none."""
    from portal.promises.models import Promise, PromiseStatus

    found = {
        row[0]: (int(row[1]), int(row[2]), int(row[3]))
        for row in db.session.execute(
            select(
                Promise.status,
                _minor(Promise.amount_minor),
                _minor(Promise.paid_minor),
                func.count(Promise.id),
            )
            .where(
                Promise.currency == currency,
                Promise.promised_on >= period.start,
                Promise.promised_on <= period.end,
            )
            .group_by(Promise.status)
        )
    }
    order = (PromiseStatus.KEPT, PromiseStatus.BROKEN, PromiseStatus.OPEN, PromiseStatus.CANCELLED)
    return [
        PromiseOutcome(
            status.value,
            Money(found.get(status, (0, 0, 0))[0], currency),
            Money(found.get(status, (0, 0, 0))[1], currency),
            found.get(status, (0, 0, 0))[2],
        )
        for status in order
    ]
