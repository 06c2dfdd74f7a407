from __future__ import annotations

from flask import Blueprint, redirect, render_template, session, url_for
from flask_login import current_user

from portal.customers.services import set_customer_locale
from portal.db import utcnow
from portal.extensions import db
from portal.inputs import local_redirect_target
from portal.site.forms import ChooseLanguageForm

bp = Blueprint("site", __name__)


@bp.get("/")
def home():  # type: ignore[no-untyped-def]
    if current_user.is_authenticated:
        return redirect(url_for("customers.account"))
    return render_template("site/home.html")


@bp.get("/accessibility")
def accessibility():  # type: ignore[no-untyped-def]
    return render_template("site/accessibility.html")


@bp.post("/language")
def choose_language():  # type: ignore[no-untyped-def]
    form = ChooseLanguageForm()
    if form.validate_on_submit():
        session["locale"] = form.locale.data
        if current_user.is_authenticated:
            set_customer_locale(
                current_user, form.locale.data, now=utcnow(), actor=f"customer:{current_user.id}"
            )
            db.session.commit()
    return redirect(_safe_next(form.next.data))


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect, never a broken header."""
    return local_redirect_target(target) or url_for("site.home")
