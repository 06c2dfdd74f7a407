"""`portal demo`: load the demo ledger once, through the real CSV import, and hand out links."""

from __future__ import annotations

import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from portal.access.services import issue_link
from portal.customers.models import Customer
from portal.db import utcnow
from portal.demo.convert import convert
from portal.extensions import db
from portal.i18n import creditor_zone
from portal.imports.services import import_file
from portal.invoices.models import Invoice, InvoiceLine
from portal.invoices.queries import credited_subquery, net_paid_subquery

ACTOR = "demo"


def load_demo(print_links: bool, today: date | None = None) -> list[str]:
    """Import the demo ledger if the database has no customers; return lines to print."""
    now = utcnow()
    today = today or now.astimezone(creditor_zone()).date()
    lines: list[str] = []
    if db.session.scalar(select(Customer.id).limit(1)) is None:
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
    """Links for two customers with open invoices, the first with a multi-line one."""
    chosen = _customers_to_show()
    if not chosen:
        return ["No customer has an open invoice, so there is no link to show."]
    ttl = timedelta(days=current_app.config["ACCESS_LINK_TTL_DAYS"])
    base_url = current_app.config["PORTAL_BASE_URL"]
    lines = []
    for customer in chosen:
        issued = issue_link(customer, now=now, ttl=ttl, actor=ACTOR)
        lines.append(
            f"Customer link ({customer.name}, account {customer.account_number}): "
            f"{issued.url(base_url)}"
        )
    return lines


def _customers_to_show() -> list[Customer]:
    allocated, credited = net_paid_subquery(), credited_subquery()
    line_count = (
        select(func.count(InvoiceLine.id)).where(InvoiceLine.invoice_id == Invoice.id)
    ).scalar_subquery()
    rows = db.session.execute(
        select(Customer, func.max(line_count))
        .join(Invoice, Invoice.customer_id == Customer.id)
        .where(Invoice.voided_at.is_(None), Invoice.total_minor - allocated - credited > 0)
        .group_by(Customer.id)
        .order_by(Customer.account_number)
    ).all()
    first = next((customer for customer, lines in rows if lines > 1), None)
    if first is None and rows:
        first = rows[0][0]
    second = next((customer for customer, _ in rows if customer is not first), None)
    return [c for c in (first, second) if c is not None]
