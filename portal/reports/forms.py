"""The reports' filters: read from the query string (GET, nothing changes, no CSRF token)."""

from __future__ import annotations

from datetime import date

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, SubmitField
from wtforms.validators import DataRequired, ValidationError

# The longest period a report covers: the per-day chart and table stay readable.
MAX_PERIOD_DAYS = 366
EARLIEST = date(1900, 1, 1)
LATEST = date(9999, 12, 30)


def _within_calendar(form: FlaskForm, field: DateField) -> None:
    if field.data is not None and not EARLIEST <= field.data <= LATEST:
        raise ValidationError(_l("Please enter a date between 1900 and 9999."))


class _ReportForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form that changes nothing

    currency = SelectField(_l("Currency"), choices=[], validate_choice=False)
    submit = SubmitField(_l("Show"), name="")

    def set_currencies(self, codes: list[str]) -> None:
        self.currency.choices = [(code, code) for code in codes]

    def validate_currency(self, field: SelectField) -> None:
        if field.data not in {code for code, _label in field.choices or []}:
            raise ValidationError(_l("Please choose one of the currencies listed."))


class AgingForm(_ReportForm):
    as_of = DateField(
        _l("As of"),
        validators=[
            DataRequired(message=_l("Please enter a date as YYYY-MM-DD.")),
            _within_calendar,
        ],
        invalid_value_message=_l("Please enter a date as YYYY-MM-DD."),
    )


class PeriodForm(_ReportForm):
    start = DateField(
        _l("From"),
        validators=[
            DataRequired(message=_l("Please enter a date as YYYY-MM-DD.")),
            _within_calendar,
        ],
        invalid_value_message=_l("Please enter a date as YYYY-MM-DD."),
    )
    end = DateField(
        _l("To"),
        validators=[
            DataRequired(message=_l("Please enter a date as YYYY-MM-DD.")),
            _within_calendar,
        ],
        invalid_value_message=_l("Please enter a date as YYYY-MM-DD."),
    )

    def validate_end(self, field: DateField) -> None:
        if self.start.data is None or field.data is None:
            return
        if field.data < self.start.data:
            raise ValidationError(_l("The end of the period must not be before its start."))
        if (field.data - self.start.data).days + 1 > MAX_PERIOD_DAYS:
            raise ValidationError(
                _l("A period covers at most %(days)d days.", days=MAX_PERIOD_DAYS)
            )


class DisputePeriodForm(PeriodForm):
    """A period only: the dispute reports list every currency, each on its own rows."""

    currency = None  # type: ignore[assignment]

    def set_currencies(self, codes: list[str]) -> None:
        pass


class CreditNotesExportForm(FlaskForm):
    """`from` and `to` (ISO dates, inclusive) of the credit notes' CSV for the ERP."""

    class Meta:
        csrf = False  # a GET export that changes nothing

    start = DateField(
        _l("From"),
        name="from",
        validators=[
            DataRequired(message=_l("Please enter a date as YYYY-MM-DD.")),
            _within_calendar,
        ],
        invalid_value_message=_l("Please enter a date as YYYY-MM-DD."),
    )
    end = DateField(
        _l("To"),
        name="to",
        validators=[
            DataRequired(message=_l("Please enter a date as YYYY-MM-DD.")),
            _within_calendar,
        ],
        invalid_value_message=_l("Please enter a date as YYYY-MM-DD."),
    )

    def validate_end(self, field: DateField) -> None:
        if self.start.data is not None and field.data is not None and field.data < self.start.data:
            raise ValidationError(_l("The end of the period must not be before its start."))
