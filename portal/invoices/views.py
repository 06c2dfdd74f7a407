"""One invoice: its lines, what was paid and credited, and its PDF."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from portal.access.sessions import current_customer, customer_required, customer_session
from portal.creditor import current_creditor
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.i18n import current_locale
from portal.invoices import pdf as documents
from portal.invoices.detail import invoice_page_for
from portal.invoices.pages import invoice_page
from portal.invoices.queries import (
    allocations_for_invoice,
    credits_for_invoice,
    get_invoice_for,
    invoice_balance,
)
from portal.payments.gateway import is_enabled as payments_enabled
from portal.responses import pdf_response

bp = Blueprint("invoices", __name__)


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
    context = invoice_page(page, payments_enabled=payments_enabled(current_app.config))
    return render_template("invoices/detail.html", **context)


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
