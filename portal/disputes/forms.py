"""The customer's dispute forms: shape only (the services check amounts against what is
disputable, the evidence module checks files).

Field names are part of the contract (issue 12) and stay stable: for each invoice line
`line-<line_number>` (a checkbox) and `amount-<line_number>` (optional: empty means the
line's whole disputable amount), then `reason`, `message` and `evidence` (files).
"""

from __future__ import annotations

from collections.abc import Iterable

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
from portal.inputs import AmountInputError, parse_amount_input
from portal.money import Money

REASON_CHOICES = [SelectChoice(reason.value, REASON_LABELS[reason]) for reason in DisputeReason]
AMOUNT_MAX_LENGTH = 32


class AmountRefused(ValueError):
    """The amount typed for a line is not an amount of the invoice's currency."""


def parse_line_amount(text: str | None, currency: str, locale: str) -> Money | None:
    """An amount typed for a line, in major units of `currency` as `locale` writes them
    ("12.50", "12,50", "1.000,50": `inputs.parse_amount_input`), as Money; None when
    empty (the whole disputable amount). Raises AmountRefused (message translated) for
    anything else: not a number, more decimals than the currency has, zero or less."""
    if not (text or "").strip():
        return None
    try:
        return parse_amount_input(text, currency, locale)
    except AmountInputError as refused:
        raise AmountRefused(refused.message) from None


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
