"""Turning an outbox row into a MIME message, and handing it to an SMTP server."""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from email_validator import EmailNotValidError, validate_email

from portal.db import utcnow
from portal.notifications.models import OutboxMessage

log = logging.getLogger(__name__)
PORTAL_LINK = re.compile(r"https?://\S+/l/[A-Za-z0-9_-]+")


class DeliveryError(Exception):
    """The message was not accepted; it stays in the outbox and is retried, unless
    `permanent` (no retry can succeed: it is marked failed at once)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


def transport_address(address: str) -> str:
    """The address as it goes over SMTP: the domain in its ASCII form (IDNA, RFC 5891),
    which every relay takes; the local part as written (non-ASCII needs SMTPUTF8,
    RFC 6531). DeliveryError(permanent) if it is not an address at all."""
    try:
        parsed = validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        raise DeliveryError(f"invalid address {address!r}: {error}", permanent=True) from None
    return f"{parsed.local_part}@{parsed.ascii_domain}"


def build_email(
    message: OutboxMessage,
    *,
    sender_name: str,
    sender_address: str,
    links: dict[str, str] | None = None,
) -> EmailMessage:
    """The MIME message of `message`; `links` maps a placeholder in the stored bodies to
    the link this copy carries (issued for this send; never written back)."""
    text, html = message.body_text or "", message.body_html
    unsubscribe = message.unsubscribe_url
    for placeholder, url in (links or {}).items():
        text = text.replace(placeholder, url)
        html = html.replace(placeholder, url) if html else html
        unsubscribe = unsubscribe.replace(placeholder, url) if unsubscribe else unsubscribe
    email = EmailMessage()
    email["From"] = formataddr((sender_name, transport_address(sender_address)))
    email["To"] = transport_address(message.to_address)
    email["Subject"] = message.subject
    email["Message-ID"] = message.message_id
    email["Date"] = format_datetime(utcnow())
    if unsubscribe:
        # RFC 8058 one-click: the mail client POSTs "List-Unsubscribe=One-Click" to the URL.
        email["List-Unsubscribe"] = f"<{unsubscribe}>"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email.set_content(text)
    if html:
        email.add_alternative(html, subtype="html")
    # After the body: setting the content clears Content-* headers.
    email["Content-Language"] = message.locale
    return email


class Sender(Protocol):
    def send(self, email: EmailMessage) -> None: ...


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool
    timeout: float

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """`smtp://user:pass@host:587?starttls=true`, or `smtps://…:465` for implicit TLS."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:pass@host:587?starttls=true")
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        implicit_tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit_tls,
            starttls=query.get("starttls", "false").lower() in ("1", "true", "yes"),
            timeout=float(query.get("timeout", "20")),
        )


class SmtpSender:
    """Delivers through the standard library's smtplib: one connection per batch."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        connection: smtplib.SMTP
        if s.implicit_tls:
            connection = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.starttls:
                connection.starttls(context=context)
        if s.username:
            connection.login(s.username, s.password or "")
        return connection

    def send(self, email: EmailMessage) -> None:
        try:
            if self._connection is None:
                self._connection = self._connect()
            refused = self._connection.send_message(email)
        except smtplib.SMTPNotSupportedError as error:
            # smtplib raises this before sending when an address needs SMTPUTF8 and the
            # server does not offer it: no retry will change the server's answer.
            raise DeliveryError(
                f"the mail server does not support SMTPUTF8, which {email['To']} needs "
                "(letters outside ASCII before the @)",
                permanent=True,
            ) from error
        except (OSError, smtplib.SMTPException) as error:
            self.close()
            raise DeliveryError(f"{type(error).__name__}: {error}"[:500]) from error
        except Exception:
            # Whatever else broke (a message that cannot be serialized) may have left the
            # conversation mid-command: the next message starts on a fresh connection.
            self.close()
            raise
        if refused:
            raise DeliveryError(f"refused recipients: {sorted(refused)}"[:500])

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (OSError, smtplib.SMTPException):
                self._connection.close()
            self._connection = None


class ConsoleSender:
    """Development: nothing leaves the machine; the mailbox page shows what would have."""

    def send(self, email: EmailMessage) -> None:
        body = email.get_body(("plain",))
        links = PORTAL_LINK.findall(body.get_content()) if body is not None else []
        files = [part.get_filename() or "" for part in email.iter_attachments()]
        print(  # the console is this sender's mailbox
            f"[mailbox] to {email['To']}: {email['Subject']}"
            + (f"\n          link: {links[0]}" if links else "")
            + (f"\n          attached: {', '.join(files)}" if files else "")
        )

    def close(self) -> None:
        return None
