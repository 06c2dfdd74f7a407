"""One invoice: its lines, what was paid and credited, and its PDF."""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, abort, current_app, render_template

from portal.access.sessions import current_customer, customer_required, customer_session
from portal.creditor import current_creditor
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.i18n import current_locale
from portal.invoices import pdf as documents
from portal.invoices.detail import format_quantity, format_unit_price, invoice_page_for
from portal.invoices.queries import (
    allocations_for_invoice,
    credits_for_invoice,
    get_invoice_for,
    invoice_balance,
)
from portal.money import UnitPrice
from portal.responses import pdf_response

bp = Blueprint("invoices", __name__)


@bp.app_template_filter("quantity")
def quantity_filter(value: Decimal) -> str:
    """`|number` for a line's quantity, cached (`detail.format_quantity`)."""
    return format_quantity(value, current_locale())


@bp.app_template_filter("unit_price")
def unit_price_filter(value: UnitPrice) -> str:
    """`|money` for a line's unit price, cached (`detail.format_unit_price`)."""
    return format_unit_price(value, current_locale())


def _invoice_or_404(number: str):  # type: ignore[no-untyped-def]
    invoice = get_invoice_for(current_customer(), number)
    if invoice is None:
        abort(404)  # someone else's invoice is "not found", never "forbidden"
    return invoice


@bp.get("/invoices/<path:number>")  # ERP numbers may hold "/" (FA/2024/001)
@customer_required
def detail(number: str):  # type: ignore[no-untyped-def]
    # The session's customer id: the page needs no Customer object (its time zone comes
    # with the invoice).
    page = invoice_page_for(customer_session().principal_id, number, utcnow())
    if page is None:
        abort(404)  # someone else's invoice is "not found", never "forbidden"
    return render_template("invoices/detail.html", page=page, invoice=page.invoice)


@bp.get("/invoices/<path:number>/pdf")
@customer_required
def pdf(number: str):  # type: ignore[no-untyped-def]
    invoice = _invoice_or_404(number)
    document = documents.invoice_pdf(
        invoice_balance(invoice, customer_today(current_customer(), utcnow())),
        allocations_for_invoice(invoice),
        credits_for_invoice(invoice),
        creditor=current_creditor(),
        locale=current_locale(),
        portal_url=current_app.config["PORTAL_BASE_URL"],
    )
    return pdf_response(document, f"invoice-{invoice.number}.pdf")
