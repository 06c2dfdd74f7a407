"""The customer's account page and statement."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from portal.access.sessions import current_customer, customer_required
from portal.audit.actors import Actor
from portal.creditor import current_creditor
from portal.customers.forms import ResumeEmailForm
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.i18n import LANGUAGE_NAMES, current_locale
from portal.invoices import pdf as documents
from portal.invoices.queries import (
    credit_notes_for,
    invoice_balances_for,
    recent_payments_for,
    summarize,
)
from portal.money import Money
from portal.notifications.services import locale_for, opted_out_at, resume_collection_email
from portal.payments.card_advice import card_advice_message
from portal.payments.forms import RemoveCardForm
from portal.payments.gateway import is_enabled as payments_enabled
from portal.payments.policy import card_advice, card_payable_now
from portal.payments.queries import payment_history_for, saved_card_for
from portal.responses import pdf_response

bp = Blueprint("customers", __name__)


@bp.get("/account")
@customer_required
def account() -> ResponseReturnValue:
    from portal.disputes.views import account_dispute_context
    from portal.plans.views import account_plans_context
    from portal.promises.views import account_promise_context

    customer = current_customer()
    today = customer_today(customer, utcnow())
    balances = invoice_balances_for(customer, today)
    payable = [b.payable for b in balances if b.is_open and b.payable.is_positive]
    overdue = [b.payable for b in balances if b.is_open and b.is_overdue and b.payable.is_positive]
    all_payable = Money.sum(payable, customer.currency)
    overdue_payable = Money.sum(overdue, customer.currency)
    # Offer only a card payment that can succeed; else say why and what to do instead.
    card_notice = None
    for amount in (overdue_payable, all_payable):
        advice = card_advice(amount) if amount.is_positive else None
        if advice is not None and not card_payable_now(amount):
            card_notice = card_advice_message(advice)
            break
    return render_template(
        "customers/account.html",
        **account_promise_context(customer, today),
        **account_dispute_context(customer),
        **account_plans_context(customer, today),
        offer_overdue=overdue_payable.is_positive and card_payable_now(overdue_payable),
        offer_choose=all_payable.is_positive and card_payable_now(all_payable),
        card_notice=card_notice,
        customer=customer,
        summary=summarize(balances, customer.currency),
        open_invoices=[b for b in balances if b.is_open],
        closed_invoices=[b for b in reversed(balances) if not b.is_open],
        payments=payment_history_for(customer),
        credits=credit_notes_for(customer),
        saved_card=saved_card_for(customer),
        email_language=LANGUAGE_NAMES[locale_for(customer)],
        opted_out_at=opted_out_at(customer.id),
        resume_form=ResumeEmailForm(),
    )


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
