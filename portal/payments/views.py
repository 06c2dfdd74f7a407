"""Paying online: choose invoices, enter a card, confirm, get a receipt."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal.creditor import current_creditor
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.errors import DomainError
from portal.extensions import db, talisman
from portal.i18n import current_locale
from portal.inputs import row_id
from portal.payments import receipt as receipts
from portal.payments.card_testing import limit_card_actions, record_card_failure
from portal.payments.errors import (
    CardAttemptsExhausted,
    CardNotUsable,
    CheckoutNotOpen,
    InvalidPaymentAmount,
    PaymentsUnavailable,
    card_form_messages,
    decline_message,
)
from portal.payments.forms import CheckPaymentForm, ChoosePaymentForm, PayForm, RemoveCardForm
from portal.payments.gateway import is_enabled
from portal.payments.inventory import card_page_script_tags
from portal.payments.models import Checkout, CheckoutStatus
from portal.payments.queries import (
    PayableItem,
    get_checkout_for,
    get_payment_for,
    payable_items,
)
from portal.payments.services import (
    authentication_secret,
    begin_charge,
    finish_charge,
    payment_minimum,
    prepare_card_form,
    remove_saved_card,
    start_checkout,
    sync_checkout,
)
from portal.responses import pdf_response
from portal.security import CARD_PAGE_CSP

bp = Blueprint("payments", __name__)


@bp.app_context_processor
def inject_payments_enabled() -> dict[str, bool]:
    return {"payments_enabled": is_enabled(current_app.config)}


@bp.before_request
def require_payments_enabled():  # type: ignore[no-untyped-def]
    if not is_enabled(current_app.config):
        abort(404)
    return None


def _checkout_or_404(checkout_id: int) -> Checkout:
    checkout = get_checkout_for(current_user, checkout_id)
    if checkout is None:
        abort(404)  # someone else's checkout is "not found", never "forbidden"
    return checkout


def _payable_now() -> list[PayableItem]:
    return payable_items(current_user, customer_today(current_user, utcnow()))


def _render_choose(  # type: ignore[no-untyped-def]
    form: ChoosePaymentForm, items: list[PayableItem], status: int = 200
):
    currency = items[0].invoice.currency if items else current_user.currency
    return render_template(
        "payments/choose.html", form=form, items=items, minimum=payment_minimum(currency)
    ), status


@bp.get("/pay")
@login_required
def choose():  # type: ignore[no-untyped-def]
    items = _payable_now()
    wanted = request.args.getlist("invoice")
    if request.args.get("overdue"):
        wanted = [i.invoice.number for i in items if i.is_overdue]
    form = ChoosePaymentForm(formdata=None, invoices=wanted or [i.invoice.number for i in items])
    return _render_choose(form, items)


@bp.post("/pay")
@login_required
@limit_card_actions
def start():  # type: ignore[no-untyped-def]
    form = ChoosePaymentForm()
    if form.validate_on_submit():
        try:
            checkout = start_checkout(
                current_user, form.invoices.data or [], form.amount.data, now=utcnow()
            )
        except InvalidPaymentAmount as error:
            db.session.rollback()
            form.amount.errors = [str(error.message)]
        except DomainError as error:
            db.session.rollback()
            form.invoices.errors = [str(error.message)]
        else:
            db.session.commit()
            return redirect(url_for("payments.card", checkout_id=checkout.id))
    return _render_choose(form, _payable_now(), 400)


@bp.get("/pay/<int:checkout_id>")
@login_required
@limit_card_actions
@talisman(content_security_policy=CARD_PAGE_CSP, content_security_policy_nonce_in=["script-src"])
def card(checkout_id: int):  # type: ignore[no-untyped-def]
    checkout = _checkout_or_404(checkout_id)
    if checkout.state in (CheckoutStatus.PROCESSING, CheckoutStatus.SUCCEEDED):
        return redirect(url_for("payments.done", checkout_id=checkout.id))
    if checkout.state == CheckoutStatus.CANCELED:
        flash(_("This payment was cancelled. Nothing was charged by it."), "info")
        return redirect(url_for("payments.choose"))
    context = {
        "checkout": checkout,
        "scripts": card_page_script_tags(),
        "form": PayForm(),
        "card_messages": card_form_messages(),
    }
    try:
        if checkout.state == CheckoutStatus.REQUIRES_ACTION:
            context["client_secret"] = authentication_secret(checkout)
            context["check_form"] = CheckPaymentForm()
        else:
            context["card_form"] = prepare_card_form(current_user, checkout, now=utcnow())
            context["remove_form"] = RemoveCardForm()
    except CardAttemptsExhausted as error:
        return render_template("payments/unavailable.html", message=str(error.message)), 429
    except PaymentsUnavailable as error:
        return render_template("payments/unavailable.html", message=str(error.message)), 503
    db.session.commit()  # the Stripe Customer, if this visit created it
    return render_template("payments/card.html", **context)


@bp.post("/pay/<int:checkout_id>/confirm")
@login_required
@limit_card_actions
def confirm(checkout_id: int):  # type: ignore[no-untyped-def]
    checkout = _checkout_or_404(checkout_id)
    form = PayForm()
    if not form.validate_on_submit():
        flash(decline_message("card_not_usable"), "error")
        return redirect(url_for("payments.card", checkout_id=checkout.id))
    try:
        claim = begin_charge(
            current_user,
            checkout,
            setup_intent_id=form.setup_intent.data,
            use_saved_card=form.uses_saved_card,
            save_card=bool(form.save_card.data),
            now=utcnow(),
        )
    except CheckoutNotOpen:
        db.session.rollback()  # a double click: the first click's charge is under way
        return redirect(url_for("payments.done", checkout_id=checkout.id))
    except CardAttemptsExhausted:
        db.session.rollback()  # the card page says so
        return redirect(url_for("payments.card", checkout_id=checkout.id))
    except DomainError as error:
        db.session.rollback()
        if isinstance(error, CardNotUsable):  # counts towards the day's cap (card testing)
            record_card_failure(current_user.id, error.code, now=utcnow(), checkout_id=checkout.id)
            db.session.commit()
        flash(str(error.message), "error")
        return redirect(url_for("payments.card", checkout_id=checkout.id))
    db.session.commit()  # the claim is visible before Stripe is called: a second click finds it
    checkout = finish_charge(claim, now=utcnow())
    db.session.commit()
    return _next_step(checkout)


@bp.post("/pay/<int:checkout_id>/check")
@login_required
def check(checkout_id: int):  # type: ignore[no-untyped-def]
    checkout = _checkout_or_404(checkout_id)
    if CheckPaymentForm().validate_on_submit():
        checkout = sync_checkout(current_user, checkout, now=utcnow())
        db.session.commit()
    return _next_step(checkout)


def _next_step(checkout: Checkout):  # type: ignore[no-untyped-def]
    if checkout.state == CheckoutStatus.OPEN and checkout.last_error_code:
        flash(decline_message(checkout.last_error_code), "error")
    if checkout.state in (CheckoutStatus.OPEN, CheckoutStatus.REQUIRES_ACTION):
        return redirect(url_for("payments.card", checkout_id=checkout.id))
    return redirect(url_for("payments.done", checkout_id=checkout.id))


@bp.get("/pay/<int:checkout_id>/done")
@login_required
def done(checkout_id: int):  # type: ignore[no-untyped-def]
    checkout = _checkout_or_404(checkout_id)
    if checkout.state.is_in_flight:
        # Stripe's answer or its event usually got here first; if not, ask Stripe
        # (never the browser).
        checkout = sync_checkout(current_user, checkout, now=utcnow())
        db.session.commit()
    if checkout.state in (CheckoutStatus.OPEN, CheckoutStatus.REQUIRES_ACTION):
        return _next_step(checkout)
    return render_template("payments/done.html", checkout=checkout)


@bp.get("/payments/<int:payment_id>/receipt.pdf")
@login_required
def receipt(payment_id: int):  # type: ignore[no-untyped-def]
    payment = get_payment_for(current_user, payment_id)
    if payment is None or payment.checkout_id is None:
        abort(404)
    document = receipts.receipt_pdf(payment, creditor=current_creditor(), locale=current_locale())
    return pdf_response(document, f"receipt-{payment.receipt_number}.pdf")


@bp.post("/pay/card/remove")
@login_required
def remove_card():  # type: ignore[no-untyped-def]
    if RemoveCardForm().validate_on_submit() and remove_saved_card(current_user, now=utcnow()):
        db.session.commit()
        flash(_("Your saved card was removed."), "success")
    checkout_id = row_id(request.form.get("checkout"))
    if checkout_id:
        return redirect(url_for("payments.card", checkout_id=checkout_id))
    return redirect(url_for("payments.choose"))
