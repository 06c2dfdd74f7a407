"""Importing customers: upsert by account number.

Optional fields that are absent or left empty keep an existing customer's value, and
give a new customer the default (kind business, segment standard, the configured default
currency, no phone, locale or time zone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import insert, select

from portal.audit.actors import Actor
from portal.customers.models import Customer, CustomerKind
from portal.extensions import db
from portal.imports.common import ImportReport, chunks, finish
from portal.imports.parsing import (
    parse_account_number,
    parse_choice,
    parse_currency,
    parse_email,
    parse_locale,
    parse_timezone,
)
from portal.imports.records import ImportFailed, Record, RowError, RowReader
from portal.invoices.models import Invoice

REQUIRED = ("account_number", "name", "email")
OPTIONAL = ("phone", "locale", "currency", "kind", "segment", "timezone")
NUMERIC: tuple[str, ...] = ()
_parse_kind = parse_choice([kind.value for kind in CustomerKind])


@dataclass
class CustomerChanges:
    """What `apply` writes: checked, nothing left to refuse."""

    report: ImportReport
    new: list[dict[str, str]] = field(default_factory=list)
    changed: list[tuple[Customer, dict[str, str]]] = field(default_factory=list)


def validate(records: Sequence[Record]) -> CustomerChanges:
    """Check every record against the others and the database; ImportFailed lists all."""
    errors: list[RowError] = []
    warnings: list[RowError] = []
    seen: dict[str, int] = {}
    parsed: dict[str, tuple[int, dict[str, str]]] = {}
    for record in records:
        reader = RowReader(record, errors)
        account = reader.key("account_number", max_length=64, parser=parse_account_number)
        fields = _customer_fields(reader)
        if account in seen:
            reader.error(f"account {account!r} already appears on line {seen[account]}")
        elif account:
            seen[account] = record.line
        if reader.ok:
            parsed[account] = (record.line, fields)
            email = fields["email"]
            if not email.rpartition("@")[0].isascii():
                warnings.append(
                    RowError(
                        record.line,
                        f"email {email!r} has letters outside ASCII before the @; it can "
                        "only be delivered through a mail server that supports SMTPUTF8",
                    )
                )

    existing: dict[str, Customer] = {}
    for batch in chunks(sorted(parsed)):
        for loaded in db.session.scalars(
            select(Customer).where(Customer.account_number.in_(batch))
        ):
            existing[loaded.account_number] = loaded
    _check_currency_changes(parsed, existing, errors)
    if errors:
        raise ImportFailed(errors)

    changes = CustomerChanges(ImportReport("customers", rows=len(records), warnings=warnings))
    default_currency = parse_currency(current_app.config["DEFAULT_CURRENCY"])
    for account, (_line, fields) in parsed.items():
        customer = existing.get(account)
        if customer is None:
            changes.new.append(
                {
                    "account_number": account,
                    "currency": default_currency,
                    "kind": CustomerKind.BUSINESS.value,
                    "segment": "standard",
                    **fields,
                }
            )
            continue
        differences = {k: v for k, v in fields.items() if getattr(customer, k) != v}
        if differences:
            changes.changed.append((customer, differences))
        else:
            changes.report.unchanged += 1
    changes.report.created = len(changes.new)
    changes.report.updated = len(changes.changed)
    return changes


def apply(changes: CustomerChanges, *, now: datetime, actor: Actor) -> ImportReport:
    """Write what `validate` found, in the caller's transaction."""
    for customer, differences in changes.changed:
        for name, value in differences.items():
            setattr(customer, name, value)
        customer.updated_at = now
    if changes.new:
        rows: list[dict[str, Any]] = [
            {
                "phone": None,
                "locale": None,
                "timezone": None,
                **new,
                "created_at": now,
                "updated_at": now,
            }
            for new in changes.new
        ]
        db.session.execute(insert(Customer), rows)
    return finish(changes.report, now=now, actor=actor)


def _customer_fields(reader: RowReader) -> dict[str, str]:
    """The fields this record sets; optional fields left empty are not set."""
    fields = {
        "name": reader.text("name", required=True, max_length=200),
        "email": reader.parse("email", parse_email) or "",
    }
    optional: list[tuple[str, Callable[[str], str | None]]] = [
        ("phone", lambda column: reader.text(column, max_length=40)),
        ("locale", lambda column: reader.parse(column, parse_locale, required=False)),
        ("currency", lambda column: reader.parse(column, parse_currency, required=False)),
        ("kind", lambda column: reader.parse(column, _parse_kind, required=False)),
        ("segment", lambda column: reader.text(column, max_length=40)),
        ("timezone", lambda column: reader.parse(column, parse_timezone, required=False)),
    ]
    for column, read in optional:
        value = read(column)
        if value:
            fields[column] = value
    return fields


def _check_currency_changes(
    parsed: dict[str, tuple[int, dict[str, str]]],
    existing: dict[str, Customer],
    errors: list[RowError],
) -> None:
    changing = {
        customer.id: (account, customer.currency, parsed[account])
        for account, customer in existing.items()
        if parsed[account][1].get("currency", customer.currency) != customer.currency
    }
    for batch in chunks(sorted(changing)):
        invoiced = db.session.scalars(
            select(Invoice.customer_id).where(Invoice.customer_id.in_(batch)).distinct()
        )
        for customer_id in invoiced:
            account, old, (line, fields) = changing[customer_id]
            errors.append(
                RowError(
                    line,
                    f"account {account!r} already has invoices in {old}; "
                    f"its currency cannot change to {fields['currency']}",
                )
            )
