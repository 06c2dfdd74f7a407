"""The customer's payment plans: offers, the builder, a plan's page, its card and agreement."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from portal.access.sessions import current_customer, customer_required
from portal.audit.actors import Actor
from portal.creditor import current_creditor
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.errors import DomainError
from portal.extensions import db, talisman
from portal.i18n import current_locale
from portal.payments.errors import PaymentsUnavailable, card_form_messages
from portal.payments.gateway import is_enabled as payments_enabled
from portal.payments.inventory import card_page_script_tags
from portal.payments.queries import PayableItem, payable_items, saved_card_for
from portal.plans import builder
from portal.plans import customer as plans
from portal.plans.agreement import agreement_pdf
from portal.plans.forms import (
    CancelPlanForm,
    CounterOfferForm,
    PayInstallmentForm,
    ProposePlanForm,
    SaveCardForm,
)
from portal.plans.policy import Proposal, offers
from portal.responses import pdf_response
from portal.security import CARD_PAGE_CSP

bp = Blueprint("plans", __name__)


def _plan_or_404(plan_id: int) -> Any:
    plan = plans.get_plan_for(current_customer(), plan_id)
    if plan is None:
        abort(404)  # someone else's plan is "not found", never "forbidden"
    return plan


def _plannable(customer: Customer, today: date) -> list[PayableItem]:
    """The customer's invoices with something payable now (disputes and plans excluded)."""
    return payable_items(customer, today)


def builder_context(customer: Customer, today: date) -> dict[str, Any]:
    """What `plans/new.html` shows around the form: the offers for the whole payable
    balance, the policy, the cooling-off date, a plan already waiting for review."""
    items = _plannable(customer, today)
    policy = plans.policy_for(customer)
    currencies = {i.payable.currency for i in items}
    total = (
        builder.Money.sum((i.payable for i in items), items[0].payable.currency)
        if len(currencies) == 1
        else None
    )
    ready = offers(total, policy, today) if total is not None else []
    return {
        "items": items,
        "policy": policy,
        "today": today,
        "offers": [(p, builder.schedule_for(p)) for p in ready],
        "offer_numbers": [i.invoice.number for i in items],
        "cooling_off_until": plans.cooling_off_until(customer, today),
        "waiting": plans.plans_waiting_for(customer),
        "plan_summary": builder.plan_summary,
        "plan_details": builder.plan_details,
        "regular_amount": builder.regular_amount,
    }


def _new_form(items: list[PayableItem], policy: Any, today: date) -> ProposePlanForm:
    """The builder as it first shows: every payable invoice ticked, the policy's minimum
    down payment, monthly, three payments, first payment in a month."""
    from portal.plans.schedule import add_months

    numbers = [i.invoice.number for i in items]
    form = ProposePlanForm(formdata=None, invoices=numbers, frequency="monthly", installments=3)
    if items and len({i.payable.currency for i in items}) == 1:
        total = builder.Money.sum((i.payable for i in items), items[0].payable.currency)
        form.down_payment.data = str(policy.min_down_payment_for(total).to_decimal())
    first = min(
        add_months(today, 1), today.fromordinal(today.toordinal() + policy.max_first_payment_days)
    )
    form.first_payment_date.data = first
    form.autopay.data = bool(policy.autopay_required)
    return form


def _render_builder(
    form: ProposePlanForm,
    customer: Customer,
    today: date,
    preview: builder.PlanPreview | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    context = builder_context(customer, today)
    if request.args.get("fragment"):
        # The live preview (static/js/plans.js): the same numbers, only the region that changes.
        return render_template("plans/_preview.html", form=form, preview=preview, **context)
    return (
        render_template("plans/new.html", form=form, preview=preview, **context),
        status,
    )


@bp.get("/plans/new")
@customer_required
def new() -> ResponseReturnValue:
    customer = current_customer()
    today = customer_today(customer, utcnow())
    context = builder_context(customer, today)
    form = _new_form(context["items"], context["policy"], today)
    return render_template("plans/new.html", form=form, preview=None, **context)


@bp.post("/plans/new")
@customer_required
def propose() -> ResponseReturnValue:
    """`preview` shows the schedule and writes nothing; `accept` commits the plan."""
    customer = current_customer()
    now = utcnow()
    today = customer_today(customer, now)
    form = ProposePlanForm()
    valid = form.validate_on_submit()
    read = builder.read_proposal(
        builder.ProposalInput(
            numbers=form.invoices.data or [],
            down_payment=form.down_payment.data,
            frequency=form.frequency.data,
            installments=form.installments.data if not form.installments.errors else None,
            first_payment_date=(
                form.first_payment_date.data if not form.first_payment_date.errors else None
            ),
            autopay=bool(form.autopay.data),
        ),
        _plannable(customer, today),
        today,
    )
    for name, errors in read.errors.items():
        if not getattr(form, name).errors:
            getattr(form, name).errors = list(errors)
    if not valid or read.proposal is None:
        return _render_builder(form, customer, today, status=400)
    preview = builder.preview(read.proposal, plans.policy_for(customer))
    if not form.accept.data:
        return _render_builder(form, customer, today, preview)
    reason = (form.reason.data or "").strip()
    if not preview.is_within_policy and not reason:
        form.reason.errors = [
            _("Tell us why you need this plan: a specialist reads it before answering.")
        ]
        return _render_builder(form, customer, today, preview, status=400)
    try:
        plan = plans.propose(customer, read.proposal, read.invoices, reason=reason or None, now=now)
    except DomainError as error:
        db.session.rollback()
        form.invoices.errors = [str(error.message)]
        return _render_builder(form, customer, today, preview, status=400)
    db.session.commit()
    return _after_proposal(plan)


def _after_proposal(plan: Any) -> ResponseReturnValue:
    if not plans.is_active(plan):
        flash(
            _(
                "Your proposal was sent for review. We will answer by email, usually within "
                "two business days."
            ),
            "success",
        )
        return redirect(url_for("plans.detail", plan_id=plan.id))
    flash(_("Your payment plan is agreed."), "success")
    return _next_step(plan)


def _next_step(plan: Any) -> ResponseReturnValue:
    """After a plan is agreed: a card for autopay first (if asked or required), then the
    down payment by card, then the plan's page."""
    if not payments_enabled(current_app.config):
        return redirect(url_for("plans.detail", plan_id=plan.id))
    if plans.needs_card(plan) and saved_card_for(current_customer()) is None:
        return redirect(url_for("plans.card", plan_id=plan.id))
    return _pay_down_payment(plan)


def _pay_down_payment(plan: Any) -> ResponseReturnValue:
    if not plans.down_payment_due(plan):
        return redirect(url_for("plans.detail", plan_id=plan.id))
    try:
        checkout = plans.start_down_payment(current_customer(), plan, now=utcnow())
    except DomainError as error:
        db.session.rollback()
        flash(str(error.message), "error")
        return redirect(url_for("plans.detail", plan_id=plan.id))
    db.session.commit()
    return redirect(url_for("payments.card", checkout_id=checkout.id))


@bp.get("/plans/<int:plan_id>")
@customer_required
def detail(plan_id: int) -> ResponseReturnValue:
    customer = current_customer()
    plan = _plan_or_404(plan_id)
    today = customer_today(customer, utcnow())
    return render_template(
        "plans/detail.html",
        plan=plan,
        view=plans.plan_view(plan, today),
        today=today,
        saved_card=saved_card_for(customer),
        counter_form=CounterOfferForm(),
        cancel_form=CancelPlanForm(),
        pay_form=PayInstallmentForm(),
    )


@bp.post("/plans/<int:plan_id>/counter-offer")
@customer_required
def answer_counter_offer(plan_id: int) -> ResponseReturnValue:
    """The customer accepts or declines a specialist's counter-offer."""
    customer = current_customer()
    plan = _plan_or_404(plan_id)
    form = CounterOfferForm()
    if not form.validate_on_submit() or form.decision.data not in ("accept", "decline"):
        flash(_("Please choose to accept or decline the plan."), "error")
        return redirect(url_for("plans.detail", plan_id=plan.id))
    try:
        if form.decision.data == "accept":
            plans.accept_counter(customer, plan, now=utcnow())
        else:
            plans.decline_counter(customer, plan, now=utcnow())
    except DomainError as error:
        db.session.rollback()
        flash(str(error.message), "error")
        return redirect(url_for("plans.detail", plan_id=plan.id))
    db.session.commit()
    if form.decision.data == "decline":
        flash(_("You declined the proposed plan. Your invoices are due as before."), "info")
        return redirect(url_for("plans.detail", plan_id=plan.id))
    flash(_("Your payment plan is agreed."), "success")
    return _next_step(plan)


@bp.post("/plans/<int:plan_id>/cancel")
@customer_required
def cancel(plan_id: int) -> ResponseReturnValue:
    """Withdraw a proposal still waiting for review (or a counter-offer not yet answered)."""
    customer = current_customer()
    plan = _plan_or_404(plan_id)
    if CancelPlanForm().validate_on_submit():
        try:
            plans.withdraw(customer, plan, now=utcnow())
        except DomainError as error:
            db.session.rollback()
            flash(str(error.message), "error")
        else:
            db.session.commit()
            flash(_("Your proposal was withdrawn."), "info")
    return redirect(url_for("plans.detail", plan_id=plan.id))


@bp.post("/plans/<int:plan_id>/down-payment")
@customer_required
def pay_down_payment(plan_id: int) -> ResponseReturnValue:
    plan = _plan_or_404(plan_id)
    if not PayInstallmentForm().validate_on_submit():
        return redirect(url_for("plans.detail", plan_id=plan.id))
    return _pay_down_payment(plan)


@bp.post("/plans/<int:plan_id>/installments/<int:number>/pay")
@customer_required
def pay_installment(plan_id: int, number: int) -> ResponseReturnValue:
    """Pay one installment now (early, or by hand), through the pay flow."""
    customer = current_customer()
    plan = _plan_or_404(plan_id)
    if not PayInstallmentForm().validate_on_submit():
        return redirect(url_for("plans.detail", plan_id=plan.id))
    try:
        checkout = plans.start_installment_payment(customer, plan, number, now=utcnow())
    except DomainError as error:
        db.session.rollback()
        flash(str(error.message), "error")
        return redirect(url_for("plans.detail", plan_id=plan.id))
    db.session.commit()
    return redirect(url_for("payments.card", checkout_id=checkout.id))


@bp.get("/plans/<int:plan_id>/card")
@customer_required
@talisman(content_security_policy=CARD_PAGE_CSP, content_security_policy_nonce_in=["script-src"])
def card(plan_id: int) -> ResponseReturnValue:
    """Save (or change) the card the installments are charged to: Stripe.js's card field
    confirms a SetupIntent; no money moves."""
    customer = current_customer()
    plan = _plan_or_404(plan_id)
    if not payments_enabled(current_app.config):
        abort(404)
    try:
        setup_secret = plans.card_setup_secret(customer, now=utcnow())
    except PaymentsUnavailable as error:
        return render_template("payments/unavailable.html", message=str(error.message)), 503
    except DomainError as error:
        return render_template("payments/unavailable.html", message=str(error.message)), 429
    db.session.commit()  # the Stripe Customer and SetupIntent, if this visit made them
    return render_template(
        "plans/card.html",
        plan=plan,
        form=SaveCardForm(),
        setup_secret=setup_secret,
        saved_card=saved_card_for(customer),
        scripts=card_page_script_tags(),
        card_messages=card_form_messages(),
    )


@bp.post("/plans/<int:plan_id>/card")
@customer_required
def save_card(plan_id: int) -> ResponseReturnValue:
    customer = current_customer()
    plan = _plan_or_404(plan_id)
    form = SaveCardForm()
    if not form.validate_on_submit():
        flash(_("This card could not be saved. Please try again."), "error")
        return redirect(url_for("plans.card", plan_id=plan.id))
    try:
        plans.save_plan_card(
            customer,
            plan,
            setup_intent_id=form.setup_intent.data,
            keep_saved=form.card_choice.data == "saved",
            now=utcnow(),
        )
    except DomainError as error:
        db.session.rollback()
        flash(str(error.message), "error")
        return redirect(url_for("plans.card", plan_id=plan.id))
    db.session.commit()
    flash(_("Your installments will be paid with this card."), "success")
    return _pay_down_payment(plan)


@bp.get("/plans/<int:plan_id>/agreement.pdf")
@customer_required
def agreement(plan_id: int) -> ResponseReturnValue:
    plan = _plan_or_404(plan_id)
    if not plans.has_agreement(plan):
        abort(404)
    document = agreement_pdf(
        plans.agreement_terms(plan), creditor=current_creditor(), locale=current_locale()
    )
    return pdf_response(document, f"payment-plan-{plan.id}.pdf")


def account_plans_context(customer: Customer, today: date) -> dict[str, Any]:
    """What `plans/_account_plans.html` needs on the account page."""
    return {
        "plans": plans.plans_for(customer),
        "can_plan": bool(_plannable(customer, today)),
        "plan_status_label": plans.status_label,
    }


def _proposal_fields(proposal: Proposal) -> dict[str, str]:
    """A proposal as the builder's field values (the offers' one-click forms)."""
    return {
        "down_payment": str(proposal.down_payment.to_decimal()),
        "frequency": str(proposal.frequency),
        "installments": str(proposal.installments),
        "first_payment_date": proposal.first_payment_date.isoformat(),
    }


@bp.app_template_global("plan_fields")
def plan_fields(proposal: Proposal) -> dict[str, str]:
    return _proposal_fields(proposal)


__all__ = ["Actor", "account_plans_context", "bp"]
