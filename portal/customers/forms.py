"""Account page forms: shape only (the CSRF token); the services decide."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SubmitField


class ResumeEmailForm(FlaskForm):
    """Undo an opt-out: collection emails reach the customer again."""

    submit = SubmitField(_l("Send me invoice notices and reminders again"))
