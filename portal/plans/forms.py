"""The customer's payment-plan forms: shape only.

Field names are part of the contract (issue 13) and kept stable: `invoices`,
`down_payment`, `frequency`, `installments`, `first_payment_date`, and the submits
`preview` and `accept`. Whether a proposal is within policy, and whether its invoices
are payable, is for `portal.plans.policy` and the services to say.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

# Shape limits, not policy: a plan of more installments than this is not a plan anyone
# could review, and the number field refuses it before any schedule is built.
MAX_INSTALLMENTS = 120
REASON_MAX_LENGTH = 2000


class PlanDateField(DateField):
    """An ISO date (what <input type="date"> sends), with our own message when it is not."""

    def process_formdata(self, valuelist: list[str]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError(str(_l("Please enter a valid date."))) from None


class PlanCountField(IntegerField):
    """A whole number of installments, with our own message when it is not one."""

    def process_formdata(self, valuelist: list[str]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError(
                str(_l("Please enter the number of payments as a whole number."))
            ) from None


FREQUENCY_CHOICES = [
    SelectChoice("monthly", _l("Every month")),
    SelectChoice("biweekly", _l("Every two weeks")),
    SelectChoice("weekly", _l("Every week")),
]


class ProposePlanForm(FlaskForm):
    """The plan builder: which invoices, how much now, then how often and how many."""

    invoices = SelectMultipleField(
        _l("Invoices in the plan"),
        choices=[],
        validate_choice=False,  # the view keeps only this customer's payable invoices
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validators=[DataRequired(message=_l("Choose at least one invoice for the plan."))],
    )
    down_payment = StringField(
        _l("Down payment today"),
        validators=[Length(max=32, message=_l("Please enter the amount as a number."))],
        description=_l("Paid by card when you accept the plan."),
    )
    frequency = SelectField(
        _l("How often"),
        choices=FREQUENCY_CHOICES,
        validators=[InputRequired(message=_l("Please choose how often you will pay."))],
        validate_choice=False,  # checked by the view, with a message in the reader's language
    )
    installments = PlanCountField(
        _l("Number of payments"),
        validators=[
            InputRequired(message=_l("Please enter the number of payments as a whole number.")),
            NumberRange(
                min=1,
                max=MAX_INSTALLMENTS,
                message=_l("The number of payments must be between %(min)s and %(max)s."),
            ),
        ],
    )
    first_payment_date = PlanDateField(
        _l("First payment on"),
        validators=[InputRequired(message=_l("Please enter a valid date."))],
    )
    autopay = BooleanField(_l("Pay each installment automatically with a saved card"))
    reason = TextAreaField(
        _l("Why do you need this plan?"),
        validators=[
            Optional(),
            Length(
                max=REASON_MAX_LENGTH,
                message=_l("Please keep the reason under %(max)d characters."),
            ),
        ],
        description=_l(
            "Needed only when the plan is outside what we can approve at once, for example "
            "financial hardship. A specialist reads it."
        ),
    )
    preview = SubmitField(_l("Show the schedule"))
    accept = SubmitField(_l("Accept this plan"))


class CounterOfferForm(FlaskForm):
    """Accept or decline the plan a specialist proposed instead of ours."""

    decision = HiddenField(validators=[DataRequired()])


class CancelPlanForm(FlaskForm):
    """Withdraw a proposal that is still waiting for review."""


class SaveCardForm(FlaskForm):
    """The card for the installments: the SetupIntent that Stripe.js confirmed."""

    setup_intent = HiddenField(validators=[Optional(), Length(max=100)])
    card_choice = StringField(default="new", validators=[Optional(), Length(max=8)])


class PayInstallmentForm(FlaskForm):
    """Pay one installment now, by card, through the pay flow."""
