from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, Length


class ContinueForm(FlaskForm):
    """The landing page's single button: only this POST opens the account."""

    submit = SubmitField(_l("Continue to my account"))


class RequestLinkForm(FlaskForm):
    account_number = StringField(
        _l("Account number"),
        validators=[DataRequired(message=_l("Please enter your account number.")), Length(max=64)],
        description=_l("You will find it on any invoice or email from us."),
    )
    email = EmailField(
        _l("Email address"),
        validators=[
            DataRequired(message=_l("Please enter your email address.")),
            Email(message=_l("Please enter a valid email address."), check_deliverability=False),
            Length(max=254),
        ],
    )
    submit = SubmitField(_l("Email me a new link"))


class SignOutForm(FlaskForm):
    submit = SubmitField(_l("Sign out"))
