"""The creditor this portal collects for, as configured."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app


@dataclass(frozen=True)
class Creditor:
    name: str
    email: str
    phone: str
    address: str
    timezone: str


def current_creditor() -> Creditor:
    config = current_app.config
    return Creditor(
        name=config["CREDITOR_NAME"],
        email=config["CREDITOR_EMAIL"],
        phone=config["CREDITOR_PHONE"],
        address=config["CREDITOR_ADDRESS"],
        timezone=config["CREDITOR_TIMEZONE"],
    )
