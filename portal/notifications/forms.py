from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SubmitField


class ConfirmOptOutForm(FlaskForm):
    class Meta:
        # The signed token in the URL authenticates this form (RFC 8058 one-click too).
        csrf = False

    submit = SubmitField(_l("Stop collection emails"))
