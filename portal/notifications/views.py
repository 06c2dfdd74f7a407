"""Email opt-out (no session needed) and the development mailbox."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from sqlalchemy import select

from portal.access.services import issue_link
from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import csrf, db, limiter, talisman
from portal.invoices.models import Invoice
from portal.notifications.forms import ConfirmOptOutForm
from portal.notifications.models import OutboxMessage
from portal.notifications.services import (
    OPT_OUT_LINK_MAX_AGE,
    OptOutLinkExpired,
    customer_for_unsubscribe_token,
    is_opted_out,
    opt_out,
    render_deferred,
)

bp = Blueprint("notifications", __name__)
mailbox = Blueprint("mailbox", __name__, url_prefix="/dev/mailbox")


@bp.get("/email/opt-out/<token>")
@limiter.limit("30 per minute")
def opt_out_page(token: str):  # type: ignore[no-untyped-def]
    # A GET (or HEAD) only shows the page: mail scanners open every link in an email.
    try:
        customer = customer_for_unsubscribe_token(token)
    except OptOutLinkExpired:
        return _expired()
    if customer is None:
        abort(404)
    return render_template(
        "notifications/opt_out.html",
        form=ConfirmOptOutForm(),
        token=token,
        already=is_opted_out(customer.id),
    )


@bp.post("/email/opt-out/<token>")
@csrf.exempt  # RFC 8058: a mail client POSTs without our cookie; the signed token authenticates
@limiter.limit("30 per minute")
def opt_out_confirm(token: str):  # type: ignore[no-untyped-def]
    try:
        customer = customer_for_unsubscribe_token(token)
    except OptOutLinkExpired:
        return _expired()
    if customer is None:
        abort(404)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    opt_out(customer, source="one-click" if one_click else "page", now=utcnow())
    db.session.commit()
    if one_click:
        return "", 204
    return render_template("notifications/opted_out.html")


def _expired():  # type: ignore[no-untyped-def]
    """410: a genuine opt-out link past its lifetime; nothing changes."""
    return (
        render_template("notifications/opt_out_expired.html", days=OPT_OUT_LINK_MAX_AGE.days),
        410,
    )


LOOPBACK = frozenset({"127.0.0.1", "::1"})


@mailbox.before_request
def development_only():  # type: ignore[no-untyped-def]
    # Every queued email carries a working account link: the mailbox answers only on
    # loopback, even when DEV_MAILBOX is on by mistake (PORTAL_ENV left at development).
    if not current_app.config["DEV_MAILBOX"] or request.remote_addr not in LOOPBACK:
        abort(404)


@mailbox.get("/")
def index():  # type: ignore[no-untyped-def]
    messages = db.session.scalars(
        select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(200)
    ).all()
    return render_template("notifications/mailbox.html", messages=messages)


def _rendered(message_id: int) -> OutboxMessage:
    """The message, with a preview of one rendered only when sent (never saved here)."""
    message = db.get_or_404(OutboxMessage, message_id)
    if message.subject is None and message.customer_id is not None:
        customer = db.get_or_404(Customer, message.customer_id)
        render_deferred(message, customer)
        db.session.expunge(message)
    return message


@mailbox.get("/<int:message_id>")
def show(message_id: int):  # type: ignore[no-untyped-def]
    return render_template("notifications/mailbox_message.html", message=_rendered(message_id))


@mailbox.get("/<int:message_id>/html")
@talisman(
    frame_options="SAMEORIGIN",
    content_security_policy={
        "default-src": "'none'",
        "style-src": "'unsafe-inline'",  # email HTML is styled inline, as mail clients need
        "img-src": "data:",
        "frame-ancestors": "'self'",
        "sandbox": "allow-popups allow-popups-to-escape-sandbox",
    },
)
def show_html(message_id: int):  # type: ignore[no-untyped-def]
    return _rendered(message_id).body_html or ""


@mailbox.post("/<int:message_id>/open")
def open_as_recipient(message_id: int):  # type: ignore[no-untyped-def]
    """Development: open the portal with a fresh link to this email's recipient (and
    invoice); the stored email holds no working link (`services.PORTAL_LINK_SLOT`)."""
    message = db.get_or_404(OutboxMessage, message_id)
    customer = db.get_or_404(Customer, message.customer_id or 0)
    invoice = db.session.get(Invoice, message.invoice_id) if message.invoice_id else None
    issued = issue_link(
        customer,
        now=utcnow(),
        ttl=timedelta(hours=1),
        actor=Actor("developer", "mailbox"),
        invoice=invoice,
        purpose="mailbox",
    )
    db.session.commit()
    return redirect(url_for("access.landing", token=issued.token))
