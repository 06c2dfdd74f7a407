"""A customer's promise to pay, made from the account page."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_date
from flask_babel import gettext as _

from portal.access.sessions import current_customer, customer_required
from portal.audit.actors import Actor
from portal.cells import html
from portal.customers.queries import customer_today
from portal.customers.views import account_context
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.queries import invoice_balances_for
from portal.money import Money
from portal.promises.forms import PromiseToPayForm
from portal.promises.policy import PromiseProblem
from portal.promises.services import PromiseRefused, make_promise

bp = Blueprint("promises", __name__)

# The service's refusals that are about the date; the others are about the invoices.
DATE_PROBLEMS = frozenset({PromiseProblem.DATE_PAST, PromiseProblem.DATE_TOO_FAR})


@bp.post("/account/promise")
@customer_required
def promise_to_pay() -> ResponseReturnValue:
    """The customer promises to pay what the ticked invoices owe by a date."""
    customer = current_customer()
    form = PromiseToPayForm()
    if not form.validate_on_submit():
        return _refused(form)
    now = utcnow()
    wanted = set(form.invoices.data or [])
    owed = Money.sum(
        (
            b.payable
            for b in invoice_balances_for(customer, customer_today(customer, now))
            if b.invoice.number in wanted and b.is_open
        ),
        customer.currency,
    )
    try:
        promise = make_promise(
            customer,
            invoice_numbers=sorted(wanted),
            amount=owed,
            promised_on=form.promised_on.data,
            actor=Actor.customer(customer),
            now=now,
            source="customer",
        )
    except PromiseRefused as error:
        db.session.rollback()
        field = form.promised_on if error.problem in DATE_PROBLEMS else form.invoices
        field.errors.append(error.message)
        return _refused(form)
    db.session.commit()
    flash(
        _(
            "Thank you. We will not send reminders for these invoices until %(date)s.",
            date=format_date(promise.promised_on),
        ),
        "success",
    )
    return redirect(url_for("customers.account", _anchor="promise-title"))


@bp.get("/account/promise")
@customer_required
def promise_form() -> ResponseReturnValue:
    """The form's address as a refused promise leaves it in the address bar: opened
    again (a restored tab, the history), it is the account page's promise section."""
    return redirect(url_for("customers.account", _anchor="promise-title"))


def _refused(form: PromiseToPayForm) -> ResponseReturnValue:
    """The account page again, not a redirect to it: the promise form says what is wrong
    beside each field, under a summary that takes the focus, and keeps the ticks and the
    date (the form posts to `…#error-summary`, so the page opens there). A plain GET of
    the account page carries none of this."""
    context = account_context()
    ticked = {html(number) for number in form.invoices.data or []}  # as the choices hold them
    context["promise_choices"] = [
        choice._replace(checked=choice.number in ticked) for choice in context["promise_choices"]
    ]
    context["promise_form"] = form
    return render_template("customers/account.html", **context), 400
