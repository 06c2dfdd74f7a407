"""What the staff dispute desk reads besides `portal.disputes.queries.get_dispute`: the
queue (one page, filtered, with amounts and ages), its counts, and the other open disputes
of an invoice. Staff see every customer's disputes; every caller is behind
`staff_required`.

Ages are business days (`portal.disputes.ages`) between the day a dispute was opened and
today (or the day it was resolved), both taken in the creditor's time zone
(CREDITOR_TIMEZONE): a specialist's working week is the creditor's.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, and_, func, select

from portal.customers.models import Customer
from portal.db import MinorUnits
from portal.disputes.ages import Age, age_of
from portal.disputes.models import (
    OPEN_STATUSES,
    Dispute,
    DisputeLine,
    DisputeReason,
    DisputeStatus,
)
from portal.extensions import db
from portal.i18n import creditor_zone
from portal.invoices.models import Invoice
from portal.money import Money

QUEUE_PAGE_SIZE = 25


def creditor_day(moment: datetime) -> date:
    """The creditor's calendar day of an aware UTC moment."""
    return moment.astimezone(creditor_zone()).date()


def dispute_age(dispute: Dispute, today: date, target: int) -> Age:
    """Business days from the day it was opened to today, or to the day it was resolved."""
    end = creditor_day(dispute.resolved_at) if dispute.resolved_at else today
    return age_of(creditor_day(dispute.opened_at), end, target)


@dataclass(frozen=True)
class QueueRow:
    dispute: Dispute
    customer: Customer
    invoice: Invoice
    amount: Money  # the sum of its lines
    age: Age

    @property
    def is_flagged(self) -> bool:
        """Brought back to staff: the customer did not reply by the deadline."""
        return self.dispute.is_open and self.dispute.flagged_at is not None


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    page: int
    per_page: int
    total: int  # rows matching the filters, on every page

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page * self.per_page < self.total

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _conditions(
    statuses: Collection[DisputeStatus] | None, reason: DisputeReason | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if statuses is not None:
        conditions.append(Dispute.status.in_([s.value for s in statuses]))
    if reason is not None:
        conditions.append(Dispute.reason == reason.value)
    return conditions


def queue_page(
    *,
    statuses: Collection[DisputeStatus] | None,
    reason: DisputeReason | None,
    today: date,
    target: int,
    page: int = 1,
    per_page: int = QUEUE_PAGE_SIZE,
) -> QueuePage:
    """One page of disputes in `statuses` (None: any) with `reason` (None: any), oldest
    first (by `opened_at`, then id), each with its customer, invoice, disputed amount and
    age against `target` business days. `page` counts from 1; past the last page it is
    the last page."""
    conditions = _conditions(statuses, reason)
    total = db.session.scalar(select(func.count(Dispute.id)).where(*conditions)) or 0
    page = min(max(1, page), max(1, -(-total // per_page)))
    amounts = (
        select(
            DisputeLine.dispute_id,
            func.sum(DisputeLine.amount_minor).label("amount_minor"),
        )
        .group_by(DisputeLine.dispute_id)
        .subquery("amounts")
    )
    statement = (
        select(Dispute, Customer, Invoice, func.cast(amounts.c.amount_minor, MinorUnits))
        .join(Customer, Customer.id == Dispute.customer_id)
        .join(Invoice, Invoice.id == Dispute.invoice_id)
        .join(amounts, amounts.c.dispute_id == Dispute.id)
        .where(*conditions)
        .order_by(Dispute.opened_at, Dispute.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    rows = [
        QueueRow(
            dispute,
            customer,
            invoice,
            Money(int(amount or 0), invoice.currency),
            dispute_age(dispute, today, target),
        )
        for dispute, customer, invoice, amount in db.session.execute(statement)
    ]
    return QueuePage(rows, page, per_page, total)


@dataclass(frozen=True)
class QueueSummary:
    """The open disputes in numbers, for the staff home and the nav."""

    open: int  # holding money: open or waiting on the customer
    to_decide: int  # open (with staff)
    waiting: int  # waiting on the customer
    flagged: int  # open ones the customer did not answer in time
    over_target: int  # open ones older than the target


def queue_summary(today: date, target: int) -> QueueSummary:
    """Counts over the open disputes (OPEN_STATUSES). Reads one small row per open
    dispute: the open ones are the few a team works, never the whole history."""
    rows = db.session.execute(
        select(Dispute.status, Dispute.opened_at, Dispute.flagged_at).where(
            Dispute.status.in_([s.value for s in OPEN_STATUSES])
        )
    ).all()
    return QueueSummary(
        open=len(rows),
        to_decide=sum(1 for r in rows if r.status == DisputeStatus.OPEN),
        waiting=sum(1 for r in rows if r.status == DisputeStatus.WAITING_ON_CUSTOMER),
        flagged=sum(1 for r in rows if r.flagged_at is not None),
        over_target=sum(
            1 for r in rows if age_of(creditor_day(r.opened_at), today, target).is_over_target
        ),
    )


def other_open_disputes(dispute: Dispute) -> list[Dispute]:
    """The invoice's other open disputes (a specialist deciding one should know)."""
    return list(
        db.session.scalars(
            select(Dispute)
            .where(
                and_(
                    Dispute.invoice_id == dispute.invoice_id,
                    Dispute.id != dispute.id,
                    Dispute.status.in_([s.value for s in OPEN_STATUSES]),
                )
            )
            .order_by(Dispute.opened_at)
        )
    )
