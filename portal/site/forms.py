from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectChoice, SelectField, SubmitField
from wtforms.validators import DataRequired

from portal.config import SUPPORTED_LOCALES
from portal.i18n import LANGUAGE_NAMES


class ChooseLanguageForm(FlaskForm):
    locale = SelectField(
        _l("Language"),
        choices=[SelectChoice(code, LANGUAGE_NAMES[code]) for code in SUPPORTED_LOCALES],
        validators=[DataRequired()],
    )
    next = HiddenField()
    submit = SubmitField(_l("Change language"))
