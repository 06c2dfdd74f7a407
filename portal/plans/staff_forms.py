"""The staff side's plan and policy forms: shape only; `services` and `policy` hold the
rules (a policy's bounds: `policy.policy_problems`)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange
from wtforms.widgets import CheckboxInput, ListWidget

from portal.plans.models import REASON_MAX
from portal.plans.policy import (
    FREQUENCY_LABELS,
    MAX_POLICY_COOLING_OFF_DAYS,
    MAX_POLICY_DURATION_MONTHS,
    MAX_POLICY_FIRST_PAYMENT_DAYS,
    MAX_POLICY_INSTALLMENTS,
)
from portal.plans.schedule import Frequency
from portal.promises.forms import PromiseDateField

AMOUNT_MESSAGE = _l("Please enter the amount as a number, for example 120.50.")


class WholeNumberField(IntegerField):
    """An integer; our own translated message when the text is not one."""

    def process_formdata(self, valuelist: list[str]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError(str(_l("Please enter a whole number."))) from None


def _number(label: object, low: int, high: int) -> WholeNumberField:
    message = _l("Enter a whole number from %(min)s to %(max)s.")
    return WholeNumberField(
        label,
        validators=[
            InputRequired(message=_l("Please enter a whole number.")),
            NumberRange(min=low, max=high, message=message),
        ],
    )


def frequency_choices() -> list[SelectChoice]:
    return [SelectChoice(f.value, FREQUENCY_LABELS[f]) for f in Frequency]


class PolicyForm(FlaskForm):
    """A segment's limits. Amounts are in major units of a two-decimal currency (USD,
    EUR): the view scales them to zero- and three-decimal currencies."""

    max_installments = _number(_l("Most installments"), 1, MAX_POLICY_INSTALLMENTS)
    frequencies = SelectMultipleField(
        _l("Frequencies allowed"),
        choices=frequency_choices(),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validators=[DataRequired(message=_l("Allow at least one frequency."))],
    )
    max_duration_months = _number(
        _l("Longest plan, in months from the first payment"), 1, MAX_POLICY_DURATION_MONTHS
    )
    min_installment = StringField(
        _l("Smallest installment (e.g. 20.00; 2,000 in zero-decimal currencies)"),
        validators=[DataRequired(message=AMOUNT_MESSAGE), Length(max=32, message=AMOUNT_MESSAGE)],
    )
    min_down_payment_percent = _number(_l("Smallest down payment, in percent of the total"), 0, 99)
    max_first_payment_days = _number(
        _l("Most days before the first payment"), 1, MAX_POLICY_FIRST_PAYMENT_DAYS
    )
    max_total = StringField(
        _l("Largest plan total (e.g. 10000.00)"),
        validators=[DataRequired(message=AMOUNT_MESSAGE), Length(max=32, message=AMOUNT_MESSAGE)],
    )
    autopay_required = BooleanField(_l("Autopay from a saved card is required"))
    cooling_off_days = _number(
        _l("Days without self-service plans after a broken plan"),
        0,
        MAX_POLICY_COOLING_OFF_DAYS,
    )


class CounterOfferForm(FlaskForm):
    down_payment = StringField(
        _l("Down payment"),
        validators=[InputRequired(message=AMOUNT_MESSAGE), Length(max=32, message=AMOUNT_MESSAGE)],
    )
    frequency = SelectField(_l("How often"), choices=frequency_choices())
    installments = _number(_l("Number of installments"), 1, MAX_POLICY_INSTALLMENTS)
    first_payment_date = PromiseDateField(
        _l("First payment on"),
        validators=[InputRequired(message=_l("Please enter a valid date."))],
    )
    note = TextAreaField(
        _l("Note to the customer (optional)"),
        validators=[Length(max=REASON_MAX, message=_l("At most 2000 characters."))],
    )


class DeclinePlanForm(FlaskForm):
    reason = TextAreaField(
        _l("Reason the customer will read"),
        validators=[
            DataRequired(message=_l("Give the customer a reason for declining.")),
            Length(max=REASON_MAX, message=_l("At most 2000 characters.")),
        ],
    )


class PlanActionForm(FlaskForm):
    """A button that changes something: the CSRF token only."""
