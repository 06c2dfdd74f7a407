"""The desk's forms: shape only; the services hold the rules."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    HiddenField,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from portal.promises.forms import PromiseDateField
from portal.promises.models import NOTE_KIND_LABELS, NoteKind


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class AddNoteForm(FlaskForm):
    kind = SelectField(
        _l("Kind"),
        choices=[SelectChoice(k.value, NOTE_KIND_LABELS[k]) for k in NoteKind],
        default=NoteKind.CALL.value,
    )
    body = TextAreaField(
        _l("What was said or agreed"),
        validators=[
            DataRequired(message=_l("Write the note before saving it.")),
            Length(max=4000, message=_l("A note can be at most 4000 characters.")),
        ],
    )


class MakePromiseForm(FlaskForm):
    invoices = MultiCheckboxField(
        _l("Invoices it covers"),
        validators=[DataRequired(message=_l("Choose at least one invoice that is still open."))],
    )
    amount = StringField(
        _l("Amount promised"),
        validators=[
            DataRequired(message=_l("Please enter a valid amount.")),
            Length(max=32, message=_l("Please enter a valid amount.")),
        ],
    )
    promised_on = PromiseDateField(
        _l("Pay by"), validators=[InputRequired(message=_l("Please enter a valid date."))]
    )
    note = StringField(_l("Note (optional)"), validators=[Optional(), Length(max=500)])


class RefundForm(FlaskForm):
    refunds_seen = IntegerField(validators=[InputRequired(), NumberRange(min=0)])
    amount = StringField(
        _l("Amount to refund (empty: all that is left)"),
        validators=[Optional(), Length(max=32, message=_l("Please enter a valid amount."))],
    )
    reason = StringField(
        _l("Reason"),
        validators=[
            DataRequired(message=_l("Give the reason for the refund.")),
            Length(max=500, message=_l("A reason can be at most 500 characters.")),
        ],
    )


class DeskActionForm(FlaskForm):
    """A button that changes something: the CSRF token only."""

    confirm = HiddenField(default="1")
