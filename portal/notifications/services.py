"""Customer email: queued in the business transaction, delivered by the jobs runner.

Delivery guarantee (read before changing `deliver_due_messages`): at-least-once, with
duplicates made detectable. A runner claims a message (status `sending`, a lease, one
commit), sends it, then records the outcome (a second commit). If the runner dies
between the SMTP server's acceptance and that second commit, the lease runs out and
another runner sends the message again, with the same Message-ID, fixed when the
message was queued, so that receivers (and their mail clients) can drop the
duplicate. No other path sends a message twice: claims are exclusive (row locks with
SKIP LOCKED on PostgreSQL; one runner at a time on SQLite, see `portal.jobs.runner`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from flask import current_app, render_template
from flask_babel import force_locale
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.access.services import build_link_url, issue_link
from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.extensions import db
from portal.i18n import supported_locale, zone_or_default
from portal.invoices.models import Invoice
from portal.money import Money
from portal.notifications.models import (
    EmailCategory,
    EmailOptOut,
    OutboxMessage,
    OutboxStatus,
    ReminderStep,
)
from portal.notifications.policy import (
    fell_while_held,
    has_attempts_left,
    next_delivery_time,
    reminder_stage,
    retry_delay,
)
from portal.notifications.sender import DeliveryError, Sender, build_email
from portal.payments.gateway import is_enabled as payments_enabled

log = logging.getLogger(__name__)
CLAIM_LEASE = timedelta(minutes=10)
# Stop sending a claimed batch this long after claiming it, well inside the lease.
SEND_WITHIN_LEASE = CLAIM_LEASE - timedelta(minutes=2)
UNSUBSCRIBE_SALT = "email-opt-out"


# --- opt-out ----------------------------------------------------------------------------
# An opt-out link is a signed customer id with a timestamp: it works for
# OPT_OUT_LINK_MAX_AGE from the moment the email is sent (RFC 8058 one-click must keep
# working for as long as a customer may reasonably act on an email; 90 days covers a
# reminder cadence). Like portal links, it is made only for the copy handed to the mail
# server: the stored copy holds `opt_out_link_slot()` (README, Security model).
OPT_OUT_LINK_MAX_AGE = timedelta(days=90)
OPT_OUT_LINK_SLOT = "opt-out-link-made-when-sent"


class OptOutLinkExpired(Exception):
    """A genuine opt-out link older than OPT_OUT_LINK_MAX_AGE."""


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=UNSUBSCRIBE_SALT)


def unsubscribe_token(customer: Customer) -> str:
    """A token naming `customer`, valid for OPT_OUT_LINK_MAX_AGE from now."""
    return str(_serializer().dumps(customer.id))


def customer_for_unsubscribe_token(token: str) -> Customer | None:
    """The customer a token names; None if it is not ours (or names no customer).

    Raises OptOutLinkExpired for one of ours older than OPT_OUT_LINK_MAX_AGE."""
    try:
        customer_id = _serializer().loads(token, max_age=int(OPT_OUT_LINK_MAX_AGE.total_seconds()))
    except SignatureExpired:
        raise OptOutLinkExpired from None
    except BadSignature:
        return None
    if not isinstance(customer_id, int):
        return None
    return db.session.get(Customer, customer_id)


def unsubscribe_url(customer: Customer) -> str:
    """The working opt-out URL: for the copy handed to the mail server only."""
    base = current_app.config["PORTAL_BASE_URL"]
    return f"{base}/email/opt-out/{unsubscribe_token(customer)}"


def opt_out_link_slot() -> str:
    """What a stored email shows in place of its opt-out link (opens nothing)."""
    return f"{current_app.config['PORTAL_BASE_URL']}/email/opt-out/{OPT_OUT_LINK_SLOT}"


def is_opted_out(customer_id: int) -> bool:
    return (
        db.session.scalar(select(EmailOptOut.id).where(EmailOptOut.customer_id == customer_id))
        is not None
    )


def opt_out(customer: Customer, *, source: str, now: datetime) -> bool:
    """Stop collection email to this customer. True if this call changed anything."""
    if is_opted_out(customer.id):
        return False
    db.session.add(EmailOptOut(customer_id=customer.id, opted_out_at=now, source=source))
    record_event(
        "email.opted_out",
        actor=Actor.customer(customer),
        now=now,
        customer_id=customer.id,
        subject=customer,
        data={"source": source},
    )
    return True


# --- portal links: issued when sent, never stored -----------------------------------------
# An email's stored copy (queued or sent) holds this placeholder where its portal link
# goes; the runner issues the link as it sends and writes it into the copy it hands to
# the mail server only. So the outbox, a database dump or a backup holds no working link:
# only the link's SHA-256 is stored (`access_links`). Retrying issues another link.
PORTAL_LINK_SLOT = "link-issued-when-sent"


def portal_link_slot() -> str:
    """What a stored email shows in place of its link (not a token: opens nothing)."""
    return build_link_url(current_app.config["PORTAL_BASE_URL"], PORTAL_LINK_SLOT)


def _issue_link_for(message: OutboxMessage, customer: Customer, now: datetime) -> str:
    """Issue the link this message carries; its URL, for the copy being sent only."""
    invoice = db.session.get(Invoice, message.invoice_id) if message.invoice_id else None
    issued = issue_link(
        customer,
        now=now,
        ttl=timedelta(days=current_app.config["ACCESS_LINK_TTL_DAYS"]),
        actor=Actor.system(),
        invoice=invoice if invoice is not None and invoice.customer_id == customer.id else None,
        purpose=str(message.link_purpose),
        target=message.link_target,
    )
    message.access_link_id = issued.link.id
    return issued.url(current_app.config["PORTAL_BASE_URL"])


def opted_out_at(customer_id: int) -> datetime | None:
    """When this customer stopped collection email; None if they receive it."""
    return db.session.scalar(
        select(EmailOptOut.opted_out_at).where(EmailOptOut.customer_id == customer_id)
    )


def resume_collection_email(customer: Customer, *, now: datetime, actor: Actor) -> bool:
    """Undo an opt-out: collection email (notices, reminders) reaches the customer again.

    Only the customer may ask for it (Regulation F, 12 CFR 1006.14(h): a consumer's
    opt-out holds until the consumer says otherwise). True if this call changed anything;
    the audit log keeps when the opt-out started and ended.
    """
    opt_out_row = db.session.scalar(
        select(EmailOptOut).where(EmailOptOut.customer_id == customer.id)
    )
    if opt_out_row is None:
        return False
    record_event(
        "email.opt_out_undone",
        actor=actor,
        now=now,
        customer_id=customer.id,
        subject=customer,
        data={"opted_out_at": opt_out_row.opted_out_at.isoformat(), "source": opt_out_row.source},
    )
    db.session.delete(opt_out_row)
    db.session.flush()
    return True


# --- queueing ---------------------------------------------------------------------------
def new_message_id() -> str:
    """An RFC 5322 Message-ID fixed at queue time, so that retries reuse it."""
    domain = current_app.config["CREDITOR_EMAIL"].rpartition("@")[2] or "portal.invalid"
    return f"<{uuid.uuid4().hex}@{domain}>"


def locale_for(customer: Customer) -> str:
    return supported_locale(customer.locale) or "en"


def queue_email(
    customer: Customer,
    *,
    kind: str,
    template: str,
    context: dict[str, Any],
    now: datetime,
    category: EmailCategory = EmailCategory.TRANSACTIONAL,
    invoice: Invoice | None = None,
    dedupe_key: str | None = None,
    with_portal_link: bool = False,
    link_target: str | None = None,
    attachment: str | None = None,
) -> OutboxMessage | None:
    """Render `emails/<template>.{subject.txt,txt,html}` in the customer's locale into the outbox.

    Collection email to an opted-out customer is not queued (None). With
    `with_portal_link`, the email carries `portal_url`: a fresh link (to `link_target`, a
    path on this site such as "/disputes/12", else to `invoice` if given) issued when it
    is sent, never stored (`PORTAL_LINK_SLOT`). `attachment` ("<kind>:<argument>", e.g.
    "plan_agreement:12") names a file made when it is sent by the builder registered for
    `kind` (`attaches`); ValueError if no builder is registered for it.
    """
    if attachment is not None and attachment.partition(":")[0] not in _ATTACHMENT_BUILDERS:
        raise ValueError(f"no attachment builder registered for {attachment!r}")
    if category == EmailCategory.COLLECTION and is_opted_out(customer.id):
        return None
    context = {"customer": customer, "invoice": invoice, **context}
    if with_portal_link:
        context["portal_url"] = portal_link_slot()
    opt_out_url = None
    if category == EmailCategory.COLLECTION and customer.is_consumer:
        opt_out_url = opt_out_link_slot()
    locale = locale_for(customer)
    subject, text, html = _render(template, context, locale, category, opt_out_url)
    message = OutboxMessage(
        message_id=new_message_id(),
        customer_id=customer.id,
        invoice_id=invoice.id if invoice else None,
        kind=kind,
        category=category,
        dedupe_key=dedupe_key,
        to_address=customer.email,
        locale=locale,
        subject=subject,
        body_text=text,
        body_html=html,
        unsubscribe_url=opt_out_url,
        link_purpose=kind if with_portal_link else None,
        link_target=link_target if with_portal_link else None,
        attachment=attachment,
        created_at=now,
        not_before=next_delivery_time(now, zone_or_default(customer.timezone)),
    )
    db.session.add(message)
    return message


def _render(
    template: str,
    context: dict[str, Any],
    locale: str,
    category: str,
    opt_out_url: str | None,
) -> tuple[str, str, str]:
    """`emails/<template>.{subject.txt,txt,html}` in `locale`: (subject, text, html)."""
    with force_locale(locale):
        context = context | {
            "locale": locale,
            "category": str(category),
            "opt_out_url": opt_out_url,
            "is_debt_collector": current_app.config["CREDITOR_IS_DEBT_COLLECTOR"],
            # An email offers to pay online only when the portal can take a card.
            "payments_enabled": payments_enabled(current_app.config),
        }
        subject = render_template(f"emails/{template}.subject.txt", **context).strip()
        text = render_template(f"emails/{template}.txt", **context)
        html = render_template(f"emails/{template}.html", **context)
    return subject, text, html


# --- emails rendered when they are sent -------------------------------------------------
# A hot path (a batch of card payments) queues a transactional email as a row naming its
# template and the ids its context is loaded from; the runner renders it just before
# sending and keeps what it sent in the row. The module that owns the data registers how
# to load it (`renders_later`). The context is JSON and holds no link: a message with
# `link_purpose` gets `portal_url` (the placeholder) when rendered, its link when sent.
ContextLoader = Callable[[Customer, Mapping[str, Any]], dict[str, Any]]
_CONTEXT_LOADERS: dict[str, ContextLoader] = {}


def renders_later(template: str) -> Callable[[ContextLoader], ContextLoader]:
    """Register how to load the context of `template` from the JSON stored with it (and
    the recipient, to whom everything it loads must belong)."""

    def register(loader: ContextLoader) -> ContextLoader:
        _CONTEXT_LOADERS[template] = loader
        return loader

    return register


def deferred_email_row(
    customer: Customer,
    *,
    kind: str,
    template: str,
    context: dict[str, Any],
    now: datetime,
    dedupe_key: str,
    with_portal_link: bool = False,
) -> dict[str, Any]:
    """The outbox row of a transactional email to render when sent, for a bulk insert.

    With `with_portal_link`, the email carries a link issued when it is sent."""
    if template not in _CONTEXT_LOADERS:
        raise ValueError(f"no context loader registered for email template {template!r}")
    return {
        "message_id": new_message_id(),
        "customer_id": customer.id,
        "invoice_id": None,
        "kind": kind,
        "category": EmailCategory.TRANSACTIONAL,
        "dedupe_key": dedupe_key,
        "to_address": customer.email,
        "locale": locale_for(customer),
        "template": template,
        "context": context,
        "link_purpose": kind if with_portal_link else None,
        "status": OutboxStatus.QUEUED,
        "attempts": 0,
        "created_at": now,
        "not_before": next_delivery_time(now, zone_or_default(customer.timezone)),
    }


def render_deferred(message: OutboxMessage, customer: Customer) -> None:
    """Write the subject and bodies of a message queued by `deferred_email_row`."""
    loader = _CONTEXT_LOADERS[str(message.template)]
    context = {"customer": customer, "invoice": None, **loader(customer, message.context or {})}
    if message.link_purpose:
        context["portal_url"] = portal_link_slot()
    message.subject, message.body_text, message.body_html = _render(
        str(message.template), context, message.locale, message.category, None
    )


# --- attachments made when sent -------------------------------------------------------
# A message names what it carries ("plan_agreement:12"); the module that owns the document
# registers how to build it (`attaches`). The file is made as the message is sent, in the
# message's locale, and never stored: a document that cannot be made fails the attempt
# like an email that cannot be rendered.
@dataclass(frozen=True)
class Attachment:
    """A file added to an email: its name as the recipient sees it, its bytes, its MIME
    type ("application/pdf")."""

    filename: str
    content: bytes
    mimetype: str


# (the recipient, the argument after "<kind>:", the message's locale) -> the file. It must
# raise LookupError when the document does not exist or is not the recipient's.
AttachmentBuilder = Callable[[Customer, str, str], Attachment]
_ATTACHMENT_BUILDERS: dict[str, AttachmentBuilder] = {}


def attaches(kind: str) -> Callable[[AttachmentBuilder], AttachmentBuilder]:
    """Register how to build the attachment named "<kind>:<argument>"."""

    def register(builder: AttachmentBuilder) -> AttachmentBuilder:
        _ATTACHMENT_BUILDERS[kind] = builder
        return builder

    return register


def build_attachment(message: OutboxMessage, customer: Customer | None) -> Attachment:
    """The file `message.attachment` names, made now in the message's locale.

    LookupError if its kind has no builder, it belongs to no customer, or the builder
    finds no such document for this customer; whatever else the builder raises (a PDF
    that fails to render) is passed on."""
    kind, _sep, argument = str(message.attachment).partition(":")
    builder = _ATTACHMENT_BUILDERS.get(kind)
    if builder is None:
        raise LookupError(f"no attachment builder registered for {message.attachment!r}")
    if customer is None:
        raise LookupError(f"attachment {message.attachment!r} has no recipient")
    return builder(customer, argument, message.locale)


# --- delivery ---------------------------------------------------------------------------
@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    suppressed: int = 0
    deferred: int = 0

    def summary(self) -> str:
        return ", ".join(f"{value} {name}" for name, value in vars(self).items())


def claim_due_messages(*, now: datetime, runner: str, limit: int) -> list[int]:
    """Claim up to `limit` due messages for this runner and commit the claim.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent runners take disjoint rows.
    SQLite has no row locks: the runner lock in `portal.jobs.runner` admits one runner.
    The conditional UPDATE re-checks the status, so even a lost race claims nothing.
    """
    due = (
        select(OutboxMessage.id)
        .where(
            or_(
                (OutboxMessage.status == OutboxStatus.QUEUED) & (OutboxMessage.not_before <= now),
                # A runner died mid-send: its lease ran out; send again (same Message-ID).
                (OutboxMessage.status == OutboxStatus.SENDING) & (OutboxMessage.lease_until < now),
            )
        )
        .order_by(OutboxMessage.not_before, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(db.session.scalars(due))
    claimed: list[int] = []
    for message_id in ids:
        result = db.session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == message_id,
                or_(
                    OutboxMessage.status == OutboxStatus.QUEUED,
                    (OutboxMessage.status == OutboxStatus.SENDING)
                    & (OutboxMessage.lease_until < now),
                ),
            )
            .values(status=OutboxStatus.SENDING, claimed_by=runner, lease_until=now + CLAIM_LEASE)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(message_id)
    db.session.commit()
    return claimed


def deliver_due_messages(
    sender: Sender, *, now: datetime, runner: str, limit: int = 200
) -> DeliveryReport:
    """Send what is due; each outcome is committed on its own (see the module docstring).

    A slow mail server must not let a batch outlive its claims: once the lease is nearly
    over, what is left is handed back (queued again) rather than sent late, when another
    runner could have claimed it meanwhile.
    """
    report = DeliveryReport()
    config = current_app.config
    claimed = claim_due_messages(now=now, runner=runner, limit=limit)
    started = time.monotonic()
    for position, message_id in enumerate(claimed):
        if time.monotonic() - started > SEND_WITHIN_LEASE.total_seconds():
            _hand_back(claimed[position:], runner)
            break
        message = db.session.get(OutboxMessage, message_id)
        if message is None or message.claimed_by != runner:
            continue
        _deliver_one(
            message,
            sender,
            now=now,
            report=report,
            sender_name=config["CREDITOR_NAME"],
            sender_address=config["MAIL_FROM"],
        )
        db.session.commit()
    return report


def _hand_back(message_ids: list[int], runner: str) -> None:
    db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(message_ids),
            OutboxMessage.claimed_by == runner,
            OutboxMessage.status == OutboxStatus.SENDING,
        )
        .values(status=OutboxStatus.QUEUED, claimed_by=None, lease_until=None)
    )
    db.session.commit()


def _deliver_one(
    message: OutboxMessage,
    sender: Sender,
    *,
    now: datetime,
    report: DeliveryReport,
    sender_name: str,
    sender_address: str,
) -> None:
    customer = db.session.get(Customer, message.customer_id) if message.customer_id else None
    if message.category == EmailCategory.COLLECTION and customer and is_opted_out(customer.id):
        _release(message, OutboxStatus.SUPPRESSED)
        report.suppressed += 1
        return
    if customer is not None:
        window = next_delivery_time(now, zone_or_default(customer.timezone))
        if window > now:
            _release(message, OutboxStatus.QUEUED, not_before=window)
            report.deferred += 1
            return
    if customer is None and (message.subject is None or message.link_purpose):
        # The customer was deleted: nothing to say (or no link to issue), and to no one.
        _release(message, OutboxStatus.SUPPRESSED)
        report.suppressed += 1
        return
    # Counted before rendering: an email that cannot be rendered or built uses its
    # attempts like one the server refuses, and ends `failed`, never stuck in `sending`.
    message.attempts += 1
    try:
        with db.session.begin_nested():  # a loader's failed query must not spoil the batch
            email = email_to_send(
                message, customer, now=now, sender_name=sender_name, sender_address=sender_address
            )
    except Exception as error:  # one email's fault must not stop the batch
        log.warning("email %s could not be prepared: %r", message.id, error)
        reason = f"could not prepare the email: {type(error).__name__}: {error}"
        _attempt_failed(message, reason, now=now, report=report, permanent=False)
        return
    # Commit the attempt (and the link it carries) before talking to the mail server, so
    # that no transaction, and on SQLite no write lock, is held while it answers.
    db.session.commit()
    try:
        sender.send(email)
    except DeliveryError as error:
        _attempt_failed(message, str(error), now=now, report=report, permanent=error.permanent)
        return
    except Exception as error:  # one email's fault must not stop the batch
        log.warning("email %s could not be sent: %r", message.id, error)
        reason = f"could not send the email: {type(error).__name__}: {error}"
        _attempt_failed(message, reason, now=now, report=report, permanent=False)
        return
    _release(message, OutboxStatus.SENT)
    message.sent_at = now
    message.last_error = None
    report.sent += 1


def _attempt_failed(
    message: OutboxMessage, reason: str, *, now: datetime, report: DeliveryReport, permanent: bool
) -> None:
    """Retry later with backoff, or mark failed after the last attempt (or at once)."""
    message.last_error = reason[:500]
    if not permanent and has_attempts_left(message.attempts):
        _release(message, OutboxStatus.QUEUED, not_before=now + retry_delay(message.attempts))
        report.retried += 1
    else:
        _release(message, OutboxStatus.FAILED)
        report.failed += 1


def email_to_send(
    message: OutboxMessage,
    customer: Customer | None,
    *,
    now: datetime,
    sender_name: str,
    sender_address: str,
) -> EmailMessage:
    """The copy of `message` to hand to the mail server: rendered if it renders when sent,
    with its portal link issued now and its opt-out link made now (the stored copy keeps
    the placeholders), and its attachment, if it names one, made now (`build_attachment`)."""
    if message.subject is None and customer is not None:
        render_deferred(message, customer)
    links = {}
    if message.link_purpose and customer is not None:
        links[portal_link_slot()] = _issue_link_for(message, customer, now)
    if message.unsubscribe_url and customer is not None:
        links[opt_out_link_slot()] = unsubscribe_url(customer)
    email = build_email(
        message, sender_name=sender_name, sender_address=sender_address, links=links
    )
    if message.attachment:
        attachment = build_attachment(message, customer)
        maintype, _sep, subtype = attachment.mimetype.partition("/")
        email.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return email


def _release(
    message: OutboxMessage, status: OutboxStatus, *, not_before: datetime | None = None
) -> None:
    message.status = status
    message.claimed_by = None
    message.lease_until = None
    if not_before is not None:
        message.not_before = not_before


# --- reminders --------------------------------------------------------------------------
@dataclass
class ScheduleReport:
    notices: int = 0
    reminders: int = 0

    def summary(self) -> str:
        return f"{self.notices} invoice notices, {self.reminders} reminders queued"


# A "new invoice" notice goes only for an invoice imported lately and not yet due;
# one imported already overdue gets the cadence's reminder instead.
NOTICE_WINDOW = timedelta(days=7)


def active_offsets() -> list[int]:
    return list(
        db.session.scalars(
            select(ReminderStep.offset_days)
            .where(ReminderStep.is_active.is_(True))
            .order_by(ReminderStep.offset_days)
        )
    )


def schedule_collection_emails(*, now: datetime) -> ScheduleReport:
    """Queue invoice notices and the cadence's reminders that are due; idempotent.

    Only the *payable* amount is dunned: `payable_invoices` leaves out what is paid,
    disputed or covered by a plan, and an email says how much an open dispute holds.
    A step whose date fell while a since-decided dispute held the invoice is not sent
    late (`policy.fell_while_held`): reminders resume from the decision. An invoice an
    open promise to pay covers waits until the promise is decided (`portal.promises`).
    Each (invoice, step) is queued at most once; the outbox's unique `dedupe_key`
    enforces it even against a concurrent runner.
    """
    from portal.disputes.queries import hold_windows
    from portal.invoices.balances import payable_invoices
    from portal.promises.queries import paused_invoice_ids

    report = ScheduleReport()
    offsets = active_offsets()
    paused = set(db.session.scalars(paused_invoice_ids()))
    candidates = [c for c in payable_invoices() if c.invoice.id not in paused]
    opted_out = set(db.session.scalars(select(EmailOptOut.customer_id)))
    history = _email_history(item.invoice.id for item in candidates)
    holds = hold_windows(item.invoice.id for item in candidates)
    for item in candidates:
        invoice, customer = item.invoice, item.invoice.customer
        if customer.id in opted_out:
            continue
        today = customer_today(customer, now)
        is_new = invoice.created_at >= now - NOTICE_WINDOW and invoice.due_date >= today
        if is_new and invoice.id not in history.noticed:
            notice_key = f"notice:{invoice.id}"
            if _queue_once(
                customer, invoice, item.payable, item.held, "invoice_notice", notice_key, now
            ):
                report.notices += 1
            continue  # a new invoice's first email is its notice, not a reminder
        stage = reminder_stage(invoice.due_date, today, offsets)
        sent = history.latest_stage.get(invoice.id)
        if stage is None or (sent is not None and sent >= stage):
            continue
        zone = zone_or_default(customer.timezone)
        windows = [
            (opened.astimezone(zone).date(), decided.astimezone(zone).date())
            for opened, decided in holds.get(invoice.id, [])
        ]
        if fell_while_held(invoice.due_date + timedelta(days=stage), windows):
            continue
        kind = "reminder_before_due" if stage < 0 else "reminder_overdue"
        key = f"reminder:{invoice.id}:{stage}"
        if _queue_once(customer, invoice, item.payable, item.held, kind, key, now):
            report.reminders += 1
    return report


@dataclass
class _EmailHistory:
    noticed: set[int]  # invoice ids that had their notice
    latest_stage: dict[int, int]  # invoice id -> latest reminder step queued


def _email_history(invoice_ids: Iterable[int]) -> _EmailHistory:
    """What was already queued for these invoices, read from the dedupe keys in one pass."""
    history = _EmailHistory(set(), {})
    ids = list(invoice_ids)
    for start in range(0, len(ids), 500):
        rows = db.session.execute(
            select(OutboxMessage.invoice_id, OutboxMessage.dedupe_key).where(
                OutboxMessage.invoice_id.in_(ids[start : start + 500]),
                OutboxMessage.dedupe_key.is_not(None),
            )
        )
        for invoice_id, key in rows:
            kind, _, rest = key.partition(":")
            if kind == "notice":
                history.noticed.add(invoice_id)
            elif kind == "reminder":
                step = int(rest.rsplit(":", 1)[1])
                history.latest_stage[invoice_id] = max(
                    step, history.latest_stage.get(invoice_id, step)
                )
    return history


def _queue_once(
    customer: Customer,
    invoice: Invoice,
    payable: Money,
    held: Money,
    kind: str,
    key: str,
    now: datetime,
) -> bool:
    try:
        with db.session.begin_nested():
            queued = queue_email(
                customer,
                kind=kind,
                template=kind,
                context={"payable": payable, "held": held},
                now=now,
                category=EmailCategory.COLLECTION,
                invoice=invoice,
                dedupe_key=key,
                with_portal_link=True,
            )
    except IntegrityError:  # another runner queued this step first
        return False
    return queued is not None
