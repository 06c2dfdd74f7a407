"""The customer's account page and statement."""

from __future__ import annotations

from flask import Blueprint, render_template

from portal.access.sessions import current_customer, customer_required
from portal.creditor import current_creditor
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.i18n import current_locale
from portal.invoices import pdf as documents
from portal.invoices.queries import invoice_balances_for, recent_payments_for, summarize
from portal.responses import pdf_response

bp = Blueprint("customers", __name__)


@bp.get("/account")
@customer_required
def account():  # type: ignore[no-untyped-def]
    customer = current_customer()
    balances = invoice_balances_for(customer, customer_today(customer, utcnow()))
    return render_template(
        "customers/account.html",
        customer=customer,
        summary=summarize(balances, customer.currency),
        open_invoices=[b for b in balances if b.is_open],
        closed_invoices=[b for b in reversed(balances) if not b.is_open],
    )


@bp.get("/account/statement.pdf")
@customer_required
def statement():  # type: ignore[no-untyped-def]
    customer = current_customer()
    today = customer_today(customer, utcnow())
    balances = invoice_balances_for(customer, today)
    pdf = documents.statement_pdf(
        customer,
        balances,
        summarize(balances, customer.currency),
        recent_payments_for(customer, documents.RECENT_PAYMENTS),
        creditor=current_creditor(),
        locale=current_locale(),
        today=today,
    )
    return pdf_response(pdf, f"statement-{customer.account_number}-{today.isoformat()}.pdf")
