from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, Length, Optional


def _strip(value: str | None) -> str | None:
    """Spaces pasted around an address are not a reason to refuse it."""
    return value.strip() if isinstance(value, str) else value


class ContinueForm(FlaskForm):
    """The landing page's single button: only this POST opens the account."""

    submit = SubmitField(_l("Continue to my account"))


class RequestLinkForm(FlaskForm):
    """Lost link: an email address, and the account number if the customer has it."""

    account_number = StringField(
        _l("Account number (optional)"),
        validators=[
            Optional(),
            Length(max=64, message=_l("An account number has at most 64 characters.")),
        ],
        description=_l(
            "You will find it on any invoice or email from us. Without it, we send a link "
            "for every account that has this email address."
        ),
    )
    email = EmailField(
        _l("Email address"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("Please enter your email address.")),
            Email(message=_l("Please enter a valid email address."), check_deliverability=False),
            Length(max=254, message=_l("Please enter a valid email address.")),
        ],
    )
    submit = SubmitField(_l("Email me a new link"))


class SignOutForm(FlaskForm):
    submit = SubmitField(_l("Sign out"))
