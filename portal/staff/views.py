"""The staff side's sign-in, sign-out and dashboard (`/staff/`).

Sign-in is two steps: the password (`login`), then a TOTP code (`code`), or at the first
sign-in the enrolment of an authenticator app (`enrol`). Between the two, Flask's signed
cookie holds only the member's id and when the password was accepted (5 minutes to
finish); the staff session starts after the second step.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.audit.queries import AuditFilter, actor_label, audit_csv, audit_page
from portal.audit.services import record_event
from portal.db import utcnow, writes_on_get
from portal.extensions import db, limiter
from portal.staff.auth import (
    current_staff,
    end_staff_session,
    signed_in_staff,
    staff_required,
    staff_session,
    start_staff_session,
)
from portal.staff.forms import (
    AuditFilterForm,
    InviteStaffForm,
    SetPasswordForm,
    StaffActionForm,
    StaffCodeForm,
    StaffLoginForm,
    StaffSignOutForm,
)
from portal.staff.models import StaffMember, StaffRole
from portal.staff.nav import staff_counts, staff_nav
from portal.staff.services import (
    CodeRefused,
    LoginRefused,
    PasswordLink,
    PasswordLinkNotUsable,
    StaffInputError,
    check_password,
    deactivate_staff,
    finish_enrolment,
    invite_staff,
    member_for_password_token,
    mfa_required,
    provisioning_uri,
    reset_mfa,
    reset_password,
    set_password_with_token,
    signed_in,
    start_enrolment,
    verify_code,
)

bp = Blueprint("staff", __name__, url_prefix="/staff")

PENDING_FOR = timedelta(minutes=5)


@bp.before_request
def _check_staff_session() -> None:
    # At the start of the request, before the view changes anything: ending or touching
    # a session commits.
    if "portal_staff" in request.cookies:
        staff_session()


bp.add_app_template_filter(actor_label, "actor")


@bp.app_context_processor
def _inject_staff() -> dict[str, Any]:
    # Only under /staff (the only path the staff cookie is sent to); emails are rendered
    # outside any request.
    on_staff_side = has_request_context() and request.path.startswith("/staff")
    if not on_staff_side:
        return {"staff_member": None, "staff_nav": [], "staff_counts": {}}
    member = signed_in_staff()
    return {
        "staff_member": member,
        "staff_nav": staff_nav(),
        "staff_counts": staff_counts() if member is not None else {},
    }


def _login_limit() -> str:
    return str(current_app.config["STAFF_LOGIN_RATE_LIMIT"])


def _safe_next(target: str | None) -> str:
    """Back to the staff page asked for before signing in; nowhere else."""
    if (
        target
        and target.startswith("/staff")
        and not target.startswith("//")
        and "\\" not in target
    ):
        return target
    return url_for("staff.dashboard")


def _pending(now: datetime) -> StaffMember | None:
    """The member whose password was accepted a moment ago in this browser, if any."""
    pending = session.get("staff_pending")
    if not isinstance(pending, dict):
        return None
    try:
        since = datetime.fromisoformat(str(pending["at"]))
        member = db.session.get(StaffMember, int(pending["id"]))
    except (KeyError, TypeError, ValueError):
        return None
    if member is None or not member.is_active or member.password_hash is None:
        return None  # deactivated, or its password reset, since the password step
    if now - since > PENDING_FOR or since > now:
        return None
    return member


def _finish(member: StaffMember, now: datetime, target: str | None, message: str = ""):  # type: ignore[no-untyped-def]
    signed_in(member, now=now)
    start_staff_session(member, now)  # a fresh signed cookie: flash after this
    db.session.commit()
    if message:
        flash(message, "success")
    return redirect(_safe_next(target))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():  # type: ignore[no-untyped-def]
    if signed_in_staff() is not None:
        return redirect(url_for("staff.dashboard"))
    form = StaffLoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        now = utcnow()
        try:
            member = check_password(form.email.data or "", form.password.data or "", now=now)
        except LoginRefused as refused:
            db.session.commit()  # the failed attempt counts
            form.password.errors = [refused.message]
            return render_template("staff/login.html", form=form), 400
        target = form.next.data
        if not member.mfa_enrolled and not mfa_required():
            return _finish(member, now, target)
        session["staff_pending"] = {"id": member.id, "at": now.isoformat(), "next": target}
        db.session.commit()
        return redirect(url_for("staff.code" if member.mfa_enrolled else "staff.enrol"))
    status = 400 if form.errors else 200
    return render_template("staff/login.html", form=form), status


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def code():  # type: ignore[no-untyped-def]
    now = utcnow()
    member = _pending(now)
    if member is None or not member.mfa_enrolled:
        return redirect(url_for("staff.login"))
    form = StaffCodeForm()
    if form.validate_on_submit():
        try:
            verify_code(member, form.code.data or "", now=now)
        except CodeRefused as refused:
            db.session.commit()
            form.code.errors = [refused.message]
            return render_template("staff/code.html", form=form), 400
        return _finish(member, now, session.get("staff_pending", {}).get("next"))
    status = 400 if form.errors else 200
    return render_template("staff/code.html", form=form), status


@bp.route("/login/enrol", methods=["GET", "POST"])
@writes_on_get
@limiter.limit(_login_limit, methods=["POST"])
def enrol():  # type: ignore[no-untyped-def]
    now = utcnow()
    member = _pending(now)
    if member is None:
        return redirect(url_for("staff.login"))
    if member.mfa_enrolled:
        return redirect(url_for("staff.code"))
    secret = start_enrolment(member)
    db.session.commit()
    form = StaffCodeForm()
    status = 200
    if form.validate_on_submit():
        try:
            finish_enrolment(member, form.code.data or "", now=now)
        except CodeRefused as refused:
            db.session.commit()
            form.code.errors = [refused.message]
            status = 400
        else:
            target = session.get("staff_pending", {}).get("next")
            return _finish(member, now, target, _("Your authenticator app is set up."))
    elif form.errors:
        status = 400
    import segno  # only the enrolment page draws a QR code: not loaded by every worker

    qr = segno.make(provisioning_uri(member), error="m")
    svg = qr.svg_inline(scale=5, dark="#111", light="#fff", title=_("QR code to scan"))
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return render_template("staff/enrol.html", form=form, qr_svg=svg, secret=grouped), status


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    form = StaffSignOutForm()
    if form.validate_on_submit():
        end_staff_session(utcnow())
        db.session.commit()
        flash(_("You have signed out."), "info")
    return redirect(url_for("staff.login"))


@bp.get("/")
@staff_required()
def dashboard():  # type: ignore[no-untyped-def]
    from portal.disputes.staff_views import queue_counts
    from portal.payments.attention import events_to_review_count
    from portal.plans.queries import open_request_count

    member = current_staff()
    return render_template(
        "staff/dashboard.html",
        member=member,
        disputes=queue_counts(),
        plan_requests=open_request_count(),
        # Admins only: they reconcile with Stripe's dashboard.
        stripe_events=events_to_review_count(utcnow()) if member.is_admin else 0,
    )


# --- set-password links (invitations, password resets) --------------------------------------
@bp.route("/set-password/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def set_password(token: str):  # type: ignore[no-untyped-def]
    now = utcnow()
    try:
        member = member_for_password_token(token, now=now)
    except PasswordLinkNotUsable as error:
        return render_template("staff/link_unusable.html", message=error.message), 410
    form = SetPasswordForm()
    if form.validate_on_submit():
        try:
            set_password_with_token(token, form.password.data or "", now=now)
        except StaffInputError as error:
            form.password.errors = [error.message]
        else:
            db.session.commit()
            flash(_("Your password is set. Please sign in."), "success")
            return redirect(url_for("staff.login"))
    status = 400 if form.errors else 200
    return render_template("staff/set_password.html", form=form, member=member), status


# --- admin: staff accounts ---------------------------------------------------------------
def _member_or_404(member_id: int) -> StaffMember:
    member = db.session.get(StaffMember, member_id)
    if member is None:
        abort(404)
    return member


def _staff_page(invite: InviteStaffForm, issued: PasswordLink | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    members = db.session.scalars(select(StaffMember).order_by(StaffMember.name, StaffMember.id))
    link = url_for("staff.set_password", token=issued.token, _external=True) if issued else None
    return render_template(
        "staff/admin_staff.html",
        members=list(members),
        invite=invite,
        action=StaffActionForm(),
        issued=issued,
        link=link,
        now=utcnow(),
    ), status


@bp.get("/admin/staff")
@staff_required(StaffRole.ADMIN)
def admin_staff():  # type: ignore[no-untyped-def]
    return _staff_page(InviteStaffForm())


@bp.post("/admin/staff")
@staff_required(StaffRole.ADMIN)
def invite():  # type: ignore[no-untyped-def]
    form = InviteStaffForm()
    if not form.validate_on_submit():
        return _staff_page(form, status=400)
    try:
        issued = invite_staff(
            form.email.data or "",
            name=form.name.data or "",
            role=form.role.data or "",
            actor=Actor.staff(current_staff()),
            now=utcnow(),
        )
    except StaffInputError as error:
        db.session.rollback()
        form.email.errors = [error.message]
        return _staff_page(form, status=400)
    db.session.commit()
    flash(_("%(name)s is invited.", name=issued.member.name), "success")
    return _staff_page(InviteStaffForm(formdata=None), issued)


@bp.post("/admin/staff/<int:member_id>/<any('deactivate', 'reset-2fa', 'reset-password'):what>")
@staff_required(StaffRole.ADMIN)
def change_member(member_id: int, what: str):  # type: ignore[no-untyped-def]
    member = _member_or_404(member_id)
    if not StaffActionForm().validate_on_submit():
        abort(400)
    actor, now = Actor.staff(current_staff()), utcnow()
    issued = None
    try:
        if what == "deactivate":
            deactivate_staff(member, actor=actor, now=now)
            message = _("%(name)s is deactivated and signed out.", name=member.name)
        elif what == "reset-2fa":
            reset_mfa(member, actor=actor, now=now)
            message = _(
                "%(name)s is signed out and sets up a new authenticator app at the next sign-in.",
                name=member.name,
            )
        else:
            issued = reset_password(member, actor=actor, now=now)
            message = _(
                "%(name)s is signed out; give them the link below to set a new password.",
                name=member.name,
            )
    except StaffInputError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("staff.admin_staff"))
    db.session.commit()
    flash(message, "success")
    if issued:
        return _staff_page(InviteStaffForm(formdata=None), issued)
    return redirect(url_for("staff.admin_staff"))


# --- admin: the audit log ----------------------------------------------------------------
def _audit_filter() -> tuple[AuditFilterForm, AuditFilter | None]:
    form = AuditFilterForm(request.args)
    if not form.validate():
        return form, None
    return form, AuditFilter(
        actor=form.actor.data or "",
        account_number=form.account_number.data or "",
        action=form.action.data or "",
        date_from=form.date_from.data,
        date_to=form.date_to.data,
    )


@bp.get("/admin/audit")
@staff_required(StaffRole.ADMIN)
def audit_log():  # type: ignore[no-untyped-def]
    form, chosen = _audit_filter()
    page = request.args.get("page", 1, type=int) or 1
    page = min(max(page, 1), 100_000)
    rows, more = audit_page(chosen, page) if chosen else ([], False)
    args = {k: v for k, v in request.args.items() if k not in ("page", "submit") and v}
    return render_template(
        "staff/audit.html", form=form, rows=rows, page=page, more=more, args=args
    ), (200 if chosen else 400)


@bp.get("/admin/audit.csv")
@writes_on_get
@staff_required(StaffRole.ADMIN)
def audit_log_csv():  # type: ignore[no-untyped-def]
    _form, chosen = _audit_filter()
    if chosen is None:
        return audit_log()
    record_event(
        "audit.exported",
        actor=Actor.staff(current_staff()),
        now=utcnow(),
        data={k: v for k, v in request.args.items() if v},
    )
    db.session.commit()
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return Response(
        stream_with_context(audit_csv(chosen)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )


# --- admin: Stripe events the inbox left for a person ----------------------------------------
@bp.get("/admin/stripe-events")
@staff_required(StaffRole.ADMIN)
def stripe_events():  # type: ignore[no-untyped-def]
    from portal.payments.attention import ATTENTION_PAGE_SIZE, events_to_review

    events = events_to_review(utcnow())
    return render_template("staff/stripe_events.html", events=events, limit=ATTENTION_PAGE_SIZE)
