"""Reads of plans and policies: scoped to one customer, or for the staff queues."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Select, func, select
from sqlalchemy.orm import selectinload

from portal.customers.models import Customer
from portal.extensions import db
from portal.plans.models import (
    OPEN_STATUSES,
    PaymentPlan,
    PlanInstallment,
    PlanInvoice,
    PlanPolicyVersion,
    PlanStatus,
)
from portal.plans.policy import DEFAULT_SEGMENT, PlanPolicy, default_policy

REQUEST_STATUSES = (PlanStatus.PENDING,)


def _with_details(query: Select[PaymentPlan]) -> Select[PaymentPlan]:
    return query.options(
        selectinload(PaymentPlan.invoices).selectinload(PlanInvoice.invoice),
        selectinload(PaymentPlan.installments),
    )


def plans_for(customer: Customer) -> list[PaymentPlan]:
    """This customer's plans, newest first, with invoices and installments (3 queries)."""
    return list(
        db.session.scalars(
            _with_details(
                select(PaymentPlan)
                .where(PaymentPlan.customer_id == customer.id)
                .order_by(PaymentPlan.created_at.desc(), PaymentPlan.id.desc())
            )
        )
    )


def open_plans_for(customer: Customer) -> list[PaymentPlan]:
    """This customer's plans still pending, countered or active, oldest first."""
    return list(
        db.session.scalars(
            _with_details(
                select(PaymentPlan)
                .where(
                    PaymentPlan.customer_id == customer.id,
                    PaymentPlan.status.in_([str(s) for s in OPEN_STATUSES]),
                )
                .order_by(PaymentPlan.created_at, PaymentPlan.id)
            )
        )
    )


def get_plan_for(customer: Customer, plan_id: int) -> PaymentPlan | None:
    """The plan if it is this customer's; None for anyone else's (the view's 404)."""
    return db.session.scalar(
        _with_details(
            select(PaymentPlan).where(
                PaymentPlan.id == plan_id, PaymentPlan.customer_id == customer.id
            )
        )
    )


def get_plan(plan_id: int) -> PaymentPlan | None:
    """Any customer's plan, for staff pages (they check the role) and the jobs."""
    return db.session.scalar(_with_details(select(PaymentPlan).where(PaymentPlan.id == plan_id)))


def invoice_ids_in_open_plans(customer: Customer) -> set[int]:
    """Invoices of this customer that a pending, countered or active plan holds: no other
    plan may take them (the builder leaves them out)."""
    return set(
        db.session.scalars(
            select(PlanInvoice.invoice_id)
            .join(PaymentPlan, PaymentPlan.id == PlanInvoice.plan_id)
            .where(
                PaymentPlan.customer_id == customer.id,
                PlanInvoice.open_invoice_id.is_not(None),
            )
        )
    )


def active_plan_invoice_ids() -> Select[int]:
    """The invoices an active plan covers: their reminders wait (a subquery, for the
    reminder scheduler, like `promises.queries.paused_invoice_ids`)."""
    return (
        select(PlanInvoice.invoice_id)
        .join(PaymentPlan, PaymentPlan.id == PlanInvoice.plan_id)
        .where(PaymentPlan.status == PlanStatus.ACTIVE)
    )


def cooling_off_until(customer: Customer, today: date) -> date | None:
    """The first day this customer may set up a plan again after a broken one; None if
    not cooling off (the last broken plan's `cooling_off_until` is today or earlier)."""
    until = db.session.scalar(
        select(func.max(PaymentPlan.cooling_off_until)).where(
            PaymentPlan.customer_id == customer.id,
            PaymentPlan.status == PlanStatus.BROKEN,
        )
    )
    return until if until is not None and until > today else None


# --- policies ---------------------------------------------------------------------------
def current_policy_version(segment: str) -> PlanPolicyVersion | None:
    """The highest saved version of this segment's policy, or None if it has none."""
    return db.session.scalar(
        select(PlanPolicyVersion)
        .where(PlanPolicyVersion.segment == segment)
        .order_by(PlanPolicyVersion.version.desc())
        .limit(1)
    )


def policy_for_segment(segment: str) -> PlanPolicy:
    """The policy in force for a segment: its current version, else the `standard`
    segment's, else the built-in default (README)."""
    version = current_policy_version(segment) or current_policy_version(DEFAULT_SEGMENT)
    if version is None:
        return default_policy(segment)
    return version.policy


def policy_for(customer: Customer) -> PlanPolicy:
    """The policy that bounds what this customer may agree without review."""
    return policy_for_segment(customer.segment or DEFAULT_SEGMENT)


@dataclass(frozen=True)
class SegmentPolicy:
    segment: str
    customers: int
    version: PlanPolicyVersion | None  # None: the segment follows `standard`'s policy

    @property
    def policy(self) -> PlanPolicy:
        return self.version.policy if self.version else policy_for_segment(self.segment)


def segments() -> list[SegmentPolicy]:
    """Every segment that has customers or a saved policy, `standard` first, then by name,
    with its number of customers and current policy version."""
    counts = dict(
        db.session.execute(select(Customer.segment, func.count()).group_by(Customer.segment)).all()
    )
    names = set(counts) | set(db.session.scalars(select(PlanPolicyVersion.segment).distinct()))
    names.add(DEFAULT_SEGMENT)
    ordered = sorted(names, key=lambda name: (name != DEFAULT_SEGMENT, name))
    return [
        SegmentPolicy(name, int(counts.get(name, 0)), current_policy_version(name))
        for name in ordered
    ]


def policy_versions(segment: str) -> list[PlanPolicyVersion]:
    """Every saved version of a segment's policy, newest first."""
    return list(
        db.session.scalars(
            select(PlanPolicyVersion)
            .where(PlanPolicyVersion.segment == segment)
            .order_by(PlanPolicyVersion.version.desc())
        )
    )


# --- staff --------------------------------------------------------------------------------
def plan_requests() -> list[PaymentPlan]:
    """Plans waiting for a specialist (pending), oldest first, with their customers."""
    return list(
        db.session.scalars(
            _with_details(
                select(PaymentPlan)
                .where(PaymentPlan.status.in_([str(s) for s in REQUEST_STATUSES]))
                .options(
                    selectinload(PaymentPlan.customer), selectinload(PaymentPlan.policy_version)
                )
                .order_by(PaymentPlan.created_at, PaymentPlan.id)
            )
        )
    )


def open_request_count() -> int:
    """How many plan requests wait for a specialist (the staff home's count)."""
    return int(
        db.session.scalar(
            select(func.count(PaymentPlan.id)).where(
                PaymentPlan.status.in_([str(s) for s in REQUEST_STATUSES])
            )
        )
        or 0
    )


def countered_plans() -> list[PaymentPlan]:
    """Counter-offers waiting for the customer's answer, oldest first."""
    return list(
        db.session.scalars(
            select(PaymentPlan)
            .where(PaymentPlan.status == PlanStatus.COUNTERED)
            .options(selectinload(PaymentPlan.customer))
            .order_by(PaymentPlan.countered_at, PaymentPlan.id)
        )
    )


def broken_plans_to_follow_up() -> list[PaymentPlan]:
    """Broken plans no specialist has closed yet, oldest break first."""
    return list(
        db.session.scalars(
            select(PaymentPlan)
            .where(PaymentPlan.status == PlanStatus.BROKEN, PaymentPlan.followed_up_at.is_(None))
            .options(selectinload(PaymentPlan.customer))
            .order_by(PaymentPlan.ended_at, PaymentPlan.id)
        )
    )


def due_installments(on_or_before: date) -> Select[PlanInstallment]:
    """Scheduled installments of active plans due by this date (for the jobs)."""
    return (
        select(PlanInstallment)
        .join(PaymentPlan, PaymentPlan.id == PlanInstallment.plan_id)
        .where(
            PaymentPlan.status == PlanStatus.ACTIVE,
            PlanInstallment.status == "scheduled",
            PlanInstallment.due_date <= on_or_before,
        )
        .order_by(PlanInstallment.due_date, PlanInstallment.id)
    )
