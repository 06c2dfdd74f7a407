"""The staff dispute desk's forms: shape only; `portal.disputes.services` decides.

The queue's filters come from the query string (a GET that changes nothing: no CSRF
token). Each decision is its own POST form with a CSRF token and `messages_seen`, the
number of thread entries on the page the specialist decided from: a decision taken on a
page older than the thread (the customer replied meanwhile) is refused by the view.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, IntegerField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from portal.disputes.models import (
    MESSAGE_MAX_LENGTH,
    REASON_LABELS,
    RESOLUTION_MAX_LENGTH,
    DisputeReason,
    DisputeStatus,
)

# How the staff side names each status (the customer's pages speak to the customer).
STAFF_STATUS_LABELS = {
    DisputeStatus.OPEN: _l("Open: to decide"),
    DisputeStatus.WAITING_ON_CUSTOMER: _l("Waiting on the customer"),
    DisputeStatus.ACCEPTED: _l("Accepted"),
    DisputeStatus.PARTLY_ACCEPTED: _l("Partly accepted"),
    DisputeStatus.REJECTED: _l("Rejected"),
    DisputeStatus.WITHDRAWN: _l("Withdrawn"),
}

# The queue's status filter: the open ones (the default), every one, or one status.
STATUS_OPEN = "open_any"
STATUS_ALL = "all"


def status_choices() -> list[SelectChoice]:
    return [
        SelectChoice(STATUS_OPEN, _l("Open or waiting on the customer")),
        *(SelectChoice(s.value, STAFF_STATUS_LABELS[s]) for s in DisputeStatus),
        SelectChoice(STATUS_ALL, _l("Any status")),
    ]


def reason_choices() -> list[SelectChoice]:
    return [
        SelectChoice("", _l("Any reason")),
        *(SelectChoice(r.value, REASON_LABELS[r]) for r in DisputeReason),
    ]


class QueueFilterForm(FlaskForm):
    """`reason` (empty: any) and `status` (STATUS_OPEN by default) from the query string;
    an unknown value is a validation error shown on the page, never a 500."""

    class Meta:
        csrf = False  # a GET form that changes nothing

    reason = SelectField(_l("Reason"), choices=reason_choices, default="", validate_choice=False)
    status = SelectField(
        _l("Status"), choices=status_choices, default=STATUS_OPEN, validate_choice=False
    )

    def validate_reason(self, field: SelectField) -> None:
        if field.data not in {c.value for c in reason_choices()}:
            raise ValidationError(_l("Please choose one of the reasons listed."))

    def validate_status(self, field: SelectField) -> None:
        if field.data not in {c.value for c in status_choices()} | {""}:
            raise ValidationError(_l("Please choose one of the statuses listed."))

    @property
    def chosen_statuses(self) -> frozenset[DisputeStatus] | None:
        """The statuses to list, or None for every one."""
        if self.status.data == STATUS_ALL:
            return None
        if self.status.data in (STATUS_OPEN, None, ""):
            return frozenset({DisputeStatus.OPEN, DisputeStatus.WAITING_ON_CUSTOMER})
        return frozenset({DisputeStatus(self.status.data)})

    @property
    def chosen_reason(self) -> DisputeReason | None:
        return DisputeReason(self.reason.data) if self.reason.data else None


class DecisionForm(FlaskForm):
    """What every decision carries: the CSRF token and how much of the thread was seen."""

    messages_seen = IntegerField(validators=[InputRequired(), NumberRange(min=0, max=100_000)])


class AcceptForm(DecisionForm):
    """Accept in full: a credit note for every disputed line's amount."""


class RejectForm(DecisionForm):
    reason = TextAreaField(
        _l("Reason for the customer"),
        id="reject-reason",  # two forms on the page have a `reason`: ids must differ
        description=_l("The customer reads this in the portal and in the email."),
        validators=[
            DataRequired(message=_l("Tell the customer why the dispute is rejected.")),
            Length(
                max=RESOLUTION_MAX_LENGTH,
                message=_l("At most %(max)d characters.", max=RESOLUTION_MAX_LENGTH),
            ),
        ],
    )


class AskForm(DecisionForm):
    question = TextAreaField(
        _l("Question for the customer"),
        description=_l("The customer is emailed and answers in the portal."),
        validators=[
            DataRequired(message=_l("Write the question before sending it.")),
            Length(
                max=MESSAGE_MAX_LENGTH,
                message=_l("At most %(max)d characters.", max=MESSAGE_MAX_LENGTH),
            ),
        ],
    )


class AcceptInPartForm(DecisionForm):
    """A credit per disputed line (`credit-<line_number>`, a decimal string in major
    units; empty means nothing on that line) and the reason the customer reads.

    Build it with `for_lines(line_numbers)`: the fields exist only for the dispute's lines."""

    reason = TextAreaField(
        _l("Reason for the customer"),
        id="partial-reason",
        description=_l("Why the rest is not credited; the customer reads this."),
        validators=[
            DataRequired(message=_l("Tell the customer why the rest is not credited.")),
            Length(
                max=RESOLUTION_MAX_LENGTH,
                message=_l("At most %(max)d characters.", max=RESOLUTION_MAX_LENGTH),
            ),
        ],
    )

    @classmethod
    def for_lines(cls, line_numbers: Sequence[int], **kwargs: object) -> AcceptInPartForm:
        """The form with one optional credit field per line number."""

        class Bound(cls):  # type: ignore[valid-type, misc]
            pass

        for number in line_numbers:
            setattr(
                Bound,
                f"credit_{number}",
                StringField(
                    _l("Credit for line %(number)d", number=number),
                    name=f"credit-{number}",
                    validators=[
                        Optional(),
                        Length(max=32, message=_l("Please enter a valid amount.")),
                    ],
                ),
            )
        form = Bound(**kwargs)
        form.line_numbers = list(line_numbers)
        return form

    line_numbers: list[int]

    def credit_field(self, line_number: int) -> Field:
        field: Field = getattr(self, f"credit_{line_number}")
        return field

    def credit_texts(self) -> dict[int, str]:
        """Line number -> the amount typed (stripped), for the lines with one."""
        texts = {}
        for number in self.line_numbers:
            text = (self.credit_field(number).data or "").strip()
            if text:
                texts[number] = text
        return texts
