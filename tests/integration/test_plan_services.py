"""Plan services: within policy active at once, outside pending for review, every
status x action, money received on installments, broken plans cooling off (issue 13)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.extensions import db
from portal.invoices.balances import invoice_balance
from portal.money import CurrencyMismatch, Money
from portal.notifications.models import OutboxMessage
from portal.plans.models import (
    PLAN_TRANSITIONS,
    AttemptStatus,
    InstallmentAttempt,
    InstallmentStatus,
    PaymentPlan,
    PlanInstallment,
    PlanInvoice,
    PlanStatus,
    can_move,
)
from portal.plans.policy import Limit, default_policy
from portal.plans.queries import (
    current_policy_version,
    get_plan_for,
    open_request_count,
    plan_requests,
    policy_for,
)
from portal.plans.schedule import Frequency
from portal.plans.services import (
    PlanCoolingOff,
    PlanRefused,
    PlanTransitionRefused,
    PolicyRefused,
    accept_counter_offer,
    approve_plan,
    break_plan,
    cancel_plan,
    complete_plan,
    counter_offer,
    decline_counter_offer,
    decline_plan,
    plan_allocation,
    propose_plan,
    record_installment_payment,
    save_policy,
    self_service_refused_until,
)
from tests.factories import make_customer, make_invoice, make_payment

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
TODAY = date(2026, 11, 30)
STAFF = Actor.staff(1)


def usd(text: str) -> Money:
    return Money.from_decimal(text, "USD")


@pytest.fixture
def customer(db_session):
    return make_customer(timezone="UTC")


@pytest.fixture
def invoices(customer):
    return [
        make_invoice(customer, lines=[("Services", "1", "600.00")], number="PL-1"),
        make_invoice(customer, lines=[("Goods", "1", "400.00")], number="PL-2"),
    ]


def propose(customer, invoices, **changes):
    """1,000.00 as 100.00 down and 6 monthly payments of 150.00 from 30 Dec: in policy."""
    args = {
        "down_payment": usd("100.00"),
        "frequency": Frequency.MONTHLY,
        "installments": 6,
        "first_payment_date": date(2026, 12, 30),
        "reason": "",
        "autopay": False,
    }
    args.update(changes)
    return propose_plan(
        customer,
        [i.number for i in invoices],
        actor=Actor.customer(customer),
        now=NOW,
        **args,
    )


def outside(customer, invoices):
    """12 monthly payments: over the limit of 6; sent for review."""
    return propose(customer, invoices, installments=12, reason="Hardship: lost my job")


def emails(kind):
    return db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)).all()


def actions(plan_id):
    return db.session.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.subject_type == "payment_plans", AuditEvent.subject_id == plan_id)
        .order_by(AuditEvent.id)
    ).all()


# --- within policy ------------------------------------------------------------------------
def test_a_plan_within_policy_is_active_at_once_with_its_schedule(customer, invoices):
    plan = propose(customer, invoices)

    assert plan.state is PlanStatus.ACTIVE
    assert plan.activated_on == TODAY
    assert plan.policy_version_id == current_policy_version("standard").id
    assert plan.breaches == []
    numbers = [(i.number, i.due_date, i.amount_minor) for i in plan.installments]
    assert numbers == [
        (0, TODAY, 10_000),  # the down payment, due today
        (1, date(2026, 12, 30), 15_000),
        (2, date(2027, 1, 30), 15_000),
        (3, date(2027, 2, 28), 15_000),
        (4, date(2027, 3, 30), 15_000),
        (5, date(2027, 4, 30), 15_000),
        (6, date(2027, 5, 30), 15_000),
    ]
    assert sum(i.amount_minor for i in plan.installments) == plan.total_minor == 100_000
    assert actions(plan.id) == ["plan.proposed", "plan.activated"]
    assert [m.customer_id for m in emails("plan_activated")] == [customer.id]


def test_active_plan_takes_its_invoices_out_of_what_is_payable(customer, invoices):
    propose(customer, invoices)
    for invoice in invoices:
        balance = invoice_balance(invoice, TODAY)
        assert balance.planned == invoice.total
        assert balance.payable == usd("0")


def test_money_received_pays_installments_in_order_and_the_invoices(customer, invoices):
    plan = propose(customer, invoices)
    payment = make_payment(customer, [(invoices[0], "175.00")], reference="pi_plan_1")

    left = record_installment_payment(plan, payment, actor=Actor.system(), now=NOW)

    assert left == usd("0")
    assert [(i.number, i.paid_minor, i.status) for i in plan.installments[:3]] == [
        (0, 10_000, InstallmentStatus.PAID),
        (1, 7_500, InstallmentStatus.SCHEDULED),
        (2, 0, InstallmentStatus.SCHEDULED),
    ]
    first = invoice_balance(invoices[0], TODAY)
    assert first.paid == usd("175.00")
    assert first.planned == usd("425.00")  # 600.00 covered, 175.00 paid through the plan
    assert first.payable == usd("0")
    assert "plan.payment_recorded" in actions(plan.id)


def test_paying_everything_completes_the_plan_and_returns_the_excess(customer, invoices):
    plan = propose(customer, invoices)
    left = record_installment_payment(plan, usd("1000.50"), actor=Actor.system(), now=NOW)
    assert left == usd("0.50")
    assert plan.state is PlanStatus.COMPLETED
    assert all(i.status == InstallmentStatus.PAID for i in plan.installments)
    assert [c.paid_minor for c in plan.invoices] == [60_000, 40_000]
    assert actions(plan.id)[-1] == "plan.completed"


def test_money_in_another_currency_is_refused(customer, invoices):
    plan = propose(customer, invoices)
    with pytest.raises(CurrencyMismatch):
        record_installment_payment(plan, Money(100, "EUR"), actor=Actor.system(), now=NOW)


def test_money_for_a_plan_that_is_not_active_is_not_recorded(customer, invoices):
    plan = outside(customer, invoices)
    assert record_installment_payment(plan, usd("10.00"), actor=STAFF, now=NOW) == usd("10.00")


def test_plan_allocation_goes_oldest_due_first(customer, invoices):
    plan = propose(customer, invoices)
    parts = plan_allocation(plan, usd("700.00"))
    assert [(invoice.number, amount) for invoice, amount in parts] == [
        ("PL-1", usd("600.00")),
        ("PL-2", usd("100.00")),
    ]


# --- outside policy -----------------------------------------------------------------------
def test_a_plan_outside_policy_waits_for_review_with_its_breaches(customer, invoices):
    plan = outside(customer, invoices)

    assert plan.state is PlanStatus.PENDING
    assert [b["limit"] for b in plan.breaches] == [Limit.INSTALLMENTS, Limit.DURATION]
    assert plan.breaches[0]["message"] == "12 installments is over the limit of 6."
    assert plan.installments == []
    assert plan.reason == "Hardship: lost my job"
    assert plan_requests() == [plan]
    assert open_request_count() == 1
    assert actions(plan.id) == ["plan.requested"]
    # Not agreed yet: the invoices stay payable.
    assert invoice_balance(invoices[0], TODAY).payable == usd("600.00")


def test_a_plan_outside_policy_needs_a_reason(customer, invoices):
    with pytest.raises(PlanRefused, match="Tell us why"):
        propose(customer, invoices, installments=12)
    assert db.session.scalar(select(sa.func.count(PaymentPlan.id))) == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"down_payment": usd("1000.00")}, "below the total"),
        ({"down_payment": Money(100, "EUR")}, "must be in USD"),
        ({"first_payment_date": TODAY}, "after today"),
        ({"installments": 0}, "below the total"),
        ({"frequency": "daily"}, "how often"),
        ({"reason": "x" * 2001}, "under 2000"),
    ],
)
def test_impossible_terms_are_refused_and_nothing_written(customer, invoices, changes, message):
    with pytest.raises(PlanRefused, match=message):
        propose(customer, invoices, **changes)
    assert db.session.scalar(select(sa.func.count(PaymentPlan.id))) == 0


def test_invoices_that_cannot_be_planned_are_refused(customer, invoices):
    stranger = make_customer()
    theirs = make_invoice(stranger, number="PL-THEIRS")
    paid = make_invoice(customer, number="PL-PAID")
    make_payment(customer, [(paid, "100.00")])
    for chosen, message in (
        ([theirs], "nothing left"),
        ([paid], "nothing left"),
        ([], "at least one"),
        ([invoices[0], invoices[0]], "each invoice once"),
    ):
        with pytest.raises(PlanRefused, match=message):
            propose(customer, chosen)


def test_an_invoice_is_in_one_open_plan_at_most(customer, invoices):
    outside(customer, invoices)
    with pytest.raises(PlanRefused, match="already in a payment plan"):
        propose(customer, invoices[:1])


# --- staff answers ------------------------------------------------------------------------
def test_approving_a_request_activates_it_under_the_current_policy(customer, invoices):
    plan = outside(customer, invoices)
    approve_plan(plan, actor=STAFF, now=NOW)
    assert plan.state is PlanStatus.ACTIVE
    assert plan.decided_by == "staff:1"
    assert len(plan.installments) == 13  # the down payment and 12 installments
    assert sum(i.amount_minor for i in plan.installments) == plan.total_minor
    assert actions(plan.id) == ["plan.requested", "plan.approved"]
    assert len(emails("plan_approved")) == 1
    assert open_request_count() == 0


def test_approval_is_refused_when_the_invoices_changed(customer, invoices):
    plan = outside(customer, invoices)
    make_payment(customer, [(invoices[1], "50.00")])
    with pytest.raises(PlanRefused, match="PL-2 has changed"):
        approve_plan(plan, actor=STAFF, now=NOW)
    assert plan.state is PlanStatus.PENDING


def test_approval_is_refused_once_the_first_date_has_passed(customer, invoices):
    plan = outside(customer, invoices)
    with pytest.raises(PlanRefused, match="first payment date has passed"):
        approve_plan(plan, actor=STAFF, now=NOW + timedelta(days=31))


def test_a_counter_offer_keeps_the_proposal_and_is_accepted(customer, invoices):
    plan = outside(customer, invoices)
    counter_offer(
        plan,
        down_payment=usd("200.00"),
        frequency=Frequency.BIWEEKLY,
        installments=8,
        first_payment_date=date(2026, 12, 14),
        note="We can do 8 payments every two weeks.",
        actor=STAFF,
        now=NOW,
    )
    assert plan.state is PlanStatus.COUNTERED
    assert plan.proposed_terms["installments"] == 12
    assert plan.proposed_terms["frequency"] == "monthly"
    assert (plan.installment_count, plan.frequency) == (8, "biweekly")
    [email] = emails("plan_countered")
    assert email.link_target == f"/plans/{plan.id}"  # accept or decline on the plan's page

    accept_counter_offer(plan, actor=Actor.customer(customer), now=NOW)

    assert plan.state is PlanStatus.ACTIVE
    assert [i.amount_minor for i in plan.installments] == [20_000] + [10_000] * 8
    assert plan.installments[-1].due_date == date(2026, 12, 14) + timedelta(days=14 * 7)
    assert actions(plan.id)[-2:] == ["plan.countered", "plan.counter_accepted"]


def test_a_declined_counter_offer_releases_the_invoices(customer, invoices):
    plan = outside(customer, invoices)
    counter_offer(
        plan,
        down_payment=usd("100.00"),
        frequency=Frequency.MONTHLY,
        installments=6,
        first_payment_date=date(2026, 12, 30),
        actor=STAFF,
        now=NOW,
    )
    decline_counter_offer(plan, actor=Actor.customer(customer), now=NOW)
    assert plan.state is PlanStatus.DECLINED
    assert all(c.open_invoice_id is None for c in plan.invoices)
    assert propose(customer, invoices).state is PlanStatus.ACTIVE  # free to plan again


def test_a_counter_offer_with_impossible_terms_is_refused(customer, invoices):
    plan = outside(customer, invoices)
    with pytest.raises(PlanRefused):
        counter_offer(
            plan,
            down_payment=usd("1000.00"),
            frequency=Frequency.MONTHLY,
            installments=3,
            first_payment_date=date(2026, 12, 30),
            actor=STAFF,
            now=NOW,
        )
    assert plan.state is PlanStatus.PENDING


def test_declining_needs_a_reason_and_emails_it(customer, invoices):
    plan = outside(customer, invoices)
    with pytest.raises(PlanRefused, match="reason"):
        decline_plan(plan, "  ", actor=STAFF, now=NOW)
    decline_plan(plan, "Your balance is too recent for a plan.", actor=STAFF, now=NOW)
    assert plan.state is PlanStatus.DECLINED
    assert plan.decision_reason == "Your balance is too recent for a plan."
    [email] = emails("plan_declined")
    assert "Your balance is too recent for a plan." in email.body_text


# --- ending -------------------------------------------------------------------------------
def test_cancelling_an_active_plan_makes_the_rest_payable_again(customer, invoices):
    plan = propose(customer, invoices)
    record_installment_payment(plan, usd("100.00"), actor=Actor.system(), now=NOW)
    cancel_plan(plan, actor=STAFF, now=NOW, reason="customer asked")
    assert plan.state is PlanStatus.CANCELLED
    assert [i.status for i in plan.installments[:2]] == ["paid", "cancelled"]
    assert invoice_balance(invoices[0], TODAY).payable == usd("600.00")


def test_a_plan_with_a_charge_in_flight_cannot_be_cancelled(customer, invoices):
    plan = propose(customer, invoices)
    db.session.add(
        InstallmentAttempt(
            installment_id=plan.installments[1].id,
            attempt=1,
            idempotency_key="plan-x-1",
            status=AttemptStatus.PROCESSING,
            amount_minor=15_000,
            currency="USD",
        )
    )
    db.session.flush()
    with pytest.raises(PlanTransitionRefused, match="being processed"):
        cancel_plan(plan, actor=STAFF, now=NOW)


def test_a_broken_plan_makes_the_rest_due_and_cools_off_self_service(customer, invoices):
    plan = propose(customer, invoices)
    later = NOW + timedelta(days=40)
    break_plan(plan, actor=Actor.system(), now=later, reason="installment 1 unpaid")

    assert plan.state is PlanStatus.BROKEN
    assert plan.cooling_off_until == later.date() + timedelta(days=90)
    assert all(i.status == InstallmentStatus.CANCELLED for i in plan.installments)
    assert invoice_balance(invoices[0], later.date()).payable == usd("600.00")
    [email] = emails("plan_broken")
    assert "$1,000.00" in email.body_text
    assert self_service_refused_until(customer, later.date()) == plan.cooling_off_until
    assert self_service_refused_until(customer, plan.cooling_off_until) is None
    with pytest.raises(PlanCoolingOff):
        propose_plan(
            customer,
            ["PL-1"],
            usd("60.00"),
            Frequency.MONTHLY,
            3,
            later.date() + timedelta(days=10),
            "",
            False,
            actor=Actor.customer(customer),
            now=later,
        )


def test_break_without_email_for_a_caller_that_sends_its_own(customer, invoices):
    plan = propose(customer, invoices)
    break_plan(plan, actor=Actor.system(), now=NOW, notify_customer=False)
    assert emails("plan_broken") == []


# --- every status x action ------------------------------------------------------------------
def _plan_in(status, customer, invoices):
    if status is PlanStatus.ACTIVE:
        return propose(customer, invoices)
    plan = outside(customer, invoices)
    match status:
        case PlanStatus.COUNTERED:
            counter_offer(
                plan,
                down_payment=usd("100.00"),
                frequency=Frequency.MONTHLY,
                installments=6,
                first_payment_date=date(2026, 12, 30),
                actor=STAFF,
                now=NOW,
            )
        case PlanStatus.COMPLETED:
            approve_plan(plan, actor=STAFF, now=NOW)
            record_installment_payment(plan, plan.total, actor=STAFF, now=NOW)
        case PlanStatus.BROKEN:
            approve_plan(plan, actor=STAFF, now=NOW)
            break_plan(plan, actor=STAFF, now=NOW)
        case PlanStatus.CANCELLED:
            cancel_plan(plan, actor=STAFF, now=NOW)
        case PlanStatus.DECLINED:
            decline_plan(plan, "no", actor=STAFF, now=NOW)
    assert plan.state is status
    return plan


ACTIONS = {
    "approve": (lambda p: approve_plan(p, actor=STAFF, now=NOW), {PlanStatus.PENDING}),
    "counter": (
        lambda p: counter_offer(
            p,
            down_payment=usd("100.00"),
            frequency=Frequency.WEEKLY,
            installments=4,
            first_payment_date=date(2026, 12, 7),
            actor=STAFF,
            now=NOW,
        ),
        {PlanStatus.PENDING, PlanStatus.COUNTERED},
    ),
    "accept_counter": (
        lambda p: accept_counter_offer(p, actor=STAFF, now=NOW),
        {PlanStatus.COUNTERED},
    ),
    "decline_counter": (
        lambda p: decline_counter_offer(p, actor=STAFF, now=NOW),
        {PlanStatus.COUNTERED},
    ),
    "decline": (
        lambda p: decline_plan(p, "reason", actor=STAFF, now=NOW),
        {PlanStatus.PENDING, PlanStatus.COUNTERED},
    ),
    "cancel": (
        lambda p: cancel_plan(p, actor=STAFF, now=NOW),
        {PlanStatus.PENDING, PlanStatus.COUNTERED, PlanStatus.ACTIVE},
    ),
    # An active plan completes only when paid in full (tested above).
    "complete": (lambda p: complete_plan(p, actor=STAFF, now=NOW), set()),
    "break": (lambda p: break_plan(p, actor=STAFF, now=NOW), {PlanStatus.ACTIVE}),
}


@pytest.mark.parametrize("status", list(PlanStatus))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_status_and_action(customer, invoices, status, action):
    plan = _plan_in(status, customer, invoices)
    run, allowed_from = ACTIONS[action]
    before = len(actions(plan.id))
    if status in allowed_from:
        run(plan)
        assert plan.state is not status or action == "counter"
        assert len(actions(plan.id)) == before + 1
    else:
        with pytest.raises(PlanTransitionRefused):
            run(plan)
        assert plan.state is status
        assert len(actions(plan.id)) == before


@pytest.mark.parametrize("current", list(PlanStatus))
@pytest.mark.parametrize("target", list(PlanStatus))
def test_transition_table_is_explicit(current, target):
    assert can_move(current, target) == (target in PLAN_TRANSITIONS[current])
    if current in (
        PlanStatus.COMPLETED,
        PlanStatus.BROKEN,
        PlanStatus.CANCELLED,
        PlanStatus.DECLINED,
    ):
        assert not can_move(current, target)


# --- policies -----------------------------------------------------------------------------
def test_a_policy_change_is_a_new_version_and_agreed_plans_keep_theirs(customer, invoices):
    plan = propose(customer, invoices)
    first = plan.policy_version
    stricter = default_policy("standard").__class__(segment="standard", max_installments=3)
    saved = save_policy(stricter, actor=STAFF, now=NOW)
    assert saved.version == first.version + 1
    assert policy_for(customer).max_installments == 3
    db.session.refresh(plan)
    assert plan.policy_version_id == first.id
    assert db.session.scalar(
        select(AuditEvent.action).where(AuditEvent.action == "plan_policy.saved")
    )


def test_a_segment_without_a_policy_follows_standard(db_session):
    vip = make_customer(segment="vip")
    assert policy_for(vip).max_installments == policy_for_standard()


def policy_for_standard():
    return current_policy_version("standard").policy.max_installments


def test_an_unusable_policy_is_refused(db_session):
    with pytest.raises(PolicyRefused) as refused:
        save_policy(
            default_policy("standard").__class__(segment="standard", max_installments=0),
            actor=STAFF,
            now=NOW,
        )
    assert refused.value.problems


# --- reads --------------------------------------------------------------------------------
def test_someone_elses_plan_is_not_found(customer, invoices):
    plan = propose(customer, invoices)
    assert get_plan_for(customer, plan.id) is plan
    assert get_plan_for(make_customer(), plan.id) is None


# --- the database guards --------------------------------------------------------------------
def add_and_flush(row):
    db.session.add(row)
    db.session.flush()


def test_database_refuses_two_installments_with_one_number(customer, invoices):
    plan = propose(customer, invoices)
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        add_and_flush(PlanInstallment(plan_id=plan.id, number=1, due_date=TODAY, amount_minor=1))


def test_database_refuses_installments_above_the_total(customer, invoices):
    plan = propose(customer, invoices)
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        db.session.execute(
            sa.text("UPDATE plan_installments SET amount_minor = amount_minor + 1 WHERE id = :id"),
            {"id": plan.installments[1].id},
        )


def test_database_refuses_a_second_charge_of_an_installment(customer, invoices):
    plan = propose(customer, invoices)
    installment = plan.installments[1]
    db.session.add(
        InstallmentAttempt(
            installment_id=installment.id,
            attempt=1,
            idempotency_key="inst-1-1",
            status=AttemptStatus.SUCCEEDED,
            amount_minor=15_000,
            currency="USD",
        )
    )
    db.session.flush()
    second = InstallmentAttempt(
        installment_id=installment.id,
        attempt=2,
        idempotency_key="inst-1-2",
        status=AttemptStatus.PROCESSING,
        amount_minor=15_000,
        currency="USD",
    )
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        add_and_flush(second)
    # A failed attempt does not hold the installment.
    db.session.add(
        InstallmentAttempt(
            installment_id=installment.id,
            attempt=3,
            idempotency_key="inst-1-3",
            status=AttemptStatus.FAILED,
            amount_minor=15_000,
            currency="USD",
        )
    )
    db.session.flush()


def test_database_refuses_a_change_of_total(customer, invoices):
    plan = propose(customer, invoices)
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        db.session.execute(
            sa.text("UPDATE payment_plans SET total_minor = 1 WHERE id = :id"), {"id": plan.id}
        )


def test_database_refuses_an_invoice_in_two_open_plans(customer, invoices):
    plan = outside(customer, invoices)
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        db.session.execute(
            sa.text(
                "INSERT INTO plan_invoices (plan_id, invoice_id, amount_minor, paid_minor,"
                " open_invoice_id) SELECT id, :inv, 1, 0, :inv FROM payment_plans WHERE id = :p"
            ),
            {"inv": invoices[0].id, "p": plan.id},
        )


# --- the staff timeline ---------------------------------------------------------------------
def test_plan_events_join_the_customer_timeline(customer, invoices):
    from portal.desk.timeline import timeline_for

    plan = outside(customer, invoices)
    decline_plan(plan, "Too recent", actor=STAFF, now=NOW + timedelta(hours=1))

    entries = [e for e in timeline_for(customer.id).entries if e.kind == "plan"]

    assert [(e.status, e.status_label, e.reference, e.amount, e.detail) for e in entries] == [
        ("plan.declined", "Declined", "staff:1", usd("1000.00"), "Too recent"),
        (
            "plan.requested",
            "Requested (outside policy)",
            f"customer:{customer.id}",
            usd("1000.00"),
            "Hardship: lost my job",
        ),
    ]
    assert entries[0].label == "Payment plan"


# --- review-plans: a plan changed by another request after this one loaded it -------------
def _changed_elsewhere(plan, status):
    """Another request's committed change that this session's loaded `plan` does not see
    (as when a customer withdraws while a specialist's page is open): a Core UPDATE."""
    db.session.flush()
    db.session.execute(
        sa.update(PaymentPlan)
        .where(PaymentPlan.id == plan.id)
        .values(status=status, ended_at=NOW, end_reason="elsewhere"),
        execution_options={"synchronize_session": False},
    )
    db.session.execute(
        sa.update(PlanInvoice).where(PlanInvoice.plan_id == plan.id).values(open_invoice_id=None),
        execution_options={"synchronize_session": False},
    )
    assert plan.status != status  # the loaded object is stale


@pytest.mark.parametrize(
    ("start", "elsewhere", "call"),
    [
        ("pending", "cancelled", lambda plan: approve_plan(plan, actor=STAFF, now=NOW)),
        ("pending", "cancelled", lambda plan: decline_plan(plan, "No", actor=STAFF, now=NOW)),
        (
            "countered",
            "declined",
            lambda plan: accept_counter_offer(plan, actor=Actor.customer(plan.customer), now=NOW),
        ),
        (
            "countered",
            "cancelled",
            lambda plan: counter_offer(
                plan,
                down_payment=usd("200.00"),
                frequency=Frequency.MONTHLY,
                installments=6,
                first_payment_date=date(2026, 12, 30),
                actor=STAFF,
                now=NOW,
            ),
        ),
    ],
    ids=["approve-withdrawn", "decline-withdrawn", "accept-declined", "counter-withdrawn"],
)
def test_a_decision_reads_the_plan_again_under_the_lock(customer, invoices, start, elsewhere, call):
    plan = outside(customer, invoices)
    if start == "countered":
        counter_offer(
            plan,
            down_payment=usd("200.00"),
            frequency=Frequency.MONTHLY,
            installments=8,
            first_payment_date=date(2026, 12, 30),
            actor=STAFF,
            now=NOW,
        )
    _changed_elsewhere(plan, elsewhere)
    with pytest.raises(PlanTransitionRefused):
        call(plan)
    stored = db.session.scalar(
        select(PaymentPlan.status)
        .where(PaymentPlan.id == plan.id)
        .execution_options(populate_existing=True)
    )
    assert stored == elsewhere
    assert not db.session.scalars(
        select(PlanInstallment).where(PlanInstallment.plan_id == plan.id)
    ).all()
