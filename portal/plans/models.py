"""Payment plans: policy versions, plans, the invoices they cover, installments, charges.

A `PaymentPlan` moves only through `services` (PLAN_TRANSITIONS below). Its schedule is
a list of `PlanInstallment`s: number 0 is the down payment (due the day the plan became
active; absent when there is none), numbers 1..n the installments of
`schedule.build_schedule`. Installments are written when the plan becomes active, from
the plan's terms at that moment (a counter-offer replaces the proposed terms; the
customer's own proposal stays in `proposed_terms`).

The database guards the money: amounts above zero, installments unique by number, a
plan's installments and covered amounts never above its total (triggers, migration),
an invoice in at most one open plan (`PlanInvoice.open_invoice_id`), and at most one
in-flight or successful charge per installment (a partial unique index on
`InstallmentAttempt`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.customers.models import Customer
from portal.db import MinorUnits, UTCDateTime, utcnow
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.money import Money
from portal.payments.models import SavedCard
from portal.plans.policy import PlanPolicy
from portal.plans.schedule import Frequency

REASON_MAX = 2000  # characters of a customer's reason or a staff decision's


class PlanPolicyVersion(db.Model):
    """One saved version of a segment's policy. Never edited: a change is a new row
    with the next version; the current policy is the highest version of a segment."""

    __tablename__ = "plan_policy_versions"
    __table_args__ = (
        UniqueConstraint("segment", "version", name="uq_plan_policy_versions_segment_version"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("length(segment) > 0", name="segment_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    segment: Mapped[str] = mapped_column(String(40))
    version: Mapped[int]
    # PlanPolicy.to_limits(): amounts in minor units keyed by currency exponent.
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))  # str(Actor)

    @property
    def policy(self) -> PlanPolicy:
        return PlanPolicy.from_limits(self.segment, self.version, self.limits)


class PlanStatus(StrEnum):
    PENDING = "pending"  # outside policy: waiting for a specialist
    COUNTERED = "countered"  # a specialist offered other terms: waiting for the customer
    ACTIVE = "active"  # agreed: installments are due; its invoices are not reminded
    COMPLETED = "completed"  # every installment paid
    BROKEN = "broken"  # an installment went unpaid past the grace period
    CANCELLED = "cancelled"  # withdrawn by the customer or ended by a specialist
    DECLINED = "declined"  # refused by a specialist, or a counter-offer the customer refused

    @property
    def label(self) -> str:
        return str(PLAN_STATUS_LABELS[self])


PLAN_STATUS_LABELS = {
    PlanStatus.PENDING: _l("Waiting for review"),
    PlanStatus.COUNTERED: _l("Counter-offer"),
    PlanStatus.ACTIVE: _l("Active"),
    PlanStatus.COMPLETED: _l("Completed"),
    PlanStatus.BROKEN: _l("Broken"),
    PlanStatus.CANCELLED: _l("Cancelled"),
    PlanStatus.DECLINED: _l("Declined"),
}

# Plans that hold their invoices (no other plan may take them).
OPEN_STATUSES = frozenset({PlanStatus.PENDING, PlanStatus.COUNTERED, PlanStatus.ACTIVE})
ENDED_STATUSES = frozenset(
    {PlanStatus.COMPLETED, PlanStatus.BROKEN, PlanStatus.CANCELLED, PlanStatus.DECLINED}
)

# The only moves a plan makes; `services` refuses every other pair (PlanTransitionRefused).
# COUNTERED -> COUNTERED: a specialist revises a counter-offer before the customer answers.
PLAN_TRANSITIONS: dict[PlanStatus, frozenset[PlanStatus]] = {
    PlanStatus.PENDING: frozenset(
        {PlanStatus.ACTIVE, PlanStatus.COUNTERED, PlanStatus.DECLINED, PlanStatus.CANCELLED}
    ),
    PlanStatus.COUNTERED: frozenset(
        {PlanStatus.ACTIVE, PlanStatus.COUNTERED, PlanStatus.DECLINED, PlanStatus.CANCELLED}
    ),
    PlanStatus.ACTIVE: frozenset({PlanStatus.COMPLETED, PlanStatus.BROKEN, PlanStatus.CANCELLED}),
    PlanStatus.COMPLETED: frozenset(),
    PlanStatus.BROKEN: frozenset(),
    PlanStatus.CANCELLED: frozenset(),
    PlanStatus.DECLINED: frozenset(),
}
TRANSITIONS = PLAN_TRANSITIONS


def can_move(current: PlanStatus, to: PlanStatus) -> bool:
    return to in PLAN_TRANSITIONS[current]


def _in(column: str, values: Iterable[object]) -> str:
    """SQL `column IN ('a', 'b')` for a check constraint or an index predicate."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class PaymentPlan(db.Model):
    """A customer's plan to pay chosen invoices: `total` as `down_payment` on the day it
    becomes active plus `installment_count` installments at `frequency` from
    `first_payment_date` (dates in the customer's time zone)."""

    __tablename__ = "payment_plans"
    __table_args__ = (
        CheckConstraint("total_minor > 0", name="total_positive"),
        CheckConstraint(
            "down_payment_minor >= 0 AND down_payment_minor < total_minor",
            name="down_payment_below_total",
        ),
        CheckConstraint("installment_count >= 1", name="installments_positive"),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
        CheckConstraint(_in("status", list(PlanStatus)), name="status_known"),
        CheckConstraint(_in("frequency", list(Frequency)), name="frequency_known"),
        CheckConstraint("source IN ('customer', 'staff')", name="source_known"),
        CheckConstraint(
            "status NOT IN ('active', 'completed', 'broken') OR activated_at IS NOT NULL",
            name="activated_when_agreed",
        ),
        CheckConstraint(
            "status IN ('pending', 'countered', 'active') OR ended_at IS NOT NULL",
            name="ended_when_over",
        ),
        CheckConstraint(
            "status <> 'broken' OR cooling_off_until IS NOT NULL", name="cooling_off_when_broken"
        ),
        CheckConstraint("first_payment_date > proposed_on", name="first_payment_after_proposal"),
        Index("ix_payment_plans_customer_status", "customer_id", "status"),
        Index("ix_payment_plans_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(16), default=PlanStatus.PENDING)
    source: Mapped[str] = mapped_column(String(16), default="customer")
    # The policy the proposal was checked against; on approval, the one it was approved
    # under (never changed afterwards: a policy edit does not alter an agreed plan).
    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("plan_policy_versions.id", ondelete="RESTRICT")
    )
    total_minor: Mapped[int] = mapped_column(MinorUnits)
    down_payment_minor: Mapped[int] = mapped_column(MinorUnits, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    frequency: Mapped[str] = mapped_column(String(16))
    installment_count: Mapped[int] = mapped_column(SmallInteger)
    first_payment_date: Mapped[date] = mapped_column(Date)
    proposed_on: Mapped[date] = mapped_column(Date)  # the customer's today when proposed
    reason: Mapped[str] = mapped_column(Text, default="")  # the customer's (hardship, ...)
    autopay: Mapped[bool] = mapped_column(Boolean, default=False)
    saved_card_id: Mapped[int | None] = mapped_column(
        ForeignKey("saved_cards.id", ondelete="SET NULL")
    )
    # [{"limit": "installments", "message": "..."}] as checked when proposed (English).
    breaches: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    # The customer's own terms, kept when a counter-offer replaces them.
    proposed_terms: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(64))  # str(Actor)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A specialist's answer: who, when, and the words the customer reads (decline reason,
    # counter-offer note).
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    countered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    activated_on: Mapped[date | None] = mapped_column(Date)  # the down payment's due date
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str] = mapped_column(Text, default="")
    # Broken plans: no self-service plan for this customer until this date (exclusive).
    cooling_off_until: Mapped[date | None] = mapped_column(Date)
    # A broken plan waits in the specialists' follow-up until one of them closes it.
    followed_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer] = relationship()
    policy_version: Mapped[PlanPolicyVersion] = relationship()
    saved_card: Mapped[SavedCard | None] = relationship()
    invoices: Mapped[list[PlanInvoice]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="PlanInvoice.id"
    )
    installments: Mapped[list[PlanInstallment]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="PlanInstallment.number"
    )

    @property
    def state(self) -> PlanStatus:
        return PlanStatus(self.status)

    @property
    def is_active(self) -> bool:
        return self.status == PlanStatus.ACTIVE

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATUSES

    @property
    def frequency_enum(self) -> Frequency:
        return Frequency(self.frequency)

    @property
    def total(self) -> Money:
        return Money(self.total_minor, self.currency)

    @property
    def down_payment(self) -> Money:
        return Money(self.down_payment_minor, self.currency)

    @property
    def paid(self) -> Money:
        """What has been received through the plan's installments."""
        return Money(sum(i.paid_minor for i in self.installments), self.currency)

    @property
    def remaining(self) -> Money:
        """What the installments still ask for (the total before any is written)."""
        if not self.installments:
            return self.total
        return Money(sum(i.amount_minor - i.paid_minor for i in self.installments), self.currency)

    @property
    def scheduled_down_payment(self) -> PlanInstallment | None:
        """The down payment's installment (number 0) while it is still to be paid; None
        when the plan has none or it was paid or cancelled."""
        return next(
            (
                i
                for i in self.installments
                if i.number == 0 and i.status == InstallmentStatus.SCHEDULED
            ),
            None,
        )

    @property
    def next_installment(self) -> PlanInstallment | None:
        return next((i for i in self.installments if not i.is_settled), None)


class PlanInvoice(db.Model):
    """An invoice a plan covers: `amount_minor` of it (its payable amount when proposed),
    of which `paid_minor` has come in through the plan."""

    __tablename__ = "plan_invoices"
    __table_args__ = (
        UniqueConstraint("plan_id", "invoice_id", name="uq_plan_invoices_pair"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint(
            "paid_minor >= 0 AND paid_minor <= amount_minor", name="paid_within_amount"
        ),
        CheckConstraint(
            "open_invoice_id IS NULL OR open_invoice_id = invoice_id", name="open_slot_is_invoice"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("payment_plans.id", ondelete="CASCADE"))
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    paid_minor: Mapped[int] = mapped_column(MinorUnits, default=0)
    # Set (to invoice_id) while the plan is open (pending, countered, active), NULL after:
    # unique, so an invoice is in at most one open plan.
    open_invoice_id: Mapped[int | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), unique=True
    )

    plan: Mapped[PaymentPlan] = relationship(back_populates="invoices")
    invoice: Mapped[Invoice] = relationship(foreign_keys=[invoice_id])

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.plan.currency)

    @property
    def paid(self) -> Money:
        return Money(self.paid_minor, self.plan.currency)


class InstallmentStatus(StrEnum):
    SCHEDULED = "scheduled"  # due on its date, not (fully) paid yet
    PAID = "paid"  # paid in full
    CANCELLED = "cancelled"  # the plan ended (broken, cancelled) before it was paid

    @property
    def label(self) -> str:
        return str(INSTALLMENT_STATUS_LABELS[self])


INSTALLMENT_STATUS_LABELS = {
    InstallmentStatus.SCHEDULED: _l("Scheduled"),
    InstallmentStatus.PAID: _l("Paid"),
    InstallmentStatus.CANCELLED: _l("Cancelled"),
}

INSTALLMENT_TRANSITIONS: dict[InstallmentStatus, frozenset[InstallmentStatus]] = {
    InstallmentStatus.SCHEDULED: frozenset({InstallmentStatus.PAID, InstallmentStatus.CANCELLED}),
    InstallmentStatus.PAID: frozenset(),
    InstallmentStatus.CANCELLED: frozenset(),
}


class PlanInstallment(db.Model):
    """One payment of a plan: number 0 is the down payment, 1..n the installments."""

    __tablename__ = "plan_installments"
    __table_args__ = (
        UniqueConstraint("plan_id", "number", name="uq_plan_installments_number"),
        CheckConstraint("number >= 0", name="number_not_negative"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint(
            "paid_minor >= 0 AND paid_minor <= amount_minor", name="paid_within_amount"
        ),
        CheckConstraint(_in("status", list(InstallmentStatus)), name="status_known"),
        CheckConstraint(
            "(status = 'paid') = (paid_minor = amount_minor AND paid_at IS NOT NULL)",
            name="paid_when_paid_in_full",
        ),
        Index("ix_plan_installments_status_due", "status", "due_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("payment_plans.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(SmallInteger)
    due_date: Mapped[date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    paid_minor: Mapped[int] = mapped_column(MinorUnits, default=0)
    status: Mapped[str] = mapped_column(String(16), default=InstallmentStatus.SCHEDULED)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # For the jobs (plans-autopay, plans-customer): the 3-day reminder, the next retry.
    reminder_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    plan: Mapped[PaymentPlan] = relationship(back_populates="installments")
    attempts: Mapped[list[InstallmentAttempt]] = relationship(
        back_populates="installment", order_by="InstallmentAttempt.attempt"
    )

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.plan.currency)

    @property
    def paid(self) -> Money:
        return Money(self.paid_minor, self.plan.currency)

    @property
    def due(self) -> Money:
        """What is still to pay on it."""
        return Money(self.amount_minor - self.paid_minor, self.plan.currency)

    @property
    def is_down_payment(self) -> bool:
        return self.number == 0

    @property
    def is_settled(self) -> bool:
        return self.status != InstallmentStatus.SCHEDULED

    @property
    def state(self) -> InstallmentStatus:
        return InstallmentStatus(self.status)


class AttemptStatus(StrEnum):
    PROCESSING = "processing"  # a PaymentIntent is being created or confirmed
    REQUIRES_ACTION = "requires_action"  # the bank wants the customer (3-D Secure)
    SUCCEEDED = "succeeded"  # Stripe took the money
    FAILED = "failed"  # declined or errored: a later attempt may follow
    CANCELED = "canceled"  # given up (the plan ended, the customer paid another way)


# At most one attempt per installment in these (the partial unique index below).
ATTEMPT_HOLDING_STATUSES = frozenset(
    {AttemptStatus.PROCESSING, AttemptStatus.REQUIRES_ACTION, AttemptStatus.SUCCEEDED}
)
_HOLDING = _in("status", sorted(ATTEMPT_HOLDING_STATUSES))


class InstallmentAttempt(db.Model):
    """One off-session charge of an installment. The idempotency key is unique per
    attempt; the partial unique index admits one in-flight or successful charge per
    installment, so a second runner's charge fails at INSERT, before Stripe is called
    (localstripe ignores idempotency keys)."""

    __tablename__ = "installment_attempts"
    __table_args__ = (
        UniqueConstraint("installment_id", "attempt", name="uq_installment_attempts_number"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
        CheckConstraint(_in("status", list(AttemptStatus)), name="status_known"),
        Index(
            "uq_installment_attempts_one_holding",
            "installment_id",
            unique=True,
            postgresql_where=text(_HOLDING),
            sqlite_where=text(_HOLDING),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    installment_id: Mapped[int] = mapped_column(
        ForeignKey("plan_installments.id", ondelete="RESTRICT")
    )
    attempt: Mapped[int] = mapped_column(SmallInteger)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=AttemptStatus.PROCESSING)
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(3))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    installment: Mapped[PlanInstallment] = relationship(back_populates="attempts")

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)
