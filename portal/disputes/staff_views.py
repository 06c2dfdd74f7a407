"""The staff dispute desk under /staff/disputes: the queue, one dispute, its decisions.

Every view needs a staff session with the specialist role (admins have it too): an
anonymous visitor or a customer session is sent to the staff sign-in page. Each decision
is one POST form (CSRF) that calls exactly one service of `portal.disputes.services`
with the staff member as `Actor`, commits once, and flashes what happened; a service's
refusal (`DomainError`, for instance a decision on a withdrawn dispute or a second
submit of the same decision) is flashed and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
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
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.db import utcnow
from portal.disputes import services
from portal.disputes.ages import DEFAULT_TARGET_BUSINESS_DAYS
from portal.disputes.evidence import evidence_response, serves_evidence
from portal.disputes.models import REASON_LABELS, Dispute, DisputeFile
from portal.disputes.queries import get_dispute
from portal.disputes.services import DisputeTransitionRefused
from portal.disputes.staff_forms import (
    STAFF_STATUS_LABELS,
    STATUS_OPEN,
    AcceptForm,
    AcceptInPartForm,
    AskForm,
    DecisionForm,
    QueueFilterForm,
    RejectForm,
)
from portal.disputes.staff_queries import (
    QueueSummary,
    dispute_age,
    other_open_disputes,
    queue_page,
    queue_summary,
)
from portal.errors import DomainError
from portal.extensions import db
from portal.i18n import creditor_zone, current_locale
from portal.inputs import AmountInputError, form_language, parse_amount_input
from portal.money import Money
from portal.staff.auth import current_staff, staff_required
from portal.staff.models import StaffMember, StaffRole

bp = Blueprint("staff_disputes", __name__, url_prefix="/staff")
specialist = staff_required(StaffRole.SPECIALIST)


def target_business_days() -> int:
    """Config DISPUTE_TARGET_BUSINESS_DAYS: the resolution target (default 10)."""
    return int(current_app.config.get("DISPUTE_TARGET_BUSINESS_DAYS", DEFAULT_TARGET_BUSINESS_DAYS))


def _today() -> date:
    return datetime.now(creditor_zone()).date()


def _page() -> int:
    text = request.args.get("page", "1")
    return min(int(text), 100_000) if text.isascii() and text.isdigit() and text != "0" else 1


def _dispute_or_404(dispute_id: int) -> Dispute:
    dispute = get_dispute(dispute_id)
    if dispute is None:
        abort(404)
    return dispute


def _labels() -> dict[str, Any]:
    return {
        "status_labels": {s.value: str(label) for s, label in STAFF_STATUS_LABELS.items()},
        "reason_labels": {r.value: str(label) for r, label in REASON_LABELS.items()},
    }


def queue_counts() -> QueueSummary:
    """The open disputes in numbers, for the staff home and the nav."""
    return queue_summary(_today(), target_business_days())


# --- the queue -----------------------------------------------------------------------------
@bp.get("/disputes")
@specialist
def queue() -> ResponseReturnValue:
    form = QueueFilterForm(formdata=request.args or None)
    if request.args and not form.validate():
        return render_template(
            "disputes/staff_queue.html",
            form=form,
            page=None,
            target=target_business_days(),
            **_labels(),
        ), 400
    page = queue_page(
        statuses=form.chosen_statuses,
        reason=form.chosen_reason,
        today=_today(),
        target=target_business_days(),
        page=_page(),
    )
    status = form.status.data if form.status.data != STATUS_OPEN else ""
    args = {"reason": form.reason.data or "", "status": status or ""}
    return render_template(
        "disputes/staff_queue.html",
        form=form,
        page=page,
        args={k: v for k, v in args.items() if v},
        target=target_business_days(),
        **_labels(),
    )


# --- one dispute ---------------------------------------------------------------------------
def _authors(dispute: Dispute) -> dict[str, str]:
    """Each thread author's actor string -> the name shown."""
    staff_ids = {
        int(m.author.split(":", 1)[1])
        for m in dispute.messages
        if m.author.startswith("staff:") and m.author.split(":", 1)[1].isdigit()
    }
    if dispute.resolved_by and dispute.resolved_by.startswith("staff:"):
        name = dispute.resolved_by.split(":", 1)[1]
        if name.isdigit():
            staff_ids.add(int(name))
    names: dict[str, str] = {}
    if staff_ids:
        for member in db.session.scalars(select(StaffMember).where(StaffMember.id.in_(staff_ids))):
            names[f"staff:{member.id}"] = _("%(name)s (staff)", name=member.name)
    names[f"customer:{dispute.customer_id}"] = _("%(name)s (customer)", name=dispute.customer.name)
    names["system"] = _("The portal")
    return names


def _render_detail(dispute: Dispute, status: int = 200, **forms: Any) -> ResponseReturnValue:
    seen = len(dispute.messages)
    line_numbers = [line.line_number for line in dispute.lines]
    defaults: dict[str, Any] = {
        "accept_form": AcceptForm(formdata=None, messages_seen=seen),
        "partial_form": AcceptInPartForm.for_lines(line_numbers, formdata=None, messages_seen=seen),
        "reject_form": RejectForm(formdata=None, messages_seen=seen),
        "ask_form": AskForm(formdata=None, messages_seen=seen),
    }
    defaults.update(forms)
    for form in defaults.values():
        form.messages_seen.data = seen  # a re-shown form decides on the thread as it is now
    return render_template(
        "disputes/staff_detail.html",
        dispute=dispute,
        age=dispute_age(dispute, _today(), target_business_days()),
        authors=_authors(dispute),
        others=other_open_disputes(dispute),
        disputed={line.invoice_line_id: line for line in dispute.lines},
        loose_files=[f for f in dispute.files if f.message_id is None],
        **defaults,
        **_labels(),
    ), status


@bp.get("/disputes/<int:dispute_id>")
@specialist
def detail(dispute_id: int) -> ResponseReturnValue:
    return _render_detail(_dispute_or_404(dispute_id))


@bp.get("/disputes/<int:dispute_id>/files/<int:file_id>")
@serves_evidence
@specialist
def evidence_file(dispute_id: int, file_id: int) -> ResponseReturnValue:
    stored = db.session.get(DisputeFile, file_id)
    if stored is None or stored.dispute_id != dispute_id:
        abort(404)
    return evidence_response(stored)


# --- decisions -----------------------------------------------------------------------------
def _decide(
    dispute: Dispute,
    form: DecisionForm,
    form_name: str,
    act: Callable[[Actor, datetime], str],
) -> ResponseReturnValue:
    """Validate `form`, refuse a decision taken on a stale page, run `act` (one service
    call; returns the message to flash), commit once. A refusal changes nothing."""
    if not form.validate_on_submit():
        return _render_detail(dispute, 400, **{form_name: form})
    if dispute.is_open and form.messages_seen.data != len(dispute.messages):
        flash(
            _(
                "The thread changed since you opened this dispute (the customer may have "
                "replied). Nothing was changed: read it, then decide."
            ),
            "error",
        )
        return redirect(url_for("staff_disputes.detail", dispute_id=dispute.id))
    try:
        message = act(Actor.staff(current_staff()), utcnow())
    except DisputeTransitionRefused as refused:
        db.session.rollback()
        flash(
            _(
                "Nothing was changed: dispute %(id)d is already “%(status)s”.",
                id=dispute.id,
                status=STAFF_STATUS_LABELS[refused.status],
            ),
            "error",
        )
        return redirect(url_for("staff_disputes.detail", dispute_id=dispute.id))
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("staff_disputes.detail", dispute_id=dispute.id))
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("staff_disputes.queue"))


@bp.post("/disputes/<int:dispute_id>/accept")
@specialist
def accept(dispute_id: int) -> ResponseReturnValue:
    dispute = _dispute_or_404(dispute_id)

    def act(actor: Actor, now: datetime) -> str:
        services.accept(dispute, actor=actor, now=now)
        return _(
            "Dispute %(id)d accepted: %(amount)s credited to invoice %(invoice)s.",
            id=dispute.id,
            amount=dispute.credited.format(current_locale()),
            invoice=dispute.invoice.number,
        )

    return _decide(dispute, AcceptForm(), "accept_form", act)


@bp.post("/disputes/<int:dispute_id>/accept-in-part")
@specialist
def accept_in_part(dispute_id: int) -> ResponseReturnValue:
    dispute = _dispute_or_404(dispute_id)
    form = AcceptInPartForm.for_lines([line.line_number for line in dispute.lines])
    credits: dict[int, Money] = {}
    if form.validate_on_submit():
        for number, text in form.credit_texts().items():
            try:
                credits[number] = parse_amount_input(
                    text, dispute.currency, form_language(), allow_zero=True
                )
            except AmountInputError as refused:
                form.credit_field(number).errors = [refused.message]
        if any(form.credit_field(n).errors for n in form.line_numbers):
            return _render_detail(dispute, 400, partial_form=form)

    def act(actor: Actor, now: datetime) -> str:
        services.accept_in_part(
            dispute,
            {n: m for n, m in credits.items() if m},
            form.reason.data or "",
            actor=actor,
            now=now,
        )
        return _(
            "Dispute %(id)d accepted in part: %(amount)s credited; the rest of %(disputed)s "
            "is payable again.",
            id=dispute.id,
            amount=dispute.credited.format(current_locale()),
            disputed=dispute.amount.format(current_locale()),
        )

    return _decide(dispute, form, "partial_form", act)


@bp.post("/disputes/<int:dispute_id>/reject")
@specialist
def reject(dispute_id: int) -> ResponseReturnValue:
    dispute = _dispute_or_404(dispute_id)
    form = RejectForm()

    def act(actor: Actor, now: datetime) -> str:
        services.reject(dispute, (form.reason.data or "").strip(), actor=actor, now=now)
        return _(
            "Dispute %(id)d rejected: %(amount)s is payable again; the customer is emailed "
            "the reason.",
            id=dispute.id,
            amount=dispute.amount.format(current_locale()),
        )

    return _decide(dispute, form, "reject_form", act)


@bp.post("/disputes/<int:dispute_id>/ask")
@specialist
def ask(dispute_id: int) -> ResponseReturnValue:
    dispute = _dispute_or_404(dispute_id)
    form = AskForm()

    def act(actor: Actor, now: datetime) -> str:
        services.ask_for_information(
            dispute, (form.question.data or "").strip(), actor=actor, now=now
        )
        return _(
            "Question sent on dispute %(id)d; it waits on the customer's reply.", id=dispute.id
        )

    return _decide(dispute, form, "ask_form", act)
