"""The customer's payment plans: offers, the builder, a plan's page, its card and agreement."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from portal.access.sessions import current_customer, customer_required
from portal.audit.actors import Actor
from portal.creditor import current_creditor
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.db import utcnow, writes_on_get
from portal.errors import DomainError
from portal.extensions import db, talisman
from portal.i18n import current_locale
from portal.inputs import amount_input_text
from portal.money import Money
from portal.payments.card_testing import limit_card_actions, record_card_failure
from portal.payments.errors import (
    CardAttemptsExhausted,
    CardNotUsable,
    PaymentsUnavailable,
    card_form_messages,
)
from portal.payments.gateway import is_enabled as payments_enabled
from portal.payments.inventory import card_page_script_tags
from portal.payments.queries import PayableItem, get_checkout_for, payable_items, saved_card_for
from portal.payments.services import (
    card_setup_secret,
    save_card_from_setup,
    start_installment_checkout,
)
from portal.plans import builder
from portal.plans.agreement import agreement_pdf
from portal.plans.forms import (
    CancelPlanForm,
    CounterOfferForm,
    PayInstallmentForm,
    ProposePlanForm,
    SaveCardForm,
)
from portal.plans.models import PaymentPlan, PlanStatus
from portal.plans.pages import agreement_terms, plan_page, plan_reference
from portal.plans.payments import checkout_installment, installment_owed, use_card_for_plan
from portal.plans.policy import PlanPolicy, Proposal, offers, schedule_for
from portal.plans.queries import (
    cooling_off_until,
    get_plan_for,
    invoice_ids_in_open_plans,
    plans_for,
    policy_for,
)
from portal.plans.schedule import add_months
from portal.plans.services import (
    accept_counter_offer,
    cancel_plan,
    decline_counter_offer,
    propose_plan,
)
from portal.responses import pdf_response
from portal.security import CARD_PAGE_CSP

bp = Blueprint("plans", __name__)


def _plan_or_404(plan_id: int) -> PaymentPlan:
    plan = get_plan_for(current_customer(), plan_id)
    if plan is None:
        abort(404)  # someone else's plan is "not found", never "forbidden"
    return plan


def plannable(customer: Customer, today: date) -> list[PayableItem]:
    """The invoices a new plan may take: payable now (disputed amounts and active plans
    excluded) and not held by a plan waiting for review or an answer."""
    held = invoice_ids_in_open_plans(customer)
    return [i for i in payable_items(customer, today) if i.invoice.id not in held]


def _total(items: list[PayableItem]) -> Money | None:
    if not items or len({i.payable.currency for i in items}) > 1:
        return None
    return Money.sum((i.payable for i in items), items[0].payable.currency)


def _builder_context(customer: Customer, today: date) -> dict[str, Any]:
    """What `plans/new.html` shows around the form: the offers for the whole payable
    balance, the policy, the cooling-off date, plans waiting for an answer."""
    items = plannable(customer, today)
    policy = policy_for(customer)
    total = _total(items)
    ready = offers(total, policy, today) if total is not None else []
    return {
        "items": items,
        "policy": policy,
        "offers": [(p, schedule_for(p)) for p in ready],
        "offer_numbers": [i.invoice.number for i in items],
        "cooling_off_until": cooling_off_until(customer, today),
        "waiting": [
            p for p in plans_for(customer) if p.status in (PlanStatus.PENDING, PlanStatus.COUNTERED)
        ],
        "plan_summary": builder.plan_summary,
        "plan_details": builder.plan_details,
    }


def _new_form(items: list[PayableItem], policy: PlanPolicy, today: date) -> ProposePlanForm:
    """The builder as it first shows: every plannable invoice ticked, the policy's minimum
    down payment, three monthly payments from a month ahead (within the allowed delay)."""
    form = ProposePlanForm(
        formdata=None,
        invoices=[i.invoice.number for i in items],
        frequency="monthly",
        installments=min(3, policy.max_installments),
    )
    total = _total(items)
    if total is not None:
        form.down_payment.data = amount_input_text(
            policy.min_down_payment_for(total), current_locale()
        )
    latest = today + timedelta(days=max(1, policy.max_first_payment_days))
    form.first_payment_date.data = min(add_months(today, 1), latest)
    form.autopay.data = policy.autopay_required
    return form


def _render_builder(
    form: ProposePlanForm,
    customer: Customer,
    today: date,
    preview: builder.PlanPreview | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    context = _builder_context(customer, today)
    if request.args.get("fragment"):
        # The live preview (static/js/plans.js): the same numbers, only the region that changes.
        return render_template("plans/_preview.html", form=form, preview=preview, **context)
    return render_template("plans/new.html", form=form, preview=preview, **context), status


@bp.get("/plans/new")
@customer_required
def new() -> ResponseReturnValue:
    customer = current_customer()
    today = customer_today(customer, utcnow())
    context = _builder_context(customer, today)
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
    read = builder.read_proposal(_typed(form), plannable(customer, today), today)
    for name, errors in read.errors.items():
        field = getattr(form, name)
        field.errors = list(field.errors or []) or list(errors)
    if not valid or read.proposal is None:
        return _render_builder(form, customer, today, status=400)
    preview = builder.preview(read.proposal, policy_for(customer))
    if not form.accept.data:
        return _render_builder(form, customer, today, preview)
    reason = (form.reason.data or "").strip()
    if not preview.is_within_policy and not reason:
        form.reason.errors = [
            _("Tell us why you need this plan: a specialist reads it before answering.")
        ]
        return _render_builder(form, customer, today, preview, status=400)
    try:
        plan = _propose(customer, read.proposal, read.invoices, reason, now)
    except DomainError as error:
        db.session.rollback()
        form.invoices.errors = [str(error.message)]
        return _render_builder(form, customer, today, preview, status=400)
    db.session.commit()
    if plan.status != PlanStatus.ACTIVE:
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


def _typed(form: ProposePlanForm) -> builder.ProposalInput:
    return builder.ProposalInput(
        numbers=form.invoices.data or [],
        down_payment=form.down_payment.data,
        frequency=form.frequency.data,
        installments=None if form.installments.errors else form.installments.data,
        first_payment_date=(
            None if form.first_payment_date.errors else form.first_payment_date.data
        ),
        autopay=bool(form.autopay.data),
    )


def _propose(
    customer: Customer,
    proposal: Proposal,
    items: list[PayableItem],
    reason: str,
    now: datetime,
) -> PaymentPlan:
    return propose_plan(
        customer,
        [i.invoice for i in items],
        proposal.down_payment,
        proposal.frequency,
        proposal.installments,
        proposal.first_payment_date,
        reason,
        proposal.autopay,
        actor=Actor.customer(customer),
        now=now,
    )


def _next_step(plan: PaymentPlan) -> ResponseReturnValue:
    """After a plan is agreed: a card for autopay first (when asked or required), then the
    down payment by card, then the plan's page."""
    if not payments_enabled(current_app.config):
        return redirect(url_for("plans.detail", plan_id=plan.id))
    if plan.autopay and plan.saved_card_id is None:
        return redirect(url_for("plans.card", plan_id=plan.id))
    return _pay(plan, 0)


def _pay(plan: PaymentPlan, number: int) -> ResponseReturnValue:
    """Open the pay flow for installment `number` (0: the down payment), if it is due."""
    if number == 0 and plan.scheduled_down_payment is None:
        return redirect(url_for("plans.detail", plan_id=plan.id))
    try:
        checkout = start_installment_checkout(current_customer(), plan, number, now=utcnow())
    except CardAttemptsExhausted as error:
        db.session.rollback()
        return render_template("payments/unavailable.html", message=str(error.message)), 429
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
        view=plan_page(plan, today),
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
    back = redirect(url_for("plans.detail", plan_id=plan.id))
    if not form.validate_on_submit() or form.decision.data not in ("accept", "decline"):
        flash(_("Please choose to accept or decline the plan."), "error")
        return back
    answer = accept_counter_offer if form.decision.data == "accept" else decline_counter_offer
    try:
        answer(plan, actor=Actor.customer(customer), now=utcnow())
    except DomainError as error:
        db.session.rollback()
        flash(str(error.message), "error")
        return back
    db.session.commit()
    if form.decision.data == "decline":
        flash(_("You declined the proposed plan. Your invoices are due as before."), "info")
        return back
    flash(_("Your payment plan is agreed."), "success")
    return _next_step(plan)


@bp.post("/plans/<int:plan_id>/cancel")
@customer_required
def cancel(plan_id: int) -> ResponseReturnValue:
    """Withdraw a proposal still waiting for review (or a counter-offer not yet answered)."""
    customer = current_customer()
    plan = _plan_or_404(plan_id)
    if CancelPlanForm().validate_on_submit():
        if plan.status not in (PlanStatus.PENDING, PlanStatus.COUNTERED):
            flash(_("Only a proposal still waiting for an answer can be withdrawn."), "error")
            return redirect(url_for("plans.detail", plan_id=plan.id))
        try:
            cancel_plan(plan, actor=Actor.customer(customer), now=utcnow(), reason="withdrawn")
        except DomainError as error:
            db.session.rollback()
            flash(str(error.message), "error")
        else:
            db.session.commit()
            flash(_("Your proposal was withdrawn."), "info")
    return redirect(url_for("plans.detail", plan_id=plan.id))


@bp.post("/plans/<int:plan_id>/installments/<int:installment>/pay")
@customer_required
def pay_installment(plan_id: int, installment: int) -> ResponseReturnValue:
    """Pay installment number `installment` (0: the down payment) now, early or by hand."""
    plan = _plan_or_404(plan_id)
    if not PayInstallmentForm().validate_on_submit():
        return redirect(url_for("plans.detail", plan_id=plan.id))
    return _pay(plan, installment)


@bp.get("/plans/from-checkout/<int:checkout_id>")
@customer_required
def back_to_plan(checkout_id: int) -> ResponseReturnValue:
    """From the pay flow back to the plan whose installment a checkout pays."""
    checkout = get_checkout_for(current_customer(), checkout_id)
    installment = checkout_installment(checkout) if checkout is not None else None
    if installment is None:
        abort(404)
    return redirect(url_for("plans.detail", plan_id=installment.plan_id))


@bp.get("/plans/<int:plan_id>/card")
@writes_on_get
@customer_required
@limit_card_actions
@talisman(content_security_policy=CARD_PAGE_CSP, content_security_policy_nonce_in=["script-src"])
def card(plan_id: int) -> ResponseReturnValue:
    """Save (or change) the card the installments are charged to: Stripe.js's card field
    confirms a SetupIntent; nothing is charged. Card testing as on the pay flow's card
    page (`payments.card_testing`): the same rate limit, and no SetupIntent once the
    customer's failed card attempts reach the day's cap."""
    customer = current_customer()
    plan = _plan_or_404(plan_id)
    if not payments_enabled(current_app.config) or plan.status != PlanStatus.ACTIVE:
        abort(404)
    try:
        setup_secret = card_setup_secret(customer, now=utcnow())
    except CardAttemptsExhausted as error:
        return render_template("payments/unavailable.html", message=str(error.message)), 429
    except PaymentsUnavailable as error:
        return render_template("payments/unavailable.html", message=str(error.message)), 503
    db.session.commit()  # the Stripe Customer and SetupIntent, if this visit made them
    down = plan.scheduled_down_payment  # asked for next, once the card is saved
    owed = installment_owed(down) if down is not None else None
    down_payment_due = owed if owed is not None and owed.is_positive else None
    return render_template(
        "plans/card.html",
        plan=plan,
        down_payment_due=down_payment_due,
        form=SaveCardForm(),
        setup_secret=setup_secret,
        saved_card=saved_card_for(customer),
        scripts=card_page_script_tags(),
        card_messages=card_form_messages(),
    )


@bp.post("/plans/<int:plan_id>/card")
@customer_required
@limit_card_actions
def save_card(plan_id: int) -> ResponseReturnValue:
    customer = current_customer()
    plan = _plan_or_404(plan_id)
    form = SaveCardForm()
    if not form.validate_on_submit() or plan.status != PlanStatus.ACTIVE:
        flash(_("This card could not be saved. Please try again."), "error")
        return redirect(url_for("plans.detail", plan_id=plan.id))
    now = utcnow()
    try:
        saved = saved_card_for(customer) if form.card_choice.data == "saved" else None
        if saved is None:
            saved = save_card_from_setup(customer, setup_intent_id=form.setup_intent.data, now=now)
        use_card_for_plan(plan, saved, actor=Actor.customer(customer), now=now)
    except DomainError as error:
        db.session.rollback()
        if isinstance(error, CardNotUsable):  # counts towards the day's cap, as on /pay
            record_card_failure(customer.id, error.code, now=now)
            db.session.commit()
        flash(str(error.message), "error")
        return redirect(url_for("plans.card", plan_id=plan.id))
    db.session.commit()
    flash(_("Your installments will be paid with this card."), "success")
    return _pay(plan, 0)


@bp.get("/plans/<int:plan_id>/agreement.pdf")
@customer_required
def agreement(plan_id: int) -> ResponseReturnValue:
    plan = _plan_or_404(plan_id)
    if plan.status not in (PlanStatus.ACTIVE, PlanStatus.COMPLETED, PlanStatus.BROKEN):
        abort(404)  # nothing agreed yet
    document = agreement_pdf(
        agreement_terms(plan), creditor=current_creditor(), locale=current_locale()
    )
    return pdf_response(document, f"payment-plan-{plan_reference(plan)}.pdf")


@bp.app_template_global("plan_fields")
def plan_fields(proposal: Proposal) -> dict[str, str]:
    """A proposal as the builder's field values (the one-click forms of offers)."""
    return {
        "down_payment": amount_input_text(proposal.down_payment, current_locale()),
        "frequency": str(proposal.frequency),
        "installments": str(proposal.installments),
        "first_payment_date": proposal.first_payment_date.isoformat(),
    }
