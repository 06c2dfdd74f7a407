"""Paying online: choose invoices, enter a card, confirm, get a receipt."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from portal.access.sessions import current_customer, customer_required, customer_session
from portal.creditor import current_creditor
from portal.customers.queries import customer_today
from portal.db import utcnow, writes_on_get
from portal.errors import DomainError
from portal.extensions import db, talisman
from portal.i18n import current_locale
from portal.inputs import (
    AmountInputError,
    amount_input_text,
    form_language,
    parse_amount_input,
    row_id,
)
from portal.invoices.queries import invoice_balances_for
from portal.money import AmountTooLarge, InvalidAmount, Money
from portal.payments import receipt as receipts
from portal.payments.card_advice import card_advice_message
from portal.payments.card_testing import limit_card_actions, record_card_failure
from portal.payments.errors import (
    AmountNoLongerPayable,
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
from portal.payments.pages import choose_page, page_helpers
from portal.payments.policy import (
    AmountProblem,
    CardAdvice,
    OpenItem,
    PaymentPreview,
    card_advice,
    planned_allocation,
    preview_payment,
)
from portal.payments.queries import (
    PayableNow,
    get_checkout_for,
    get_payment_for,
    payable_items,
    payable_now,
)
from portal.payments.services import (
    authentication_secret,
    begin_charge,
    checkout_overtaken,
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
    checkout = get_checkout_for(current_customer(), checkout_id)
    if checkout is None:
        abort(404)  # someone else's checkout is "not found", never "forbidden"
    return checkout


def _back_to_step_one(checkout: Checkout):  # type: ignore[no-untyped-def]
    """What the checkout was for no longer is payable as it stands: say so, and start
    again from step 1 with its invoices chosen."""
    flash(str(AmountNoLongerPayable.message), "error")
    numbers = [ci.invoice.number for ci in checkout.invoices]
    return redirect(url_for("payments.choose", invoice=numbers))


def _payable_now() -> list[PayableNow]:
    # The session's customer id: step 1 needs no Customer object (the time zone comes
    # with the invoices).
    return payable_now(customer_session().principal_id, utcnow())


def _card_advice_for(ticked: list[PayableNow]) -> CardAdvice | None:
    """Advice when one card charge cannot take the ticked invoices' whole payable amount."""
    if not ticked:
        return None
    return card_advice(Money.sum((i.payable for i in ticked), ticked[0].currency))


def _render_choose(  # type: ignore[no-untyped-def]
    items: list[PayableNow],
    chosen: list[str],
    amount: str | None = None,
    form: ChoosePaymentForm | None = None,
    status: int = 200,
):
    """Step 1 with the invoices numbered in `chosen` ticked and `amount` (the field's
    text; None: the most one card can take when that is less than their total, else
    empty); `form` is the form posted, with its errors."""
    if not items:  # nothing to pay: nothing to choose
        return render_template("payments/choose.html", items=items, **page_helpers()), status
    numbers = set(chosen)
    ticked = [i for i in items if i.number in numbers]
    minimum = payment_minimum(items[0].currency)
    preview = _preview(ticked, amount or "", minimum)
    # The preview's total is what the ticked invoices' payable amounts add up to.
    advice = card_advice(preview.total) if preview is not None else _card_advice_for(ticked)
    if amount is None:
        amount = ""
        if advice is not None and advice.chargeable.is_positive:
            amount = amount_input_text(advice.chargeable, current_locale())
            preview = _preview(ticked, amount, minimum)
    if form is not None and form.update.data and preview is not None and not form.amount.errors:
        form.amount.errors = _amount_errors(amount, preview, minimum)
    context = choose_page(
        items,
        chosen,
        amount=amount,
        amount_errors=list(form.amount.errors) if form is not None else [],
        invoice_errors=list(form.invoices.errors) if form is not None else [],
        minimum=minimum,
        preview=preview,
        card_notice=card_advice_message(advice) if advice else None,
    )
    # The error summary lists the posted form's errors (none on a GET).
    context["form"] = form
    return render_template("payments/choose.html", **context), status


def _preview(ticked: list[PayableNow], amount: str, minimum: Money) -> PaymentPreview | None:
    """The total of the ticked invoices and how the amount typed would be applied."""
    if not ticked or len({i.currency for i in ticked}) > 1:
        return None
    wanted = None
    if amount.strip():
        try:
            wanted = parse_amount_input(amount, minimum.currency, form_language(), allow_zero=True)
        except InvalidAmount:
            wanted = None  # shown as "pay the total"; the amount's error says why
    return preview_payment([i.open_item for i in ticked], wanted, minimum)


def _amount_errors(amount: str, preview: PaymentPreview, minimum: Money) -> list[str]:
    """What the service would say of this amount, said before anything is opened."""
    locale = form_language()
    text = amount.strip()
    if not text:
        return []
    problem = preview.problem
    try:
        parse_amount_input(text, minimum.currency, locale, allow_zero=True)
    except AmountTooLarge:  # more digits than any amount has
        problem = AmountProblem.ABOVE_PAYABLE
    except AmountInputError as refused:
        return [refused.message]
    match problem:
        case AmountProblem.ABOVE_PAYABLE:
            return [_("You can pay at most %(amount)s.", amount=preview.total.format(locale))]
        case AmountProblem.BELOW_MINIMUM:
            return [
                _("The smallest amount you can pay is %(amount)s.", amount=minimum.format(locale))
            ]
        case AmountProblem.NOT_POSITIVE:
            return [_("Please enter an amount greater than zero.")]
    return []


@bp.get("/pay")
@customer_required
def choose():  # type: ignore[no-untyped-def]
    """Step 1: every payable invoice ticked, or those asked for (`?invoice=`, or the
    overdue ones: `?overdue=1`). Nothing is posted here, so no form is made."""
    items = _payable_now()
    wanted = request.args.getlist("invoice")
    if request.args.get("overdue"):
        wanted = [i.number for i in items if i.is_overdue]
    return _render_choose(items, wanted or [i.number for i in items])


@bp.post("/pay")
@customer_required
@limit_card_actions
def start():  # type: ignore[no-untyped-def]
    form = ChoosePaymentForm()
    if form.update.data:  # "Update total" (no JavaScript): show the total, open nothing
        form.validate_on_submit()
        return _render_choose(_payable_now(), form.invoices.data or [], form.amount._value(), form)
    if form.validate_on_submit():
        try:
            checkout = start_checkout(
                current_customer(),
                form.invoices.data or [],
                form.amount.data,
                now=utcnow(),
                locale=form_language(),
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
    items = _payable_now()
    return _render_choose(items, form.invoices.data or [], form.amount._value(), form, 400)


@bp.get("/pay/<int:checkout_id>")
@writes_on_get
@customer_required
@limit_card_actions
@talisman(content_security_policy=CARD_PAGE_CSP, content_security_policy_nonce_in=["script-src"])
def card(checkout_id: int):  # type: ignore[no-untyped-def]
    checkout = _checkout_or_404(checkout_id)
    if checkout.state in (CheckoutStatus.PROCESSING, CheckoutStatus.SUCCEEDED):
        return redirect(url_for("payments.done", checkout_id=checkout.id))
    if checkout.state == CheckoutStatus.CANCELED:
        flash(_("This payment was cancelled. Nothing was charged by it."), "info")
        return redirect(url_for("payments.choose"))
    if checkout_overtaken(current_customer(), checkout, now=utcnow()):
        return _back_to_step_one(checkout)
    context = {
        "checkout": checkout,
        "planned": _planned(checkout),
        "scripts": card_page_script_tags(),
        "form": PayForm(),
        "card_messages": card_form_messages(),
    }
    try:
        if checkout.state == CheckoutStatus.REQUIRES_ACTION:
            context["client_secret"] = authentication_secret(checkout)
            context["check_form"] = CheckPaymentForm()
        else:
            context["card_form"] = prepare_card_form(current_customer(), checkout, now=utcnow())
            context["remove_form"] = RemoveCardForm()
    except CardAttemptsExhausted as error:
        return render_template("payments/unavailable.html", message=str(error.message)), 429
    except PaymentsUnavailable as error:
        return render_template("payments/unavailable.html", message=str(error.message)), 503
    db.session.commit()  # the Stripe Customer, if this visit created it
    return render_template("payments/card.html", **context)


def _planned(checkout: Checkout) -> list[tuple[OpenItem, Money]]:
    """How the checkout's amount will be applied if it is paid now (step 2's summary)."""
    if checkout.plan_installment_id is not None:
        return []  # a plan's installment: the plan's page shows where it goes
    customer = current_customer()
    items = payable_items(customer, customer_today(customer, utcnow()))
    chosen_ids = {ci.invoice_id for ci in checkout.invoices}
    return planned_allocation(
        checkout.amount,
        [i.open_item for i in items if i.invoice.id in chosen_ids],
        [i.open_item for i in items if i.invoice.id not in chosen_ids],
    )


@bp.post("/pay/<int:checkout_id>/confirm")
@customer_required
@limit_card_actions
def confirm(checkout_id: int):  # type: ignore[no-untyped-def]
    checkout = _checkout_or_404(checkout_id)
    form = PayForm()
    if not form.validate_on_submit():
        flash(decline_message("card_not_usable"), "error")
        return redirect(url_for("payments.card", checkout_id=checkout.id))
    try:
        claim = begin_charge(
            current_customer(),
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
    except AmountNoLongerPayable as error:
        db.session.rollback()
        if checkout.plan_installment_id is not None:
            flash(str(error.message), "error")
            return redirect(url_for("payments.card", checkout_id=checkout.id))
        return _back_to_step_one(checkout)
    except DomainError as error:
        db.session.rollback()
        if isinstance(error, CardNotUsable):  # counts towards the day's cap (card testing)
            record_card_failure(
                current_customer().id, error.code, now=utcnow(), checkout_id=checkout.id
            )
            db.session.commit()
        flash(str(error.message), "error")
        return redirect(url_for("payments.card", checkout_id=checkout.id))
    db.session.commit()  # the claim is visible before Stripe is called: a second click finds it
    checkout = finish_charge(claim, now=utcnow())
    db.session.commit()
    return _next_step(checkout)


@bp.post("/pay/<int:checkout_id>/check")
@customer_required
def check(checkout_id: int):  # type: ignore[no-untyped-def]
    checkout = _checkout_or_404(checkout_id)
    if CheckPaymentForm().validate_on_submit():
        checkout = sync_checkout(current_customer(), checkout, now=utcnow())
        db.session.commit()
    return _next_step(checkout)


def _next_step(checkout: Checkout):  # type: ignore[no-untyped-def]
    if checkout.state == CheckoutStatus.OPEN and checkout.last_error_code:
        flash(decline_message(checkout.last_error_code), "error")
    if checkout.state in (CheckoutStatus.OPEN, CheckoutStatus.REQUIRES_ACTION):
        return redirect(url_for("payments.card", checkout_id=checkout.id))
    return redirect(url_for("payments.done", checkout_id=checkout.id))


@bp.get("/pay/<int:checkout_id>/done")
@writes_on_get
@customer_required
def done(checkout_id: int):  # type: ignore[no-untyped-def]
    checkout = _checkout_or_404(checkout_id)
    if checkout.state.is_in_flight:
        # Stripe's answer or its event usually got here first; if not, ask Stripe
        # (never the browser).
        checkout = sync_checkout(current_customer(), checkout, now=utcnow())
        db.session.commit()
    if checkout.state in (CheckoutStatus.OPEN, CheckoutStatus.REQUIRES_ACTION):
        return _next_step(checkout)
    return render_template("payments/done.html", checkout=checkout)


@bp.get("/payments/<int:payment_id>/receipt.pdf")
@customer_required
def receipt(payment_id: int):  # type: ignore[no-untyped-def]
    customer = current_customer()
    payment = get_payment_for(customer, payment_id)
    if payment is None or payment.checkout_id is None:
        abort(404)
    today = customer_today(customer, utcnow())
    document = receipts.receipt_pdf(
        payment,
        invoice_balances_for(customer, today),
        creditor=current_creditor(),
        locale=current_locale(),
        today=today,
    )
    return pdf_response(document, f"receipt-{payment.receipt_number}.pdf")


@bp.post("/pay/card/remove")
@customer_required
def remove_card():  # type: ignore[no-untyped-def]
    if RemoveCardForm().validate_on_submit() and remove_saved_card(
        current_customer(), now=utcnow()
    ):
        db.session.commit()
        flash(_("Your saved card was removed."), "success")
    if request.form.get("return_to") == "account":  # the account page's confirmation step
        return redirect(url_for("customers.account", _anchor="card-title"))
    checkout_id = row_id(request.form.get("checkout"))
    if checkout_id:
        return redirect(url_for("payments.card", checkout_id=checkout_id))
    return redirect(url_for("payments.choose"))
