"""The only code that opens and moves disputes.

Every function here takes the `Actor` and the time `now` (aware UTC), checks the move
against `models.TRANSITIONS`, writes one audit row (`dispute.<event>`), queues exactly
one email to the customer in their language with a link straight to `/disputes/<id>`,
flushes, and never commits (the view or job does). A refusal raises `DisputeRefused`
(bad input: nothing written) or `DisputeTransitionRefused` (the dispute is no longer in
a state that allows it), both with a message the user can read.

Locks (`portal.payments.locks`, lock order step 1): each function takes the customer's
payment-account row before it reads a balance or a dispute's status, so a dispute and a
payment of the same customer, or two disputes of one line, cannot both spend the same
payable amount; the dispute row is then re-read under the lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from flask import current_app, has_request_context
from flask_babel import gettext as _
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.disputes.models import (
    MESSAGE_MAX_LENGTH,
    RESOLUTION_MAX_LENGTH,
    Dispute,
    DisputeFile,
    DisputeLine,
    DisputeMessage,
    DisputeReason,
    DisputeStatus,
    MessageKind,
    can_move,
)
from portal.disputes.storage_types import StoredEvidence
from portal.errors import DomainError
from portal.extensions import db
from portal.i18n import current_locale, zone_or_default
from portal.invoices.balances import LineBalance, invoice_balance, line_balances
from portal.invoices.models import CreditNote, CreditNoteKind, Invoice
from portal.money import Money
from portal.notifications.services import queue_email
from portal.payments.checkouts import STALE_AFTER
from portal.payments.locks import lock_account_row
from portal.payments.queries import in_flight_checkout

MAX_FILES_PER_MESSAGE = 5
DEFAULT_REPLY_DAYS = 14


class DisputeRefused(DomainError):
    """The dispute (or the message) cannot be accepted as given; nothing was written."""


class DisputeTransitionRefused(DomainError):
    """The dispute's status does not allow this action (models.TRANSITIONS)."""

    def __init__(self, dispute: Dispute, to: DisputeStatus | None = None) -> None:
        super().__init__(
            _(
                "This dispute is “%(status)s”: it cannot be changed that way any more.",
                status=dispute.state.label,
            )
        )
        self.status = dispute.state
        self.to = to


def dispute_path(dispute: Dispute) -> str:
    """The customer's page of this dispute (where its emails' links lead)."""
    return f"/disputes/{dispute.id}"


def reply_days() -> int:
    """Days a customer has to answer a question (config DISPUTE_REPLY_DAYS, default 14)."""
    return int(current_app.config.get("DISPUTE_REPLY_DAYS", DEFAULT_REPLY_DAYS))


# --- shared steps -----------------------------------------------------------------------
def _shown(amount: Money) -> str:
    """An amount in a refusal's message, in the reader's language."""
    return amount.format(current_locale() if has_request_context() else "en")


def _locked(dispute: Dispute) -> Dispute:
    """Lock the customer's account row (lock 1), then re-read the dispute under it."""
    lock_account_row(dispute.customer_id)
    fresh: Dispute | None = db.session.scalar(
        select(Dispute).where(Dispute.id == dispute.id).execution_options(populate_existing=True)
    )
    if fresh is None:  # pragma: no cover - disputes are never deleted
        raise DisputeRefused(_("This dispute no longer exists."))
    return fresh


def _local_day(dispute: Dispute, at: datetime) -> date:
    """`at` as a date where the customer lives (what "reply by" means to them)."""
    return at.astimezone(zone_or_default(dispute.customer.timezone)).date()


def _move(dispute: Dispute, to: DisputeStatus, *, now: datetime) -> None:
    if not can_move(dispute.state, to):
        raise DisputeTransitionRefused(dispute, to)
    dispute.status = to
    dispute.updated_at = now
    if not to.is_open:
        dispute.resolved_at = now
        dispute.reply_due_at = None
    elif to != DisputeStatus.WAITING_ON_CUSTOMER:
        dispute.reply_due_at = None


def _check_text(text: str, *, limit: int, required: bool, what: str) -> str:
    text = (text or "").strip()
    if required and not text:
        raise DisputeRefused(what)
    if len(text) > limit:
        raise DisputeRefused(
            _("Please keep the text to at most %(limit)d characters.", limit=limit),
        )
    return text


def _check_files(files: Sequence[StoredEvidence]) -> None:
    if len(files) > MAX_FILES_PER_MESSAGE:
        raise DisputeRefused(
            _("Please attach at most %(count)d files.", count=MAX_FILES_PER_MESSAGE)
        )


def _add_message(
    dispute: Dispute,
    body: str,
    *,
    kind: MessageKind,
    actor: Actor | str,
    now: datetime,
    files: Sequence[StoredEvidence] = (),
) -> DisputeMessage:
    _check_files(files)
    message = DisputeMessage(author=str(actor), body=body, kind=kind, created_at=now)
    dispute.messages.append(message)
    for stored in files:
        dispute.files.append(
            DisputeFile(
                message=message,
                storage_name=stored.storage_name,
                original_name=stored.original_name,
                content_type=stored.content_type,
                size_bytes=stored.size_bytes,
                sha256=stored.sha256,
                created_at=now,
            )
        )
    return message


def _audit(
    event: str, dispute: Dispute, *, actor: Actor | str, now: datetime, **data: object
) -> None:
    record_event(
        f"dispute.{event}",
        actor=actor,
        now=now,
        customer_id=dispute.customer_id,
        subject=dispute,
        data={
            "dispute": dispute.id,
            "invoice": dispute.invoice.number,
            "status": dispute.status,
            "amount_minor": dispute.amount.minor,
            "currency": dispute.currency,
            **data,
        },
    )


def _email(
    event: str, dispute: Dispute, *, now: datetime, dedupe_key: str | None = None, **context: object
) -> None:
    """Queue the one customer email of this step (transactional: not dunning, so an
    opt-out of collection email does not stop it), with a link to the dispute's page."""
    queue_email(
        dispute.customer,
        kind=f"dispute_{event}",
        template=f"dispute_{event}",
        context={"dispute": dispute, **context},
        now=now,
        invoice=dispute.invoice,
        dedupe_key=dedupe_key,
        with_portal_link=True,
        link_target=dispute_path(dispute),
    )


# --- the customer -----------------------------------------------------------------------
def open_dispute(
    customer: Customer,
    invoice: Invoice,
    lines: Mapping[int, Money | None],
    reason: str,
    message: str,
    files: Sequence[StoredEvidence],
    *,
    actor: Actor,
    now: datetime,
) -> Dispute:
    """Open a dispute of some lines of `invoice` (line number -> amount; None = the line's
    whole disputable amount, `invoices.balances.line_balances`).

    Refused (DisputeRefused, nothing written): another customer's invoice, a void or
    settled invoice, no line chosen, a line not on the invoice, an amount in another
    currency, not above zero or above what the line still leaves to dispute, a total
    above what is payable on the invoice, an unknown reason, a message over
    MESSAGE_MAX_LENGTH characters, or more than MAX_FILES_PER_MESSAGE files.
    """
    if invoice.customer_id != customer.id:
        raise DisputeRefused(_("This invoice is not part of your account."))
    try:
        reason_value = DisputeReason(reason)
    except ValueError:
        raise DisputeRefused(_("Please choose a reason from the list.")) from None
    body = _check_text(message, limit=MESSAGE_MAX_LENGTH, required=False, what="")
    _check_files(files)
    if not lines:
        raise DisputeRefused(_("Please choose at least one line to dispute."))

    lock_account_row(customer.id)  # lock 1, before any balance is read
    _refuse_while_charging(customer, invoice, now=now)
    balance = invoice_balance(invoice, customer_today(customer, now))
    if balance.invoice.voided_at is not None or not balance.balance.is_positive:
        raise DisputeRefused(_("This invoice has nothing left to dispute."))
    by_number = {item.line.line_number: item for item in line_balances(invoice, balance)}
    chosen: list[tuple[LineBalance, Money]] = []
    for line_number, wanted in sorted(lines.items()):
        item = by_number.get(line_number)
        if item is None:
            raise DisputeRefused(_("Line %(number)s is not on this invoice.", number=line_number))
        if not item.is_disputable:
            raise DisputeRefused(
                _("Line %(number)s has nothing left to dispute.", number=line_number)
            )
        amount = item.disputable if wanted is None else wanted
        if amount.currency != invoice.currency:
            raise DisputeRefused(
                _("Please give amounts in %(currency)s.", currency=invoice.currency)
            )
        if not amount.is_positive:
            raise DisputeRefused(
                _("The amount for line %(number)s must be more than zero.", number=line_number)
            )
        if amount > item.disputable:
            raise DisputeRefused(
                _(
                    "You can dispute at most %(amount)s on line %(number)s.",
                    amount=_shown(item.disputable),
                    number=line_number,
                )
            )
        chosen.append((item, amount))
    total = Money.sum((amount for _line, amount in chosen), invoice.currency)
    if total > balance.payable:
        raise DisputeRefused(
            _(
                "You can dispute at most %(amount)s on this invoice.",
                amount=_shown(balance.payable),
            )
        )

    dispute = Dispute(
        customer_id=customer.id,
        invoice_id=invoice.id,
        status=DisputeStatus.OPEN,
        reason=reason_value,
        opened_at=now,
        updated_at=now,
        resolution_reason="",
    )
    dispute.customer, dispute.invoice = customer, invoice
    for item, amount in chosen:
        dispute.lines.append(
            DisputeLine(
                invoice_line=item.line,
                amount_minor=amount.minor,
                currency=amount.currency,
                credited_minor=0,
            )
        )
    _add_message(dispute, body, kind=MessageKind.MESSAGE, actor=actor, now=now, files=files)
    db.session.add(dispute)
    db.session.flush()
    _audit(
        "opened",
        dispute,
        actor=actor,
        now=now,
        dispute_reason=str(reason_value),
        lines={str(item.line.line_number): amount.minor for item, amount in chosen},
        files=len(files),
    )
    _email("opened", dispute, now=now)
    return dispute


def _refuse_while_charging(customer: Customer, invoice: Invoice, *, now: datetime) -> None:
    """A card charge of this invoice in flight (claimed under lock 1, now at Stripe) was
    sized from the payable amount before the dispute: wait for its outcome rather than
    hold what it may be taking. A checkout left in flight past STALE_AFTER (a closed
    3-D Secure window) does not block."""
    charging = in_flight_checkout(customer.id)
    if (
        charging is not None
        and charging.updated_at > now - STALE_AFTER
        and any(item.invoice_id == invoice.id for item in charging.invoices)
    ):
        raise DisputeRefused(
            _("A card payment of this invoice is in progress. Please try again in a few minutes.")
        )


def reply(
    dispute: Dispute,
    body: str,
    files: Sequence[StoredEvidence],
    *,
    actor: Actor,
    now: datetime,
) -> DisputeMessage:
    """The customer answers in the thread: a dispute waiting on them goes back to staff
    (open); an open one stays open. Refused: no text and no file, text over
    MESSAGE_MAX_LENGTH, too many files (DisputeRefused); a decided dispute
    (DisputeTransitionRefused)."""
    text = _check_text(
        body,
        limit=MESSAGE_MAX_LENGTH,
        required=not files,
        what=_("Please write a message or attach a file."),
    )
    _check_files(files)
    dispute = _locked(dispute)
    was = dispute.state
    if was == DisputeStatus.WAITING_ON_CUSTOMER:
        _move(dispute, DisputeStatus.OPEN, now=now)
    elif was != DisputeStatus.OPEN:
        raise DisputeTransitionRefused(dispute)
    else:
        dispute.updated_at = now
    message = _add_message(
        dispute, text, kind=MessageKind.MESSAGE, actor=actor, now=now, files=files
    )
    db.session.flush()
    _audit("replied", dispute, actor=actor, now=now, was=str(was), files=len(files))
    _email("replied", dispute, now=now)
    return message


def withdraw(dispute: Dispute, *, actor: Actor, now: datetime) -> Dispute:
    """The customer withdraws the dispute: its amount is payable (and reminded) again,
    from today. DisputeTransitionRefused once decided."""
    dispute = _locked(dispute)
    _move(dispute, DisputeStatus.WITHDRAWN, now=now)
    dispute.resolved_by = str(actor)
    db.session.flush()
    _audit("withdrawn", dispute, actor=actor, now=now)
    _email("withdrawn", dispute, now=now)
    return dispute


# --- staff ------------------------------------------------------------------------------
def ask_for_information(dispute: Dispute, question: str, *, actor: Actor, now: datetime) -> Dispute:
    """Staff ask the customer a question: waiting on customer, who has DISPUTE_REPLY_DAYS
    to reply (`reply_due_at`) before the jobs runner hands it back (`flag_overdue_replies`).
    Refused: an empty question or one over MESSAGE_MAX_LENGTH (DisputeRefused); a dispute
    already waiting or decided (DisputeTransitionRefused)."""
    text = _check_text(
        question, limit=MESSAGE_MAX_LENGTH, required=True, what=_("Please write your question.")
    )
    dispute = _locked(dispute)
    _move(dispute, DisputeStatus.WAITING_ON_CUSTOMER, now=now)
    dispute.reply_due_at = now + timedelta(days=reply_days())
    dispute.flagged_at = None
    _add_message(dispute, text, kind=MessageKind.INFO_REQUEST, actor=actor, now=now)
    db.session.flush()
    _audit(
        "info_requested",
        dispute,
        actor=actor,
        now=now,
        reply_due_at=dispute.reply_due_at.isoformat(),
    )
    _email(
        "info_requested",
        dispute,
        now=now,
        question=text,
        reply_by=_local_day(dispute, dispute.reply_due_at),
    )
    return dispute


def _credit_lines(
    dispute: Dispute, credits: Mapping[int, int], *, actor: Actor, now: datetime
) -> list[CreditNote]:
    """One credit note of kind `dispute` per line credited (invoice line id -> minor
    units), naming the dispute and the line; refused if the invoice has less left open."""
    total = sum(credits.values())
    balance = invoice_balance(dispute.invoice, customer_today(dispute.customer, now))
    if total > balance.balance.minor:
        raise DisputeRefused(
            _(
                "Only %(amount)s is still open on this invoice: credit at most that.",
                amount=_shown(balance.balance),
            )
        )
    issued_on = customer_today(dispute.customer, now)
    notes = []
    for line in dispute.lines:
        amount = credits.get(line.invoice_line_id, 0)
        if amount <= 0:
            continue
        line.credited_minor = amount
        note = CreditNote(
            reference=f"DSP-{dispute.id}-L{line.line_number}",
            invoice_id=dispute.invoice_id,
            invoice_line_id=line.invoice_line_id,
            dispute_id=dispute.id,
            amount_minor=amount,
            currency=line.currency,
            kind=CreditNoteKind.DISPUTE,
            issued_on=issued_on,
            reason=f"Dispute {dispute.id}: {dispute.reason_enum.value}",
            created_at=now,
        )
        db.session.add(note)
        notes.append(note)
    db.session.flush()
    return notes


def accept(dispute: Dispute, *, actor: Actor, now: datetime) -> Dispute:
    """Staff accept the dispute in full: a credit note (kind `dispute`) for each disputed
    line's amount, on that line. DisputeTransitionRefused once decided."""
    dispute = _locked(dispute)
    if not can_move(dispute.state, DisputeStatus.ACCEPTED):
        raise DisputeTransitionRefused(dispute, DisputeStatus.ACCEPTED)
    _credit_lines(
        dispute,
        {line.invoice_line_id: line.amount_minor for line in dispute.lines},
        actor=actor,
        now=now,
    )
    _move(dispute, DisputeStatus.ACCEPTED, now=now)
    dispute.resolved_by = str(actor)
    db.session.flush()
    _audit("accepted", dispute, actor=actor, now=now, credited_minor=dispute.credited.minor)
    _email("accepted", dispute, now=now)
    return dispute


def accept_in_part(
    dispute: Dispute,
    credits: Mapping[int, Money],
    reason: str,
    *,
    actor: Actor,
    now: datetime,
) -> Dispute:
    """Staff credit part of what is disputed (line number -> credit; a line left out is
    credited nothing); the rest is payable again from today. The customer reads `reason`.

    Refused (DisputeRefused): a line not in the dispute, a credit in another currency,
    below zero or above that line's disputed amount, a total of zero or of the whole
    disputed amount (that is `accept`), an empty reason or one over
    RESOLUTION_MAX_LENGTH. DisputeTransitionRefused once decided.
    """
    text = _check_text(
        reason,
        limit=RESOLUTION_MAX_LENGTH,
        required=True,
        what=_("Please give the customer a reason."),
    )
    dispute = _locked(dispute)
    if not can_move(dispute.state, DisputeStatus.PARTLY_ACCEPTED):
        raise DisputeTransitionRefused(dispute, DisputeStatus.PARTLY_ACCEPTED)
    by_number = {line.line_number: line for line in dispute.lines}
    minor: dict[int, int] = {}
    for line_number, amount in credits.items():
        line = by_number.get(line_number)
        if line is None:
            raise DisputeRefused(
                _("Line %(number)s is not part of this dispute.", number=line_number)
            )
        if amount.currency != line.currency or amount.minor < 0 or amount > line.amount:
            raise DisputeRefused(
                _(
                    "The credit for line %(number)s must be between zero and %(amount)s.",
                    number=line_number,
                    amount=_shown(line.amount),
                )
            )
        minor[line.invoice_line_id] = amount.minor
    total = sum(minor.values())
    if total <= 0 or total >= dispute.amount.minor:
        raise DisputeRefused(
            _(
                "A credit in part is more than zero and less than the %(amount)s disputed.",
                amount=_shown(dispute.amount),
            )
        )
    _credit_lines(dispute, minor, actor=actor, now=now)
    _move(dispute, DisputeStatus.PARTLY_ACCEPTED, now=now)
    dispute.resolved_by = str(actor)
    dispute.resolution_reason = text
    _add_message(dispute, text, kind=MessageKind.DECISION, actor=actor, now=now)
    db.session.flush()
    _audit("partly_accepted", dispute, actor=actor, now=now, credited_minor=total, reason=text)
    _email("partly_accepted", dispute, now=now)
    return dispute


def reject(dispute: Dispute, reason: str, *, actor: Actor, now: datetime) -> Dispute:
    """Staff reject the dispute with a reason the customer reads: the whole disputed
    amount is payable again, and reminded from today on (never for a reminder step whose
    date fell while it was held: `notifications.services.schedule_collection_emails`).
    Refused: an empty reason or one over RESOLUTION_MAX_LENGTH (DisputeRefused);
    DisputeTransitionRefused once decided."""
    text = _check_text(
        reason,
        limit=RESOLUTION_MAX_LENGTH,
        required=True,
        what=_("Please give the customer a reason."),
    )
    dispute = _locked(dispute)
    _move(dispute, DisputeStatus.REJECTED, now=now)
    dispute.resolved_by = str(actor)
    dispute.resolution_reason = text
    _add_message(dispute, text, kind=MessageKind.DECISION, actor=actor, now=now)
    db.session.flush()
    _audit("rejected", dispute, actor=actor, now=now, reason=text)
    _email("rejected", dispute, now=now)
    return dispute


# --- the jobs runner --------------------------------------------------------------------
def flag_overdue_replies(*, now: datetime, limit: int = 500) -> int:
    """Disputes waiting on a customer past `reply_due_at` go back to staff: open again,
    `flagged_at` set, a system message in the thread, audited (`dispute.flagged`) and
    emailed once. Returns how many were flagged; idempotent (a flagged one is open)."""
    due = list(
        db.session.scalars(
            select(Dispute.id)
            .where(
                Dispute.status == DisputeStatus.WAITING_ON_CUSTOMER,
                Dispute.reply_due_at < now,
            )
            .order_by(Dispute.reply_due_at, Dispute.id)
            .limit(limit)
        )
    )
    flagged = 0
    actor = Actor.system()
    for dispute_id in due:
        dispute = db.session.get(Dispute, dispute_id)
        if dispute is None:  # pragma: no cover - disputes are never deleted
            continue
        dispute = _locked(dispute)
        if (
            dispute.state != DisputeStatus.WAITING_ON_CUSTOMER
            or dispute.reply_due_at is None
            or dispute.reply_due_at >= now
        ):
            continue  # the customer replied meanwhile
        due_at = dispute.reply_due_at
        _move(dispute, DisputeStatus.OPEN, now=now)
        dispute.flagged_at = now
        _add_message(
            dispute,
            "",  # the pages say it in the reader's language (kind `system`)
            kind=MessageKind.SYSTEM,
            actor=actor,
            now=now,
        )
        db.session.flush()
        _audit("flagged", dispute, actor=actor, now=now, reply_due_at=due_at.isoformat())
        _email(
            "flagged",
            dispute,
            now=now,
            dedupe_key=f"dispute:{dispute.id}:flagged:{due_at.isoformat()}",
            reply_by=_local_day(dispute, due_at),
        )
        flagged += 1
    return flagged
