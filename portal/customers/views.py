"""The customer's account page and statement."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from portal.access.sessions import current_customer, customer_required, customer_snapshot
from portal.audit.actors import Actor
from portal.creditor import current_creditor
from portal.customers.forms import ResumeEmailForm
from portal.customers.pages import account_page
from portal.customers.queries import account_snapshot, customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.i18n import current_locale
from portal.invoices import pdf as documents
from portal.invoices.queries import (
    invoice_balances_for,
    recent_payments_for,
    summarize,
)
from portal.notifications.services import resume_collection_email
from portal.payments.forms import RemoveCardForm
from portal.payments.gateway import is_enabled as payments_enabled
from portal.payments.queries import saved_card_for
from portal.responses import pdf_response

bp = Blueprint("customers", __name__)


@bp.get("/account")
@customer_required
def account() -> ResponseReturnValue:
    """Balances, invoices, payments, disputes, promises, plans and settings: one query
    (and no ORM session: the customer's columns came with the session check)."""
    return render_template("customers/account.html", **account_context())


def account_context() -> dict[str, Any]:
    """The account page's template context, for `account` and for a section's form that
    was refused and is shown again in the page (`promises.promise_to_pay`)."""
    customer = customer_snapshot()
    today = customer_today(customer, utcnow())
    context = account_page(customer, account_snapshot(customer, today), today)
    if context["opted_out_at"] is not None:
        context["resume_form"] = ResumeEmailForm()
    return context


@bp.get("/account/card/remove")
@customer_required
def remove_card() -> ResponseReturnValue:
    """The confirmation step before a saved card is forgotten (a plain form: no JS needed)."""
    if not payments_enabled(current_app.config):
        abort(404)  # no card can be saved or removed without Stripe
    card = saved_card_for(current_customer())
    if card is None:
        flash(_("You have no saved card."), "info")
        return redirect(url_for("customers.account"))
    return render_template("customers/remove_card.html", card=card, form=RemoveCardForm())


@bp.post("/account/email/resume")
@customer_required
def resume_email() -> ResponseReturnValue:
    customer = current_customer()
    if ResumeEmailForm().validate_on_submit() and resume_collection_email(
        customer, now=utcnow(), actor=Actor.customer(customer)
    ):
        db.session.commit()
        flash(
            _("You will receive invoice notices and payment reminders by email again."), "success"
        )
    return redirect(url_for("customers.account", _anchor="email-title"))


@bp.get("/account/statement.pdf")
@customer_required
def statement() -> ResponseReturnValue:
    customer = current_customer()
    today = customer_today(customer, utcnow())
    balances = invoice_balances_for(customer, today)
    pdf = documents.statement_pdf(
        customer,
        balances,
        summarize(balances, customer.currency),
        recent_payments_for(customer, documents.RECENT_PAYMENTS),
        creditor=current_creditor(),
        locale=current_locale(),
        today=today,
    )
    return pdf_response(pdf, f"statement-{customer.account_number}-{today.isoformat()}.pdf")
