"""A customer's promise to pay, made from the account page."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_date
from flask_babel import gettext as _

from portal.access.sessions import current_customer, customer_required
from portal.audit.actors import Actor
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.errors import DomainError
from portal.extensions import db
from portal.invoices.queries import invoice_balances_for
from portal.money import Money
from portal.promises.forms import PromiseToPayForm
from portal.promises.services import make_promise

bp = Blueprint("promises", __name__)


@bp.post("/account/promise")
@customer_required
def promise_to_pay() -> ResponseReturnValue:
    """The customer promises to pay what the ticked invoices owe by a date."""
    customer = current_customer()
    form = PromiseToPayForm()
    back = redirect(url_for("customers.account", _anchor="promise-title"))
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return back
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
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return back
    db.session.commit()
    flash(
        _(
            "Thank you. We will not send reminders for these invoices until %(date)s.",
            date=format_date(promise.promised_on),
        ),
        "success",
    )
    return back
