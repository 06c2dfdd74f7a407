"""Link landing, session start, lost-link form, sign-out."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from portal.access.forms import ContinueForm, RequestLinkForm, SignOutForm
from portal.access.services import (
    LinkNotUsable,
    check_link,
    link_destination,
    open_link,
    record_link_request,
)
from portal.access.sessions import end_customer_session, start_customer_session
from portal.db import utcnow
from portal.extensions import db, limiter

bp = Blueprint("access", __name__)


def _link_limit() -> str:
    return str(current_app.config["LINK_RATE_LIMIT"])


def _lost_link_limit() -> str:
    return str(current_app.config["LOST_LINK_RATE_LIMIT"])


def _unusable(error: LinkNotUsable):  # type: ignore[no-untyped-def]
    status = 404 if error.problem == "unknown" else 410
    return render_template(
        "access/unusable.html", problem=error.problem, form=RequestLinkForm()
    ), status


@bp.get("/l/<token>")
@limiter.limit(_link_limit)
def landing(token: str):  # type: ignore[no-untyped-def]
    # Mail scanners and chat previews GET every link: show nothing of the account here.
    try:
        check_link(token, utcnow())
    except LinkNotUsable as error:
        return _unusable(error)
    return render_template("access/landing.html", form=ContinueForm(), token=token)


@bp.post("/l/<token>")
@limiter.limit(_link_limit)
def enter(token: str):  # type: ignore[no-untyped-def]
    form = ContinueForm()
    if not form.validate_on_submit():
        return redirect(url_for("access.landing", token=token))
    now = utcnow()
    try:
        link = open_link(token, now=now, ip_address=request.remote_addr)
    except LinkNotUsable as error:
        return _unusable(error)
    target_invoice = link.invoice.number if link.invoice else None
    destination = link_destination(link)
    start_customer_session(link, now)
    db.session.commit()
    if destination:
        return redirect(destination)
    if target_invoice:
        return redirect(url_for("invoices.detail", number=target_invoice))
    return redirect(url_for("customers.account"))


@bp.route("/link/new", methods=["GET", "POST"])
@limiter.limit(_lost_link_limit, methods=["POST"])
def request_link():  # type: ignore[no-untyped-def]
    form = RequestLinkForm()
    if form.validate_on_submit():
        # Stored, never looked up here: the answer and its cost are the same either way.
        record_link_request(form.account_number.data, form.email.data or "", now=utcnow())
        db.session.commit()
        return redirect(url_for("access.link_requested"))
    status = 400 if form.errors else 200
    return render_template("access/request_link.html", form=form), status


@bp.get("/link/sent")
def link_requested():  # type: ignore[no-untyped-def]
    return render_template("access/link_requested.html")


@bp.post("/sign-out")
def sign_out():  # type: ignore[no-untyped-def]
    form = SignOutForm()
    if form.validate_on_submit():
        end_customer_session(utcnow())
        db.session.commit()
        flash(_("You have signed out."), "info")
    return redirect(url_for("access.signed_out"))


@bp.get("/signed-out")
def signed_out():  # type: ignore[no-untyped-def]
    return render_template("access/signed_out.html", form=RequestLinkForm())
