"""`portal demo`: load the demo ledger once, through the real CSV import, and hand out links."""

from __future__ import annotations

import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from portal.access.services import issue_link
from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.db import utcnow
from portal.demo.convert import convert
from portal.extensions import db
from portal.i18n import creditor_zone
from portal.imports.services import import_file
from portal.invoices.balances import open_balance_column
from portal.invoices.models import Invoice, InvoiceLine

ACTOR = Actor.importer("demo")


# `make run` prints a link for a customer in each of these languages (English first).
LINK_LOCALES = ("en", "es")
LANGUAGE_NAMES = {"en": "English", "es": "Spanish"}


def load_demo(print_links: bool, today: date | None = None, *, load: bool = True) -> list[str]:
    """Import the demo ledger if the database has no customers; return lines to print.

    With `load=False` nothing is imported or reported: only the links (`make run` loads
    first, runs the worker, then asks for the links alone).
    """
    now = utcnow()
    today = today or now.astimezone(creditor_zone()).date()
    lines: list[str] = []
    if not load:
        pass
    elif db.session.scalar(select(Customer.id).limit(1)) is None:
        with tempfile.TemporaryDirectory(prefix="portal-demo-") as tmp:
            files = convert(Path(tmp), today)
            reports = [
                import_file(kind, path, now=now, actor=ACTOR)
                for kind, path in (
                    ("customers", files.customers),
                    ("invoices", files.invoices),
                    ("payments", files.payments),
                )
            ]
        db.session.commit()
        customers, invoices, payments = (report.created for report in reports)
        lines.append(
            f"Loaded the demo ledger: {customers} customers, {invoices} invoices, "
            f"{payments} payments."
        )
    else:
        lines.append("The database already has customers; the demo ledger was not loaded again.")
    if print_links:
        lines.extend(_customer_links(now))
        db.session.commit()
    return lines


def _customer_links(now: datetime) -> list[str]:
    """One link for an English-speaking and one for a Spanish-speaking customer with open
    invoices, each with a multi-line invoice when there is one."""
    chosen = _customers_to_show()
    if not chosen:
        return ["No customer has an open invoice, so there is no link to show."]
    ttl = timedelta(days=current_app.config["ACCESS_LINK_TTL_DAYS"])
    base_url = current_app.config["PORTAL_BASE_URL"]
    lines = []
    for customer in chosen:
        issued = issue_link(customer, now=now, ttl=ttl, actor=Actor("system", "demo"))
        lines.append(
            f"Customer link ({LANGUAGE_NAMES.get(customer.locale or 'en', customer.locale)}: "
            f"{customer.name}, account {customer.account_number}): "
            f"{issued.url(base_url)}"
        )
    return lines


def _customers_to_show() -> list[Customer]:
    line_count = (
        select(func.count(InvoiceLine.id)).where(InvoiceLine.invoice_id == Invoice.id)
    ).scalar_subquery()
    rows = db.session.execute(
        select(Customer, func.max(line_count))
        .join(Invoice, Invoice.customer_id == Customer.id)
        .where(Invoice.voided_at.is_(None), open_balance_column() > 0)
        .group_by(Customer.id)
        .order_by(Customer.account_number)
    ).all()
    chosen: list[Customer] = []
    for locale in LINK_LOCALES:
        speakers = [(c, lines) for c, lines in rows if (c.locale or "en") == locale]
        best = next((c for c, lines in speakers if lines > 1), None)
        if best is None and speakers:
            best = speakers[0][0]
        if best is not None:
            chosen.append(best)
    return chosen
