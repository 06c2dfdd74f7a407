"""A real SMTP server on loopback (aiosmtpd) that records what it receives."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RecordingHandler:
    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[list[str]] = field(default_factory=list)  # RCPT TO of each message
    refuse_with: str | None = None  # e.g. "550 5.7.1 rejected" to refuse every message

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        if self.refuse_with:
            return self.refuse_with
        self.received.append(message_from_bytes(envelope.content, policy=policy.default))
        self.envelopes.append(list(envelope.rcpt_tos))
        return "250 OK"


@dataclass
class SmtpFixture:
    handler: RecordingHandler
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=5"

    @property
    def received(self) -> list[EmailMessage]:
        return self.handler.received


def _serve(*, smtputf8: bool) -> Iterator[SmtpFixture]:
    handler = RecordingHandler()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=smtputf8
    )
    controller.start()
    try:
        yield SmtpFixture(handler, controller.port)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpFixture]:
    """A relay that does not offer SMTPUTF8 (RFC 6531), as many do not."""
    yield from _serve(smtputf8=False)


@pytest.fixture
def smtputf8_server() -> Iterator[SmtpFixture]:
    """A relay that advertises SMTPUTF8: it takes non-ASCII local parts."""
    yield from _serve(smtputf8=True)
