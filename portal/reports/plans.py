"""The plan report: by customer segment, in one currency.

- active plans now and the amount under them (what active plans cover on their invoices
  and has not been paid through them: the `planned` amount of `invoices.balances`);
- installments due in the period (down payments included) and how many were paid in
  full by their due date (the customer's date of `paid_at` is not known here: the UTC
  date is used, so a payment at 23:30 in New York on the due date counts as on time only
  if it is before midnight UTC; a conservative reading);
- plans that ended in the period: kept (completed) or broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, case, cast, func, select

from portal.customers.models import Customer
from portal.db import MinorUnits
from portal.extensions import db
from portal.money import Money
from portal.plans.models import (
    InstallmentStatus,
    PaymentPlan,
    PlanInstallment,
    PlanInvoice,
    PlanStatus,
)
from portal.reports.queries import Period


@dataclass(frozen=True)
class SegmentPlans:
    segment: str
    active: int
    under_plans: Money
    installments_due: int
    paid_on_time: int
    kept: int
    broken: int

    @property
    def on_time_rate(self) -> Decimal | None:
        """Share of installments due in the period paid by their date (0..1), or None."""
        if not self.installments_due:
            return None
        return Decimal(self.paid_on_time) / Decimal(self.installments_due)

    @property
    def kept_rate(self) -> Decimal | None:
        """Share of plans ended in the period that were kept (0..1), or None."""
        ended = self.kept + self.broken
        return Decimal(self.kept) / Decimal(ended) if ended else None


def _sum(column: ColumnElement[int]) -> ColumnElement[int]:
    return cast(func.coalesce(func.sum(column), 0), MinorUnits)


def plans_by_segment(period: Period, currency: str) -> list[SegmentPlans]:
    """One row per segment with plans in `currency`, by segment name (three queries)."""
    start = datetime.combine(period.start, time.min, tzinfo=UTC)
    end = datetime.combine(period.end + timedelta(days=1), time.min, tzinfo=UTC)
    active = {
        segment: (int(count), int(amount))
        for segment, count, amount in db.session.execute(
            select(
                Customer.segment,
                func.count(func.distinct(PaymentPlan.id)),
                _sum(PlanInvoice.amount_minor - PlanInvoice.paid_minor),
            )
            .join(PaymentPlan, PaymentPlan.customer_id == Customer.id)
            .join(PlanInvoice, PlanInvoice.plan_id == PaymentPlan.id)
            .where(PaymentPlan.status == PlanStatus.ACTIVE, PaymentPlan.currency == currency)
            .group_by(Customer.segment)
        )
    }
    on_time = and_(
        PlanInstallment.status == InstallmentStatus.PAID,
        func.date(PlanInstallment.paid_at) <= PlanInstallment.due_date,
    )
    installments = {
        segment: (int(due), int(paid or 0))
        for segment, due, paid in db.session.execute(
            select(
                Customer.segment,
                func.count(PlanInstallment.id),
                func.sum(case((on_time, 1), else_=0)),
            )
            .join(PaymentPlan, PaymentPlan.customer_id == Customer.id)
            .join(PlanInstallment, PlanInstallment.plan_id == PaymentPlan.id)
            .where(
                PaymentPlan.currency == currency,
                PlanInstallment.due_date >= period.start,
                PlanInstallment.due_date <= period.end,
            )
            .group_by(Customer.segment)
        )
    }
    ended = {
        segment: (int(kept or 0), int(broken or 0))
        for segment, kept, broken in db.session.execute(
            select(
                Customer.segment,
                func.sum(case((PaymentPlan.status == PlanStatus.COMPLETED, 1), else_=0)),
                func.sum(case((PaymentPlan.status == PlanStatus.BROKEN, 1), else_=0)),
            )
            .join(PaymentPlan, PaymentPlan.customer_id == Customer.id)
            .where(
                PaymentPlan.currency == currency,
                PaymentPlan.status.in_([PlanStatus.COMPLETED, PlanStatus.BROKEN]),
                PaymentPlan.ended_at >= start,
                PaymentPlan.ended_at < end,
            )
            .group_by(Customer.segment)
        )
    }
    segments = sorted(set(active) | set(installments) | set(ended))
    return [
        SegmentPlans(
            segment=segment,
            active=active.get(segment, (0, 0))[0],
            under_plans=Money(active.get(segment, (0, 0))[1], currency),
            installments_due=installments.get(segment, (0, 0))[0],
            paid_on_time=installments.get(segment, (0, 0))[1],
            kept=ended.get(segment, (0, 0))[0],
            broken=ended.get(segment, (0, 0))[1],
        )
        for segment in segments
    ]


def totals(rows: list[SegmentPlans], currency: str) -> SegmentPlans:
    """All segments together (the table's last row)."""
    return SegmentPlans(
        segment="",
        active=sum(r.active for r in rows),
        under_plans=Money.sum((r.under_plans for r in rows), currency),
        installments_due=sum(r.installments_due for r in rows),
        paid_on_time=sum(r.paid_on_time for r in rows),
        kept=sum(r.kept for r in rows),
        broken=sum(r.broken for r in rows),
    )
