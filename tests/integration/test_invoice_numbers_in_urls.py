"""Imported identifiers become addresses: every number the import accepts opens its pages."""

from __future__ import annotations

import io
import re

import pytest

from portal.db import utcnow
from portal.imports.parsing import INVOICE_PATH_SUFFIXES
from portal.imports.services import import_file
from tests.factories import login_as, make_customer

HEADER = (
    "account_number,invoice_number,issue_date,due_date,currency,line_number,"
    "description,quantity,unit_price,tax_amount\n"
)


def test_every_address_after_an_invoice_number_is_a_refused_last_part(app):
    # a new route /invoices/<path:number>/<word> must add its word to the refused endings
    suffixes = set()
    for rule in app.url_map.iter_rules():
        match = re.fullmatch(r"/invoices/<path:number>/([^<>/]+)(?:/.*)?", rule.rule)
        if match:
            suffixes.add(match.group(1))
    assert suffixes == INVOICE_PATH_SUFFIXES


@pytest.mark.parametrize("number", ["FA/2024/001", "x/y", "SI_2024.17", "A#17"])
def test_an_imported_number_opens_its_page_pdf_and_dispute_form(client, number):
    # given an invoice imported with this number
    customer = make_customer(account_number="A-1", timezone="UTC")
    text = HEADER + f"A-1,{number},2026-01-05,2026-02-04,USD,1,Line,1,10,\n"
    import_file("invoices", io.StringIO(text), now=utcnow(), actor="test")
    login_as(client, customer)
    # when the customer follows the account page's link to it
    account = client.get("/account").text
    links = re.findall(r'href="(/invoices/[^"]+)"', account)
    assert len(links) == 1
    page = client.get(links[0].replace("&amp;", "&"))
    # then it is that invoice's page, and its PDF and dispute form open
    assert page.status_code == 200
    assert f"Invoice {number}" in page.text
    pdf = client.get(f"{links[0]}/pdf")
    assert pdf.status_code == 200
    assert pdf.mimetype == "application/pdf"
    assert client.get(f"{links[0]}/dispute").status_code == 200
