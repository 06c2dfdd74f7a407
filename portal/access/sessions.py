"""The customer session: started by opening a link, scoped to one account, idle-limited."""

from __future__ import annotations

from datetime import datetime

from flask import (
    Flask,
    current_app,
    flash,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from portal.access.models import AccessLink
from portal.access.services import is_session_link_valid
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db, login_manager


def start_customer_session(link: AccessLink, now: datetime) -> None:
    """Rotate the session (no fixation), then bind it to the link's account."""
    locale = session.get("locale")
    session.clear()
    if locale:
        session["locale"] = locale
    login_user(link.customer, remember=False, fresh=True)
    session.permanent = True
    session["link_id"] = link.id
    session["seen_at"] = int(now.timestamp())


def end_customer_session() -> None:
    locale = session.get("locale")
    logout_user()
    session.clear()
    if locale:
        session["locale"] = locale


@login_manager.user_loader
def load_principal(user_id: str) -> Customer | None:
    kind, _sep, raw_id = user_id.partition(":")
    if kind != "customer" or not raw_id.isdigit():
        return None
    customer = db.session.get(Customer, int(raw_id))
    if customer is None or not is_session_link_valid(session.get("link_id"), customer.id):
        return None
    return customer


@login_manager.unauthorized_handler
def unauthorized():  # type: ignore[no-untyped-def]
    from portal.errors import render_error

    return render_error(401)


def init_sessions(app: Flask) -> None:
    @app.before_request
    def enforce_idle_timeout():  # type: ignore[no-untyped-def]
        if request.endpoint == "static" or "_user_id" not in session:
            return None
        now = int(utcnow().timestamp())
        idle_limit = current_app.config["SESSION_IDLE_MINUTES"] * 60
        seen_at = session.get("seen_at", 0)
        if now - int(seen_at) > idle_limit:
            end_customer_session()
            flash(
                _("Your session ended after a period of inactivity. Please open your link again."),
                "info",
            )
            return redirect(url_for("access.signed_out"))
        session["seen_at"] = now
        return None

    @app.context_processor
    def inject_customer():  # type: ignore[no-untyped-def]
        # Emails are rendered by the jobs runner, outside any request.
        return {"signed_in": has_request_context() and current_user.is_authenticated}
