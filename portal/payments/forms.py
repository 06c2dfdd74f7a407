"""Payment forms: shape only. Amounts and invoices are checked by the services."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectMultipleField, StringField, SubmitField
from wtforms.validators import AnyOf, Length, Optional


class ChoosePaymentForm(FlaskForm):
    """Which invoices to pay, and optionally a smaller amount than their total."""

    # Choices are the customer's payable invoices; the service refuses anything else.
    invoices = SelectMultipleField(_l("Invoices to pay"), choices=[], validate_choice=False)
    amount = StringField(
        _l("Amount to pay (optional)"),
        validators=[Optional(), Length(max=32, message=_l("Please enter a valid amount."))],
        description=_l("Leave empty to pay the total. You may pay less, down to the minimum."),
    )
    # Without JavaScript, this button shows the total of what is ticked and how the amount
    # will be applied, and opens nothing; with it, static/js/portal.js keeps them live.
    update = SubmitField(_l("Update total"))


class PayForm(FlaskForm):
    """The card page: a saved card, or the SetupIntent that Stripe.js confirmed."""

    # Radio buttons drawn by the template: "saved" (the saved card) or "new".
    card_choice = StringField(default="new", validators=[Optional(), AnyOf(["saved", "new"])])
    setup_intent = HiddenField(validators=[Optional(), Length(max=100)])
    save_card = BooleanField(_l("Save this card for my next payment"))

    @property
    def uses_saved_card(self) -> bool:
        return bool(self.card_choice.data == "saved")


class CheckPaymentForm(FlaskForm):
    """After the bank's check (3-D Secure): ask Stripe how the payment ended."""


class RemoveCardForm(FlaskForm):
    """Forget the saved card."""
