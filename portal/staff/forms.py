"""Staff forms: shape only; the services decide."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    ValidationError,
)
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional

from portal.staff.models import ROLE_LABELS, StaffRole


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class StaffLoginForm(FlaskForm):
    email = EmailField(
        _l("Email address"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("Please enter your email address.")),
            Length(max=254, message=_l("Please enter a valid email address.")),
        ],
    )
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(message=_l("Please enter your password.")),
            Length(max=256, message=_l("A password has at most 256 characters.")),
        ],
    )
    next = HiddenField()
    submit = SubmitField(_l("Sign in"))


class StaffCodeForm(FlaskForm):
    code = StringField(
        _l("Code from your authenticator app"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("Please enter the 6-digit code.")),
            Length(max=16, message=_l("Please enter the 6-digit code.")),
        ],
        description=_l("Six digits; a new code appears every 30 seconds."),
    )
    submit = SubmitField(_l("Continue"))


class StaffSignOutForm(FlaskForm):
    submit = SubmitField(_l("Sign out"))


class SetPasswordForm(FlaskForm):
    password = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(message=_l("Please enter a password.")),
            Length(min=12, max=256, message=_l("Use between 12 and 256 characters.")),
        ],
        description=_l("At least 12 characters. A long phrase is easiest to remember."),
    )
    confirm = PasswordField(
        _l("The same password again"),
        validators=[
            DataRequired(message=_l("Please enter the password again.")),
            EqualTo("password", message=_l("The two passwords are not the same.")),
        ],
    )
    submit = SubmitField(_l("Set password"))


class InviteStaffForm(FlaskForm):
    email = EmailField(
        _l("Email address"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("Please enter an email address.")),
            Email(message=_l("Please enter a valid email address."), check_deliverability=False),
            Length(max=254, message=_l("Please enter a valid email address.")),
        ],
    )
    name = StringField(
        _l("Name"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("Please enter a name.")),
            Length(max=200, message=_l("Please enter a name of at most 200 characters.")),
        ],
    )
    role = SelectField(
        _l("Role"),
        choices=[SelectChoice(role.value, ROLE_LABELS[role]) for role in StaffRole],
        default=StaffRole.SPECIALIST.value,
    )
    submit = SubmitField(_l("Invite"))


class StaffActionForm(FlaskForm):
    """A button on a member's row (deactivate, reset 2FA, reset password)."""

    submit = SubmitField(_l("Confirm"))


class AuditFilterForm(FlaskForm):
    """The audit log's filters (a GET form: it changes nothing, so no CSRF token)."""

    class Meta:
        csrf = False

    actor = StringField(
        _l("Actor"),
        filters=[_strip],
        validators=[Optional(), Length(max=64, message=_l("At most 64 characters."))],
        description=_l(
            '"staff:7" for one staff member, or a kind: staff, customer, system, import.'
        ),
    )
    account_number = StringField(
        _l("Customer account number"),
        filters=[_strip],
        validators=[Optional(), Length(max=64, message=_l("At most 64 characters."))],
    )
    action = StringField(
        _l("Kind of event"),
        filters=[_strip],
        validators=[Optional(), Length(max=64, message=_l("At most 64 characters."))],
        description=_l('An event such as "staff.signed_in", or a group ending in a dot: "staff."'),
    )
    date_from = DateField(
        _l("From (UTC)"),
        validators=[Optional()],
        render_kw={"type": "date"},
    )
    date_to = DateField(_l("To (UTC)"), validators=[Optional()], render_kw={"type": "date"})
    submit = SubmitField(_l("Filter"))

    def validate_date_to(self, field: DateField) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError(_l("The end date is before the start date."))
