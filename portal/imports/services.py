"""CSV import of customers, invoices and offline payments from the creditor's ERP.

Each import reads the whole file, checks every row against the file itself and the
database, and raises ImportFailed listing every bad row (nothing written) before it
writes anything. Writes are bulk INSERTs and UPDATEs in the caller's transaction; the
caller commits (the CLI), or rolls back for a dry run. Re-importing a file changes
nothing: rows are matched by their external reference (account number, invoice
number, payment reference).

Optional customer columns that are absent or left empty keep an existing customer's
value, and give a new customer the default (kind business, segment standard, the
configured default currency, no phone, locale or time zone).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import delete, insert, select, update

from portal.audit.services import record_event
from portal.customers.models import Customer, CustomerKind
from portal.extensions import db
from portal.imports.parsing import (
    MAX_DB_INT,
    ImportFailed,
    RowError,
    RowReader,
    Source,
    parse_amount,
    parse_choice,
    parse_currency,
    parse_date,
    parse_email,
    parse_line_number,
    parse_locale,
    parse_positive_amount,
    parse_quantity_milli,
    parse_timezone,
    read_table,
    read_text,
)
from portal.invoices.models import QUANTITY_SCALE, Invoice, InvoiceLine
from portal.invoices.queries import credited_subquery, net_paid_subquery
from portal.money import Money, MoneyError, UnitPrice, line_amount
from portal.payments.models import (
    Payment,
    PaymentAllocation,
    PaymentSource,
)
from portal.payments.policy import OpenItem, Overpayment, allocate

__all__ = ["KINDS", "ImportFailed", "ImportReport", "RowError", "import_file"]

KINDS = ("customers", "invoices", "payments")
CHUNK = 500  # keys per IN (...) lookup: well under SQLite's bound-parameter limit

K = TypeVar("K")


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dry_run: bool = False
    details: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            **self.details,
        }


def import_file(
    kind: str, source: Source, *, dry_run: bool = False, now: datetime, actor: str
) -> ImportReport:
    """Check a whole CSV file, then upsert it (unless dry_run); ImportFailed lists bad rows."""
    importers: dict[str, Callable[[str, bool, datetime, str], ImportReport]] = {
        "customers": _import_customers,
        "invoices": _import_invoices,
        "payments": _import_payments,
    }
    if kind not in importers:
        raise ValueError(f"unknown import kind {kind!r}; expected one of {', '.join(KINDS)}")
    return importers[kind](read_text(source), dry_run, now, actor)


def _chunks(keys: Iterable[K], size: int = CHUNK) -> Iterator[list[K]]:
    batch: list[K] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _finish(report: ImportReport, *, now: datetime, actor: str) -> ImportReport:
    """One audit row per import (not per row), then make the session see the bulk writes."""
    record_event(f"import.{report.kind}", actor=actor, now=now, data=report.counts())
    db.session.flush()
    # The bulk statements bypass the identity map; objects loaded before must reload.
    db.session.expire_all()
    return report


@dataclass(frozen=True, slots=True)
class _CustomerKey:
    id: int
    currency: str


def _customer_keys(accounts: Iterable[str]) -> dict[str, _CustomerKey]:
    found: dict[str, _CustomerKey] = {}
    for batch in _chunks(sorted(accounts)):
        rows = db.session.execute(
            select(Customer.account_number, Customer.id, Customer.currency).where(
                Customer.account_number.in_(batch)
            )
        )
        for account, customer_id, currency in rows:
            found[account] = _CustomerKey(customer_id, currency)
    return found


# --- customers --------------------------------------------------------------------------

CUSTOMER_REQUIRED = ("account_number", "name", "email")
CUSTOMER_OPTIONAL = ("phone", "locale", "currency", "kind", "segment", "timezone")
CUSTOMER_COLUMNS = CUSTOMER_REQUIRED + CUSTOMER_OPTIONAL
_parse_kind = parse_choice([kind.value for kind in CustomerKind])


def _import_customers(text: str, dry_run: bool, now: datetime, actor: str) -> ImportReport:
    table = read_table(text, required=CUSTOMER_REQUIRED, optional=CUSTOMER_OPTIONAL)
    errors = list(table.errors)
    seen: dict[str, int] = {}
    parsed: dict[str, tuple[int, dict[str, str]]] = {}
    for row in table.rows:
        reader = RowReader(row, errors)
        account = reader.text("account_number", required=True, max_length=64)
        fields = _customer_fields(reader)
        if account in seen:
            reader.error(f"account {account!r} already appears on line {seen[account]}")
        elif account:
            seen[account] = row.line
        if reader.ok:
            parsed[account] = (row.line, fields)

    existing: dict[str, Customer] = {}
    for batch in _chunks(sorted(parsed)):
        for loaded in db.session.scalars(
            select(Customer).where(Customer.account_number.in_(batch))
        ):
            existing[loaded.account_number] = loaded
    _check_currency_changes(parsed, existing, errors)
    if errors:
        raise ImportFailed(errors)

    report = ImportReport("customers", rows=len(table.rows), dry_run=dry_run)
    default_currency = parse_currency(current_app.config["DEFAULT_CURRENCY"])
    new_rows: list[dict[str, Any]] = []
    for account, (_line, fields) in parsed.items():
        customer = existing.get(account)
        if customer is None:
            new_rows.append(
                {
                    "account_number": account,
                    "phone": None,
                    "locale": None,
                    "timezone": None,
                    "currency": default_currency,
                    "kind": CustomerKind.BUSINESS.value,
                    "segment": "standard",
                    **fields,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            report.created += 1
            continue
        changes = {k: v for k, v in fields.items() if getattr(customer, k) != v}
        if not changes:
            report.unchanged += 1
            continue
        report.updated += 1
        if not dry_run:
            for name, value in changes.items():
                setattr(customer, name, value)
            customer.updated_at = now
    if dry_run:
        return report
    if new_rows:
        db.session.execute(insert(Customer), new_rows)
    return _finish(report, now=now, actor=actor)


def _customer_fields(reader: RowReader) -> dict[str, str]:
    """The fields this row sets; optional columns left empty are not set."""
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
    for batch in _chunks(sorted(changing)):
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


# --- invoices ---------------------------------------------------------------------------

INVOICE_REQUIRED = (
    "account_number",
    "invoice_number",
    "issue_date",
    "due_date",
    "currency",
    "line_number",
    "description",
    "quantity",
    "unit_price",
)
INVOICE_OPTIONAL = ("tax_amount",)
INVOICE_COLUMNS = INVOICE_REQUIRED + INVOICE_OPTIONAL

# What identifies a line's content, in the order of _LineDraft.content().
_LINE_FIELDS = (
    "description",
    "quantity_milli",
    "unit_price_units",
    "unit_price_scale",
    "tax_minor",
    "amount_minor",
)


@dataclass(slots=True)
class _LineDraft:
    line_number: int
    description: str
    quantity_milli: int
    unit_price_units: int
    unit_price_scale: int
    tax_minor: int
    amount_minor: int

    def content(self) -> tuple[object, ...]:
        return (
            self.description,
            self.quantity_milli,
            self.unit_price_units,
            self.unit_price_scale,
            self.tax_minor,
            self.amount_minor,
        )


@dataclass
class _InvoiceDraft:
    number: str
    first_line: int
    account: str
    issue_date: date | None
    due_date: date | None
    currency: str | None
    lines: dict[int, _LineDraft] = field(default_factory=dict)
    line_rows: dict[int, int] = field(default_factory=dict)  # line_number -> CSV line
    is_valid: bool = True

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines.values())


@dataclass
class _ExistingInvoice:
    id: int
    customer_id: int
    issue_date: date
    due_date: date
    currency: str
    is_void: bool
    lines: dict[int, tuple[int, tuple[object, ...]]] = field(default_factory=dict)
    settled_minor: int = 0  # allocated payments + credits


def _import_invoices(text: str, dry_run: bool, now: datetime, actor: str) -> ImportReport:
    table = read_table(text, required=INVOICE_REQUIRED, optional=INVOICE_OPTIONAL)
    errors = list(table.errors)
    customers = _customer_keys({row.values["account_number"] for row in table.rows})
    drafts: dict[str, _InvoiceDraft] = {}
    for row in table.rows:
        _read_invoice_row(RowReader(row, errors), customers, drafts)

    existing = _existing_invoices([n for n, d in drafts.items() if d.is_valid])
    report = ImportReport("invoices", rows=len(table.rows), dry_run=dry_run)
    new: list[_InvoiceDraft] = []
    changed: list[tuple[_InvoiceDraft, _ExistingInvoice]] = []
    for number, draft in drafts.items():
        if not draft.is_valid:
            continue
        total = draft.total_minor
        if total > MAX_DB_INT:
            errors.append(RowError(draft.first_line, f"invoice {number!r}: total is too large"))
            continue
        customer = customers[draft.account]
        current = existing.get(number)
        if current is None:
            new.append(draft)
            continue
        differs = _invoice_differs(draft, current)
        problem = _invoice_change_problem(draft, current, customer.id, differs=differs)
        if problem:
            errors.append(RowError(draft.first_line, f"invoice {number!r} {problem}"))
        elif differs:
            changed.append((draft, current))
        else:
            report.unchanged += 1
    if errors:
        raise ImportFailed(errors)

    report.created = len(new)
    report.updated = len(changed)
    report.details["lines"] = sum(len(d.lines) for d in new) + sum(len(d.lines) for d, _ in changed)
    if dry_run:
        return report
    _insert_invoices(new, customers, now)
    _update_invoices(changed)
    return _finish(report, now=now, actor=actor)


def _read_invoice_row(
    reader: RowReader, customers: dict[str, _CustomerKey], drafts: dict[str, _InvoiceDraft]
) -> None:
    account = reader.text("account_number", required=True, max_length=64)
    number = reader.text("invoice_number", required=True, max_length=64)
    issue_date = reader.parse("issue_date", parse_date)
    due_date = reader.parse("due_date", parse_date)
    currency = reader.parse("currency", parse_currency)
    line_number = reader.parse("line_number", parse_line_number)
    description = reader.text("description", required=True, max_length=500)
    quantity_milli = reader.parse("quantity", parse_quantity_milli)
    unit_price = reader.parse("unit_price", parse_amount)
    tax = reader.parse("tax_amount", parse_amount, required=False) or Decimal(0)

    customer = customers.get(account) if account else None
    if account and customer is None:
        reader.error(f"unknown account {account!r}")
    if customer and currency and currency != customer.currency:
        reader.error(
            f"currency {currency} does not match account {account!r}'s currency {customer.currency}"
        )
    if issue_date and due_date and due_date < issue_date:
        reader.error(f"due_date {due_date} is before issue_date {issue_date}")

    amounts: tuple[UnitPrice, int, int] | None = None
    if currency and quantity_milli and unit_price is not None:
        try:
            price = UnitPrice.from_decimal(unit_price, currency)
            tax_money = Money.from_decimal(tax, currency)
            amount = line_amount(Decimal(quantity_milli) / QUANTITY_SCALE, price, tax_money)
        except MoneyError as error:
            reader.error(str(error))
        else:
            amounts = (price, tax_money.minor, amount.minor)

    if not number:
        return
    draft = drafts.get(number)
    if draft is None:
        draft = drafts[number] = _InvoiceDraft(
            number, reader.line, account, issue_date, due_date, currency
        )
    else:
        _check_invoice_agrees(reader, draft, account, issue_date, due_date, currency)
    if line_number is not None:
        if line_number in draft.line_rows:
            reader.error(
                f"invoice {number!r} line {line_number} already appears on line "
                f"{draft.line_rows[line_number]}"
            )
        else:
            draft.line_rows[line_number] = reader.line
    if reader.ok and amounts and line_number and quantity_milli:
        draft.lines[line_number] = _LineDraft(
            line_number,
            description,
            quantity_milli,
            amounts[0].units,
            amounts[0].scale,
            amounts[1],
            amounts[2],
        )
    else:
        draft.is_valid = False


def _check_invoice_agrees(
    reader: RowReader,
    draft: _InvoiceDraft,
    account: str,
    issue_date: date | None,
    due_date: date | None,
    currency: str | None,
) -> None:
    """Every row of one invoice repeats the same account, dates and currency."""
    for column, mine, theirs in (
        ("account_number", account or None, draft.account or None),
        ("issue_date", issue_date, draft.issue_date),
        ("due_date", due_date, draft.due_date),
        ("currency", currency, draft.currency),
    ):
        if mine is not None and theirs is not None and mine != theirs:
            reader.error(
                f"invoice {draft.number!r} has {column} {theirs} on line {draft.first_line} "
                f"but {mine} here"
            )
    draft.issue_date = draft.issue_date or issue_date
    draft.due_date = draft.due_date or due_date
    draft.currency = draft.currency or currency
    draft.account = draft.account or account


def _existing_invoices(numbers: Sequence[str]) -> dict[str, _ExistingInvoice]:
    found: dict[str, _ExistingInvoice] = {}
    by_id: dict[int, _ExistingInvoice] = {}
    for batch in _chunks(numbers):
        rows = db.session.execute(
            select(
                Invoice.number,
                Invoice.id,
                Invoice.customer_id,
                Invoice.issue_date,
                Invoice.due_date,
                Invoice.currency,
                Invoice.voided_at,
            ).where(Invoice.number.in_(batch))
        )
        for number, id_, customer_id, issue, due, currency, voided_at in rows:
            found[number] = by_id[id_] = _ExistingInvoice(
                id_, customer_id, issue, due, currency, voided_at is not None
            )
    for id_batch in _chunks(sorted(by_id)):
        lines = db.session.execute(
            select(InvoiceLine.invoice_id, InvoiceLine.line_number, InvoiceLine.id)
            .add_columns(*(getattr(InvoiceLine, name) for name in _LINE_FIELDS))
            .where(InvoiceLine.invoice_id.in_(id_batch))
        )
        for invoice_id, line_number, line_id, *content in lines:
            by_id[invoice_id].lines[line_number] = (line_id, tuple(content))
        for invoice_id, settled in _settled_by_invoice(id_batch).items():
            by_id[invoice_id].settled_minor = settled
    return found


def _settled_by_invoice(invoice_ids: Sequence[int]) -> dict[int, int]:
    """Net payments plus credits per invoice: the balance rule of `portal.invoices.queries`."""
    rows = db.session.execute(
        select(Invoice.id, net_paid_subquery() + credited_subquery()).where(
            Invoice.id.in_(invoice_ids)
        )
    )
    return {invoice_id: int(settled) for invoice_id, settled in rows}


def _invoice_differs(draft: _InvoiceDraft, current: _ExistingInvoice) -> bool:
    if (draft.issue_date, draft.due_date, draft.currency) != (
        current.issue_date,
        current.due_date,
        current.currency,
    ):
        return True
    if draft.lines.keys() != current.lines.keys():
        return True
    return any(line.content() != current.lines[n][1] for n, line in draft.lines.items())


def _invoice_change_problem(
    draft: _InvoiceDraft, current: _ExistingInvoice, customer_id: int, *, differs: bool
) -> str | None:
    if current.customer_id != customer_id:
        return "already exists under another account"
    if not differs:
        return None
    if current.is_void:
        return "is void and cannot be changed"
    if draft.total_minor < current.settled_minor:
        currency = draft.currency or current.currency
        return (
            f"would total {Money(draft.total_minor, currency)}, less than the "
            f"{Money(current.settled_minor, currency)} already paid or credited on it"
        )
    return None


def _line_row(invoice_id: int, line: _LineDraft) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "line_number": line.line_number,
        "description": line.description,
        "quantity_milli": line.quantity_milli,
        "unit_price_units": line.unit_price_units,
        "unit_price_scale": line.unit_price_scale,
        "tax_minor": line.tax_minor,
        "amount_minor": line.amount_minor,
    }


def _insert_invoices(
    drafts: list[_InvoiceDraft], customers: dict[str, _CustomerKey], now: datetime
) -> None:
    if not drafts:
        return
    ids = db.session.execute(
        insert(Invoice).returning(Invoice.id, sort_by_parameter_order=True),
        [
            {
                "customer_id": customers[d.account].id,
                "number": d.number,
                "issue_date": d.issue_date,
                "due_date": d.due_date,
                "currency": d.currency,
                "total_minor": d.total_minor,
                "created_at": now,
            }
            for d in drafts
        ],
    ).scalars()
    lines = [
        _line_row(invoice_id, line)
        for invoice_id, draft in zip(ids, drafts, strict=True)
        for line in draft.lines.values()
    ]
    db.session.execute(insert(InvoiceLine), lines)


def _update_invoices(changed: list[tuple[_InvoiceDraft, _ExistingInvoice]]) -> None:
    """Rewrite changed headers and lines in place; line ids survive where the number does."""
    if not changed:
        return
    headers: list[dict[str, Any]] = []
    line_updates: list[dict[str, Any]] = []
    line_inserts: list[dict[str, Any]] = []
    line_deletes: list[int] = []
    for draft, current in changed:
        headers.append(
            {
                "id": current.id,
                "issue_date": draft.issue_date,
                "due_date": draft.due_date,
                "currency": draft.currency,
                "total_minor": draft.total_minor,
            }
        )
        for number, line in draft.lines.items():
            old = current.lines.get(number)
            if old is None:
                line_inserts.append(_line_row(current.id, line))
            elif old[1] != line.content():
                content = dict(zip(_LINE_FIELDS, line.content(), strict=True))
                line_updates.append({"id": old[0], **content})
        line_deletes.extend(
            line_id for number, (line_id, _) in current.lines.items() if number not in draft.lines
        )
    db.session.execute(update(Invoice), headers)
    for batch in _chunks(line_deletes):
        db.session.execute(
            delete(InvoiceLine)
            .where(InvoiceLine.id.in_(batch))
            .execution_options(synchronize_session=False)
        )
    if line_updates:
        db.session.execute(update(InvoiceLine), line_updates)
    if line_inserts:
        db.session.execute(insert(InvoiceLine), line_inserts)


# --- payments ---------------------------------------------------------------------------

PAYMENT_REQUIRED = ("account_number", "payment_reference", "paid_on", "amount", "currency")
PAYMENT_OPTIONAL = ("invoice_number",)
PAYMENT_COLUMNS = PAYMENT_REQUIRED + PAYMENT_OPTIONAL


@dataclass(slots=True)
class _OpenInvoice:
    id: int
    number: str
    due_date: date
    balance_minor: int
    is_void: bool


@dataclass(frozen=True, slots=True)
class _ExistingPayment:
    customer_id: int
    source: str
    amount_minor: int
    currency: str
    paid_on: date
    invoice_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class _NewPayment:
    reference: str
    customer_id: int
    amount: Money
    paid_on: date
    allocations: list[tuple[int, Money]]


def _import_payments(text: str, dry_run: bool, now: datetime, actor: str) -> ImportReport:
    table = read_table(text, required=PAYMENT_REQUIRED, optional=PAYMENT_OPTIONAL)
    errors = list(table.errors)
    customers = _customer_keys({row.values["account_number"] for row in table.rows})
    ledger = _Ledger.load({key.id for key in customers.values()})
    existing = _existing_payments({row.values["payment_reference"] for row in table.rows})
    seen: dict[str, int] = {}
    new: list[_NewPayment] = []
    report = ImportReport("payments", rows=len(table.rows), dry_run=dry_run)
    for row in table.rows:
        reader = RowReader(row, errors)
        account = reader.text("account_number", required=True, max_length=64)
        reference = reader.text("payment_reference", required=True, max_length=128)
        paid_on = reader.parse("paid_on", parse_date)
        amount_text = reader.parse("amount", parse_positive_amount)
        currency = reader.parse("currency", parse_currency)
        invoice_number = reader.text("invoice_number", max_length=64) or None

        customer = customers.get(account) if account else None
        if account and customer is None:
            reader.error(f"unknown account {account!r}")
        if customer and currency and currency != customer.currency:
            reader.error(
                f"currency {currency} does not match account {account!r}'s "
                f"currency {customer.currency}"
            )
        amount = None
        if amount_text is not None and currency:
            amount = Money.from_decimal(amount_text, currency)
            if not amount.is_positive:
                reader.error(f"amount {amount_text} rounds to zero in {currency}")
            elif amount.minor > MAX_DB_INT:
                reader.error(f"amount {amount_text} is too large")
        if reference in seen:
            reader.error(f"payment {reference!r} already appears on line {seen[reference]}")
        elif reference:
            seen[reference] = row.line
        if not reader.ok or customer is None or amount is None or paid_on is None:
            continue

        previous = existing.get(reference)
        if previous is not None:
            if _same_payment(previous, customer.id, amount, paid_on, invoice_number, ledger):
                report.unchanged += 1
            else:
                reader.error(
                    f"payment {reference!r} was already imported with different details; "
                    "payments cannot be changed (import a new payment or a refund instead)"
                )
            continue
        allocations = ledger.apply(reader, account, customer.id, amount, invoice_number)
        if allocations is not None:
            new.append(_NewPayment(reference, customer.id, amount, paid_on, allocations))
    if errors:
        raise ImportFailed(errors)

    report.created = len(new)
    report.details["allocations"] = sum(len(p.allocations) for p in new)
    if dry_run:
        return report
    _insert_payments(new, now)
    return _finish(report, now=now, actor=actor)


class _Ledger:
    """Open balances of the file's customers, updated as the file's payments are applied."""

    def __init__(self, by_customer: dict[int, list[_OpenInvoice]]) -> None:
        self.by_customer = by_customer
        self.by_number = {
            (customer_id, invoice.number): invoice
            for customer_id, invoices in by_customer.items()
            for invoice in invoices
        }

    @classmethod
    def load(cls, customer_ids: Iterable[int]) -> _Ledger:
        by_customer: dict[int, list[_OpenInvoice]] = defaultdict(list)
        for batch in _chunks(sorted(customer_ids)):
            invoices = db.session.execute(
                select(
                    Invoice.customer_id,
                    Invoice.id,
                    Invoice.number,
                    Invoice.due_date,
                    Invoice.total_minor,
                    Invoice.voided_at,
                ).where(Invoice.customer_id.in_(batch))
            ).all()
            ids = [row.id for row in invoices]
            settled: dict[int, int] = {}
            for id_batch in _chunks(ids):
                settled.update(_settled_by_invoice(id_batch))
            for customer_id, id_, number, due_date, total, voided_at in invoices:
                by_customer[customer_id].append(
                    _OpenInvoice(
                        id_, number, due_date, total - settled.get(id_, 0), voided_at is not None
                    )
                )
        return cls(by_customer)

    def find(self, customer_id: int, number: str) -> _OpenInvoice | None:
        return self.by_number.get((customer_id, number))

    def apply(
        self,
        reader: RowReader,
        account: str,
        customer_id: int,
        amount: Money,
        invoice_number: str | None,
    ) -> list[tuple[int, Money]] | None:
        """Allocate the payment and reduce the balances; None (and an error) if it cannot be."""
        if invoice_number:
            invoice = self.find(customer_id, invoice_number)
            if invoice is None:
                owner = db.session.scalar(
                    select(Invoice.customer_id).where(Invoice.number == invoice_number)
                )
                reader.error(
                    f"invoice {invoice_number!r} belongs to another account"
                    if owner is not None
                    else f"unknown invoice {invoice_number!r} for account {account!r}"
                )
                return None
            if invoice.is_void:
                reader.error(f"invoice {invoice_number!r} is void")
                return None
            candidates = [invoice]
        else:
            candidates = [i for i in self.by_customer.get(customer_id, []) if not i.is_void]
        items = [
            OpenItem(i.id, i.due_date, i.number, Money(max(i.balance_minor, 0), amount.currency))
            for i in candidates
        ]
        try:
            allocations = allocate(amount, items)
        except Overpayment:
            open_total = Money(sum(item.balance.minor for item in items), amount.currency)
            where = (
                f"on invoice {invoice_number!r}"
                if invoice_number
                else f"on account {account!r} (all its invoices)"
            )
            reader.error(f"payment of {amount} is more than the {open_total} still open {where}")
            return None
        balances = {invoice.id: invoice for invoice in candidates}
        for invoice_id, applied in allocations:
            balances[invoice_id].balance_minor -= applied.minor
        return allocations


def _existing_payments(references: Iterable[str]) -> dict[str, _ExistingPayment]:
    rows: list[Any] = []
    allocated: dict[int, set[int]] = defaultdict(set)
    for batch in _chunks(sorted(r for r in references if r)):
        found = db.session.execute(
            select(
                Payment.id,
                Payment.reference,
                Payment.customer_id,
                Payment.source,
                Payment.amount_minor,
                Payment.currency,
                Payment.paid_on,
            ).where(Payment.reference.in_(batch))
        ).all()
        rows.extend(found)
        if not found:
            continue
        for payment_id, invoice_id in db.session.execute(
            select(PaymentAllocation.payment_id, PaymentAllocation.invoice_id).where(
                PaymentAllocation.payment_id.in_([row.id for row in found])
            )
        ):
            allocated[payment_id].add(invoice_id)
    return {
        row.reference: _ExistingPayment(
            row.customer_id,
            row.source,
            row.amount_minor,
            row.currency,
            row.paid_on,
            frozenset(allocated[row.id]),
        )
        for row in rows
    }


def _same_payment(
    previous: _ExistingPayment,
    customer_id: int,
    amount: Money,
    paid_on: date,
    invoice_number: str | None,
    ledger: _Ledger,
) -> bool:
    same = (
        previous.source == PaymentSource.OFFLINE
        and previous.customer_id == customer_id
        and previous.amount_minor == amount.minor
        and previous.currency == amount.currency
        and previous.paid_on == paid_on
    )
    if same and invoice_number:
        target = ledger.find(customer_id, invoice_number)
        same = target is not None and previous.invoice_ids == {target.id}
    return same


def _insert_payments(payments: list[_NewPayment], now: datetime) -> None:
    if not payments:
        return
    ids = db.session.execute(
        insert(Payment).returning(Payment.id, sort_by_parameter_order=True),
        [
            {
                "customer_id": p.customer_id,
                "reference": p.reference,
                "source": PaymentSource.OFFLINE.value,
                "amount_minor": p.amount.minor,
                "currency": p.amount.currency,
                "paid_on": p.paid_on,
                "created_at": now,
            }
            for p in payments
        ],
    ).scalars()
    allocations = [
        {"payment_id": payment_id, "invoice_id": invoice_id, "amount_minor": applied.minor}
        for payment_id, payment in zip(ids, payments, strict=True)
        for invoice_id, applied in payment.allocations
    ]
    db.session.execute(insert(PaymentAllocation), allocations)
