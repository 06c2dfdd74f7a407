"""Autopay: the jobs runner charges due installments off-session, retries, reminds, breaks.

Exactly once — read this before changing anything here.

* An installment is charged only through an `InstallmentAttempt` row that is inserted
  and COMMITTED before Stripe is called. The table's partial unique index admits one
  attempt per installment in `processing`, `requires_action` or `succeeded`
  (`models.ATTEMPT_HOLDING_STATUSES`): a second runner's INSERT fails, so it never calls
  Stripe. This database guarantee, not Stripe's idempotency keys, is what stops a second
  charge: localstripe ignores idempotency keys (its README, "Limitations").
* The claim (`_claim`) takes the customer's payment account (lock 1 of
  `portal.payments.locks`), then the installment row with FOR UPDATE SKIP LOCKED (an
  installment another runner is claiming is skipped, never waited for), then reads the
  plan and the installment afresh: nothing is charged for a plan that is not active with
  autopay and a saved card, for an installment already paid (by hand meanwhile too), nor
  more than the installment and the plan's invoices still owe. On SQLite the account
  lock is the database's one writer lock.
* Stripe is called with no lock held. The outcome is recorded (`_record`) in a second
  transaction, under the same locks. Money received goes to the ledger as a `Payment`
  (reference: the PaymentIntent id, unique) allocated to the plan's invoices, oldest due
  first, then to the installment (`services.record_installment_payment`).
* An outcome we never heard (Stripe unreachable, the runner died) leaves the attempt in
  `processing`: it blocks any other charge of the installment. After STALE_AFTER a later
  pass asks again with the SAME idempotency key: Stripe then answers with the first
  request's result instead of charging twice (https://docs.stripe.com/api/idempotent_requests;
  keys live 24 hours, passes come every 15 minutes). localstripe does not honour that.
* A decline, or the bank asking the customer to authenticate (`authentication_required`
  at Stripe; localstripe answers a PaymentIntent in `requires_action`, which we cancel so
  that it can never complete later), fails the attempt: the customer gets one email per
  attempt with a link to pay that installment on the plan's page, and autopay tries
  again on the INSTALLMENT_RETRY_DAYS within the grace period (`retries`).

`break_overdue_plans` breaks a plan whose installment is unpaid past PLAN_GRACE_DAYS;
`remind_upcoming_installments` sends the reminder INSTALLMENT_REMINDER_DAYS before each
due date. Each job function commits (a charge needs two transactions around the call to
Stripe); the services they call do not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.audit.services import audit_row, record_event
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.extensions import db
from portal.i18n import zone_or_default
from portal.money import Money
from portal.notifications.models import EmailCategory, OutboxMessage
from portal.notifications.services import deferred_email_row, queue_email
from portal.payments.checkouts import METADATA_CUSTOMER, current_gateway
from portal.payments.checkouts import STALE_AFTER as CHECKOUT_STALE_AFTER
from portal.payments.deferred import wake_deferred_events
from portal.payments.errors import PaymentsUnavailable
from portal.payments.gateway import (
    AmountNotRepresentable,
    AttemptInDoubt,
    CardDeclined,
    GatewayError,
    GatewayRejected,
    GatewayUnavailable,
    IntentResult,
    StripeGateway,
    to_stripe_amount,
)
from portal.payments.locks import has_row_locks, lock_account, lock_account_row
from portal.payments.models import Payment, PaymentAllocation, PaymentSource
from portal.payments.policy import OpenItem, allocate_received, card_advice
from portal.payments.queries import in_flight_checkout, payment_by_reference
from portal.plans.models import (
    AttemptStatus,
    InstallmentAttempt,
    InstallmentStatus,
    PaymentPlan,
    PlanInstallment,
    PlanStatus,
)
from portal.plans.retries import (
    CollectionRules,
    is_past_grace,
    is_reminder_due,
    last_day_to_pay,
    may_charge,
    next_attempt_on,
    rules_from_config,
)

log = logging.getLogger(__name__)

# An attempt left `processing` this long was abandoned (its runner died, or Stripe never
# answered): far beyond STRIPE_TIMEOUT_SECONDS, well inside Stripe's 24-hour key memory.
STALE_AFTER = timedelta(minutes=10)
METADATA_PLAN = "portal_plan"
METADATA_INSTALLMENT = "portal_installment"
METADATA_ATTEMPT = "portal_installment_attempt"
# Stripe's code when an off-session charge needs the customer (3-D Secure).
AUTHENTICATION_REQUIRED = "authentication_required"
UNKNOWN_OUTCOME = frozenset({GatewayUnavailable.code, AttemptInDoubt.code})


def collection_rules() -> CollectionRules:
    """The retry days, grace period and reminder lead of this app's configuration."""
    return rules_from_config(current_app.config)


def plan_target(plan_id: int) -> str:
    """Where an email's portal link about a plan leads (the plan's page)."""
    return f"/plans/{plan_id}"


def start_of_day(day: date, customer: Customer) -> datetime:
    """Midnight of `day` in the customer's time zone, as an aware datetime."""
    return datetime.combine(day, time.min, tzinfo=zone_or_default(customer.timezone))


# --- charging -----------------------------------------------------------------------------
@dataclass
class AutopayReport:
    charged: int = 0
    failed: int = 0  # declined, or the bank wants the customer: emailed, retried later
    unknown: int = 0  # no answer from Stripe: asked again after STALE_AFTER
    skipped: int = 0  # not due, another runner has it, or nothing is left to charge
    errors: int = 0
    unconfigured: bool = False  # no card payments configured: nothing can be charged

    def summary(self) -> str:
        if self.unconfigured:
            return "card payments are not configured (STRIPE_SECRET_KEY): no installment charged"
        return (
            f"{self.charged} installments charged, {self.failed} failed, "
            f"{self.unknown} without an answer, {self.skipped} skipped, {self.errors} errors"
        )


@dataclass(frozen=True)
class _Claim:
    """An attempt this runner committed and may send to Stripe."""

    attempt_id: int
    attempt: int
    installment_id: int
    plan_id: int
    customer_id: int
    amount: Money
    idempotency_key: str
    stripe_customer_id: str
    payment_method_id: str
    payment_intent_id: str | None = None  # known: ask Stripe how it ended, charge nothing
    reclaimed: bool = False  # sent before, no answer recorded: look for it before sending


@dataclass(frozen=True)
class _Answer:
    intent: IntentResult | None = None
    failure: str | None = None  # Stripe's decline code, or ours (GatewayError.code)
    declined_intent_id: str | None = None  # the PaymentIntent a decline names, if any


def charge_due_installments(*, now: datetime, runner: str) -> AutopayReport:
    """Charge every installment due today (in its customer's time zone) off-session.

    Commits: each installment's claim, then its outcome. A second runner at the same time
    charges nothing twice (module docstring). Returns counts for the job log.
    """
    report = AutopayReport()
    try:
        gateway = current_gateway()
    except PaymentsUnavailable:
        report.unconfigured = True
        return report  # no card payments configured: installments are paid by hand
    rules = collection_rules()
    for installment_id in _candidates(now):
        try:
            claim = _claim(installment_id, now=now, rules=rules)
            db.session.commit()
        except Exception:  # one installment's problem must not stop the others
            db.session.rollback()
            log.exception("autopay: could not claim installment %s", installment_id)
            report.errors += 1
            continue
        if claim is None:
            report.skipped += 1
            continue
        log.info("autopay %s: charging %s (%s)", runner, claim.idempotency_key, claim.amount)
        try:
            answer = _send(gateway, claim)
        except Exception:  # a bug, not Stripe's answer: the attempt waits, as after an outage
            log.exception("autopay: sending %s failed", claim.idempotency_key)
            answer = _Answer(failure=GatewayUnavailable.code)
        if answer.intent is not None and claim.payment_intent_id is None:
            _note_intent(claim, answer.intent.id)
        try:
            outcome = _record(claim, answer, now=now, rules=rules)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("autopay: could not record %s; asked again later", claim.idempotency_key)
            report.errors += 1
            continue
        if outcome is None:
            report.skipped += 1
        elif outcome == AttemptStatus.SUCCEEDED:
            report.charged += 1
        elif outcome == AttemptStatus.FAILED:
            report.failed += 1
        else:
            report.unknown += 1
    return report


def _note_intent(claim: _Claim, payment_intent_id: str) -> None:
    """Keep the PaymentIntent's id at once, in a commit of its own: if recording its
    outcome fails, the next pass asks Stripe about this PaymentIntent instead of sending
    the charge again (which localstripe, ignoring the key, would make twice)."""
    try:
        db.session.execute(
            update(InstallmentAttempt)
            .where(
                InstallmentAttempt.id == claim.attempt_id,
                InstallmentAttempt.payment_intent_id.is_(None),
            )
            .values(payment_intent_id=payment_intent_id)
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("autopay: could not note %s for %s", payment_intent_id, claim.idempotency_key)


def _candidates(now: datetime) -> list[int]:
    """Installments autopay may have to charge, coarsely (the claim decides): scheduled
    ones of active autopay plans due by tomorrow in UTC (any time zone's today), whose
    next attempt is not set for later. Oldest due first."""
    horizon = now.date() + timedelta(days=1)
    return list(
        db.session.scalars(
            select(PlanInstallment.id)
            .join(PaymentPlan, PaymentPlan.id == PlanInstallment.plan_id)
            .where(
                PaymentPlan.status == PlanStatus.ACTIVE,
                PaymentPlan.autopay.is_(True),
                PaymentPlan.saved_card_id.is_not(None),
                PlanInstallment.status == InstallmentStatus.SCHEDULED,
                PlanInstallment.number >= 1,  # the down payment is paid when agreeing
                PlanInstallment.due_date <= horizon,
                or_(
                    PlanInstallment.next_attempt_at.is_(None),
                    PlanInstallment.next_attempt_at <= now,
                ),
            )
            .order_by(PlanInstallment.due_date, PlanInstallment.id)
        )
    )


def _lock_installment(installment_id: int, *, skip_locked: bool) -> PlanInstallment | None:
    """The installment row, locked after its customer's account (lock order: 1, then
    the plan's rows), read afresh with its plan, the plan's card and invoices."""
    query = (
        select(PlanInstallment)
        .where(PlanInstallment.id == installment_id)
        .options(
            joinedload(PlanInstallment.plan).joinedload(PaymentPlan.saved_card),
            joinedload(PlanInstallment.plan).joinedload(PaymentPlan.customer),
            selectinload(PlanInstallment.attempts),
        )
        .execution_options(populate_existing=True)
    )
    if has_row_locks():  # SQLite: the account "lock" took the database's writer lock
        query = query.with_for_update(of=PlanInstallment, skip_locked=skip_locked)
    return db.session.scalar(query)


def _customer_of(installment_id: int) -> int | None:
    return db.session.scalar(
        select(PaymentPlan.customer_id)
        .join(PlanInstallment, PlanInstallment.plan_id == PaymentPlan.id)
        .where(PlanInstallment.id == installment_id)
    )


def _claim(installment_id: int, *, now: datetime, rules: CollectionRules) -> _Claim | None:
    """Commit an attempt for this installment if autopay may charge it now; None if not."""
    customer_id = _customer_of(installment_id)
    if customer_id is None:
        return None
    account = lock_account(customer_id)  # lock 1
    if account is None or not account.stripe_customer_id:
        return None
    installment = _lock_installment(installment_id, skip_locked=True)
    if installment is None:  # another runner is claiming it right now
        return None
    plan = installment.plan
    card = plan.saved_card
    if (
        plan.status != PlanStatus.ACTIVE
        or not plan.autopay
        or card is None
        or card.customer_id != customer_id
        or installment.status != InstallmentStatus.SCHEDULED
    ):
        return None
    holding = [a for a in installment.attempts if a.status != AttemptStatus.FAILED]
    holding = [a for a in holding if a.status != AttemptStatus.CANCELED]
    if holding:
        return _reclaim_stale(
            holding[0], plan, account.stripe_customer_id, card.payment_method_id, now=now
        )
    customer = plan.customer
    today = customer_today(customer, now)
    failed = [a for a in installment.attempts if a.status == AttemptStatus.FAILED]
    last_on = customer_today(customer, failed[-1].created_at) if failed else None
    if not may_charge(
        installment.due_date,
        today,
        failed_attempts=len(failed),
        last_attempt_on=last_on,
        rules=rules,
    ):
        return None
    paying = in_flight_checkout(customer_id)
    if paying is not None and now - paying.updated_at < CHECKOUT_STALE_AFTER:
        return None  # the customer is paying at this moment: next pass (one left in
        # flight long ago, an abandoned 3-D Secure window, holds nothing back)
    amount = _amount_to_charge(installment, plan)
    if amount is None:
        return None
    number = max((a.attempt for a in installment.attempts), default=0) + 1
    key = f"installment-{installment.id}-attempt-{number}"
    try:
        with db.session.begin_nested():
            attempt = InstallmentAttempt(
                installment_id=installment.id,
                attempt=number,
                idempotency_key=key,
                status=AttemptStatus.PROCESSING,
                amount_minor=amount.minor,
                currency=amount.currency,
                created_at=now,
                updated_at=now,
            )
            db.session.add(attempt)
    except IntegrityError:  # another runner's attempt holds it (the unique index)
        return None
    record_event(
        "installment.charge_started",
        actor=Actor.system(),
        now=now,
        customer_id=customer_id,
        subject=installment,
        data={
            "plan": plan.id,
            "number": installment.number,
            "attempt": number,
            "amount_minor": amount.minor,
            "currency": amount.currency,
        },
    )
    return _Claim(
        attempt_id=attempt.id,
        attempt=number,
        installment_id=installment.id,
        plan_id=plan.id,
        customer_id=customer_id,
        amount=amount,
        idempotency_key=key,
        stripe_customer_id=str(account.stripe_customer_id),
        payment_method_id=card.payment_method_id,
    )


def _reclaim_stale(
    attempt: InstallmentAttempt,
    plan: PaymentPlan,
    stripe_customer_id: str,
    payment_method_id: str,
    *,
    now: datetime,
) -> _Claim | None:
    """An attempt still `processing` long after it began: its runner never recorded an
    answer. Take it over (compare-and-set on `updated_at`, so one runner does) and ask
    again with the same key. Any other holding attempt blocks the installment."""
    if attempt.status != AttemptStatus.PROCESSING or now - attempt.updated_at < STALE_AFTER:
        return None
    taken = db.session.execute(
        update(InstallmentAttempt)
        .where(
            InstallmentAttempt.id == attempt.id,
            InstallmentAttempt.status == AttemptStatus.PROCESSING,
            InstallmentAttempt.updated_at == attempt.updated_at,
        )
        .values(updated_at=now)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return _Claim(
        attempt_id=attempt.id,
        attempt=attempt.attempt,
        installment_id=attempt.installment_id,
        plan_id=plan.id,
        customer_id=plan.customer_id,
        amount=attempt.amount,
        idempotency_key=attempt.idempotency_key,
        stripe_customer_id=stripe_customer_id,
        payment_method_id=payment_method_id,
        payment_intent_id=attempt.payment_intent_id,
        reclaimed=True,
    )


def _amount_to_charge(installment: PlanInstallment, plan: PaymentPlan) -> Money | None:
    """What is left on the installment, at most what the plan's invoices still owe
    through the plan (paid offline meanwhile, or credited, they owe less). None when
    nothing is left or no card charge can take it."""
    from portal.plans.services import plan_still_owed  # (services imports this module)

    amount = min(installment.due, plan_still_owed(plan))
    if not amount.is_positive:
        return None
    try:
        to_stripe_amount(amount)
    except AmountNotRepresentable:
        log.warning("autopay: %s cannot be charged by card; left to pay by hand", amount)
        return None
    if card_advice(amount) is not None:
        log.warning("autopay: %s is outside Stripe's limits; left to pay by hand", amount)
        return None
    return amount


def _send(gateway: StripeGateway, claim: _Claim) -> _Answer:
    """Charge the saved card (or, for an attempt whose PaymentIntent is known, ask how it
    ended). No lock is held here."""
    metadata = {
        METADATA_CUSTOMER: str(claim.customer_id),
        METADATA_PLAN: str(claim.plan_id),
        METADATA_INSTALLMENT: str(claim.installment_id),
        METADATA_ATTEMPT: str(claim.attempt),
    }
    try:
        if claim.payment_intent_id:
            intent = gateway.retrieve_payment(claim.payment_intent_id)
        else:
            # An attempt sent before whose answer never came may have charged: find its
            # PaymentIntent by the attempt's metadata before sending it again (with the
            # same key, which real Stripe would also de-duplicate within 24 hours).
            found = (
                gateway.find_payment(customer_id=claim.stripe_customer_id, metadata=metadata)
                if claim.reclaimed
                else None
            )
            intent = found or gateway.charge_off_session(
                amount=claim.amount,
                customer_id=claim.stripe_customer_id,
                payment_method_id=claim.payment_method_id,
                metadata=metadata,
                idempotency_key=claim.idempotency_key,
            )
    except CardDeclined as error:
        return _Answer(
            failure=error.code or CardDeclined.code, declined_intent_id=error.payment_intent_id
        )
    except (GatewayUnavailable, AttemptInDoubt, GatewayRejected) as error:
        return _Answer(failure=error.code)
    if intent.needs_action:
        # Off-session, nobody is there to authenticate: cancel it so that it can never
        # complete later, and ask the customer to pay on the plan's page.
        try:
            gateway.cancel_payment(intent.id)
        except GatewayError:
            log.warning("autopay: could not cancel %s (requires_action)", intent.id)
    return _Answer(intent=intent)


def _record(
    claim: _Claim, answer: _Answer, *, now: datetime, rules: CollectionRules
) -> AttemptStatus | None:
    """Write what Stripe answered about a claimed attempt; the attempt's status after
    (None: another runner recorded it first)."""
    lock_account(claim.customer_id)
    installment = _lock_installment(claim.installment_id, skip_locked=False)
    attempt = db.session.get(InstallmentAttempt, claim.attempt_id, populate_existing=True)
    if installment is None or attempt is None:
        raise LookupError(f"installment attempt {claim.attempt_id} vanished")
    if attempt.status != AttemptStatus.PROCESSING:
        return None  # recorded by a runner that took it over
    intent, failure = answer.intent, answer.failure
    attempt.updated_at = now
    if intent is not None:
        attempt.payment_intent_id = intent.id
        if intent.is_succeeded:
            _record_success(installment, attempt, intent, now=now)
            return AttemptStatus.SUCCEEDED
        if intent.needs_action:
            failure = AUTHENTICATION_REQUIRED
        elif intent.is_failed:
            failure = intent.error_code or CardDeclined.code
        else:  # processing: Stripe decides later; asked again after STALE_AFTER
            return AttemptStatus.PROCESSING
    elif answer.declined_intent_id and attempt.payment_intent_id is None:
        attempt.payment_intent_id = answer.declined_intent_id
    if failure in UNKNOWN_OUTCOME:
        attempt.error_code = failure
        return AttemptStatus.PROCESSING
    _record_failure(installment, attempt, failure or CardDeclined.code, now=now, rules=rules)
    return AttemptStatus.FAILED


def _record_success(
    installment: PlanInstallment,
    attempt: InstallmentAttempt,
    intent: IntentResult,
    *,
    now: datetime,
) -> None:
    plan = installment.plan
    attempt.status = AttemptStatus.SUCCEEDED
    attempt.error_code = None
    installment.next_attempt_at = None
    payment = record_plan_payment(plan, intent, now=now, actor=Actor.system())
    record_event(
        "installment.charged",
        actor=Actor.system(),
        now=now,
        customer_id=plan.customer_id,
        subject=installment,
        data={
            "plan": plan.id,
            "number": installment.number,
            "attempt": attempt.attempt,
            "payment_intent": intent.id,
            "amount_minor": intent.amount.minor,
            "currency": intent.amount.currency,
        },
    )
    if plan.status == PlanStatus.ACTIVE:
        apply_to_installments(plan, payment, now=now)
    else:  # ended while Stripe was answering: the money still pays its invoices
        log.warning("autopay: plan %s ended while its installment was charged", plan.id)


def record_plan_payment(
    plan: PaymentPlan, intent: IntentResult, *, now: datetime, actor: Actor
) -> Payment:
    """Record money Stripe took for a plan, once per PaymentIntent: a card `Payment`
    allocated to the plan's invoices, oldest due first, each up to what it still owes
    through the plan (and at most its balance); what none owes stays unapplied for staff
    to refund, like any overpayment. The caller holds the customer's lock."""
    existing = payment_by_reference(intent.id)
    if existing is not None:
        return existing
    from portal.plans.services import still_owed_by_invoice

    customer = plan.customer
    today = customer_today(customer, now)
    owed = still_owed_by_invoice(plan)
    items = [
        OpenItem(
            covered.invoice.id,
            covered.invoice.due_date,
            covered.invoice.number,
            Money(owed[covered.invoice_id], plan.currency),
        )
        for covered in plan.invoices
    ]
    allocations, unapplied = allocate_received(intent.amount, items, [])
    payment = Payment(
        customer_id=customer.id,
        reference=intent.id,
        source=PaymentSource.CARD,
        amount_minor=intent.amount.minor,
        currency=intent.amount.currency,
        paid_on=today,
        created_at=now,
        allocations=[
            PaymentAllocation(invoice_id=invoice_id, amount_minor=amount.minor)
            for invoice_id, amount in allocations
        ],
    )
    db.session.add(payment)
    db.session.flush()
    rows = [
        audit_row(
            "payment.received",
            actor=actor,
            now=now,
            customer_id=customer.id,
            subject=("payments", payment.id),
            data={
                "reference": intent.id,
                "amount_minor": intent.amount.minor,
                "currency": intent.amount.currency,
                "plan": plan.id,
                "allocations": {str(i): m.minor for i, m in allocations},
            },
        )
    ]
    if unapplied.is_positive:
        log.warning("payment %s: %s received that no invoice owes", intent.id, unapplied)
        rows.append(
            audit_row(
                "payment.unapplied",
                actor=actor,
                now=now,
                customer_id=customer.id,
                subject=("payments", payment.id),
                data={"amount_minor": unapplied.minor, "currency": unapplied.currency},
            )
        )
    db.session.execute(insert(AuditEvent), rows)
    db.session.execute(
        insert(OutboxMessage),
        [
            deferred_email_row(
                customer,
                kind="receipt",
                template="receipt",
                context={"payment_id": payment.id},
                now=now,
                dedupe_key=f"receipt:{payment.id}",
                with_portal_link=True,
            )
        ],
    )
    # Stripe's events about this payment that came first (a refund, say) wait no more.
    wake_deferred_events([intent.id])
    return payment


def apply_to_installments(plan: PaymentPlan, payment: Payment, *, now: datetime) -> None:
    """The payment's money on the plan's installments and invoices (plans-domain)."""
    from portal.plans.services import record_installment_payment

    record_installment_payment(plan, payment, actor=Actor.system(), now=now)


def _record_failure(
    installment: PlanInstallment,
    attempt: InstallmentAttempt,
    code: str,
    *,
    now: datetime,
    rules: CollectionRules,
) -> None:
    plan = installment.plan
    customer = plan.customer
    today = customer_today(customer, now)
    attempt.status = AttemptStatus.FAILED
    attempt.error_code = code[:64]
    failed = sum(1 for a in installment.attempts if a.status == AttemptStatus.FAILED)
    retry_on = next_attempt_on(installment.due_date, today, failed_attempts=failed, rules=rules)
    installment.next_attempt_at = start_of_day(retry_on, customer) if retry_on else None
    record_event(
        "installment.charge_failed",
        actor=Actor.system(),
        now=now,
        customer_id=customer.id,
        subject=installment,
        data={
            "plan": plan.id,
            "number": installment.number,
            "attempt": attempt.attempt,
            "amount_minor": attempt.amount_minor,
            "currency": attempt.currency,
            "reason": attempt.error_code,  # the timeline's detail: Stripe's decline code
            "payment_intent": attempt.payment_intent_id,
            "retry_on": retry_on.isoformat() if retry_on else None,
        },
    )
    if code == GatewayRejected.code:
        # Stripe refused the request itself: our bug or configuration, not the card's.
        log.error("autopay: Stripe refused %s; see the log above", attempt.idempotency_key)
        return
    queue_email(
        customer,
        kind="installment_charge_failed",
        template="installment_charge_failed",
        context={
            "plan": plan,
            "number": installment.number,
            "amount": attempt.amount,
            "due_date": installment.due_date,
            "needs_authentication": code == AUTHENTICATION_REQUIRED,
            "retry_on": retry_on,
            "deadline": last_day_to_pay(installment.due_date, rules),
        },
        now=now,
        category=EmailCategory.TRANSACTIONAL,
        dedupe_key=f"installment_charge_failed:{attempt.id}",
        with_portal_link=True,
        link_target=plan_target(plan.id),
    )


# --- breaking -----------------------------------------------------------------------------
@dataclass
class BreakReport:
    broken: list[int] = field(default_factory=list)  # plan ids
    waiting: int = 0  # overdue, but a charge's outcome is not known yet

    def summary(self) -> str:
        return f"{len(self.broken)} plans broken, {self.waiting} waiting for a charge's outcome"


def break_overdue_plans(*, now: datetime) -> BreakReport:
    """Break every active plan with an installment unpaid past the grace period (in its
    customer's time zone): `services.break_plan` makes the rest due again, starts the
    cooling-off and puts the plan in the specialists' follow-up; the customer is told by
    email. A plan whose charge is still in flight waits for its outcome. Never commits."""
    from portal.plans.services import break_plan, settle_if_nothing_owed

    rules = collection_rules()
    report = BreakReport()
    horizon = now.date() + timedelta(days=1) - timedelta(days=rules.grace_days + 1)
    plan_ids = db.session.scalars(
        select(PaymentPlan.id)
        .join(PlanInstallment, PlanInstallment.plan_id == PaymentPlan.id)
        .where(
            PaymentPlan.status == PlanStatus.ACTIVE,
            PlanInstallment.status == InstallmentStatus.SCHEDULED,
            PlanInstallment.due_date <= horizon,
        )
        .group_by(PaymentPlan.id)
        .order_by(PaymentPlan.id)
    ).all()
    for plan_id in plan_ids:
        plan = db.session.get(PaymentPlan, plan_id)
        if plan is None:
            continue
        lock_account_row(plan.customer_id)  # lock 1, even for one who never paid by card
        db.session.refresh(plan)
        if plan.status != PlanStatus.ACTIVE:
            continue
        today = customer_today(plan.customer, now)
        overdue = [
            i
            for i in plan.installments
            if i.status == InstallmentStatus.SCHEDULED and is_past_grace(i.due_date, today, rules)
        ]
        if not overdue:
            continue
        if _has_charge_in_flight(plan):
            report.waiting += 1
            continue
        if settle_if_nothing_owed(plan, actor=Actor.system(), now=now):
            continue  # credit notes covered what the installments left asked: done
        missed = overdue[0]
        missed_amount = missed.due
        break_plan(
            plan,
            actor=Actor.system(),
            now=now,
            reason=f"installment {missed.number} due {missed.due_date.isoformat()} unpaid",
            notify_customer=False,  # ours names the installment that was missed
        )
        _email_plan_broken(plan, missed.due_date, missed_amount, now=now)
        report.broken.append(plan.id)
    return report


def _has_charge_in_flight(plan: PaymentPlan) -> bool:
    return (
        db.session.scalar(
            select(func.count(InstallmentAttempt.id))
            .join(PlanInstallment, PlanInstallment.id == InstallmentAttempt.installment_id)
            .where(
                PlanInstallment.plan_id == plan.id,
                InstallmentAttempt.status.in_(
                    [AttemptStatus.PROCESSING, AttemptStatus.REQUIRES_ACTION]
                ),
            )
        )
        or 0
    ) > 0


def _email_plan_broken(plan: PaymentPlan, due_date: date, missed: Money, *, now: datetime) -> None:
    remaining = Money.sum(
        (Money(max(0, c.amount_minor - c.paid_minor), plan.currency) for c in plan.invoices),
        plan.currency,
    )
    queue_email(
        plan.customer,
        kind="installment_plan_broken",
        template="installment_plan_broken",
        context={
            "plan": plan,
            "due_date": due_date,
            "missed": missed,
            "remaining": remaining,
            "cooling_until": plan.cooling_off_until,
        },
        now=now,
        category=EmailCategory.COLLECTION,
        dedupe_key=f"installment_plan_broken:{plan.id}",
        with_portal_link=True,
    )


# --- reminders ----------------------------------------------------------------------------
def remind_upcoming_installments(*, now: datetime) -> int:
    """Queue the reminder of each installment due within INSTALLMENT_REMINDER_DAYS (in
    its customer's time zone), once per installment (the outbox's unique dedupe key,
    even against a concurrent runner). Collection email: an opted-out customer gets
    none. Returns how many were queued; never commits."""
    rules = collection_rules()
    first = now.date() - timedelta(days=1)
    last = now.date() + timedelta(days=rules.reminder_days + 1)
    installments: Sequence[PlanInstallment] = db.session.scalars(
        select(PlanInstallment)
        .join(PaymentPlan, PaymentPlan.id == PlanInstallment.plan_id)
        .where(
            PaymentPlan.status == PlanStatus.ACTIVE,
            PlanInstallment.status == InstallmentStatus.SCHEDULED,
            PlanInstallment.number >= 1,
            PlanInstallment.reminder_sent_at.is_(None),
            PlanInstallment.due_date.between(first, last),
        )
        .options(
            joinedload(PlanInstallment.plan).joinedload(PaymentPlan.customer),
            joinedload(PlanInstallment.plan).joinedload(PaymentPlan.saved_card),
        )
        .order_by(PlanInstallment.due_date, PlanInstallment.id)
    ).all()
    queued = 0
    for installment in installments:
        plan = installment.plan
        if not is_reminder_due(installment.due_date, customer_today(plan.customer, now), rules):
            continue
        if _queue_reminder(installment, plan, now=now):
            queued += 1
        installment.reminder_sent_at = now
    return queued


def _queue_reminder(installment: PlanInstallment, plan: PaymentPlan, *, now: datetime) -> bool:
    context: dict[str, Any] = {
        "plan": plan,
        "number": installment.number,
        "count": plan.installment_count,
        "amount": installment.due,
        "due_date": installment.due_date,
        "card": plan.saved_card if plan.autopay else None,
    }
    try:
        with db.session.begin_nested():
            queued = queue_email(
                plan.customer,
                kind="installment_reminder",
                template="installment_reminder",
                context=context,
                now=now,
                category=EmailCategory.COLLECTION,
                dedupe_key=f"installment_reminder:{installment.id}",
                with_portal_link=True,
                link_target=plan_target(plan.id),
            )
    except IntegrityError:  # another runner queued it first
        return False
    return queued is not None
