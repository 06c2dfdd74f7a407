"""The portal's "I will pay this by …" form (shape only)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectMultipleField
from wtforms.validators import DataRequired, InputRequired
from wtforms.widgets import CheckboxInput, ListWidget


class PromiseDateField(DateField):
    """An ISO date (what <input type="date"> sends); our own message when it is not one."""

    def process_formdata(self, valuelist: list[str]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError(str(_l("Please enter a valid date."))) from None


class PromiseToPayForm(FlaskForm):
    invoices = SelectMultipleField(
        _l("Invoices"),
        choices=[],
        validate_choice=False,  # the service checks they are the customer's and open
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validators=[DataRequired(message=_l("Choose at least one invoice that is still open."))],
    )
    promised_on = PromiseDateField(
        _l("I will pay by"), validators=[InputRequired(message=_l("Please enter a valid date."))]
    )
