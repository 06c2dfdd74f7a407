"""Autopay against localstripe: due installments charged once, retries, breaking, reminders.

Real components: localstripe (through the real gateway and the `stripe` library), the
migrated database, the outbox. `now` is passed in, so a plan's calendar is walked day by
day; the customer's time zone decides what "due today" means.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.extensions import db
from portal.invoices.queries import invoice_balance
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.notifications.services import render_deferred
from portal.payments.models import Payment, PaymentAccount
from portal.plans.autopay import (
    STALE_AFTER,
    break_overdue_plans,
    charge_due_installments,
    remind_upcoming_installments,
)
from portal.plans.models import (
    AttemptStatus,
    InstallmentAttempt,
    InstallmentStatus,
    PlanStatus,
)
from tests.autopay_helpers import make_active_plan, save_card
from tests.factories import make_customer, make_invoice, make_payment
from tests.stripe_journeys import CARD_3DS, CARD_DECLINED_AT_PAYMENT

pytest_plugins = ["tests.stripe_server"]

DUE = date(2026, 12, 10)


def at(day: date, hour: int = 12) -> datetime:
    """`hour` o'clock UTC on `day`."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def day(offset: int) -> date:
    return DUE + timedelta(days=offset)


@pytest.fixture
def stripe_env(stripe_app, db_session, request_context):
    return stripe_app


def _plan(localstripe, *, card=None, number="4242424242424242", timezone="UTC", **fields):
    customer = make_customer(timezone=timezone)
    invoice = make_invoice(customer, lines=[("Work", "1", "300.00")])
    saved = card if card is not None else save_card(localstripe, customer, number)
    plan = make_active_plan(
        customer,
        [invoice],
        [
            (DUE, "100.00"),
            (DUE + timedelta(days=31), "100.00"),
            (DUE + timedelta(days=62), "100.00"),
        ],
        card=saved,
        **fields,
    )
    return customer, invoice, plan


def _charged(localstripe, plan) -> list[dict]:
    """The succeeded PaymentIntents of this plan's customer at localstripe."""
    return [pi for pi in localstripe.charged() if pi["metadata"].get("portal_plan") == str(plan.id)]


def _intents(localstripe, plan) -> list[dict]:
    return [
        pi
        for pi in localstripe.payment_intents()
        if pi["metadata"].get("portal_plan") == str(plan.id)
    ]


def _emails(customer, kind: str) -> list[OutboxMessage]:
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.customer_id == customer.id, OutboxMessage.kind == kind)
            .order_by(OutboxMessage.id)
        )
    )


def _attempts(installment) -> list[InstallmentAttempt]:
    return list(
        db.session.scalars(
            select(InstallmentAttempt)
            .where(InstallmentAttempt.installment_id == installment.id)
            .order_by(InstallmentAttempt.attempt)
        )
    )


# --- charging ------------------------------------------------------------------------------
def test_due_installment_is_charged_once_and_pays_installment_and_invoice(stripe_env, localstripe):
    # given a plan whose first installment is due today
    customer, invoice, plan = _plan(localstripe)
    first = plan.installments[0]
    # when the runner passes
    report = charge_due_installments(now=at(DUE), runner="r1")
    # then one charge of exactly 100.00, off-session, with the attempt's key
    assert report.charged == 1
    charged = _charged(localstripe, plan)
    assert [(pi["amount"], pi["currency"]) for pi in charged] == [(10000, "usd")]
    (attempt,) = _attempts(first)
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert attempt.idempotency_key == f"installment-{first.id}-attempt-1"
    assert attempt.payment_intent_id == charged[0]["id"]
    # the ledger has it, on the plan's invoice
    payment = db.session.scalar(select(Payment).where(Payment.reference == charged[0]["id"]))
    assert payment is not None
    assert payment.amount_minor == 10000
    assert [(a.invoice_id, a.amount_minor) for a in payment.allocations] == [(invoice.id, 10000)]
    assert invoice_balance(invoice, DUE).balance.minor == 20000
    # the installment is paid, the next ones are not
    db.session.refresh(plan)
    assert [i.status for i in plan.installments] == [
        InstallmentStatus.PAID,
        InstallmentStatus.SCHEDULED,
        InstallmentStatus.SCHEDULED,
    ]
    assert plan.installments[0].paid_minor == 10000
    # and a receipt is on its way, showing where the money went
    (receipt,) = _emails(customer, "receipt")
    render_deferred(receipt, customer)
    assert "we received your payment of $100.00" in receipt.body_text
    assert f"Invoice {invoice.number}: $100.00" in receipt.body_text


def test_a_second_pass_after_success_charges_nothing(stripe_env, localstripe):
    _customer, _invoice, plan = _plan(localstripe)
    charge_due_installments(now=at(DUE), runner="r1")
    # when another runner (or the next pass) comes the same day and the day after
    again = charge_due_installments(now=at(DUE, 13), runner="r2")
    later = charge_due_installments(now=at(day(1)), runner="r2")
    # then nothing more is charged
    assert again.charged == later.charged == 0
    assert len(_charged(localstripe, plan)) == 1
    assert (
        db.session.scalar(
            select(func.count(Payment.id)).where(Payment.customer_id == plan.customer_id)
        )
        == 1
    )


def test_installment_not_due_yet_in_the_customers_time_zone_is_not_charged(stripe_env, localstripe):
    # given a customer in Honolulu (UTC-10): at 05:00 UTC on the due date it is still
    # the day before there
    _customer, _invoice, plan = _plan(localstripe, timezone="Pacific/Honolulu")
    # when
    early = charge_due_installments(now=at(DUE, 5), runner="r1")
    # then nothing yet; at 11:00 UTC (01:00 there) it is due
    assert early.charged == 0
    assert _intents(localstripe, plan) == []
    assert charge_due_installments(now=at(DUE, 11), runner="r1").charged == 1


def test_installment_due_earlier_in_a_time_zone_ahead_is_charged_on_its_date(
    stripe_env, localstripe
):
    # Auckland (UTC+13 in December): 12:00 UTC the day before is already the due date
    _customer, _invoice, plan = _plan(localstripe, timezone="Pacific/Auckland")
    assert charge_due_installments(now=at(day(-1), 12), runner="r1").charged == 1
    assert len(_charged(localstripe, plan)) == 1


@pytest.mark.parametrize("status", [PlanStatus.CANCELLED, PlanStatus.COMPLETED, PlanStatus.BROKEN])
def test_nothing_is_charged_for_an_ended_plan(stripe_env, localstripe, status):
    # given a plan that ended before its installment's due date
    _customer, _invoice, plan = _plan(localstripe)
    plan.status = status
    plan.ended_at = at(day(-1))
    if status == PlanStatus.BROKEN:
        plan.cooling_off_until = day(90)
    db.session.flush()
    # when the runner passes on the due date and after
    reports = [charge_due_installments(now=at(day(n)), runner="r1") for n in (0, 1, 3)]
    # then Stripe is never asked
    assert [r.charged for r in reports] == [0, 0, 0]
    assert _intents(localstripe, plan) == []
    assert db.session.scalar(select(func.count(InstallmentAttempt.id))) == 0


def test_nothing_is_charged_without_autopay(stripe_env, localstripe):
    _customer, _invoice, plan = _plan(localstripe, autopay=False)
    assert charge_due_installments(now=at(DUE), runner="r1").charged == 0
    assert _intents(localstripe, plan) == []


def test_installment_paid_by_hand_meanwhile_is_not_charged(stripe_env, localstripe):
    # given the first installment paid by hand before its due date
    _customer, _invoice, plan = _plan(localstripe)
    first = plan.installments[0]
    first.paid_minor = first.amount_minor
    first.status = InstallmentStatus.PAID
    first.paid_at = at(day(-2))
    db.session.flush()
    # when
    report = charge_due_installments(now=at(DUE), runner="r1")
    # then
    assert report.charged == 0
    assert _intents(localstripe, plan) == []


def test_partly_paid_installment_is_charged_only_the_rest(stripe_env, localstripe):
    _customer, _invoice, plan = _plan(localstripe)
    first = plan.installments[0]
    first.paid_minor = 3000
    db.session.flush()
    charge_due_installments(now=at(DUE), runner="r1")
    assert [pi["amount"] for pi in _charged(localstripe, plan)] == [7000]


def test_never_more_than_the_invoices_still_owe(stripe_env, localstripe):
    # given the invoice was paid offline down to 40.00 (the ERP's import)
    _customer, invoice, plan = _plan(localstripe)
    make_payment(_customer, [(invoice, "260.00")])
    # when the 100.00 installment falls due
    charge_due_installments(now=at(DUE), runner="r1")
    # then only what is owed is charged
    assert [pi["amount"] for pi in _charged(localstripe, plan)] == [4000]
    assert invoice_balance(invoice, DUE).balance.minor == 0


def test_a_customer_paying_at_this_moment_is_not_charged_by_autopay(stripe_env, localstripe):
    from tests.factories import make_checkout_in_flight

    customer, invoice, plan = _plan(localstripe)
    make_checkout_in_flight(customer, [invoice], 10000, updated_at=at(DUE) - timedelta(minutes=1))
    assert charge_due_installments(now=at(DUE), runner="r1").charged == 0
    assert _intents(localstripe, plan) == []
    # a checkout abandoned in flight long ago holds nothing back
    assert charge_due_installments(now=at(DUE, 13), runner="r1").charged == 1


# --- declines, authentication, retries, breaking ------------------------------------------
def test_declining_card_is_retried_on_schedule_then_the_plan_breaks(stripe_env, localstripe):
    # given a card that sets up fine and is declined at every charge
    customer, invoice, plan = _plan(localstripe, number=CARD_DECLINED_AT_PAYMENT)
    first = plan.installments[0]
    # when the runner passes every few hours for nine days
    for offset in range(9):
        for hour in (1, 9, 17):
            charge_due_installments(now=at(day(offset), hour), runner="r1")
            break_overdue_plans(now=at(day(offset), hour))
    # then four attempts: the due date and days 1, 3 and 5, each declined
    attempts = _attempts(first)
    assert [(a.attempt, a.status) for a in attempts] == [
        (n, AttemptStatus.FAILED) for n in (1, 2, 3, 4)
    ]
    assert [a.created_at.date() for a in attempts] == [day(0), day(1), day(3), day(5)]
    assert {a.error_code for a in attempts} == {"card_declined"}
    assert _charged(localstripe, plan) == []
    assert len(_intents(localstripe, plan)) == 4
    # one email per attempt, each with a pay link; the last says no retry is left
    failed = _emails(customer, "installment_charge_failed")
    assert [m.dedupe_key for m in failed] == [f"installment_charge_failed:{a.id}" for a in attempts]
    assert "card was declined" in failed[0].body_text
    assert "try your saved card again on Dec 11, 2026" in failed[0].body_text
    assert "try your saved card again" not in failed[-1].body_text
    assert "still unpaid after Dec 17, 2026" in failed[-1].body_text
    assert all(m.link_purpose == "installment_charge_failed" for m in failed)
    # and the plan broke on day 8, not before: the customer told, the rest due again
    db.session.refresh(plan)
    assert plan.status == PlanStatus.BROKEN
    assert plan.ended_at.date() == day(8)
    (broken,) = _emails(customer, "installment_plan_broken")
    assert "Your payment plan has ended" in broken.body_text
    assert "$300.00" in broken.body_text
    assert invoice_balance(invoice, day(8)).payable.minor == 30000
    assert (
        db.session.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.customer_id == customer.id, AuditEvent.action == "plan.broken"
            )
        )
        == 1
    )


def test_a_broken_plan_is_never_charged_again(stripe_env, localstripe):
    _customer, _invoice, plan = _plan(localstripe, number=CARD_DECLINED_AT_PAYMENT)
    charge_due_installments(now=at(DUE), runner="r1")
    break_overdue_plans(now=at(day(8)))
    db.session.refresh(plan)
    assert plan.status == PlanStatus.BROKEN
    before = len(_intents(localstripe, plan))
    for offset in (8, 31, 62):
        charge_due_installments(now=at(day(offset)), runner="r1")
    assert len(_intents(localstripe, plan)) == before == 1


def test_authentication_required_emails_an_on_session_link(stripe_env, localstripe):
    # given a card whose bank asks for 3-D Secure at every charge
    customer, _invoice, plan = _plan(localstripe, number=CARD_3DS)
    first = plan.installments[0]
    # when autopay charges it with nobody there
    report = charge_due_installments(now=at(DUE), runner="r1")
    # then the attempt fails as needing the customer, the PaymentIntent is cancelled so
    # that it can never complete later, and the customer is asked to pay on the plan page
    assert report.failed == 1
    (attempt,) = _attempts(first)
    assert (attempt.status, attempt.error_code) == (
        AttemptStatus.FAILED,
        "authentication_required",
    )
    (intent,) = _intents(localstripe, plan)
    assert intent["status"] == "canceled"
    (email,) = _emails(customer, "installment_charge_failed")
    assert email.subject == "Please confirm your plan payment of $100.00"
    assert "your bank wants you to confirm it yourself" in email.body_text
    assert email.link_purpose == "installment_charge_failed"
    if hasattr(email, "link_target"):
        assert email.link_target == f"/plans/{plan.id}"
    # and the next try is tomorrow
    assert first.next_attempt_at == at(day(1), 0)


def test_the_failure_email_goes_once_per_attempt(stripe_env, localstripe):
    customer, _invoice, _ = _plan(localstripe, number=CARD_DECLINED_AT_PAYMENT)
    for hour in (1, 2, 3, 4):
        charge_due_installments(now=at(DUE, hour), runner="r1")
    assert len(_emails(customer, "installment_charge_failed")) == 1


def test_stripe_unreachable_keeps_the_attempt_until_stripe_answers(
    stripe_env, localstripe, failing_stripe
):
    # given Stripe answers 500 to the charge
    _customer, _invoice, plan = _plan(localstripe)
    first = plan.installments[0]
    stripe_env.config["STRIPE_API_BASE"] = failing_stripe
    report = charge_due_installments(now=at(DUE), runner="r1")
    stripe_env.config["STRIPE_API_BASE"] = localstripe.url
    # then the attempt stays in flight: outcome unknown, the installment blocked
    assert report.unknown == 1
    (attempt,) = _attempts(first)
    assert (attempt.status, attempt.error_code) == (AttemptStatus.PROCESSING, "gateway_unavailable")
    # a pass within STALE_AFTER sends nothing (another runner may be on it)
    charge_due_installments(now=at(DUE) + STALE_AFTER / 2, runner="r2")
    assert _intents(localstripe, plan) == []
    # after it, the same attempt is sent again with the same key, and recorded once
    later = charge_due_installments(now=at(DUE) + STALE_AFTER * 2, runner="r2")
    assert later.charged == 1
    (attempt,) = _attempts(first)
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert attempt.idempotency_key == f"installment-{first.id}-attempt-1"
    assert len(_charged(localstripe, plan)) == 1


def test_a_charge_whose_answer_was_lost_is_found_not_sent_again(
    stripe_env, localstripe, failing_stripe
):
    from portal.payments.checkouts import current_gateway
    from portal.plans.autopay import (
        METADATA_ATTEMPT,
        METADATA_CUSTOMER,
        METADATA_INSTALLMENT,
        METADATA_PLAN,
    )

    # given an attempt whose charge reached Stripe, but whose answer never came back
    customer, _invoice, plan = _plan(localstripe)
    first = plan.installments[0]
    stripe_env.config["STRIPE_API_BASE"] = failing_stripe
    charge_due_installments(now=at(DUE), runner="r1")
    stripe_env.config["STRIPE_API_BASE"] = localstripe.url
    (attempt,) = _attempts(first)
    taken = current_gateway().charge_off_session(
        amount=Money(10000, "USD"),
        customer_id=db.session.scalar(
            select(PaymentAccount.stripe_customer_id).where(
                PaymentAccount.customer_id == customer.id
            )
        ),
        payment_method_id=plan.saved_card.payment_method_id,
        metadata={
            METADATA_CUSTOMER: str(customer.id),
            METADATA_PLAN: str(plan.id),
            METADATA_INSTALLMENT: str(first.id),
            METADATA_ATTEMPT: "1",
        },
        idempotency_key=attempt.idempotency_key,
    )
    # when a runner takes the stale attempt over
    later = charge_due_installments(now=at(DUE) + STALE_AFTER * 2, runner="r2")
    # then it finds that charge and records it; the card is charged once, not twice
    # (localstripe, unlike Stripe, does not replay an idempotency key's first answer)
    assert later.charged == 1
    assert [pi["id"] for pi in _charged(localstripe, plan)] == [taken.id]
    (attempt,) = _attempts(first)
    assert (attempt.status, attempt.payment_intent_id) == (AttemptStatus.SUCCEEDED, taken.id)
    db.session.refresh(first)
    assert first.status == InstallmentStatus.PAID


def test_a_plan_with_a_charge_in_flight_is_not_broken(stripe_env, localstripe, failing_stripe):
    _customer, _invoice, plan = _plan(localstripe)
    stripe_env.config["STRIPE_API_BASE"] = failing_stripe
    charge_due_installments(now=at(DUE), runner="r1")
    stripe_env.config["STRIPE_API_BASE"] = localstripe.url
    report = break_overdue_plans(now=at(day(8)))
    assert report.broken == []
    assert report.waiting == 1
    db.session.refresh(plan)
    assert plan.status == PlanStatus.ACTIVE


# --- reminders ------------------------------------------------------------------------------
def test_reminder_goes_three_days_before_each_due_date_once(stripe_env, localstripe):
    customer, _invoice, plan = _plan(localstripe)
    first = plan.installments[0]
    # four days before: nothing
    assert remind_upcoming_installments(now=at(day(-4))) == 0
    # three days before: one reminder, and only one however often the job runs
    assert remind_upcoming_installments(now=at(day(-3))) == 1
    assert remind_upcoming_installments(now=at(day(-3), 18)) == 0
    assert remind_upcoming_installments(now=at(day(-2))) == 0
    (reminder,) = _emails(customer, "installment_reminder")
    assert reminder.dedupe_key == f"installment_reminder:{first.id}"
    assert reminder.subject == "Your plan payment of $100.00 is due on Dec 10, 2026"
    assert "Payment 1 of 3 of your payment plan" in reminder.body_text
    assert "ending in 4242" in reminder.body_text
    assert reminder.link_purpose == "installment_reminder"
    # the next installment's reminder comes three days before its own date
    second = plan.installments[1]
    assert remind_upcoming_installments(now=at(second.due_date - timedelta(days=3))) == 1


def test_reminder_without_autopay_asks_the_customer_to_pay(stripe_env, localstripe):
    customer, _invoice, _ = _plan(localstripe, autopay=False)
    remind_upcoming_installments(now=at(day(-3)))
    (reminder,) = _emails(customer, "installment_reminder")
    assert "You can pay it online from your plan's page" in reminder.body_text
    assert "ending in" not in reminder.body_text


def test_no_reminder_for_a_paid_installment_or_an_ended_plan(stripe_env, localstripe):
    _customer, _invoice, plan = _plan(localstripe)
    first = plan.installments[0]
    first.paid_minor, first.status, first.paid_at = first.amount_minor, "paid", at(day(-5))
    _other, _invoice2, cancelled = _plan(localstripe)
    cancelled.status, cancelled.ended_at = PlanStatus.CANCELLED, at(day(-5))
    db.session.flush()
    assert remind_upcoming_installments(now=at(day(-3))) == 0


def test_reminders_are_in_the_customers_language(stripe_env, localstripe):
    customer, _invoice, _ = _plan(localstripe)
    customer.locale = "de"
    db.session.flush()
    remind_upcoming_installments(now=at(day(-3)))
    (reminder,) = _emails(customer, "installment_reminder")
    assert reminder.locale == "de"
    assert "Zahlung 1 von 3" in reminder.body_text


def test_a_failed_charge_and_the_break_show_on_the_staff_timeline(stripe_env, localstripe):
    from portal.desk.timeline import timeline_for

    customer, _invoice, _ = _plan(localstripe, number=CARD_DECLINED_AT_PAYMENT)
    charge_due_installments(now=at(DUE), runner="r1")
    break_overdue_plans(now=at(day(8)))
    entries = [e for e in timeline_for(customer.id).entries if e.kind == "plan"]
    assert [(e.status, e.detail) for e in entries[:2]] == [
        ("plan.broken", "installment 1 due 2026-12-10 unpaid"),
        ("installment.charge_failed", "card_declined"),
    ]
    assert entries[1].amount is not None
    assert entries[1].amount.minor == 10000
    assert entries[1].status_label == "Automatic payment failed"


# --- collection reminders and the jobs runner ---------------------------------------------
def test_invoices_of_an_active_plan_get_no_collection_reminders_until_it_breaks(
    stripe_env, localstripe
):
    from portal.notifications.services import schedule_collection_emails

    # given an invoice long overdue, wholly in an active plan whose card is declined
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(
        customer,
        lines=[("Work", "1", "300.00")],
        issue_date=date(2026, 9, 1),
        due_date=date(2026, 10, 1),
    )
    saved = save_card(localstripe, customer, CARD_DECLINED_AT_PAYMENT)
    make_active_plan(
        customer,
        [invoice],
        [(DUE, "150.00"), (DUE + timedelta(days=31), "150.00")],
        card=saved,
    )

    def reminders() -> list[str]:
        return [
            m.kind
            for m in db.session.scalars(
                select(OutboxMessage).where(OutboxMessage.invoice_id == invoice.id)
            )
        ]

    # when reminders are scheduled while the plan is active
    charge_due_installments(now=at(DUE), runner="r1")
    schedule_collection_emails(now=at(day(1)))
    # then none for its invoice
    assert reminders() == []
    # once the plan is broken, the invoice is dunned again
    break_overdue_plans(now=at(day(8)))
    schedule_collection_emails(now=at(day(8)))
    assert reminders() == ["reminder_overdue"]


def test_the_jobs_runner_charges_breaks_and_reminds(stripe_env, localstripe):
    from portal.jobs.runner import run_jobs

    _customer, _invoice, plan = _plan(localstripe)
    outcomes = {o.kind: o for o in run_jobs(now=at(day(-3)), runner="r1", force=True)}
    assert outcomes["remind_installments"].detail == "1 installment reminders queued"
    outcomes = {o.kind: o for o in run_jobs(now=at(DUE), runner="r1", force=True)}
    assert outcomes["charge_installments"].outcome == "ok"
    assert outcomes["charge_installments"].detail.startswith("1 installments charged, 0 failed")
    assert outcomes["break_overdue_plans"].detail.startswith("0 plans broken")
    assert len(_charged(localstripe, plan)) == 1


# --- crash safety ---------------------------------------------------------------------------
def test_a_runner_that_fails_to_record_a_success_never_charges_twice(
    stripe_env, localstripe, monkeypatch
):
    from portal.plans import autopay

    # given recording the payment fails once, after Stripe took the money
    _customer, invoice, plan = _plan(localstripe)
    first = plan.installments[0]
    real = autopay.record_plan_payment
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the runner died here")
        return real(*args, **kwargs)

    monkeypatch.setattr(autopay, "record_plan_payment", fails_once)
    report = charge_due_installments(now=at(DUE), runner="r1")
    assert report.errors == 1
    # then the attempt holds the PaymentIntent it charged, and blocks the installment
    (attempt,) = _attempts(first)
    charged = _charged(localstripe, plan)
    assert len(charged) == 1
    assert (attempt.status, attempt.payment_intent_id) == (
        AttemptStatus.PROCESSING,
        charged[0]["id"],
    )
    # when a later pass takes the abandoned attempt over
    later = charge_due_installments(now=at(DUE) + STALE_AFTER * 2, runner="r2")
    # then it asks Stripe about that PaymentIntent and records it: no second charge
    assert later.charged == 1
    assert len(_charged(localstripe, plan)) == 1
    assert len(_intents(localstripe, plan)) == 1
    db.session.refresh(first)
    assert first.status == InstallmentStatus.PAID
    assert invoice_balance(invoice, DUE).balance.minor == 20000


def test_stripes_webhook_about_an_autopay_charge_changes_nothing(stripe_env, localstripe):
    from portal.payments.gateway import GatewayEvent
    from tests.stripe_journeys import deliver

    customer, invoice, plan = _plan(localstripe)
    charge_due_installments(now=at(DUE), runner="r1")
    (intent,) = _charged(localstripe, plan)
    # when Stripe's payment_intent.succeeded arrives (after, or before, the runner's record)
    event = GatewayEvent(f"evt_autopay_{plan.id}", "payment_intent.succeeded", 0, intent)
    # then the inbox leaves it: the runner records these charges, once
    assert deliver(event) == "ignored"
    assert (
        db.session.scalar(select(func.count(Payment.id)).where(Payment.customer_id == customer.id))
        == 1
    )
    assert invoice_balance(invoice, DUE).balance.minor == 20000


# --- refunds of what autopay took ------------------------------------------------------------
def _invoice_balance(invoice):
    from portal.invoices.balances import invoice_balances_for

    (balance,) = [
        b for b in invoice_balances_for(invoice.customer, DUE) if b.invoice.id == invoice.id
    ]
    return balance


def test_a_refunded_installment_is_owed_to_the_plan_again(stripe_env, localstripe):
    from portal.payments.ledger import refund_payment

    # given a plan of 3 x 100.00 whose first installment autopay charged
    customer, invoice, plan = _plan(localstripe)
    charge_due_installments(now=at(DUE), runner="r1")
    (payment,) = db.session.scalars(select(Payment).where(Payment.customer_id == customer.id))
    first = plan.installments[0]
    assert first.status == InstallmentStatus.PAID
    # when a specialist refunds 40.00 of it
    refund_payment(payment, Money(4000, "USD"), actor="staff:1", now=at(DUE, 15))
    # then the plan counts 60.00 received: the installment is due again for 40.00
    db.session.refresh(plan)
    assert (first.status, first.paid_minor, first.paid_at) == (
        InstallmentStatus.SCHEDULED,
        6000,
        None,
    )
    assert [c.paid_minor for c in plan.invoices] == [6000]
    assert plan.state is PlanStatus.ACTIVE
    # and the 40.00 the invoice owes again is planned, not payable outside the plan
    balance = _invoice_balance(invoice)
    assert (balance.balance.minor, balance.planned_minor, balance.payable.minor) == (
        24000,
        24000,
        0,
    )
    event = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "plan.payment_refunded")
    )
    assert event is not None
    assert (event.data["amount_minor"], event.data["installments_reopened"]) == (4000, [1])
    # and the customer may pay those 40.00 by hand; autopay, which charged this
    # installment once, never charges it a second time by itself
    from portal.plans.payments import installment_owed

    assert installment_owed(first) == Money(4000, "USD")
    charge_due_installments(now=at(DUE, 18), runner="r1")
    assert [pi["amount"] for pi in _charged(localstripe, plan)] == [10000]


def test_a_refund_of_a_payment_made_before_the_plan_leaves_the_plan_alone(stripe_env, localstripe):
    from portal.payments.ledger import refund_payment
    from tests.stripe_journeys import pay

    # given an invoice part-paid by card before a plan covered the rest
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(customer, lines=[("Work", "1", "400.00")])
    pay(localstripe, customer, [invoice.number], amount="100.00")
    (before,) = db.session.scalars(select(Payment).where(Payment.customer_id == customer.id))
    plan = make_active_plan(
        customer,
        [invoice],
        [(DUE, "150.00"), (DUE + timedelta(days=31), "150.00")],
        card=save_card(localstripe, customer, "4242424242424242"),
    )
    charge_due_installments(now=at(DUE), runner="r1")
    # when the earlier payment is refunded
    refund_payment(before, None, actor="staff:1", now=at(DUE, 15))
    # then the plan still counts its installment paid; the 100.00 is owed outside it
    db.session.refresh(plan)
    assert plan.installments[0].status == InstallmentStatus.PAID
    assert [c.paid_minor for c in plan.invoices] == [15000]
    balance = _invoice_balance(invoice)
    assert (balance.balance.minor, balance.planned_minor, balance.payable.minor) == (
        25000,
        15000,
        10000,
    )


def test_a_plan_its_credit_notes_settled_completes_instead_of_breaking(stripe_env, localstripe):
    from tests.factories import make_credit

    # given a plan of 3 x 100.00 whose first installment autopay charged
    _customer, invoice, plan = _plan(localstripe)
    charge_due_installments(now=at(DUE), runner="r1")
    # when credit notes cover the 200.00 left, and the second due date passes unpaid
    make_credit(invoice, "150.00")
    make_credit(invoice, "50.00")
    second_due = plan.installments[1].due_date
    assert charge_due_installments(now=at(second_due), runner="r1").charged == 0
    report = break_overdue_plans(now=at(second_due + timedelta(days=30)))
    # then nothing more was charged, and the plan is complete, not broken
    assert report.broken == []
    db.session.refresh(plan)
    assert plan.status == PlanStatus.COMPLETED
    assert [i.status for i in plan.installments] == [
        InstallmentStatus.PAID,
        InstallmentStatus.CANCELLED,
        InstallmentStatus.CANCELLED,
    ]
    assert [pi["amount"] for pi in _charged(localstripe, plan)] == [10000]
    assert invoice_balance(invoice, second_due).balance == Money(0, "USD")
