"""Importing the creditor's ledger (customers, invoices, offline payments, credit notes).

Each kind (`portal.imports.customers`, `.invoices`, `.payments`, `.credit_notes`) has
the same two steps, independent of where the records come from:

- `validate(records)` checks every record against the others and the database and
  raises ImportFailed listing every problem, writing nothing;
- `apply(changes, now=…, actor=…)` writes what validate found (bulk INSERTs and
  UPDATEs in the caller's transaction, one audit row per payment or credit note and
  one for the import); the caller commits, or rolls back.

`import_records` runs both for records from any front end (the REST API to come);
`import_file` is the CSV front end. Re-importing the same records changes nothing:
they are matched by their external reference (account number, invoice number, payment
or credit note reference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from portal.audit.actors import Actor
from portal.imports import credit_notes, customers, invoices, payments
from portal.imports.common import ImportReport
from portal.imports.parsing import Source, detect_dialect, read_table, read_text
from portal.imports.records import ImportFailed, Record, RowError

__all__ = [
    "KINDS",
    "ImportFailed",
    "ImportKind",
    "ImportReport",
    "Record",
    "RowError",
    "import_file",
    "import_records",
]


class Changes(Protocol):
    """What a kind's `validate` returns and its `apply` writes."""

    report: ImportReport


@dataclass(frozen=True)
class ImportKind:
    """One kind of record: its fields and its validate → apply steps."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    numeric: tuple[str, ...]  # decimal numbers (read with the file's decimal mark)
    validate: Callable[[Sequence[Record]], Changes]
    apply: Callable[..., ImportReport]  # (its own Changes, *, now, actor)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


KINDS: dict[str, ImportKind] = {
    module_kind.name: module_kind
    for module_kind in (
        ImportKind(
            "customers",
            customers.REQUIRED,
            customers.OPTIONAL,
            customers.NUMERIC,
            customers.validate,
            customers.apply,
        ),
        ImportKind(
            "invoices",
            invoices.REQUIRED,
            invoices.OPTIONAL,
            invoices.NUMERIC,
            invoices.validate,
            invoices.apply,
        ),
        ImportKind(
            "payments",
            payments.REQUIRED,
            payments.OPTIONAL,
            payments.NUMERIC,
            payments.validate,
            payments.apply,
        ),
        ImportKind(
            "credit-notes",
            credit_notes.REQUIRED,
            credit_notes.OPTIONAL,
            credit_notes.NUMERIC,
            credit_notes.validate,
            credit_notes.apply,
        ),
    )
}
CUSTOMER_COLUMNS = KINDS["customers"].columns
INVOICE_COLUMNS = KINDS["invoices"].columns
PAYMENT_COLUMNS = KINDS["payments"].columns
CREDIT_NOTE_COLUMNS = KINDS["credit-notes"].columns


def _kind(name: str) -> ImportKind:
    if name not in KINDS:
        raise ValueError(f"unknown import kind {name!r}; expected one of {', '.join(KINDS)}")
    return KINDS[name]


def _finish(
    importer: ImportKind, changes: Changes, *, dry_run: bool, now: datetime, actor: Actor | str
) -> ImportReport:
    if dry_run:
        changes.report.dry_run = True
        return changes.report
    return importer.apply(
        changes, now=now, actor=actor if isinstance(actor, Actor) else Actor.importer(actor)
    )


def import_records(
    kind: str,
    records: Sequence[Record],
    *,
    dry_run: bool = False,
    now: datetime,
    actor: Actor | str,
) -> ImportReport:
    """Validate all `records`, then write them (unless dry_run); ImportFailed lists problems.

    `actor` is who runs the import: an Actor, or the name of the front end ("cli"),
    recorded as the actor `import:<name>`.
    """
    importer = _kind(kind)
    changes = importer.validate(records)
    return _finish(importer, changes, dry_run=dry_run, now=now, actor=actor)


def import_file(
    kind: str,
    source: Source,
    *,
    dry_run: bool = False,
    now: datetime,
    actor: Actor | str,
    delimiter: str | None = None,
    decimal_comma: bool | None = None,
) -> ImportReport:
    """Check a whole CSV file, then upsert it (unless dry_run); ImportFailed lists bad rows.

    The separator and decimal mark are read from the header line unless given (see
    `parsing.detect_dialect`); the report says which were used.
    """
    importer = _kind(kind)
    text = read_text(source)
    dialect = detect_dialect(text, delimiter=delimiter, decimal_comma=decimal_comma)
    table = read_table(
        text,
        required=importer.required,
        optional=importer.optional,
        numeric=importer.numeric,
        dialect=dialect,
    )
    try:
        changes = importer.validate(table.rows)
    except ImportFailed as failure:
        raise ImportFailed([*table.errors, *failure.errors]) from None
    if table.errors:
        raise ImportFailed(table.errors)
    changes.report.dialect = dialect.describe()
    return _finish(importer, changes, dry_run=dry_run, now=now, actor=actor)
