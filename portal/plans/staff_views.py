"""The staff side of payment plans: the requests queue and each request (approve,
counter-offer with a preview, decline with a reason) for specialists; the segments'
policies for admins. Thin views: the services hold the rules and write the audit rows.
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from portal.audit.actors import Actor
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.errors import DomainError
from portal.extensions import db
from portal.i18n import creditor_zone, current_locale
from portal.inputs import AmountInputError, amount_input_text, form_language, parse_amount_input
from portal.invoices.queries import recent_payments_for
from portal.money import Money, MoneyError
from portal.plans.models import PaymentPlan
from portal.plans.policy import PlanPolicy, check, frequency_label, policy_problems
from portal.plans.queries import (
    broken_plans_to_follow_up,
    countered_plans,
    get_plan,
    plan_requests,
    plans_for,
    policy_versions,
    segments,
)
from portal.plans.schedule import Frequency, Installment, build_schedule, calendar_days_waiting
from portal.plans.services import (
    PolicyRefused,
    approve_plan,
    close_follow_up,
    counter_offer,
    decline_plan,
    proposal_of,
    save_policy,
)
from portal.plans.staff_forms import CounterOfferForm, DeclinePlanForm, PlanActionForm, PolicyForm
from portal.staff.auth import current_staff, staff_required
from portal.staff.models import StaffRole

bp = Blueprint("staff_plans", __name__, url_prefix="/staff")
specialist = staff_required(StaffRole.SPECIALIST)
admin = staff_required(StaffRole.ADMIN)

# The policy form states amounts for two-decimal currencies; the others are scaled from
# them (20.00 -> 2,000 JPY, 20.000 KWD), as the README's defaults are.
FORM_EXPONENT = 2

# "monthly", "every two weeks" in the reader's language, for the templates.
bp.add_app_template_filter(frequency_label, "plan_frequency")


def _actor() -> Actor:
    return Actor.staff(current_staff())


def _plan_or_404(plan_id: int) -> PaymentPlan:
    plan = get_plan(plan_id)
    if plan is None:
        abort(404)
    return plan


def _flash_form_errors(form: object) -> None:
    for errors in getattr(form, "errors", {}).values():
        for error in errors:
            flash(str(error), "error")


# --- the queue --------------------------------------------------------------------------
@bp.get("/plans")
@specialist
def queue() -> ResponseReturnValue:
    now = utcnow()
    requests = plan_requests()
    return render_template(
        "staff_plans/queue.html",
        requests=requests,
        # The limits each breaks, in the reader's language, as checked when proposed.
        breaches={
            p.id: check(proposal_of(p, p.proposed_on), p.policy_version.policy) for p in requests
        },
        countered=countered_plans(),
        broken=broken_plans_to_follow_up(),
        waiting={p.id: calendar_days_waiting(p.created_at, now, creditor_zone()) for p in requests},
        action=PlanActionForm(),
    )


def _counter_form(plan: PaymentPlan) -> CounterOfferForm:
    form = CounterOfferForm()
    if request.method == "GET":
        form.down_payment.data = amount_input_text(plan.down_payment, current_locale())
        form.frequency.data = plan.frequency
        form.installments.data = plan.installment_count
        form.first_payment_date.data = plan.first_payment_date
    return form


def _render_plan(
    plan: PaymentPlan,
    *,
    counter: CounterOfferForm | None = None,
    decline: DeclinePlanForm | None = None,
    preview: list[Installment] | None = None,
    preview_down: Money | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    customer = plan.customer
    today = customer_today(customer, utcnow())
    # The limits it breaks, in the reader's language, as checked when it was proposed.
    breaches = check(proposal_of(plan, plan.proposed_on), plan.policy_version.policy)
    # Until it is active the plan has no installments: show the schedule its terms give.
    current = None
    if not plan.installments:
        current = build_schedule(
            plan.total,
            plan.down_payment,
            plan.frequency_enum,
            plan.installment_count,
            plan.first_payment_date,
        )
    history = [p for p in plans_for(customer) if p.id != plan.id]
    return (
        render_template(
            "staff_plans/plan.html",
            plan=plan,
            customer=customer,
            today=today,
            breaches=breaches,
            schedule=current,
            history=history,
            payments=recent_payments_for(customer, 10),
            counter=counter or _counter_form(plan),
            decline=decline or DeclinePlanForm(),
            action=PlanActionForm(),
            preview=preview,
            preview_down=preview_down,
        ),
        status,
    )


@bp.get("/plans/<int:plan_id>")
@specialist
def plan(plan_id: int) -> ResponseReturnValue:
    return _render_plan(_plan_or_404(plan_id))


@bp.post("/plans/<int:plan_id>/approve")
@specialist
def approve(plan_id: int) -> ResponseReturnValue:
    plan = _plan_or_404(plan_id)
    if not PlanActionForm().validate_on_submit():
        abort(400)
    try:
        approve_plan(plan, actor=_actor(), now=utcnow())
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("staff_plans.plan", plan_id=plan_id))
    db.session.commit()
    flash(_("The plan is approved and active; the customer is emailed."), "success")
    return redirect(url_for("staff_plans.queue"))


@bp.post("/plans/<int:plan_id>/counter")
@specialist
def counter(plan_id: int) -> ResponseReturnValue:
    plan = _plan_or_404(plan_id)
    form = CounterOfferForm()
    if not form.validate_on_submit():
        return _render_plan(plan, counter=form, status=422)
    try:
        down = parse_amount_input(
            form.down_payment.data, plan.currency, form_language(), allow_zero=True
        )
    except AmountInputError as refused:
        form.down_payment.errors = [refused.message]
        return _render_plan(plan, counter=form, status=422)
    frequency = Frequency(form.frequency.data)
    count = int(form.installments.data or 0)
    first: date = form.first_payment_date.data
    if "preview" in request.form:
        try:
            preview = build_schedule(plan.total, down, frequency, count, first)
        except (MoneyError, ValueError, OverflowError):
            form.down_payment.errors = [
                _("The down payment must be below the total and leave something for each payment.")
            ]
            return _render_plan(plan, counter=form, status=422)
        return _render_plan(plan, counter=form, preview=preview, preview_down=down)
    try:
        counter_offer(
            plan,
            down_payment=down,
            frequency=frequency,
            installments=count,
            first_payment_date=first,
            note=form.note.data or "",
            actor=_actor(),
            now=utcnow(),
        )
    except DomainError as error:
        db.session.rollback()
        form.down_payment.errors = [error.message]
        return _render_plan(_plan_or_404(plan_id), counter=form, status=422)
    db.session.commit()
    flash(_("The counter-offer is on its way to the customer."), "success")
    return redirect(url_for("staff_plans.queue"))


@bp.post("/plans/<int:plan_id>/decline")
@specialist
def decline(plan_id: int) -> ResponseReturnValue:
    plan = _plan_or_404(plan_id)
    form = DeclinePlanForm()
    if not form.validate_on_submit():
        return _render_plan(plan, decline=form, status=422)
    try:
        decline_plan(plan, form.reason.data or "", actor=_actor(), now=utcnow())
    except DomainError as error:
        db.session.rollback()
        form.reason.errors = [error.message]
        return _render_plan(_plan_or_404(plan_id), decline=form, status=422)
    db.session.commit()
    flash(_("The plan is declined; the customer is emailed the reason."), "success")
    return redirect(url_for("staff_plans.queue"))


@bp.post("/plans/<int:plan_id>/follow-up")
@specialist
def follow_up(plan_id: int) -> ResponseReturnValue:
    plan = _plan_or_404(plan_id)
    if not PlanActionForm().validate_on_submit():
        abort(400)
    try:
        close_follow_up(plan, actor=_actor(), now=utcnow())
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("staff_plans.queue"))
    db.session.commit()
    flash(_("Marked as followed up."), "success")
    return redirect(url_for("staff_plans.queue"))


# --- policies (admins) ----------------------------------------------------------------------
def _major(minor: int) -> str:
    return amount_input_text(Money(minor, "USD"), current_locale())


def _segment_or_404(segment: str) -> str:
    if segment not in {s.segment for s in segments()}:
        abort(404)
    return segment


@bp.get("/policies")
@admin
def policies() -> ResponseReturnValue:
    return render_template("staff_plans/policies.html", segments=segments(), major=_major)


@bp.route("/policies/<segment>", methods=["GET", "POST"])
@admin
def edit_policy(segment: str) -> ResponseReturnValue:
    segment = _segment_or_404(segment)
    current = next(s for s in segments() if s.segment == segment).policy
    form = PolicyForm()
    if request.method == "GET":
        form.max_installments.data = current.max_installments
        form.frequencies.data = sorted(str(f) for f in current.frequencies)
        form.max_duration_months.data = current.max_duration_months
        form.min_installment.data = _major(current.min_installment_for("USD").minor)
        form.min_down_payment_percent.data = current.min_down_payment_percent
        form.max_first_payment_days.data = current.max_first_payment_days
        form.max_total.data = _major(current.max_total_for("USD").minor)
        form.autopay_required.data = current.autopay_required
        form.cooling_off_days.data = current.cooling_off_days
    elif form.validate_on_submit():
        policy = _policy_from(form, segment)
        if policy is not None:
            try:
                version = save_policy(policy, actor=_actor(), now=utcnow())
            except PolicyRefused as error:
                db.session.rollback()
                form.max_installments.errors = list(error.problems)
            else:
                db.session.commit()
                flash(
                    _(
                        "Version %(version)d of the %(segment)s policy is in force; plans"
                        " already agreed keep theirs.",
                        version=version.version,
                        segment=segment,
                    ),
                    "success",
                )
                return redirect(url_for("staff_plans.policies"))
    status = 422 if request.method == "POST" else 200
    return (
        render_template(
            "staff_plans/policy_form.html",
            form=form,
            segment=segment,
            versions=policy_versions(segment),
        ),
        status,
    )


def _policy_from(form: PolicyForm, segment: str) -> PlanPolicy | None:
    """The form's limits as a policy; None (with the field's error set) when an amount is
    not a number or the limits do not make a policy."""
    amounts: dict[str, int] = {}
    for field in (form.min_installment, form.max_total):
        try:  # major units of a two-decimal currency (the form says so)
            amounts[field.name] = parse_amount_input(
                field.data, "USD", form_language(), allow_zero=True
            ).minor  # zero: policy_problems says what a minimum of zero means
        except AmountInputError as refused:
            field.errors = [refused.message]
    if len(amounts) < 2:
        return None
    minimum, maximum = amounts["min_installment"], amounts["max_total"]
    policy = PlanPolicy(
        segment=segment,
        max_installments=int(form.max_installments.data or 0),
        frequencies=frozenset(Frequency(f) for f in form.frequencies.data or []),
        max_duration_months=int(form.max_duration_months.data or 0),
        min_installment={0: minimum, 2: minimum, 3: minimum * 10},
        min_down_payment_percent=int(form.min_down_payment_percent.data or 0),
        max_first_payment_days=int(form.max_first_payment_days.data or 0),
        max_total={0: maximum, 2: maximum, 3: maximum * 10},
        autopay_required=bool(form.autopay_required.data),
        cooling_off_days=int(form.cooling_off_days.data or 0),
    )
    problems = policy_problems(policy)
    if problems:
        form.max_total.errors = problems
        return None
    return policy
