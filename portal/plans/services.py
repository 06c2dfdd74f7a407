"""The only code that changes plans and policies; each change leaves an audit row.

Every service takes `actor` and `now`, checks PLAN_TRANSITIONS, writes the audit row
(`plan.<event>`, with the plan's total, currency and the words a person gave), flushes
and never commits; the caller commits once. Emails go through `portal.plans.notify`
(queued in the same transaction, sent after commit by the jobs runner).

The down payment is installment number 0, due the day the plan becomes active (the
customer pays it on the spot through the pay flow); installments 1..n follow
`schedule.build_schedule` (README, "Payment plans"). Installments are written when the
plan becomes active: at once within policy, on a specialist's approval, or when the
customer accepts a counter-offer.

Lock order: the customer's payment account (lock 1, `payments.locks.lock_account_row`,
created if the customer never paid by card)
before reading balances or a plan's installments, as the pay flow and autopay do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.errors import DomainError
from portal.extensions import db
from portal.i18n import date_filter
from portal.invoices.balances import invoice_balances_for, open_balance_column
from portal.invoices.models import Invoice
from portal.money import CurrencyMismatch, Money, MoneyError
from portal.payments.locks import lock_account_row
from portal.payments.models import Payment
from portal.plans import notify
from portal.plans.models import (
    REASON_MAX,
    AttemptStatus,
    InstallmentAttempt,
    InstallmentStatus,
    PaymentPlan,
    PlanInstallment,
    PlanInvoice,
    PlanPolicyVersion,
    PlanStatus,
    can_move,
)
from portal.plans.policy import (
    DEFAULT_SEGMENT,
    Breach,
    PlanPolicy,
    Proposal,
    check,
    default_policy,
    policy_problems,
)
from portal.plans.queries import cooling_off_until, current_policy_version
from portal.plans.schedule import Frequency, build_schedule


class PlanRefused(DomainError):
    """A proposal or an answer cannot be taken as given; `message` says why."""

    message = _l("This plan could not be set up.")


class PlanCoolingOff(PlanRefused):
    """Self-service plans are refused for a while after a broken plan."""


class PlanChanged(PlanRefused):
    """An invoice of a plan waiting for an answer changed since it was proposed; `number`
    names it."""

    def __init__(self, number: str, message: str) -> None:
        super().__init__(message)
        self.number = number


class PlanTransitionRefused(DomainError):
    message = _l("This plan has already been decided, or cannot change that way.")


class PolicyRefused(DomainError):
    """A policy an admin entered is not usable; `problems` lists why, in words."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


# --- policies ---------------------------------------------------------------------------
def policy_version_for(customer: Customer, *, actor: Actor, now: datetime) -> PlanPolicyVersion:
    """The saved policy version that bounds this customer: their segment's current one,
    else `standard`'s; if none was ever saved, version 1 of `standard` with the README's
    defaults is saved now (the migration seeds it, so only an emptied table needs this)."""
    segment = customer.segment or DEFAULT_SEGMENT
    version = current_policy_version(segment) or current_policy_version(DEFAULT_SEGMENT)
    if version is None:
        version = save_policy(default_policy(DEFAULT_SEGMENT), actor=actor, now=now)
    return version


def save_policy(policy: PlanPolicy, *, actor: Actor, now: datetime) -> PlanPolicyVersion:
    """Save `policy` as the next version of its segment (audited as `plan_policy.saved`).
    Plans already agreed keep the version they were approved under. Raises
    PolicyRefused (nothing written) when `policy_problems` finds any."""
    segment = (policy.segment or "").strip()
    problems = policy_problems(policy)
    if not segment or len(segment) > 40:
        problems.insert(0, _("Name the segment (at most 40 characters)."))
    if problems:
        raise PolicyRefused(problems)
    latest = db.session.scalar(
        select(func.max(PlanPolicyVersion.version)).where(PlanPolicyVersion.segment == segment)
    )
    version = PlanPolicyVersion(
        segment=segment,
        version=int(latest or 0) + 1,
        limits=policy.to_limits(),
        created_at=now,
        created_by=str(actor),
    )
    db.session.add(version)
    db.session.flush()
    record_event(
        "plan_policy.saved",
        actor=actor,
        now=now,
        subject=version,
        data={"segment": segment, "version": version.version, "limits": version.limits},
    )
    return version


# --- proposals --------------------------------------------------------------------------
def self_service_refused_until(customer: Customer, today: date | None = None) -> date | None:
    """The first day a self-service plan is possible again after a broken plan (its
    policy's cooling-off), or None when plans are open to this customer. `today` is the
    customer's (default: now where they live)."""
    if today is None:
        today = customer_today(customer, utcnow())
    return cooling_off_until(customer, today)


def _invoice_key(item: Invoice | str) -> str:
    return item.number if isinstance(item, Invoice) else str(item)


def _chosen_amounts(
    customer: Customer, invoices: Sequence[Invoice | str], today: date
) -> list[tuple[Invoice, Money]]:
    """(invoice, payable amount) for each chosen invoice; PlanRefused if one is not this
    customer's, not payable (paid, void, wholly disputed), or already in an open plan."""
    wanted = [_invoice_key(item) for item in invoices]
    if not wanted:
        raise PlanRefused(_("Choose at least one invoice for the plan."))
    if len(set(wanted)) != len(wanted):
        raise PlanRefused(_("Choose each invoice once."))
    balances = {b.invoice.number: b for b in invoice_balances_for(customer, today)}
    held = set(
        db.session.scalars(
            select(PlanInvoice.invoice_id).where(PlanInvoice.open_invoice_id.is_not(None))
        )
    )
    chosen: list[tuple[Invoice, Money]] = []
    for number in wanted:
        balance = balances.get(number)
        if balance is not None and balance.invoice.id in held:
            raise PlanRefused(_("Invoice %(number)s is already in a payment plan.", number=number))
        if balance is None or not balance.payable.is_positive:
            raise PlanRefused(
                _("Invoice %(number)s has nothing left to pay in a plan.", number=number[:64])
            )
        chosen.append((balance.invoice, balance.payable))
    currencies = {amount.currency for _invoice, amount in chosen}
    if len(currencies) != 1:
        raise PlanRefused(_("A plan covers invoices in one currency only."))
    return chosen


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise PlanRefused(_("Please keep the reason under %(max)d characters.", max=REASON_MAX))
    return reason


def _terms(plan: PaymentPlan) -> dict[str, Any]:
    return {
        "down_payment_minor": plan.down_payment_minor,
        "frequency": plan.frequency,
        "installments": plan.installment_count,
        "first_payment_date": plan.first_payment_date.isoformat(),
        "autopay": plan.autopay,
    }


def _audit(plan: PaymentPlan, action: str, *, actor: Actor, now: datetime, **data: Any) -> None:
    record_event(
        action,
        actor=actor,
        now=now,
        customer_id=plan.customer_id,
        subject=plan,
        data={
            "plan": plan.id,
            "status": plan.status,
            "total_minor": plan.total_minor,
            "currency": plan.currency,
            **_terms(plan),
            **data,
        },
    )


def _lock_plan(plan: PaymentPlan) -> None:
    """Lock 1 for the plan's customer, then read the plan again: another request may have
    decided, withdrawn or activated it since this one loaded it (its status and terms
    as loaded are not to be trusted once the lock is held)."""
    lock_account_row(plan.customer_id)
    db.session.refresh(plan)


def _move(plan: PaymentPlan, to: PlanStatus, now: datetime) -> None:
    if not can_move(plan.state, to):
        raise PlanTransitionRefused()
    plan.status = to
    plan.updated_at = now


def proposal_of(plan: PaymentPlan, today: date) -> Proposal:
    """The plan's current terms as a Proposal (for `policy.check` and previews)."""
    return Proposal(
        total=plan.total,
        down_payment=plan.down_payment,
        frequency=plan.frequency_enum,
        installments=plan.installment_count,
        first_payment_date=plan.first_payment_date,
        today=today,
        autopay=plan.autopay,
    )


def propose_plan(
    customer: Customer,
    invoices: Sequence[Invoice | str],
    down_payment: Money,
    frequency: Frequency | str,
    installments: int,
    first_payment_date: date,
    reason: str,
    autopay: bool,
    *,
    actor: Actor,
    now: datetime,
) -> PaymentPlan:
    """A plan for the payable amounts of `invoices` (Invoice objects or numbers).

    Within the customer's segment policy (`policy.check` finds nothing): active at once,
    under that policy version, its schedule written (`plan.activated`, email
    `notify.plan_activated`). Outside it: pending, the breaches recorded, for a
    specialist (`plan.requested`); a reason is then required. Raises PlanCoolingOff
    while a broken plan's cooling-off lasts, PlanRefused (nothing written) for an
    invoice that is not this customer's, not payable or already in an open plan, mixed
    currencies, impossible terms (down payment not below the total, no installment,
    a first payment not after today), or a reason over REASON_MAX characters.
    """
    lock_account_row(customer.id)
    today = customer_today(customer, now)
    refused_until = cooling_off_until(customer, today)
    if refused_until is not None:
        raise PlanCoolingOff(
            _(
                "After a plan that was not kept, a new plan is possible from %(date)s."
                " Please contact us before then.",
                date=date_filter(refused_until),
            )
        )
    chosen = _chosen_amounts(customer, invoices, today)
    total = Money.sum((amount for _invoice, amount in chosen), chosen[0][1].currency)
    reason = _clean_reason(reason)
    if down_payment.currency != total.currency:
        raise PlanRefused(_("The down payment must be in %(currency)s.", currency=total.currency))
    try:
        frequency = Frequency(frequency)
    except ValueError:
        raise PlanRefused(_("Choose how often to pay.")) from None
    if first_payment_date <= today:
        raise PlanRefused(_("The first payment must be after today."))
    try:
        proposal = Proposal(
            total=total,
            down_payment=down_payment,
            frequency=frequency,
            installments=installments,
            first_payment_date=first_payment_date,
            today=today,
            autopay=autopay,
        )
        build_schedule(total, down_payment, frequency, installments, first_payment_date)
    except (MoneyError, ValueError, OverflowError):
        raise PlanRefused(
            _("The down payment must be below the total and leave something for each payment.")
        ) from None
    version = policy_version_for(customer, actor=actor, now=now)
    breaches = check(proposal, version.policy)
    if breaches and not reason:
        raise PlanRefused(_("Tell us why you need this plan: it goes to our team for review."))
    plan = PaymentPlan(
        customer_id=customer.id,
        status=PlanStatus.PENDING,
        source="staff" if actor.kind == "staff" else "customer",
        policy_version_id=version.id,
        total_minor=total.minor,
        down_payment_minor=down_payment.minor,
        currency=total.currency,
        frequency=frequency,
        installment_count=installments,
        first_payment_date=first_payment_date,
        proposed_on=today,
        reason=reason,
        autopay=autopay,
        breaches=[_breach_row(b) for b in breaches],
        proposed_terms={},
        created_by=str(actor),
        created_at=now,
        updated_at=now,
    )
    plan.invoices = [
        PlanInvoice(
            invoice_id=invoice.id,
            amount_minor=amount.minor,
            paid_minor=0,
            open_invoice_id=invoice.id,
        )
        for invoice, amount in chosen
    ]
    db.session.add(plan)
    db.session.flush()
    plan.proposed_terms = _terms(plan)
    _audit(
        plan,
        "plan.requested" if breaches else "plan.proposed",
        actor=actor,
        now=now,
        invoices=[invoice.number for invoice, _amount in chosen],
        breaches=[str(b.limit) for b in breaches],
        reason=reason,
    )
    if not breaches:
        _activate(plan, version, today, now)
        _audit(plan, "plan.activated", actor=actor, now=now)
        notify.plan_activated(plan, now)
    db.session.flush()
    return plan


def _breach_row(breach: Breach) -> dict[str, str]:
    return {"limit": str(breach.limit), "message": breach.message}


def _activate(plan: PaymentPlan, version: PlanPolicyVersion, today: date, now: datetime) -> None:
    """Pending or countered -> active: record the policy version, write installment 0
    (the down payment, due today) and 1..n."""
    if plan.first_payment_date <= today:
        raise PlanRefused(
            _("The first payment date has passed: the plan needs a new first payment date.")
        )
    _move(plan, PlanStatus.ACTIVE, now)
    plan.policy_version_id = version.id
    plan.activated_at = now
    plan.activated_on = today
    rows: list[PlanInstallment] = []
    if plan.down_payment_minor > 0:
        rows.append(
            PlanInstallment(
                number=0, due_date=today, amount_minor=plan.down_payment_minor, paid_minor=0
            )
        )
    for item in build_schedule(
        plan.total,
        plan.down_payment,
        plan.frequency_enum,
        plan.installment_count,
        plan.first_payment_date,
    ):
        rows.append(
            PlanInstallment(
                number=item.number,
                due_date=item.due_date,
                amount_minor=item.amount.minor,
                paid_minor=0,
            )
        )
    plan.installments = rows
    db.session.flush()


def _check_invoices_unchanged(plan: PaymentPlan, today: date) -> None:
    """Before a pending or countered plan becomes active: each covered invoice still has
    at least its covered amount payable (a payment or a dispute meanwhile changes what
    the plan would cover: the customer proposes again)."""
    customer = plan.customer
    balances = {b.invoice.id: b for b in invoice_balances_for(customer, today)}
    for covered in plan.invoices:
        balance = balances.get(covered.invoice_id)
        if balance is None or balance.payable.minor < covered.amount_minor:
            raise PlanChanged(
                covered.invoice.number,
                _(
                    "Invoice %(number)s has changed since the proposal (a payment, a credit"
                    " or a dispute): decline this plan and ask the customer for a new one.",
                    number=covered.invoice.number,
                ),
            )


def _release_invoices(plan: PaymentPlan) -> None:
    for covered in plan.invoices:
        covered.open_invoice_id = None


def approve_plan(plan: PaymentPlan, *, actor: Actor, now: datetime) -> PaymentPlan:
    """A specialist approves a pending plan as proposed: active at once, under the
    customer's current policy version (recorded as the one it was approved under).
    PlanTransitionRefused unless pending; PlanRefused when its first payment date has
    passed or its invoices changed meanwhile (nothing written)."""
    _lock_plan(plan)
    if plan.state is not PlanStatus.PENDING:
        raise PlanTransitionRefused()
    today = customer_today(plan.customer, now)
    _check_invoices_unchanged(plan, today)
    version = policy_version_for(plan.customer, actor=actor, now=now)
    plan.decided_by = str(actor)
    plan.decided_at = now
    _activate(plan, version, today, now)
    _audit(plan, "plan.approved", actor=actor, now=now)
    notify.plan_approved(plan, now)
    return plan


def counter_offer(
    plan: PaymentPlan,
    *,
    down_payment: Money,
    frequency: Frequency | str,
    installments: int,
    first_payment_date: date,
    note: str = "",
    actor: Actor,
    now: datetime,
) -> PaymentPlan:
    """A specialist offers other terms for the same invoices and total (pending or
    countered -> countered); the customer accepts or declines from the email's link.
    The customer's own terms stay in `proposed_terms`. PlanRefused for impossible terms
    (as `propose_plan`), PlanTransitionRefused unless pending or countered."""
    _lock_plan(plan)
    if plan.state not in (PlanStatus.PENDING, PlanStatus.COUNTERED):
        raise PlanTransitionRefused()
    today = customer_today(plan.customer, now)
    note = _clean_reason(note)
    if down_payment.currency != plan.currency:
        raise PlanRefused(_("The down payment must be in %(currency)s.", currency=plan.currency))
    try:
        frequency = Frequency(frequency)
    except ValueError:
        raise PlanRefused(_("Choose how often to pay.")) from None
    if first_payment_date <= today:
        raise PlanRefused(_("The first payment must be after today."))
    try:
        Proposal(
            total=plan.total,
            down_payment=down_payment,
            frequency=frequency,
            installments=installments,
            first_payment_date=first_payment_date,
            today=today,
        )
        build_schedule(plan.total, down_payment, frequency, installments, first_payment_date)
    except (MoneyError, ValueError, OverflowError):
        raise PlanRefused(
            _("The down payment must be below the total and leave something for each payment.")
        ) from None
    _move(plan, PlanStatus.COUNTERED, now)
    plan.down_payment_minor = down_payment.minor
    plan.frequency = frequency
    plan.installment_count = installments
    plan.first_payment_date = first_payment_date
    plan.decided_by = str(actor)
    plan.decided_at = now
    plan.countered_at = now
    plan.decision_reason = note
    db.session.flush()
    _audit(plan, "plan.countered", actor=actor, now=now, reason=note)
    notify.plan_countered(plan, now)
    return plan


def accept_counter_offer(plan: PaymentPlan, *, actor: Actor, now: datetime) -> PaymentPlan:
    """The customer accepts a counter-offer: active at once under the current policy
    version. PlanTransitionRefused unless countered; PlanRefused when the offer's first
    payment date has passed or the invoices changed meanwhile."""
    _lock_plan(plan)
    if plan.state is not PlanStatus.COUNTERED:
        raise PlanTransitionRefused()
    today = customer_today(plan.customer, now)
    try:
        _check_invoices_unchanged(plan, today)
    except PlanChanged as error:  # said to the customer, not to staff
        raise PlanRefused(
            _(
                "Invoice %(number)s has changed since this offer was made (a payment, a"
                " credit or a dispute). Please decline it and set up a new plan, or contact"
                " us.",
                number=error.number,
            )
        ) from None
    version = policy_version_for(plan.customer, actor=actor, now=now)
    _activate(plan, version, today, now)
    _audit(plan, "plan.counter_accepted", actor=actor, now=now)
    notify.plan_activated(plan, now)
    return plan


def decline_counter_offer(plan: PaymentPlan, *, actor: Actor, now: datetime) -> PaymentPlan:
    """The customer declines a counter-offer: the plan ends as declined and its invoices
    are payable and reminded as before. PlanTransitionRefused unless countered."""
    _lock_plan(plan)
    if plan.state is not PlanStatus.COUNTERED:
        raise PlanTransitionRefused()
    _move(plan, PlanStatus.DECLINED, now)
    plan.ended_at = now
    plan.end_reason = "counter-offer declined"
    _release_invoices(plan)
    db.session.flush()
    _audit(plan, "plan.counter_declined", actor=actor, now=now)
    return plan


def decline_plan(plan: PaymentPlan, reason: str, *, actor: Actor, now: datetime) -> PaymentPlan:
    """A specialist declines a pending or countered plan with a reason the customer
    reads (email `notify.plan_declined`). PlanRefused without a reason."""
    reason = _clean_reason(reason)
    if not reason:
        raise PlanRefused(_("Give the customer a reason for declining."))
    _lock_plan(plan)
    if plan.state not in (PlanStatus.PENDING, PlanStatus.COUNTERED):
        raise PlanTransitionRefused()
    _move(plan, PlanStatus.DECLINED, now)
    plan.decided_by = str(actor)
    plan.decided_at = now
    plan.decision_reason = reason
    plan.ended_at = now
    plan.end_reason = reason
    _release_invoices(plan)
    db.session.flush()
    _audit(plan, "plan.declined", actor=actor, now=now, reason=reason)
    notify.plan_declined(plan, now)
    return plan


def _has_charge_in_flight(plan: PaymentPlan) -> bool:
    return (
        db.session.scalar(
            select(func.count(InstallmentAttempt.id))
            .join(PlanInstallment, PlanInstallment.id == InstallmentAttempt.installment_id)
            .where(
                PlanInstallment.plan_id == plan.id,
                InstallmentAttempt.status.in_(
                    [str(AttemptStatus.PROCESSING), str(AttemptStatus.REQUIRES_ACTION)]
                ),
            )
        )
        or 0
    ) > 0


def _end(plan: PaymentPlan, to: PlanStatus, reason: str, now: datetime) -> None:
    """Active (or open) -> an end state: unpaid installments cancelled, invoices released
    (what they still owe is payable and reminded again)."""
    _move(plan, to, now)
    plan.ended_at = now
    plan.end_reason = reason
    for installment in plan.installments:
        if installment.status == InstallmentStatus.SCHEDULED:
            installment.status = InstallmentStatus.CANCELLED
            installment.next_attempt_at = None
    _release_invoices(plan)
    db.session.flush()


def cancel_plan(plan: PaymentPlan, *, actor: Actor, now: datetime, reason: str = "") -> PaymentPlan:
    """Withdraw a pending or countered plan, or end an active one (customer or staff):
    unpaid installments are cancelled and never charged, the rest is due again.
    PlanTransitionRefused when the plan is over, or while a charge of it is in flight
    (its outcome must be known first)."""
    _lock_plan(plan)
    reason = _clean_reason(reason)
    if not can_move(plan.state, PlanStatus.CANCELLED):
        raise PlanTransitionRefused()
    if _has_charge_in_flight(plan):
        raise PlanTransitionRefused(
            _("A payment of this plan is being processed; please try again in a few minutes.")
        )
    _end(plan, PlanStatus.CANCELLED, reason, now)
    _audit(plan, "plan.cancelled", actor=actor, now=now, reason=reason)
    return plan


def complete_plan(plan: PaymentPlan, *, actor: Actor, now: datetime) -> PaymentPlan:
    """An active plan whose every installment is paid ends as completed.
    PlanTransitionRefused otherwise."""
    if plan.state is not PlanStatus.ACTIVE or any(
        i.status != InstallmentStatus.PAID for i in plan.installments
    ):
        raise PlanTransitionRefused()
    _end(plan, PlanStatus.COMPLETED, "", now)
    _audit(plan, "plan.completed", actor=actor, now=now)
    return plan


def break_plan(
    plan: PaymentPlan,
    *,
    actor: Actor,
    now: datetime,
    reason: str = "",
    notify_customer: bool = True,
) -> PaymentPlan:
    """An active plan with an installment unpaid past the grace period is broken: unpaid
    installments are cancelled (never charged), what the invoices still owe is payable
    and reminded again, self-service plans are refused for the plan's policy's
    cooling-off (`cooling_off_until`), and the plan waits in the specialists' follow-up
    (`followed_up_at` empty; the timeline shows `plan.broken`). The customer is told
    (`notify.plan_broken`) unless `notify_customer` is False (a caller that sends its
    own email). PlanTransitionRefused unless active."""
    if plan.state is not PlanStatus.ACTIVE:
        raise PlanTransitionRefused()
    policy = plan.policy_version.policy
    today = customer_today(plan.customer, now)
    plan.cooling_off_until = today + timedelta(days=policy.cooling_off_days)
    _end(plan, PlanStatus.BROKEN, reason[:REASON_MAX], now)
    _audit(
        plan,
        "plan.broken",
        actor=actor,
        now=now,
        reason=plan.end_reason,
        cooling_off_until=plan.cooling_off_until.isoformat(),
        remaining_minor=sum(c.amount_minor - c.paid_minor for c in plan.invoices),
    )
    if notify_customer:
        notify.plan_broken(plan, now)
    return plan


def close_follow_up(plan: PaymentPlan, *, actor: Actor, now: datetime) -> PaymentPlan:
    """A specialist dealt with a broken plan: off the follow-up queue."""
    if plan.state is not PlanStatus.BROKEN or plan.followed_up_at is not None:
        raise PlanTransitionRefused()
    plan.followed_up_at = now
    _audit(plan, "plan.followed_up", actor=actor, now=now)
    return plan


# --- money received -----------------------------------------------------------------------
def still_owed_by_invoice(
    plan: PaymentPlan, pending: dict[int, int] | None = None
) -> dict[int, int]:
    """What the plan may still take on each of its invoices: {invoice id: minor units of
    the plan's currency}. What it covers and has not received (`amount_minor -
    paid_minor`), at most the invoice's open balance now (total - net paid - credited,
    `balances.open_balance_column`): a credit note, or a payment made outside the plan,
    since the plan was agreed lowers what the plan can ask, so money paid through it is
    never allocated beyond what an invoice owes (the ledger's triggers would refuse it).
    `pending` is what a payment the ledger has not written yet puts on each invoice."""
    ids = [covered.invoice_id for covered in plan.invoices]
    balances = {
        invoice_id: int(balance)
        for invoice_id, balance in db.session.execute(
            select(Invoice.id, open_balance_column()).where(Invoice.id.in_(ids))
        )
    }
    pending = pending or {}
    return {
        covered.invoice_id: max(
            0,
            min(
                covered.amount_minor - covered.paid_minor,
                balances.get(covered.invoice_id, 0) - pending.get(covered.invoice_id, 0),
            ),
        )
        for covered in plan.invoices
    }


def plan_still_owed(plan: PaymentPlan) -> Money:
    """What the plan's invoices still owe through it (`still_owed_by_invoice`, summed):
    the most any installment of it may ask now, in the plan's currency."""
    return Money(sum(still_owed_by_invoice(plan).values()), plan.currency)


def plan_allocation(plan: PaymentPlan, amount: Money) -> list[tuple[Invoice, Money]]:
    """How `amount` paid through the plan splits over its invoices: in the order they
    were added (oldest due first, as proposed), each up to what it still owes through
    the plan (`still_owed_by_invoice`). What exceeds them all is left out (the caller's
    to place: the ledger records it as unapplied)."""
    left = amount.minor
    owed = still_owed_by_invoice(plan)
    parts: list[tuple[Invoice, Money]] = []
    for covered in sorted(plan.invoices, key=lambda c: (c.invoice.due_date, c.invoice_id)):
        if left <= 0:
            break
        take = min(left, owed[covered.invoice_id])
        if take > 0:
            parts.append((covered.invoice, Money(take, plan.currency)))
            left -= take
    return parts


def settle_if_nothing_owed(
    plan: PaymentPlan, *, actor: Actor, now: datetime, pending: dict[int, int] | None = None
) -> bool:
    """Complete an active plan whose invoices owe nothing more through it, though
    installments are left (credit notes, or payments outside the plan, covered the
    rest): the installments left are cancelled, never asked for. True if it did.
    `pending` as for `still_owed_by_invoice`."""
    if plan.state is not PlanStatus.ACTIVE or any(still_owed_by_invoice(plan, pending).values()):
        return False
    _end(plan, PlanStatus.COMPLETED, "settled: the invoices owe nothing more", now)
    _audit(plan, "plan.completed", actor=actor, now=now, settled=True)
    return True


def record_installment_payment(
    plan: PaymentPlan,
    received: Money | Payment,
    *,
    actor: Actor,
    now: datetime,
) -> Money:
    """Money received for an active plan, on its installments in number order (the down
    payment first) and on its invoices. Returns what was left over (zero unless more
    came than the plan still asks); the plan completes when every installment is paid.

    `received` is a ledger `Payment` (its allocations to the plan's invoices say which
    invoice got what; the payment must already be allocated) or an amount (split over
    the invoices by `plan_allocation`). Nothing is recorded for a plan that is not
    active: the money stays on the invoices, as the ledger put it. The caller holds the
    customer's account lock (lock 1). Raises CurrencyMismatch for another currency.
    """
    if isinstance(received, Payment):
        amount = Money(received.amount_minor, received.currency)
        by_invoice = {a.invoice_id: a.amount_minor for a in received.allocations}
        reference: str | None = received.reference
    else:
        amount = received
        by_invoice = None
        reference = None
    if amount.currency != plan.currency:
        raise CurrencyMismatch(f"{amount.currency} and {plan.currency} do not mix")
    if plan.state is not PlanStatus.ACTIVE or not amount.is_positive:
        return amount
    # The plan's invoices: what of this money reached each (the ledger's word if given).
    # Split here, the ledger writes its allocations after this call: they are pending.
    pending = None
    if by_invoice is None:
        parts = {invoice.id: part.minor for invoice, part in plan_allocation(plan, amount)}
        pending = parts
    else:
        parts = by_invoice
    for covered in plan.invoices:
        take = min(parts.get(covered.invoice_id, 0), covered.amount_minor - covered.paid_minor)
        if take > 0:
            covered.paid_minor += take
    # The installments, in order.
    left = amount.minor
    paid_numbers: list[int] = []
    for installment in plan.installments:
        if left <= 0:
            break
        if installment.status != InstallmentStatus.SCHEDULED:
            continue
        take = min(left, installment.amount_minor - installment.paid_minor)
        installment.paid_minor += take
        left -= take
        if installment.paid_minor == installment.amount_minor:
            installment.status = InstallmentStatus.PAID
            installment.paid_at = now
            installment.next_attempt_at = None
            paid_numbers.append(installment.number)
    db.session.flush()
    _audit(
        plan,
        "plan.payment_recorded",
        actor=actor,
        now=now,
        amount_minor=amount.minor - left,
        installments_paid=paid_numbers,
        reference=reference,
    )
    if all(i.status == InstallmentStatus.PAID for i in plan.installments):
        complete_plan(plan, actor=actor, now=now)
    else:
        settle_if_nothing_owed(plan, actor=actor, now=now, pending=pending)
    return Money(left, plan.currency)


def take_back_installment_payment(
    plan: PaymentPlan,
    parts: Sequence[tuple[int, Money]],
    *,
    actor: Actor,
    now: datetime,
) -> Money:
    """A refund (or a refund at Stripe: a chargeback's loss is recorded as one) took
    `parts` — (invoice id, amount) pairs, the ledger's `RefundAllocation`s — back from
    the invoices of a payment that was received through `plan`: the plan no longer
    counts that money as received. `PlanInvoice.paid_minor` drops on each invoice by
    what was taken from it, and the installments give it back latest first: a paid one
    is scheduled again, so it is owed on the plan page, reminded and, past the grace
    period, breaks the plan, as any unpaid installment would. Autopay does not charge it
    a second time by itself (its succeeded attempt holds the installment,
    `autopay._claim`): the customer pays it by hand. The invoices' planned
    amount (`balances.planned_subquery`) rises by exactly what their balance rose by,
    so nothing becomes payable outside the plan.

    Only an active plan is changed: a completed, broken or cancelled plan no longer
    holds its invoices, and what the refund reopened is payable and reminded as any
    balance. The caller holds the customer's lock (lock 1) and is recording the refund
    in the same transaction. Returns what the plan gave back (minor units of the plan's
    currency); raises CurrencyMismatch for parts in another currency.
    """
    given_back = 0
    if plan.state is not PlanStatus.ACTIVE:
        return Money(0, plan.currency)
    by_invoice: dict[int, int] = {}
    for invoice_id, amount in parts:
        if amount.currency != plan.currency:
            raise CurrencyMismatch(f"{amount.currency} and {plan.currency} do not mix")
        by_invoice[invoice_id] = by_invoice.get(invoice_id, 0) + amount.minor
    for covered in plan.invoices:
        give = min(by_invoice.get(covered.invoice_id, 0), covered.paid_minor)
        if give > 0:
            covered.paid_minor -= give
            given_back += give
    left = given_back
    reopened: list[int] = []
    for installment in sorted(plan.installments, key=lambda i: i.number, reverse=True):
        if left <= 0:
            break
        if installment.status == InstallmentStatus.CANCELLED or installment.paid_minor <= 0:
            continue
        take = min(left, installment.paid_minor)
        installment.paid_minor -= take
        left -= take
        if installment.status == InstallmentStatus.PAID:
            installment.status = InstallmentStatus.SCHEDULED
            installment.paid_at = None
            installment.next_attempt_at = None
            reopened.append(installment.number)
    db.session.flush()
    if given_back:
        _audit(
            plan,
            "plan.payment_refunded",
            actor=actor,
            now=now,
            amount_minor=given_back,
            installments_reopened=sorted(reopened),
        )
    return Money(given_back, plan.currency)
