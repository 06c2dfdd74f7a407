from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, session, url_for
from flask_babel import force_locale
from flask_babel import gettext as _

from portal.access.sessions import signed_in_customer
from portal.audit.actors import Actor
from portal.customers.services import set_customer_locale
from portal.db import utcnow
from portal.extensions import db
from portal.i18n import LANGUAGE_NAMES
from portal.inputs import local_redirect_target
from portal.site.forms import ChooseLanguageForm

bp = Blueprint("site", __name__)


@bp.get("/")
def home():  # type: ignore[no-untyped-def]
    if signed_in_customer() is not None:
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
        customer = signed_in_customer()
        if customer is not None:
            set_customer_locale(
                customer, form.locale.data, now=utcnow(), actor=Actor.customer(customer)
            )
            db.session.commit()
            with force_locale(form.locale.data):  # said in the language just chosen
                flash(
                    _(
                        "The pages are now in %(language)s. The emails we send you will be "
                        "in %(language)s too.",
                        language=LANGUAGE_NAMES[form.locale.data],
                    ),
                    "success",
                )
    return redirect(_safe_next(form.next.data))


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect, never a broken header."""
    return local_redirect_target(target) or url_for("site.home")
