"""The customer's dispute forms: shape only (the services check amounts against what is
disputable, the evidence module checks files).

Field names are part of the contract (issue 12) and stay stable: for each invoice line
`line-<line_number>` (a checkbox) and `amount-<line_number>` (optional: empty means the
line's whole disputable amount), then `reason`, `message` and `evidence` (files).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Field,
    MultipleFileField,
    RadioField,
    SelectChoice,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional

from portal.disputes.models import MESSAGE_MAX_LENGTH, REASON_LABELS, DisputeReason
from portal.money import Money, MoneyError, minor_unit_exponent, parse_decimal

REASON_CHOICES = [SelectChoice(reason.value, REASON_LABELS[reason]) for reason in DisputeReason]
AMOUNT_MAX_LENGTH = 32
# "12,50" as Spanish, French and German customers write it: one comma, no point, and no
# more digits after it than the currency has (so "1,234" stays a thousands separator,
# which is then refused as not a plain number).
_DECIMAL_COMMA = re.compile(r"^\s*(\d+),(\d+)\s*$")


class AmountRefused(ValueError):
    """The amount typed for a line is not an amount of the invoice's currency."""


def with_decimal_point(text: str, currency: str) -> str:
    """ "12,50" (a decimal comma, as es/fr/de write it) as "12.50"; anything else as given.
    Only one comma followed by 1 to the currency's number of decimals: "1,234" in USD is
    left alone (a thousands separator, refused later as not a plain number)."""
    comma = _DECIMAL_COMMA.match(text)
    if comma and 0 < len(comma.group(2)) <= minor_unit_exponent(currency):
        return f"{comma.group(1)}.{comma.group(2)}"
    return text


def parse_line_amount(text: str, currency: str) -> Money | None:
    """An amount typed for a line, in major units ("12.50", or "12,50"), as Money; None
    when empty (the whole disputable amount). Raises AmountRefused (message translated)
    for anything else: not a number, more decimals than the currency has, zero or less."""
    cleaned = (text or "").strip()
    if not cleaned:
        return None
    exponent = minor_unit_exponent(currency)
    cleaned = with_decimal_point(cleaned, currency)
    try:
        value = parse_decimal(cleaned)
    except MoneyError:
        raise AmountRefused(_("Please enter the amount as a number, for example 120.50.")) from None
    if value <= 0:
        raise AmountRefused(_("Please enter an amount greater than zero."))
    amount = Money.from_decimal(value, currency)
    if amount.to_decimal() != value:
        raise AmountRefused(
            _("Please enter the amount with at most %(digits)d decimals.", digits=exponent)
        )
    return amount


class OpenDisputeForm(FlaskForm):
    """`/invoices/<number>/dispute`. The line fields are added per invoice by
    `open_dispute_form(line_numbers)`."""

    reason = RadioField(
        _l("What is wrong?"),
        choices=REASON_CHOICES,
        validators=[InputRequired(message=_l("Please choose what is wrong."))],
    )
    message = TextAreaField(
        _l("Tell us what happened"),
        validators=[
            InputRequired(message=_l("Please tell us what happened.")),
            Length(
                max=MESSAGE_MAX_LENGTH,
                message=_l("Please keep your message to at most %(max)d characters."),
            ),
        ],
        description=_l("For example: the box arrived crushed and two items were broken."),
    )
    evidence = MultipleFileField(
        _l("Photos or documents (optional)"),
    )

    line_numbers: tuple[int, ...] = ()

    def line_field(self, number: int) -> Field:
        return self[f"line-{number}"]

    def amount_field(self, number: int) -> Field:
        return self[f"amount-{number}"]

    def ticked_lines(self) -> list[int]:
        return [n for n in self.line_numbers if self.line_field(n).data]


def open_dispute_form(line_numbers: Iterable[int], **kwargs: object) -> OpenDisputeForm:
    """An OpenDisputeForm with `line-<n>` and `amount-<n>` for each of these lines."""
    numbers = tuple(line_numbers)

    class _Form(OpenDisputeForm):
        pass

    for number in numbers:
        setattr(_Form, f"line-{number}", BooleanField(_l("Dispute this line")))
        setattr(
            _Form,
            f"amount-{number}",
            StringField(
                _l("Amount you dispute (optional)"),
                validators=[Optional(), Length(max=AMOUNT_MAX_LENGTH)],
            ),
        )
    _Form.line_numbers = numbers
    return _Form(**kwargs)


class ReplyForm(FlaskForm):
    """`/disputes/<id>/reply`: text, files, or both."""

    message = TextAreaField(
        _l("Your answer"),
        validators=[
            Optional(),
            Length(
                max=MESSAGE_MAX_LENGTH,
                message=_l("Please keep your message to at most %(max)d characters."),
            ),
        ],
    )
    evidence = MultipleFileField(
        _l("Photos or documents (optional)"),
    )


class WithdrawForm(FlaskForm):
    """`/disputes/<id>/withdraw`: the button sits behind a confirmation (a <details>
    that works without JavaScript), and the box must be ticked."""

    confirm = BooleanField(
        _l("I no longer dispute these charges"),
        validators=[InputRequired(message=_l("Please tick the box to confirm."))],
    )
