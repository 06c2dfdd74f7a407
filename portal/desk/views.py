"""The specialist's desk under /staff/: thin views over `desk`, `promises` and the ledger.

Every view needs a staff session (`staff_required`, specialist or admin); every
customer is looked up by its account number and every object within that customer
(`get_payment_for`, `get_promise_for`): a wrong pair answers 404.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from wtforms import SelectChoice

from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.desk.forms import AddNoteForm, DeskActionForm, MakePromiseForm, RefundForm
from portal.desk.queries import customer_overview, get_customer, outbox_page, search_customers
from portal.desk.services import refund_from_desk, revoke_all_links, send_fresh_link
from portal.desk.timeline import timeline_for
from portal.errors import DomainError
from portal.extensions import db
from portal.i18n import current_locale
from portal.inputs import AmountInputError, AmountProblem, form_language, parse_amount_input
from portal.notifications.models import OutboxStatus
from portal.plans.queries import plans_for
from portal.promises.models import NoteKind
from portal.promises.queries import follow_up_queue, get_promise_for
from portal.promises.services import add_note, cancel_promise, close_follow_up, make_promise
from portal.staff.auth import current_staff, staff_required
from portal.staff.models import StaffRole

bp = Blueprint("desk", __name__, url_prefix="/staff")
TIMELINE_PAGE_SIZE = 25
specialist = staff_required(StaffRole.SPECIALIST)


def _page() -> int:
    text = request.args.get("page", "1")
    return min(int(text), 10_000) if text.isascii() and text.isdigit() and text != "0" else 1


def _customer_or_404(account_number: str) -> Customer:
    customer = get_customer(account_number)
    if customer is None:
        abort(404)
    return customer


def _actor() -> Actor:
    return Actor.staff(current_staff())


def _back(customer: Customer, anchor: str = "") -> ResponseReturnValue:
    return redirect(
        url_for("desk.customer", account_number=customer.account_number)
        + (f"#{anchor}" if anchor else "")
    )


def _flash_form_errors(form: object) -> None:
    for errors in getattr(form, "errors", {}).values():
        for error in errors:
            flash(str(error), "error")


@bp.get("/customers")
@specialist
def customers() -> ResponseReturnValue:
    results = search_customers(request.args.get("q", ""), page=_page())
    return render_template("desk/search.html", results=results)


@bp.get("/customers/<account_number>")
@specialist
def customer(account_number: str) -> ResponseReturnValue:
    customer = _customer_or_404(account_number)
    now = utcnow()
    overview = customer_overview(customer, customer_today(customer, now))
    locale = current_locale()
    promise_form = MakePromiseForm()
    promise_form.invoices.choices = [
        SelectChoice(b.invoice.number, f"{b.invoice.number} ({b.payable.format(locale)})")
        for b in overview.balances
        if b.is_open
    ]
    return render_template(
        "desk/customer.html",
        overview=overview,
        timeline=timeline_for(customer.id, page=_page(), per_page=TIMELINE_PAGE_SIZE),
        note_form=AddNoteForm(),
        promise_form=promise_form,
        refund_form=RefundForm(),
        action_form=DeskActionForm(),
        outbox=outbox_page(customer_id=customer.id, per_page=10),
        plans=plans_for(customer),
    )


@bp.post("/customers/<account_number>/notes")
@specialist
def add_customer_note(account_number: str) -> ResponseReturnValue:
    customer = _customer_or_404(account_number)
    form = AddNoteForm()
    if not form.validate_on_submit():
        _flash_form_errors(form)
        return _back(customer, "note")
    try:
        add_note(
            customer,
            kind=NoteKind(form.kind.data),
            body=form.body.data or "",
            actor=_actor(),
            now=utcnow(),
        )
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return _back(customer, "note")
    db.session.commit()
    flash(_("The note was saved."), "success")
    return _back(customer)


def _amount_refusal(refused: AmountInputError) -> str:
    """Why an amount typed on the desk was refused: the parser's words, except for zero
    and below, said as the refund and promise services say it."""
    if refused.problem in (AmountProblem.NEGATIVE, AmountProblem.ZERO):
        return _("The amount must be more than zero.")
    return refused.message


@bp.post("/customers/<account_number>/promises")
@specialist
def add_promise(account_number: str) -> ResponseReturnValue:
    customer = _customer_or_404(account_number)
    form = MakePromiseForm()
    form.invoices.choices = [SelectChoice(n, n) for n in request.form.getlist("invoices")]
    if not form.validate_on_submit():
        _flash_form_errors(form)
        return _back(customer, "promise")
    try:
        amount = parse_amount_input(form.amount.data, customer.currency, form_language())
    except AmountInputError as refused:
        flash(_amount_refusal(refused), "error")
        return _back(customer, "promise")
    try:
        make_promise(
            customer,
            invoice_numbers=form.invoices.data or [],
            amount=amount,
            promised_on=form.promised_on.data,
            actor=_actor(),
            now=utcnow(),
            source="staff",
            note=form.note.data or "",
        )
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return _back(customer, "promise")
    db.session.commit()
    flash(_("The promise was recorded; reminders for its invoices wait until its date."), "success")
    return _back(customer)


@bp.post("/customers/<account_number>/promises/<int:promise_id>/cancel")
@specialist
def cancel_customer_promise(account_number: str, promise_id: int) -> ResponseReturnValue:
    customer = _customer_or_404(account_number)
    promise = get_promise_for(customer, promise_id)
    if promise is None or not DeskActionForm().validate_on_submit():
        abort(404 if promise is None else 400)
    try:
        cancel_promise(promise, actor=_actor(), now=utcnow())
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return _back(customer)
    db.session.commit()
    flash(_("The promise was cancelled; reminders resume."), "success")
    return _back(customer)


@bp.post("/customers/<account_number>/links/send")
@specialist
def send_link(account_number: str) -> ResponseReturnValue:
    customer = _customer_or_404(account_number)
    if not DeskActionForm().validate_on_submit():
        abort(400)
    send_fresh_link(customer, actor=_actor(), now=utcnow())
    db.session.commit()
    flash(_("A new link is on its way to %(email)s.", email=customer.email), "success")
    return _back(customer)


@bp.post("/customers/<account_number>/links/revoke")
@specialist
def revoke_links(account_number: str) -> ResponseReturnValue:
    customer = _customer_or_404(account_number)
    if not DeskActionForm().validate_on_submit():
        abort(400)
    count = revoke_all_links(customer, actor=_actor(), now=utcnow())
    db.session.commit()
    flash(_("%(count)s links revoked; the customer's sessions have ended.", count=count), "success")
    return _back(customer)


@bp.post("/customers/<account_number>/payments/<int:payment_id>/refund")
@specialist
def refund(account_number: str, payment_id: int) -> ResponseReturnValue:
    customer = _customer_or_404(account_number)
    form = RefundForm()
    if not form.validate_on_submit():
        _flash_form_errors(form)
        return _back(customer, f"payment-{payment_id}")
    amount = None
    if (form.amount.data or "").strip():
        try:
            amount = parse_amount_input(form.amount.data, customer.currency, form_language())
        except AmountInputError as refused:
            flash(_amount_refusal(refused), "error")
            return _back(customer, f"payment-{payment_id}")
    try:
        done = refund_from_desk(
            customer,
            payment_id,
            amount,
            reason=form.reason.data or "",
            refunds_seen=form.refunds_seen.data or 0,
            actor=_actor(),
            now=utcnow(),
        )
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return _back(customer, f"payment-{payment_id}")
    db.session.commit()
    flash(
        _("Refunded %(amount)s; the customer will be emailed.", amount=done.amount.format()),
        "success",
    )
    return _back(customer)


@bp.get("/outbox")
@specialist
def outbox() -> ResponseReturnValue:
    status = request.args.get("status", "")
    if status not in {s.value for s in OutboxStatus}:
        status = ""
    return render_template(
        "desk/outbox.html",
        messages=outbox_page(status=status or None, page=_page()),
        status=status,
        statuses=list(OutboxStatus),
        customer=None,
    )


@bp.get("/customers/<account_number>/outbox")
@specialist
def customer_outbox(account_number: str) -> ResponseReturnValue:
    customer = _customer_or_404(account_number)
    return render_template(
        "desk/outbox.html",
        messages=outbox_page(customer_id=customer.id, page=_page()),
        status="",
        statuses=list(OutboxStatus),
        customer=customer,
    )


@bp.get("/follow-up")
@specialist
def follow_up() -> ResponseReturnValue:
    return render_template(
        "desk/follow_up.html", promises=follow_up_queue(), action_form=DeskActionForm()
    )


@bp.post("/follow-up/<int:promise_id>/close")
@specialist
def close_follow_up_item(promise_id: int) -> ResponseReturnValue:
    from portal.promises.models import Promise

    promise = db.session.get(Promise, promise_id)
    if promise is None:
        abort(404)
    if not DeskActionForm().validate_on_submit():
        abort(400)
    try:
        close_follow_up(promise, actor=_actor(), now=utcnow())
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("desk.follow_up"))
    db.session.commit()
    flash(_("Taken off the follow-up queue."), "success")
    return redirect(url_for("desk.follow_up"))
