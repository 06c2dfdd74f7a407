"""The staff side's sign-in, sign-out and dashboard (`/staff/`).

Sign-in is two steps: the password (`login`), then a TOTP code (`code`), or at the first
sign-in the enrolment of an authenticator app (`enrol`). Between the two, Flask's signed
cookie holds only the member's id and when the password was accepted (5 minutes to
finish); the staff session starts after the second step.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import segno
from flask import (
    Blueprint,
    current_app,
    flash,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from portal.db import utcnow
from portal.extensions import db, limiter
from portal.staff.auth import (
    current_staff,
    end_staff_session,
    signed_in_staff,
    staff_required,
    staff_session,
    start_staff_session,
)
from portal.staff.forms import StaffCodeForm, StaffLoginForm, StaffSignOutForm
from portal.staff.models import StaffMember
from portal.staff.nav import staff_nav
from portal.staff.services import (
    CodeRefused,
    LoginRefused,
    check_password,
    finish_enrolment,
    mfa_required,
    provisioning_uri,
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


@bp.app_context_processor
def _inject_staff() -> dict[str, Any]:
    # Only under /staff (the only path the staff cookie is sent to); emails are rendered
    # outside any request.
    on_staff_side = has_request_context() and request.path.startswith("/staff")
    if not on_staff_side:
        return {"staff_member": None, "staff_nav": []}
    return {"staff_member": signed_in_staff(), "staff_nav": staff_nav()}


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
    if member is None or not member.is_active or now - since > PENDING_FOR or since > now:
        return None
    return member


def _finish(member: StaffMember, now: datetime, target: str | None):  # type: ignore[no-untyped-def]
    signed_in(member, now=now)
    start_staff_session(member, now)
    db.session.commit()
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
            flash(_("Your authenticator app is set up."), "success")
            return _finish(member, now, session.get("staff_pending", {}).get("next"))
    elif form.errors:
        status = 400
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
    return render_template("staff/dashboard.html", member=current_staff())
