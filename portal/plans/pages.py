"""What the customer's plan pages and the agreement show, read from a plan (no writes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flask import current_app
from flask_babel import gettext as _

from portal.i18n import card_brand_label
from portal.money import Money
from portal.plans.agreement import AgreementLine, AgreementTerms
from portal.plans.builder import plan_details, plan_summary
from portal.plans.models import InstallmentStatus, PaymentPlan, PlanStatus
from portal.plans.payments import installment_owed
from portal.plans.policy import Proposal
from portal.plans.schedule import build_schedule

# Plans whose schedule is agreed: they have an agreement to download.
AGREED = frozenset({PlanStatus.ACTIVE, PlanStatus.COMPLETED, PlanStatus.BROKEN})


def plan_reference(plan: PaymentPlan) -> str:
    """How the customer and the staff name a plan ("PP-12")."""
    return f"PP-{plan.id}"


@dataclass(frozen=True)
class PlanLine:
    """One row of a plan's schedule: the down payment (number 0) or an installment."""

    number: int
    due_date: date
    amount: Money
    paid: Money
    status_label: str
    is_paid: bool
    is_overdue: bool
    can_pay: bool
    amount_due: Money


@dataclass(frozen=True)
class PlanPage:
    """A plan as its page shows it (amounts in the plan's currency)."""

    reference: str
    status: str
    status_label: str
    created_on: date
    total: Money
    paid: Money
    remaining: Money
    down_payment: Money
    lines: list[PlanLine]
    next_line: PlanLine | None
    invoices: list[tuple[str, Money]]
    autopay: bool
    card_label: str | None
    reason: str
    staff_message: str
    summary: str
    details: str
    down_payment_due: bool

    @property
    def is_pending(self) -> bool:
        return self.status == PlanStatus.PENDING

    @property
    def is_countered(self) -> bool:
        return self.status == PlanStatus.COUNTERED

    @property
    def is_active(self) -> bool:
        return self.status == PlanStatus.ACTIVE

    @property
    def is_completed(self) -> bool:
        return self.status == PlanStatus.COMPLETED

    @property
    def is_broken(self) -> bool:
        return self.status == PlanStatus.BROKEN

    @property
    def is_declined(self) -> bool:
        return self.status == PlanStatus.DECLINED

    @property
    def has_agreement(self) -> bool:
        return PlanStatus(self.status) in AGREED


def proposal_of(plan: PaymentPlan, today: date) -> Proposal:
    """The plan's current terms (a counter-offer's, once countered) as a Proposal."""
    return Proposal(
        total=plan.total,
        down_payment=plan.down_payment,
        frequency=plan.frequency_enum,
        installments=plan.installment_count,
        first_payment_date=plan.first_payment_date,
        today=min(today, plan.first_payment_date),
        autopay=plan.autopay,
    )


def card_label(plan: PaymentPlan) -> str | None:
    """The autopay card in words ("Visa ending in 4242"), or None without one."""
    card = plan.saved_card
    if not plan.autopay or card is None:
        return None
    return str(
        _("%(brand)s ending in %(last4)s", brand=card_brand_label(card.brand), last4=card.last4)
    )


def plan_page(plan: PaymentPlan, today: date) -> PlanPage:
    """What `plans/detail.html` shows for `plan` as of the customer's `today`."""
    zero = Money.zero(plan.currency)
    lines: list[PlanLine] = []
    if plan.installments:
        first_open = next(
            (i.number for i in plan.installments if i.status == InstallmentStatus.SCHEDULED),
            None,
        )
        for i in plan.installments:
            # The next one asks what is owed on it, at most what the invoices still owe.
            owed = installment_owed(i) if i.number == first_open else i.due
            lines.append(
                PlanLine(
                    number=i.number,
                    due_date=i.due_date,
                    amount=i.amount,
                    paid=i.paid,
                    status_label=i.state.label,
                    is_paid=i.status == InstallmentStatus.PAID,
                    is_overdue=i.status == InstallmentStatus.SCHEDULED and i.due_date < today,
                    # Money goes to the installments in order: the next one is payable.
                    can_pay=i.number == first_open and owed.is_positive,
                    amount_due=owed,
                )
            )
    else:  # not agreed yet: the terms as proposed (or countered)
        # a proposal withdrawn or declined was never agreed: nothing of it is scheduled
        proposed = plan.status in (PlanStatus.PENDING, PlanStatus.COUNTERED)
        scheduled = _("Proposed") if proposed else _("Not agreed")
        if plan.down_payment.is_positive:
            lines.append(
                PlanLine(0, today, plan.down_payment, zero, scheduled, False, False, False, zero)
            )
        for item in build_schedule(
            plan.total,
            plan.down_payment,
            plan.frequency_enum,
            plan.installment_count,
            plan.first_payment_date,
        ):
            lines.append(
                PlanLine(
                    item.number,
                    item.due_date,
                    item.amount,
                    zero,
                    scheduled,
                    False,
                    False,
                    False,
                    item.amount,
                )
            )
    open_lines = [line for line in lines if not line.is_paid and plan.installments]
    paid = Money(sum(i.paid_minor for i in plan.installments), plan.currency)
    proposal = proposal_of(plan, today)
    down_due = any(i.number == 0 and installment_owed(i).is_positive for i in plan.installments)
    return PlanPage(
        reference=plan_reference(plan),
        status=str(plan.status),
        status_label=plan.state.label,
        created_on=plan.proposed_on,
        total=plan.total,
        paid=paid,
        remaining=plan.total - paid if plan.status == PlanStatus.ACTIVE else plan.remaining,
        down_payment=plan.down_payment,
        lines=lines,
        next_line=open_lines[0] if open_lines and plan.status == PlanStatus.ACTIVE else None,
        invoices=[(c.invoice.number, c.amount) for c in plan.invoices],
        autopay=plan.autopay,
        card_label=card_label(plan),
        reason=plan.reason,
        staff_message=plan.decision_reason,
        summary=plan_summary(proposal),
        details=plan_details(proposal),
        down_payment_due=down_due,
    )


def agreement_terms(plan: PaymentPlan) -> AgreementTerms:
    """What the agreement PDF states for an agreed plan (`has_agreement`)."""
    policy = plan.policy_version.policy
    return AgreementTerms(
        reference=plan_reference(plan),
        customer=plan.customer,
        agreed_on=plan.activated_on or plan.proposed_on,
        invoices=[(c.invoice.number, c.amount) for c in plan.invoices],
        total=plan.total,
        down_payment=plan.down_payment,
        frequency=str(plan.frequency),
        lines=[AgreementLine(i.number, i.due_date, i.amount, i.paid) for i in plan.installments],
        autopay_card=card_label(plan),
        grace_days=int(current_app.config.get("PLAN_GRACE_DAYS", 7)),
        cooling_off_days=policy.cooling_off_days,
        policy_version=f"{policy.segment} v{policy.version}",
    )
