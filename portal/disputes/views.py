"""The customer's side of disputes: dispute lines of an invoice, follow the dispute,
answer staff, withdraw, download the evidence.

Every route is the signed-in customer's only: someone else's invoice, dispute or file
is "not found" (404), never "forbidden". Uploads are checked whole before anything is
written (`evidence.accept_uploads`); if the service then refuses, or the commit fails,
the stored files are removed again (`evidence.discard`): a refused form saves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from flask_limiter.util import get_remote_address
from werkzeug.wrappers import Response

from portal.access.sessions import current_customer, customer_required, signed_in_customer
from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.disputes import services
from portal.disputes.evidence import (
    EvidenceRefused,
    accept_uploads,
    chosen_files,
    discard,
    evidence_response,
    serves_evidence,
)
from portal.disputes.forms import (
    AmountRefused,
    OpenDisputeForm,
    ReplyForm,
    WithdrawForm,
    open_dispute_form,
    parse_line_amount,
)
from portal.disputes.models import Dispute, DisputeReason, DisputeStatus
from portal.disputes.queries import get_dispute_for
from portal.disputes.storage_types import StoredEvidence
from portal.errors import DomainError
from portal.extensions import db, limiter
from portal.i18n import datetime_in_zone, money_filter, zone_or_default
from portal.inputs import accepts_uploads, form_language
from portal.invoices.balances import InvoiceBalance, LineBalance, invoice_balance, line_balances
from portal.invoices.models import Invoice
from portal.invoices.queries import get_invoice_for
from portal.money import Money

bp = Blueprint("disputes", __name__)


# --- rate limits -----------------------------------------------------------------------
def _per_account() -> str:
    customer = signed_in_customer()
    return f"customer:{customer.id}" if customer else f"ip:{get_remote_address()}"


def _opened(response: Response) -> bool:
    """Only a dispute opened counts against DISPUTE_RATE_LIMIT (the success redirect); a
    form shown again to fix a mistake costs nothing."""
    return response.status_code in (302, 303)


def _dispute_limit() -> str:
    return str(current_app.config["DISPUTE_RATE_LIMIT"])


def _upload_limit() -> str:
    return str(current_app.config["EVIDENCE_RATE_LIMIT"])


# Opening disputes is bounded per account (each holds money and reaches a specialist's
# queue); every POST that may carry files is bounded too, since each file is parsed.
_limit_disputes = limiter.limit(
    _dispute_limit, key_func=_per_account, methods=["POST"], deduct_when=_opened
)
_limit_uploads = limiter.shared_limit(
    _upload_limit, scope="dispute-uploads", key_func=_per_account, methods=["POST"]
)


# --- helpers ---------------------------------------------------------------------------
def _invoice_or_404(customer: Customer, number: str) -> Invoice:
    invoice = get_invoice_for(customer, number)
    if invoice is None:
        abort(404)  # someone else's invoice is "not found", never "forbidden"
    return invoice


def _dispute_or_404(customer: Customer, dispute_id: int) -> Dispute:
    dispute = get_dispute_for(customer, dispute_id)
    if dispute is None:
        abort(404)
    return dispute


def _store_and_record(uploads: Sequence[Any], record: Callable[[list[StoredEvidence]], Any]) -> Any:
    """Store the files, run `record(stored)` (a service call), commit; on any refusal or
    failure roll back and remove the files. EvidenceRefused and DomainError propagate
    after the clean-up, with nothing saved."""
    stored = accept_uploads(uploads)
    try:
        result = record(stored)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        discard(stored)
        raise
    return result


def _files_sent(form: OpenDisputeForm | ReplyForm) -> bool:
    return bool(chosen_files(form.evidence.data or []))


# --- opening a dispute -----------------------------------------------------------------
def _render_form(
    invoice: Invoice,
    balance: InvoiceBalance,
    lines: list[LineBalance],
    form: OpenDisputeForm,
    problems: list[str],
    status: int = 200,
) -> ResponseReturnValue:
    return render_template(
        "disputes/new.html",
        invoice=invoice,
        balance=balance,
        lines=lines,
        form=form,
        problems=problems,
        files_lost=request.method == "POST" and _files_sent(form),
    ), status


def _chosen_amounts(
    form: OpenDisputeForm, by_number: dict[int, LineBalance], currency: str
) -> tuple[dict[int, Money | None], bool]:
    """The ticked lines and the amount typed for each (None: the whole disputable
    amount). Errors go on the amount fields; returns (chosen, ok)."""
    chosen: dict[int, Money | None] = {}
    ok = True
    for number in form.line_numbers:
        amount_field = form.amount_field(number)
        ticked = bool(form.line_field(number).data)
        text = (amount_field.data or "").strip()
        if not ticked:
            if text:
                amount_field.errors = [_("Tick this line to dispute it, or clear the amount.")]
                ok = False
            continue
        try:
            amount = parse_line_amount(text, currency, form_language())
        except AmountRefused as error:
            amount_field.errors = [str(error)]
            ok = False
            continue
        disputable = by_number[number].disputable
        if amount is not None and amount > disputable:
            amount_field.errors = [
                _(
                    "You can dispute at most %(amount)s on this line.",
                    amount=money_filter(disputable),
                )
            ]
            ok = False
            continue
        chosen[number] = amount
    return chosen, ok


@bp.route("/invoices/<path:number>/dispute", methods=["GET", "POST"])
@accepts_uploads
@customer_required
@_limit_disputes
@_limit_uploads
def new(number: str) -> ResponseReturnValue:
    """The form: each line with what may still be disputed on it, a reason, a message,
    up to 5 files. Works without JavaScript."""
    customer = current_customer()
    now = utcnow()
    invoice = _invoice_or_404(customer, number)
    balance = invoice_balance(invoice, customer_today(customer, now))
    lines = line_balances(invoice, balance)
    disputable = [lb for lb in lines if lb.is_disputable]
    form = open_dispute_form(lb.line.line_number for lb in disputable)
    if request.method == "GET":
        wanted = request.args.get("line", "")
        if wanted.isdigit() and int(wanted) in form.line_numbers:
            form.line_field(int(wanted)).data = True
        return _render_form(invoice, balance, lines, form, [])
    if not disputable:
        return _render_form(invoice, balance, lines, form, [], 400)
    by_number = {lb.line.line_number: lb for lb in disputable}
    valid = form.validate_on_submit()
    chosen, amounts_ok = _chosen_amounts(form, by_number, invoice.currency)
    problems: list[str] = []
    if amounts_ok and not chosen:
        problems.append(_("Please tick at least one line you dispute."))
    if not valid or not amounts_ok or problems:
        return _render_form(invoice, balance, lines, form, problems, 400)
    try:
        dispute = _store_and_record(
            form.evidence.data or [],
            lambda stored: services.open_dispute(
                customer,
                invoice,
                chosen,
                DisputeReason(form.reason.data),
                form.message.data or "",
                stored,
                actor=Actor.customer(customer),
                now=now,
            ),
        )
    except EvidenceRefused as error:
        form.evidence.errors = [error.message]
        return _render_form(invoice, balance, lines, form, [], 400)
    except DomainError as error:
        return _render_form(invoice, balance, lines, form, [error.message], 400)
    flash(
        _(
            "Thank you. We received your dispute of %(amount)s. It is on hold: you do not "
            "need to pay it while we look into it.",
            amount=money_filter(dispute.amount),
        ),
        "success",
    )
    return redirect(url_for("disputes.detail", dispute_id=dispute.id), code=303)


# --- one dispute -----------------------------------------------------------------------
def _customer_clock(customer: Customer) -> dict[str, Any]:
    """`local_day(moment)` and `local_time(moment)` for the templates: dates and times
    where the customer lives (as the dispute's emails give them), not in UTC."""
    zone = zone_or_default(customer.timezone)
    return {
        "local_day": lambda moment: moment.astimezone(zone).date(),
        "local_time": lambda moment: datetime_in_zone(moment, zone),
    }


def _render_detail(
    dispute: Dispute,
    reply_form: ReplyForm | None = None,
    withdraw_form: WithdrawForm | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    return render_template(
        "disputes/detail.html",
        **_customer_clock(dispute.customer),
        dispute=dispute,
        statuses=DisputeStatus,
        reply_form=reply_form or ReplyForm(formdata=None),
        withdraw_form=withdraw_form or WithdrawForm(formdata=None),
        files_lost=reply_form is not None and _files_sent(reply_form),
    ), status


@bp.get("/disputes/<int:dispute_id>")
@customer_required
def detail(dispute_id: int) -> ResponseReturnValue:
    """Its status, lines, every message and file, staff's answers; reply and withdraw."""
    return _render_detail(_dispute_or_404(current_customer(), dispute_id))


@bp.post("/disputes/<int:dispute_id>/reply")
@accepts_uploads
@customer_required
@_limit_uploads
def reply(dispute_id: int) -> ResponseReturnValue:
    customer = current_customer()
    dispute = _dispute_or_404(customer, dispute_id)
    form = ReplyForm()
    if not form.validate_on_submit():
        return _render_detail(dispute, reply_form=form, status=400)
    body = (form.message.data or "").strip()
    if not body and not _files_sent(form):
        form.message.errors = [_("Please write an answer or choose a file to send.")]
        return _render_detail(dispute, reply_form=form, status=400)
    now = utcnow()
    try:
        _store_and_record(
            form.evidence.data or [],
            lambda stored: services.reply(
                dispute, body, stored, actor=Actor.customer(customer), now=now
            ),
        )
    except EvidenceRefused as error:
        form.evidence.errors = [error.message]
        return _render_detail(_dispute_or_404(customer, dispute_id), reply_form=form, status=400)
    except DomainError as error:
        form.message.errors = [error.message]
        return _render_detail(_dispute_or_404(customer, dispute_id), reply_form=form, status=400)
    flash(_("Thank you. We received your answer and will come back to you."), "success")
    return redirect(url_for("disputes.detail", dispute_id=dispute_id), code=303)


@bp.post("/disputes/<int:dispute_id>/withdraw")
@customer_required
def withdraw(dispute_id: int) -> ResponseReturnValue:
    customer = current_customer()
    dispute = _dispute_or_404(customer, dispute_id)
    form = WithdrawForm()
    if not form.validate_on_submit():
        return _render_detail(dispute, withdraw_form=form, status=400)
    try:
        services.withdraw(dispute, actor=Actor.customer(customer), now=utcnow())
        db.session.commit()
    except DomainError as error:
        db.session.rollback()
        form.confirm.errors = [error.message]
        return _render_detail(_dispute_or_404(customer, dispute_id), withdraw_form=form, status=400)
    flash(
        _("You withdrew your dispute. The amount you disputed is payable again."),
        "success",
    )
    return redirect(url_for("disputes.detail", dispute_id=dispute_id), code=303)


@bp.get("/disputes/<int:dispute_id>/files/<int:file_id>")
@customer_required
@serves_evidence
def file(dispute_id: int, file_id: int) -> ResponseReturnValue:
    """One evidence file of the customer's own dispute, as a download."""
    dispute = _dispute_or_404(current_customer(), dispute_id)
    found = next((f for f in dispute.files if f.id == file_id), None)
    if found is None:
        abort(404)
    return evidence_response(found)


# --- for the invoice and account pages -------------------------------------------------
def invoice_dispute_context(invoice: Invoice, balance: InvoiceBalance) -> dict[str, Any]:
    """What `invoices/detail.html` shows of disputes: each line's hold and open dispute,
    and whether anything is left to dispute."""
    from portal.disputes.queries import disputes_for

    lines = line_balances(invoice, balance)
    open_disputes = [
        d for d in disputes_for(invoice.customer, open_only=True) if d.invoice_id == invoice.id
    ]
    dispute_by_line: dict[int, Dispute] = {}
    for dispute in open_disputes:
        for line in dispute.lines:
            dispute_by_line.setdefault(line.invoice_line_id, dispute)
    return {
        "line_balances": {lb.line.id: lb for lb in lines},
        "dispute_by_line": dispute_by_line,
        "open_disputes": open_disputes,
        "can_dispute": any(lb.is_disputable for lb in lines),
    }
