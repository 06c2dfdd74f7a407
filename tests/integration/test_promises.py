"""Promises to pay: made within policy, reminders paused, kept or broken by the runner."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.extensions import db
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.notifications.services import schedule_collection_emails
from portal.promises.models import TRANSITIONS, NoteKind, PromiseStatus, can_move
from portal.promises.queries import follow_up_queue, open_promises_for
from portal.promises.services import (
    NoteRefused,
    PromiseOverlaps,
    PromiseRefused,
    PromiseTransitionRefused,
    add_note,
    close_follow_up,
    decide_due_promises,
    make_promise,
    move_promise,
)
from tests.factories import make_customer, make_invoice, make_payment

pytestmark = pytest.mark.usefixtures("request_context")
pytest_plugins = ["tests.stripe_server"]

# 15:00 UTC is 11:00 in New York: inside the email window, same date there and in UTC.
MADE = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
SPECIALIST = Actor("staff", "7")


def _overdue_invoices(customer):
    a = make_invoice(
        customer,
        number=f"P-A-{customer.id}",
        issue_date=date(2026, 9, 1),
        lines=[("A", "1", "80.00")],
    )
    b = make_invoice(
        customer,
        number=f"P-B-{customer.id}",
        issue_date=date(2026, 9, 5),
        lines=[("B", "1", "40.00")],
    )
    return a, b


def _promise(customer, invoices, amount="100.00", by=date(2026, 11, 9), now=MADE, source="staff"):
    return make_promise(
        customer,
        invoice_numbers=[i.number for i in invoices],
        amount=Money.from_decimal(amount, "USD"),
        promised_on=by,
        actor=SPECIALIST,
        now=now,
        source=source,
    )


@pytest.mark.parametrize("current", list(PromiseStatus))
@pytest.mark.parametrize("to", list(PromiseStatus))
def test_every_status_pair_follows_the_transitions_table(db_session, current, to):
    customer = make_customer(timezone="America/New_York")
    a, b = _overdue_invoices(customer)
    promise = _promise(customer, [a, b])
    promise.status, promise.resolved_at = current, None if current == "open" else MADE
    db.session.flush()
    if to in TRANSITIONS[current]:
        move_promise(promise, to, actor=SPECIALIST, now=MADE)
        assert promise.status == to
        assert can_move(current, to)
    else:
        with pytest.raises(PromiseTransitionRefused):
            move_promise(promise, to, actor=SPECIALIST, now=MADE)
        assert promise.status == current


def test_a_promise_records_its_terms_and_an_audit_row(db_session):
    customer = make_customer(timezone="America/New_York")
    a, b = _overdue_invoices(customer)
    promise = _promise(customer, [a, b], amount="120.00")
    assert (promise.amount, promise.made_on, promise.promised_on) == (
        Money(12000, "USD"),
        date(2026, 11, 2),
        date(2026, 11, 9),
    )
    assert [p.id for p in open_promises_for(customer)] == [promise.id]
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "promise.made"))
    assert (audit.actor, audit.data["amount_minor"]) == ("staff:7", 12000)


@pytest.mark.parametrize(
    ("amount", "by", "source", "message"),
    [
        ("120.01", date(2026, 11, 9), "staff", "more than these invoices still owe"),
        ("0", date(2026, 11, 9), "staff", "more than zero"),
        ("10.00", date(2026, 11, 1), "staff", "cannot be in the past"),
        ("10.00", date(2026, 11, 17), "customer", "at most 14 days ahead"),
    ],
)
def test_a_promise_outside_policy_is_refused_and_nothing_is_written(
    db_session, amount, by, source, message
):
    customer = make_customer(timezone="America/New_York")
    a, b = _overdue_invoices(customer)
    with pytest.raises(PromiseRefused, match=message):
        _promise(customer, [a, b], amount=amount, by=by, source=source)
    assert open_promises_for(customer) == []


def test_a_customer_may_promise_up_to_fourteen_days_ahead(db_session):
    customer = make_customer(timezone="America/New_York")
    a, _ = _overdue_invoices(customer)
    promise = _promise(customer, [a], amount="80.00", by=date(2026, 11, 16), source="customer")
    assert promise.source == "customer"


def test_another_customers_invoice_cannot_be_promised(db_session):
    customer, other = make_customer(), make_customer()
    _, foreign = _overdue_invoices(other)
    with pytest.raises(PromiseRefused):
        _promise(customer, [foreign], amount="10.00")


def test_two_open_promises_cannot_cover_the_same_invoice(db_session):
    customer = make_customer(timezone="America/New_York")
    a, b = _overdue_invoices(customer)
    _promise(customer, [a], amount="10.00")
    with pytest.raises(PromiseOverlaps):
        _promise(customer, [a, b], amount="10.00")


def test_an_empty_note_is_refused_and_a_call_is_written(db_session):
    customer = make_customer()
    with pytest.raises(NoteRefused):
        add_note(customer, kind=NoteKind.CALL, body="   ", actor=SPECIALIST, now=MADE)
    note = add_note(
        customer, kind=NoteKind.CALL, body=" Will pay Friday ", actor=SPECIALIST, now=MADE
    )
    assert (note.body, note.author) == ("Will pay Friday", "staff:7")


def _decide(day):
    with time_machine.travel(day, tick=False):
        report = decide_due_promises(now=day)
        db.session.flush()
    return report


def test_a_promise_paid_in_full_by_its_date_is_kept(db_session):
    # given a promise of 100.00 by Nov 9 over two invoices
    customer = make_customer(timezone="America/New_York")
    a, b = _overdue_invoices(customer)
    promise = _promise(customer, [a, b], amount="100.00")
    # when 80.00 and 20.00 arrive by the date (the second on the date itself)
    make_payment(customer, [(a, "80.00")], paid_on=date(2026, 11, 4))
    make_payment(customer, [(b, "20.00")], paid_on=date(2026, 11, 9))
    # then it stays open on its date, and is kept the day after
    assert _decide(datetime(2026, 11, 9, 20, 0, tzinfo=UTC)).kept == 0
    report = _decide(datetime(2026, 11, 10, 15, 0, tzinfo=UTC))
    assert (report.kept, report.broken) == (1, 0)
    assert (promise.status, promise.paid) == (PromiseStatus.KEPT, Money(10000, "USD"))
    assert follow_up_queue() == []


def test_a_promise_paid_in_part_is_broken_with_what_was_paid(db_session):
    customer = make_customer(timezone="America/New_York")
    a, b = _overdue_invoices(customer)
    promise = _promise(customer, [a, b], amount="100.00")
    make_payment(customer, [(a, "60.00")], paid_on=date(2026, 11, 5))
    make_payment(customer, [(b, "39.99")], paid_on=date(2026, 11, 10))  # a day late
    report = _decide(datetime(2026, 11, 10, 15, 0, tzinfo=UTC))
    assert (report.kept, report.broken) == (0, 1)
    assert (promise.status, promise.paid) == (PromiseStatus.BROKEN, Money(6000, "USD"))
    [email] = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "promise_broken")
    ).all()
    assert "We have not received $40.00 of it" in email.body_text
    assert email.link_purpose == "promise_broken"
    assert [p.id for p in follow_up_queue()] == [promise.id]


def test_a_promise_with_no_payment_is_broken_and_reminders_resume(db_session):
    # given an overdue invoice with a promise to pay it by Nov 9
    customer = make_customer(timezone="America/New_York")
    a, _ = _overdue_invoices(customer)
    promise = _promise(customer, [a], amount="80.00")
    # while the promise is open, no reminder is queued for the invoice
    schedule_collection_emails(now=MADE)
    reminders = select(OutboxMessage).where(OutboxMessage.invoice_id == a.id)
    assert db.session.scalars(reminders).all() == []
    # when the day after its date comes without payment
    day_after = datetime(2026, 11, 10, 15, 0, tzinfo=UTC)
    assert _decide(day_after).broken == 1
    assert (promise.status, promise.paid) == (PromiseStatus.BROKEN, Money(0, "USD"))
    # then the invoice is dunned again that day
    schedule_collection_emails(now=day_after)
    assert [m.kind for m in db.session.scalars(reminders)] == ["reminder_overdue"]
    # and a specialist can take it off the follow-up queue, once
    close_follow_up(promise, actor=SPECIALIST, now=day_after)
    assert follow_up_queue() == []
    with pytest.raises(PromiseTransitionRefused):
        close_follow_up(promise, actor=SPECIALIST, now=day_after)


def test_a_refund_of_a_covering_payment_by_the_date_counts_against_it(db_session):
    from portal.payments.models import Refund, RefundAllocation

    customer = make_customer(timezone="America/New_York")
    a, _ = _overdue_invoices(customer)
    promise = _promise(customer, [a], amount="80.00")
    payment = make_payment(customer, [(a, "80.00")], paid_on=date(2026, 11, 3))
    db.session.add(
        Refund(
            payment_id=payment.id,
            reference="re_test_1",
            amount_minor=1000,
            currency="USD",
            refunded_on=date(2026, 11, 8),
            actor="staff:7",
            allocations=[RefundAllocation(invoice_id=a.id, amount_minor=1000)],
        )
    )
    db.session.flush()
    _decide(datetime(2026, 11, 10, 15, 0, tzinfo=UTC))
    assert (promise.status, promise.paid) == (PromiseStatus.BROKEN, Money(7000, "USD"))


def test_the_date_is_the_customers_own(db_session):
    # 03:00 UTC on Nov 10 is still Nov 9 in New York: not yet decided
    customer = make_customer(timezone="America/New_York")
    a, _ = _overdue_invoices(customer)
    promise = _promise(customer, [a], amount="80.00")
    _decide(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
    assert promise.status == PromiseStatus.OPEN
    # 05:30 UTC is Nov 10 in New York: decided
    _decide(datetime(2026, 11, 10, 5, 30, tzinfo=UTC))
    assert promise.status == PromiseStatus.BROKEN
