"""Autopay with real concurrency on PostgreSQL: job runners in threads, committed data,
real row locks (FOR UPDATE SKIP LOCKED) and the attempts' partial unique index.

Like tests/integration/test_payment_races.py, the portal runs against a schema of its
own (`autopay_races`, dropped afterwards), so committed rows never meet the other tests'.
The runners call the job function itself: the jobs runner's lease (one runner per job
kind) is bypassed on purpose, so that only the database's guarantees are under test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.extensions import db
from portal.notifications.models import OutboxMessage
from portal.payments.models import Payment, PaymentAccount
from portal.plans.autopay import (
    AutopayReport,
    break_overdue_plans,
    charge_due_installments,
    remind_upcoming_installments,
)
from portal.plans.models import AttemptStatus, InstallmentAttempt, PaymentPlan, PlanStatus
from tests.autopay_helpers import make_active_plan, save_card
from tests.factories import make_customer, make_invoice
from tests.races import run_together, schema_app
from tests.stripe_journeys import CARD_DECLINED_AT_PAYMENT, CARD_OK

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.postgres_only

SCHEMA = "autopay_races"
ROUNDS = 3
RUNNERS = 3
DUE = date(2026, 12, 10)
NOON = datetime(2026, 12, 10, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def race_app(app: Flask, localstripe) -> Iterator[Flask]:
    with schema_app(app, SCHEMA, localstripe.config()) as race:
        yield race


def _plans(race_app: Flask, localstripe, cards: list[str]) -> list[int]:
    """One customer per card, each with a plan whose first installment is due today."""
    ids = []
    with race_app.app_context():
        for number in cards:
            customer = make_customer(timezone="UTC")
            invoice = make_invoice(customer, lines=[("Work", "1", "200.00")])
            saved = save_card(localstripe, customer, number)
            plan = make_active_plan(
                customer,
                [invoice],
                [(DUE, "100.00"), (DUE + timedelta(days=31), "100.00")],
                card=saved,
                now=NOON - timedelta(days=20),
            )
            ids.append(plan.id)
        db.session.commit()
        db.session.remove()
    return ids


def _at_once(race_app: Flask, work: Callable[[str], Any], runners: int = RUNNERS) -> list[Any]:
    """`work(runner name)` in `runners` threads started together, each in its own app
    context (its own database connection)."""

    def in_context(name: str) -> Callable[[], Any]:
        def run() -> Any:
            with race_app.app_context():
                result = work(name)
                db.session.remove()
                return result

        return run

    results, errors = run_together(
        [in_context(f"runner-{index}") for index in range(runners)], timeout=120
    )
    assert errors == []
    return results


def _intents(race_app: Flask, localstripe, plan_ids: list[int]) -> dict[int, list[Any]]:
    """The PaymentIntents at localstripe of each plan, found by its customer's Stripe
    customer: localstripe keeps the intents of every test module, and plan ids start
    again with each module's schema, so a `portal_plan` id alone may be another's."""
    with race_app.app_context():
        plan_of = dict(
            db.session.execute(
                select(PaymentAccount.stripe_customer_id, PaymentPlan.id)
                .join(PaymentPlan, PaymentPlan.customer_id == PaymentAccount.customer_id)
                .where(PaymentPlan.id.in_(plan_ids))
            ).all()
        )
        db.session.remove()
    found: dict[int, list[Any]] = {plan_id: [] for plan_id in plan_ids}
    for intent in localstripe.payment_intents():
        plan_id = plan_of.get(intent["customer"])
        if plan_id is not None and intent["metadata"].get("portal_plan") == str(plan_id):
            found[plan_id].append(intent)
    return found


def _charged(race_app: Flask, localstripe, plan_ids: list[int]) -> dict[int, list[int]]:
    """Amounts charged at localstripe per plan."""
    return {
        plan_id: [intent["amount"] for intent in intents if intent["status"] == "succeeded"]
        for plan_id, intents in _intents(race_app, localstripe, plan_ids).items()
    }


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_runners_at_once_charge_each_due_installment_exactly_once(race_app, localstripe, round_):
    # given four plans with an installment due today
    plan_ids = _plans(race_app, localstripe, [CARD_OK] * 4)
    # when three runners charge due installments at the same moment, twice over
    reports: list[AutopayReport] = _at_once(
        race_app, lambda name: charge_due_installments(now=NOON, runner=name)
    )
    reports += _at_once(
        race_app, lambda name: charge_due_installments(now=NOON + timedelta(hours=1), runner=name)
    )
    # then each installment was charged once, for its amount, and recorded once
    assert _charged(race_app, localstripe, plan_ids) == {plan_id: [10000] for plan_id in plan_ids}
    assert sum(r.charged for r in reports) == 4
    assert sum(r.errors for r in reports) == 0
    with race_app.app_context():
        plans = db.session.scalars(select(PaymentPlan).where(PaymentPlan.id.in_(plan_ids))).all()
        for plan in plans:
            first = plan.installments[0]
            assert [(a.attempt, a.status) for a in first.attempts] == [(1, AttemptStatus.SUCCEEDED)]
            assert first.paid_minor == 10000
            payments = db.session.scalars(
                select(Payment).where(Payment.customer_id == plan.customer_id)
            ).all()
            assert [(p.amount_minor, p.reference) for p in payments] == [
                (10000, first.attempts[0].payment_intent_id)
            ]
        db.session.remove()


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_runners_at_once_make_one_attempt_of_a_declined_installment(race_app, localstripe, round_):
    # given a plan whose card is declined
    (plan_id,) = _plans(race_app, localstripe, [CARD_DECLINED_AT_PAYMENT])
    # when three runners pass at once, then again an hour later
    _at_once(race_app, lambda name: charge_due_installments(now=NOON, runner=name))
    _at_once(
        race_app, lambda name: charge_due_installments(now=NOON + timedelta(hours=1), runner=name)
    )
    # then one attempt (one PaymentIntent), one email
    assert len(_intents(race_app, localstripe, [plan_id])[plan_id]) == 1
    with race_app.app_context():
        plan = db.session.get(PaymentPlan, plan_id)
        first = plan.installments[0]
        assert [(a.attempt, a.status) for a in first.attempts] == [(1, AttemptStatus.FAILED)]
        assert (
            db.session.scalar(
                select(func.count(OutboxMessage.id)).where(
                    OutboxMessage.customer_id == plan.customer_id,
                    OutboxMessage.kind == "installment_charge_failed",
                )
            )
            == 1
        )
        db.session.remove()


def test_runners_at_once_break_a_plan_once_and_remind_once(race_app, localstripe):
    # given a declined plan past its grace period, and another plan to remind
    (broken_id, reminded_id) = _plans(race_app, localstripe, [CARD_DECLINED_AT_PAYMENT, CARD_OK])
    with race_app.app_context():
        charge_due_installments(now=NOON, runner="first")
        # the second plan's next installment is due in three days
        reminded = db.session.get(PaymentPlan, reminded_id)
        reminded.installments[0].status = "paid"
        reminded.installments[0].paid_minor = 10000
        reminded.installments[0].paid_at = NOON
        db.session.commit()
        second_due = reminded.installments[1].due_date
        db.session.remove()
    later = datetime.combine(second_due - timedelta(days=3), NOON.timetz())

    def jobs(name: str) -> tuple[list[int], int]:
        report = break_overdue_plans(now=later)
        db.session.commit()
        queued = remind_upcoming_installments(now=later)
        db.session.commit()
        return report.broken, queued

    results = _at_once(race_app, jobs)
    # (the module's earlier plans are due then too: count ours, and no plan twice)
    broken = [plan for plans, _queued in results for plan in plans]
    assert broken.count(broken_id) == 1
    assert len(broken) == len(set(broken))
    with race_app.app_context():
        reminders = db.session.scalars(
            select(OutboxMessage.dedupe_key).where(OutboxMessage.kind == "installment_reminder")
        ).all()
        assert sum(queued for _plans_, queued in results) == len(reminders)
        second = db.session.get(PaymentPlan, reminded_id).installments[1]
        assert reminders.count(f"installment_reminder:{second.id}") == 1
        assert db.session.get(PaymentPlan, broken_id).status == PlanStatus.BROKEN
        assert (
            db.session.scalar(
                select(func.count(InstallmentAttempt.id)).where(
                    InstallmentAttempt.status == AttemptStatus.PROCESSING
                )
            )
            == 0
        )
        db.session.remove()
