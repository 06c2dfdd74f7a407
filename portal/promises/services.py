"""The only code that writes notes and moves promises; each change leaves an audit row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from flask import current_app
from flask_babel import lazy_gettext as _l

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.errors import DomainError
from portal.extensions import db
from portal.invoices.queries import invoice_balances_for
from portal.money import Money
from portal.notifications.models import EmailCategory
from portal.promises.models import (
    CustomerNote,
    NoteKind,
    Promise,
    PromiseInvoice,
    PromiseStatus,
    can_move,
)
from portal.promises.policy import (
    PROMISE_MAX_DAYS,
    STAFF_PROMISE_MAX_DAYS,
    PromiseProblem,
    PromiseTerms,
    is_due_for_decision,
    is_kept,
    promise_problem,
)
from portal.promises.queries import covered_amounts, open_promises_due, paused_invoice_ids

NOTE_MAX_LENGTH = 4000


class NoteRefused(DomainError):
    message = _l("Write the note before saving it (at most 4000 characters).")


class PromiseRefused(DomainError):
    """The terms break a rule of `policy.promise_problem`: `message` says which to the
    customer, `problem` to the view that puts it beside a field (None: an overlap)."""

    def __init__(self, message: str | None = None, problem: PromiseProblem | None = None) -> None:
        super().__init__(message)
        self.problem = problem


class PromiseOverlaps(PromiseRefused):
    message = _l("An open promise already covers one of these invoices.")


class PromiseTransitionRefused(DomainError):
    message = _l("This promise has already been decided.")


PROBLEM_MESSAGES = {
    PromiseProblem.DATE_PAST: _l("The date of a promise cannot be in the past."),
    PromiseProblem.DATE_TOO_FAR: _l("A promise can be at most %(days)s days ahead."),
    PromiseProblem.AMOUNT_NOT_POSITIVE: _l("The amount must be more than zero."),
    PromiseProblem.AMOUNT_TOO_LARGE: _l("The amount is more than these invoices still owe."),
    PromiseProblem.NO_INVOICES: _l("Choose at least one invoice that is still open."),
}


def promise_max_days(source: str) -> int:
    """How many days ahead a promise may be, for a customer (config PROMISE_MAX_DAYS) or
    a specialist (STAFF_PROMISE_MAX_DAYS)."""
    if source == "customer":
        return int(current_app.config.get("PROMISE_MAX_DAYS", PROMISE_MAX_DAYS))
    return STAFF_PROMISE_MAX_DAYS


# --- notes ------------------------------------------------------------------------------
def add_note(
    customer: Customer, *, kind: NoteKind, body: str, actor: Actor, now: datetime
) -> CustomerNote:
    """Write down a call or a note on the account. NoteRefused if empty or too long."""
    body = body.strip()
    if not body or len(body) > NOTE_MAX_LENGTH:
        raise NoteRefused()
    note = CustomerNote(
        customer_id=customer.id, kind=kind, body=body, author=str(actor), created_at=now
    )
    db.session.add(note)
    db.session.flush()
    record_event(
        "note.added",
        actor=actor,
        now=now,
        customer_id=customer.id,
        subject=note,
        data={"kind": str(kind)},
    )
    return note


# --- promises ---------------------------------------------------------------------------
def make_promise(
    customer: Customer,
    *,
    invoice_numbers: Sequence[str],
    amount: Money,
    promised_on: date,
    actor: Actor,
    now: datetime,
    source: str,
    note: str = "",
) -> Promise:
    """Record a promise to pay `amount` on these invoices by `promised_on` (inclusive).

    `source` is "customer" (from the portal, at most PROMISE_MAX_DAYS ahead) or "staff".
    Refused (PromiseRefused, nothing written) for another customer's or a paid invoice,
    a date out of range, an amount above what the invoices owe, or an invoice an open
    promise already covers."""
    today = customer_today(customer, now)
    wanted = set(invoice_numbers)
    chosen = [
        b for b in invoice_balances_for(customer, today) if b.invoice.number in wanted and b.is_open
    ]
    if len(chosen) != len(wanted):
        chosen = []  # an unknown, foreign or settled invoice: refuse the whole promise
    if amount.currency != customer.currency:
        raise PromiseRefused(
            str(PROBLEM_MESSAGES[PromiseProblem.AMOUNT_TOO_LARGE]), PromiseProblem.AMOUNT_TOO_LARGE
        )
    max_days = promise_max_days(source)
    problem = promise_problem(
        PromiseTerms(
            today=today,
            promised_on=promised_on,
            amount=amount,
            open_amount=Money.sum((b.payable for b in chosen), customer.currency),
            max_days=max_days,
        )
    )
    if problem is not None:
        raise PromiseRefused(str(PROBLEM_MESSAGES[problem]) % {"days": max_days}, problem)
    invoice_ids = [b.invoice.id for b in chosen]
    if db.session.scalar(
        paused_invoice_ids().where(PromiseInvoice.invoice_id.in_(invoice_ids)).limit(1)
    ):
        raise PromiseOverlaps()
    promise = Promise(
        customer_id=customer.id,
        amount_minor=amount.minor,
        currency=amount.currency,
        made_on=today,
        promised_on=promised_on,
        status=PromiseStatus.OPEN,
        source=source,
        created_by=str(actor),
        note=note.strip()[:500],
        created_at=now,
        invoices=[PromiseInvoice(invoice_id=i) for i in invoice_ids],
    )
    db.session.add(promise)
    db.session.flush()
    record_event(
        "promise.made",
        actor=actor,
        now=now,
        customer_id=customer.id,
        subject=promise,
        data={
            "amount_minor": amount.minor,
            "currency": amount.currency,
            "promised_on": promised_on.isoformat(),
            "invoices": sorted(wanted),
            "source": source,
        },
    )
    return promise


def move_promise(
    promise: Promise, to: PromiseStatus, *, actor: Actor, now: datetime, paid: int = 0
) -> None:
    """Move a promise along TRANSITIONS and audit it; PromiseTransitionRefused otherwise."""
    current = PromiseStatus(promise.status)
    if not can_move(current, to):
        raise PromiseTransitionRefused()
    promise.status = to
    promise.resolved_at = now
    promise.paid_minor = max(0, paid)
    db.session.flush()
    record_event(
        f"promise.{to.value}",
        actor=actor,
        now=now,
        customer_id=promise.customer_id,
        subject=promise,
        data={
            "amount_minor": promise.amount_minor,
            "paid_minor": promise.paid_minor,
            "currency": promise.currency,
            "promised_on": promise.promised_on.isoformat(),
        },
    )


def cancel_promise(promise: Promise, *, actor: Actor, now: datetime) -> None:
    """Withdraw an open promise (the customer called back): reminders resume."""
    move_promise(promise, PromiseStatus.CANCELLED, actor=actor, now=now)


@dataclass
class DecisionReport:
    kept: int = 0
    broken: int = 0

    def summary(self) -> str:
        return f"{self.kept} promises kept, {self.broken} broken"


def decide_due_promises(*, now: datetime) -> DecisionReport:
    """Decide every open promise whose date has passed in its customer's time zone: kept
    if the covering payments (`queries.covered_amounts`) reach its amount, broken
    otherwise. A broken promise emails the customer a pay link and waits in the
    follow-up queue; its invoices are dunned again from now on."""
    report = DecisionReport()
    due = [
        p
        for p in open_promises_due()
        if is_due_for_decision(p.promised_on, customer_today(p.customer, now))
    ]
    covered = covered_amounts([p.id for p in due])
    for promise in due:
        paid = covered.get(promise.id, 0)
        if is_kept(promise.amount, Money(max(0, paid), promise.currency)):
            move_promise(promise, PromiseStatus.KEPT, actor=Actor.system(), now=now, paid=paid)
            report.kept += 1
            continue
        move_promise(promise, PromiseStatus.BROKEN, actor=Actor.system(), now=now, paid=paid)
        _email_broken_promise(promise, now)
        report.broken += 1
    return report


def _email_broken_promise(promise: Promise, now: datetime) -> None:
    from portal.notifications.services import queue_email

    queue_email(
        promise.customer,
        kind="promise_broken",
        template="promise_broken",
        context={"promise": promise, "left": promise.amount - promise.paid},
        now=now,
        category=EmailCategory.COLLECTION,
        dedupe_key=f"promise_broken:{promise.id}",
        with_portal_link=True,
    )


def close_follow_up(promise: Promise, *, actor: Actor, now: datetime) -> None:
    """Take a broken promise off the follow-up queue (a specialist dealt with it)."""
    if promise.status != PromiseStatus.BROKEN or promise.followed_up_at is not None:
        raise PromiseTransitionRefused()
    promise.followed_up_at = now
    record_event(
        "promise.followed_up",
        actor=actor,
        now=now,
        customer_id=promise.customer_id,
        subject=promise,
    )
