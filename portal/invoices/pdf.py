"""Invoice and statement PDFs, drawn with fpdf2 in the reader's language.

Text prints in every script the pages show (see `portal.invoices.fonts`): DejaVu, which
covers every character Babel produces for our four languages, such as the narrow no-break
space in French amounts, with fallback fonts for CJK and emoji, shaped by HarfBuzz so that
Arabic and Hebrew run right to left with Arabic letters joined. Fonts are embedded as
subsets. Labels, dates and amounts all follow the `locale` argument (the labels through
`force_locale`), so a document can be made in a language other than the request's. The
creation date comes from the document's "as of" day, so the same data gives the same bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, NamedTuple

from babel.dates import format_date
from babel.numbers import format_decimal
from flask_babel import force_locale
from flask_babel import gettext as _
from fpdf import FPDF, FontFace
from fpdf.enums import XPos, YPos

from portal.creditor import Creditor
from portal.customers.models import Customer
from portal.invoices.fonts import (
    PRIMARY,
    FontOutputProducer,
    ensure_fallbacks,
    font_dirs,
    install_fonts,
    needs_shaping,
)
from portal.invoices.models import CreditNote, Invoice
from portal.invoices.queries import AccountSummary, InvoiceBalance
from portal.money import Money
from portal.payments.models import Payment, PaymentAllocation

FONT = PRIMARY
PAGE_COUNT = "{nb}"  # fpdf2 replaces this alias with the number of pages when it closes
RECENT_PAYMENTS = 10  # a statement lists the latest few

INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
ALERT = (176, 42, 55)
HEADINGS = FontFace(emphasis="BOLD", fill_color=(233, 236, 239))
OVERDUE = FontFace(emphasis="BOLD", color=ALERT)

Cell = str | dict[str, object]  # plain text, or the keyword arguments of fpdf2's Row.cell


class Column(NamedTuple):
    heading: str
    width: float  # relative to the other columns
    align: str = "LEFT"


class Fact(NamedTuple):
    label: str
    value: str
    strong: bool = False


class _Document(FPDF):
    """An A4 document with our fonts and colours, and a footer naming it on every page."""

    def __init__(self, *, title: str, creditor: Creditor, locale: str, as_of: date) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        install_fonts(self)
        self.set_title(title)
        self.set_author(creditor.name)
        self.set_lang(locale)
        self.set_creation_date(datetime.combine(as_of, time(), tzinfo=UTC))
        self.set_margins(left=18, top=16, right=18)
        self.set_auto_page_break(auto=True, margin=20)
        self.set_draw_color(*RULE)
        self.alias_nb_pages(PAGE_COUNT)
        self._footer_text = f"{creditor.name} · {title}"
        self.add_page()

    # Text is shaped (HarfBuzz: joined Arabic letters, right-to-left runs) where it needs it:
    # each cell decides, so that the many cells of a long statement stay quick. The fallback
    # fonts (CJK, emoji) join the document with the first text that needs them.
    def cell(self, *args: Any, **kwargs: Any) -> Any:
        self._shape_if_needed(kwargs["text"] if "text" in kwargs else _nth(args, 2))
        return super().cell(*args, **kwargs)

    def multi_cell(self, *args: Any, **kwargs: Any) -> Any:
        self._shape_if_needed(kwargs["text"] if "text" in kwargs else _nth(args, 2))
        return super().multi_cell(*args, **kwargs)

    def get_string_width(self, s: str, normalized: bool = False, markdown: bool = False) -> float:
        ensure_fallbacks(self, s)
        return super().get_string_width(s, normalized, markdown)

    def _shape_if_needed(self, text: object) -> None:
        if isinstance(text, str):
            ensure_fallbacks(self, text)
        shape = isinstance(text, str) and needs_shaping(text)
        if shape != (self.text_shaping is not None):
            self.set_text_shaping(use_shaping_engine=shape)

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font(FONT, size=7.5)
        self.set_text_color(*MUTED)
        self.cell(self.epw * 0.7, 5, self._footer_text)
        page = _("Page %(page)s of %(pages)s", page=self.page_no(), pages=PAGE_COUNT)
        self.cell(0, 5, page, align="R")
        self.set_text_color(*INK)

    def rendered(self) -> bytes:
        return bytes(self.output(output_producer_class=FontOutputProducer))


def invoice_pdf(
    balance: InvoiceBalance,
    allocations: list[PaymentAllocation],
    credits: list[CreditNote],
    *,
    creditor: Creditor,
    locale: str,
    portal_url: str,
) -> bytes:
    """The invoice: its lines, what was paid and credited against it, the balance due, and
    while something is due, how to pay it at `portal_url` (the portal's public address)."""
    invoice = balance.invoice
    with force_locale(locale):
        title = _("Invoice %(number)s", number=invoice.number)
        pdf = _Document(title=title, creditor=creditor, locale=locale, as_of=balance.today)
        _creditor_header(pdf, creditor)
        _title(pdf, title)
        _party_and_facts(
            pdf,
            heading=_("Bill to"),
            party=_customer_lines(invoice.customer),
            facts=[
                Fact(_("Issue date"), _date(invoice.issue_date, locale)),
                Fact(_("Due date"), _date(invoice.due_date, locale), strong=True),
                Fact(_("Status"), balance.status.label),
            ],
        )
        _line_items(pdf, invoice, locale)
        _totals(pdf, balance, locale)
        if allocations:
            _payments_applied(pdf, allocations, locale)
        if credits:
            _credit_notes(pdf, credits, locale)
        if balance.balance.is_positive:
            _how_to_pay(pdf, creditor, portal_url=portal_url, number=invoice.number)
        return pdf.rendered()


def statement_pdf(
    customer: Customer,
    balances: list[InvoiceBalance],
    summary: AccountSummary,
    payments: list[Payment],
    *,
    creditor: Creditor,
    locale: str,
    today: date,
) -> bytes:
    """The customer's open invoices and recent payments, as of `today`.

    The document is a function of what it shows (`StatementData`: every value printed,
    the language, the day, the creditor) and of the process's catalogs and fonts, so
    the bytes of the last distinct statements are kept (`_statement_bytes`, 8 MB at most): a
    statement asked for again with nothing on it changed is not drawn again, and any
    change to what it shows (a payment, a credit, the next day) is a different key."""
    open_rows = tuple(
        _OpenRow(
            b.invoice.number,
            b.invoice.issue_date,
            b.invoice.due_date,
            b.days_overdue if b.is_overdue else 0,
            b.invoice.total,
            b.balance,
        )
        for b in balances
        if b.is_open
    )
    recent = sorted(payments, key=lambda p: p.paid_on, reverse=True)[:RECENT_PAYMENTS]
    data = StatementData(
        customer_name=customer.name,
        account_number=customer.account_number,
        total_due=summary.total_due,
        overdue=summary.overdue,
        next_due_date=summary.next_due_date,
        open_invoices=open_rows,
        payments=tuple(_PaymentRow(p.paid_on, p.reference, p.amount) for p in recent),
        creditor=creditor,
        locale=locale,
        today=today,
        font_dirs=font_dirs(),
    )
    return _statement_bytes(data)


class _OpenRow(NamedTuple):
    number: str
    issue_date: date
    due_date: date
    days_overdue: int  # 0 when not overdue
    total: Money
    balance: Money


class _PaymentRow(NamedTuple):
    paid_on: date
    reference: str
    amount: Money


@dataclass(frozen=True)
class StatementData:
    """Everything a statement prints, and what it is printed with: the key of its bytes."""

    customer_name: str
    account_number: str
    total_due: Money
    overdue: Money
    next_due_date: date | None
    open_invoices: tuple[_OpenRow, ...]
    payments: tuple[_PaymentRow, ...]  # the latest RECENT_PAYMENTS, newest first
    creditor: Creditor
    locale: str
    today: date
    font_dirs: tuple[Path, ...]  # where the fallback fonts come from (PDF_FONT_DIRS)


# A statement of ten invoices is about 30 KB, one of thousands a few megabytes: the kept
# bytes are bounded in total, not in number, so that a worker stays within its memory.
STATEMENT_BYTES_KEPT = 8 * 1024 * 1024


class _KeptDocuments:
    """Least recently used documents by key, at most `limit` bytes in all (one larger
    is not kept). Safe to share between threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._documents: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            document = self._documents.get(key)
            if document is None:
                self.misses += 1
                return None
            self._documents.move_to_end(key)
            self.hits += 1
            return document

    def put(self, key: Hashable, document: bytes) -> None:
        if len(document) > self.limit:
            return
        with self._lock:
            if key in self._documents:
                return
            self._documents[key] = document
            self._size += len(document)
            while self._size > self.limit:
                _key, dropped = self._documents.popitem(last=False)
                self._size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._documents.clear()
            self._size = 0


_kept_statements = _KeptDocuments(STATEMENT_BYTES_KEPT)


def _statement_bytes(data: StatementData) -> bytes:
    """The statement of `data`: kept bytes, or drawn (`_draw_statement`) and kept."""
    document = _kept_statements.get(data)
    if document is None:
        document = _draw_statement(data)
        _kept_statements.put(data, document)
    return document


def _draw_statement(data: StatementData) -> bytes:
    """The statement drawn from `data` alone (nothing else is read), so kept bytes are
    those drawing it again would give."""
    locale = data.locale
    with force_locale(locale):
        title = _("Statement as of %(date)s", date=_date(data.today, locale))
        pdf = _Document(title=title, creditor=data.creditor, locale=locale, as_of=data.today)
        _creditor_header(pdf, data.creditor)
        _title(pdf, title)
        next_due = data.next_due_date
        _party_and_facts(
            pdf,
            heading=_("Customer"),
            party=[
                data.customer_name,
                _("Account number %(number)s", number=data.account_number),
            ],
            facts=[
                Fact(_("Total due"), data.total_due.format(locale), strong=True),
                Fact(_("Overdue"), data.overdue.format(locale)),
                Fact(
                    _("Next due date"),
                    _date(next_due, locale) if next_due else _("Nothing upcoming"),
                ),
            ],
        )
        _open_invoices(pdf, data.open_invoices, locale)
        _recent_payments(pdf, data.payments, locale)
        _closing(pdf, data.creditor)
        return pdf.rendered()


def _creditor_header(pdf: FPDF, creditor: Creditor) -> None:
    pdf.set_font(FONT, "B", 15)
    pdf.set_text_color(*INK)
    pdf.multi_cell(0, 7, creditor.name, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=9)
    pdf.set_text_color(*MUTED)
    contact = " · ".join(part for part in (creditor.email, creditor.phone) if part)
    for line in [*creditor.address.splitlines(), contact]:
        if line.strip():
            pdf.multi_cell(0, 4.5, line.strip(), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    pdf.ln(3)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + pdf.epw, pdf.get_y())
    pdf.ln(6)


def _title(pdf: FPDF, text: str) -> None:
    pdf.set_font(FONT, "B", 18)
    pdf.multi_cell(0, 9, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)


def _party_and_facts(
    pdf: FPDF, *, heading: str, party: Sequence[str], facts: Sequence[Fact]
) -> None:
    """Who the document is for on the left; its key dates or amounts on the right."""
    top = pdf.get_y()
    half = pdf.epw / 2
    pdf.set_font(FONT, "B", 8)
    pdf.set_text_color(*MUTED)
    pdf.cell(half, 5, heading, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    for index, line in enumerate(party):
        pdf.set_font(FONT, "B" if index == 0 else "", 10 if index == 0 else 9)
        pdf.multi_cell(half - 6, 5, line, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()

    pdf.set_y(top)
    for fact in facts:
        pdf.set_x(pdf.l_margin + half)
        pdf.set_font(FONT, size=9)
        pdf.set_text_color(*MUTED)
        pdf.cell(half * 0.5, 6, fact.label)
        pdf.set_font(FONT, "B" if fact.strong else "", 10 if fact.strong else 9)
        pdf.set_text_color(*INK)
        pdf.cell(0, 6, fact.value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 8)


def _line_items(pdf: FPDF, invoice: Invoice, locale: str) -> None:
    _table(
        pdf,
        [
            Column(_("Description"), 7.4),
            Column(_("Quantity"), 2.8, "RIGHT"),
            Column(_("Unit price"), 3.2, "RIGHT"),
            Column(_("Tax"), 2.8, "RIGHT"),
            Column(_("Amount"), 3.4, "RIGHT"),
        ],
        [
            (
                line.description,
                format_decimal(line.quantity, locale=locale),
                line.unit_price.format(locale),
                line.tax.format(locale),
                line.amount.format(locale),
            )
            for line in invoice.lines
        ],
    )


def _totals(pdf: FPDF, balance: InvoiceBalance, locale: str) -> None:
    rows = [
        (_("Total"), balance.invoice.total.format(locale)),
        (_("Paid"), _deduction(balance.paid, locale)),
        (_("Credited"), _deduction(balance.credited, locale)),
    ]
    label_width, amount_width, height = 50.0, 36.0, 6.0
    pdf.set_font(FONT, "B", 11)  # the widest: the balance due, in bold
    widest = max(
        pdf.get_string_width(text)
        for text in [balance.balance.format(locale), *dict(rows).values()]
    )
    amount_width = max(amount_width, widest + 2)
    if pdf.will_page_break(height * (len(rows) + 1) + 2):
        pdf.add_page()  # keep the totals together, with the balance due under them
    left = pdf.l_margin + pdf.epw - label_width - amount_width
    pdf.set_font(FONT, size=9.5)
    for label, amount in rows:
        pdf.set_x(left)
        pdf.cell(label_width, height, label, align="R")
        pdf.cell(amount_width, height, amount, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    pdf.line(left + 10, pdf.get_y(), pdf.l_margin + pdf.epw, pdf.get_y())
    pdf.ln(1)
    pdf.set_x(left)
    pdf.set_font(FONT, "B", 11)
    pdf.cell(label_width, height + 1, _("Balance due"), align="R")
    pdf.cell(
        amount_width,
        height + 1,
        balance.balance.format(locale),
        align="R",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(6)


def _payments_applied(pdf: FPDF, allocations: Iterable[PaymentAllocation], locale: str) -> None:
    _heading(pdf, _("Payments applied"))
    _table(
        pdf,
        [Column(_("Date"), 3), Column(_("Reference"), 7), Column(_("Amount"), 3, "RIGHT")],
        [
            (_date(a.payment.paid_on, locale), a.payment.reference, a.amount.format(locale))
            for a in allocations
        ],
    )


def _credit_notes(pdf: FPDF, credits: Iterable[CreditNote], locale: str) -> None:
    _heading(pdf, _("Credit notes"))
    _table(
        pdf,
        [
            Column(_("Date"), 3),
            Column(_("Reference"), 3),
            Column(_("Reason"), 4),
            Column(_("Amount"), 3, "RIGHT"),
        ],
        [
            (_date(c.issued_on, locale), c.reference, c.reason or "", c.amount.format(locale))
            for c in credits
        ],
    )


def _open_invoices(pdf: FPDF, open_rows: Sequence[_OpenRow], locale: str) -> None:
    _heading(pdf, _("Open invoices"))
    if not open_rows:
        _paragraph(pdf, _("You have no open invoices. Thank you!"))
        return
    _table(
        pdf,
        [
            Column(_("Invoice"), 3.2),
            Column(_("Issue date"), 2.8),
            Column(_("Due date"), 2.8),
            Column(_("Days overdue"), 2.2, "RIGHT"),
            Column(_("Total"), 3, "RIGHT"),
            Column(_("Balance"), 3, "RIGHT"),
        ],
        [
            (
                row.number,
                _date(row.issue_date, locale),
                _date(row.due_date, locale),
                _days_overdue(row.days_overdue, locale),
                row.total.format(locale),
                row.balance.format(locale),
            )
            for row in open_rows
        ],
    )


def _recent_payments(pdf: FPDF, recent: Sequence[_PaymentRow], locale: str) -> None:
    _heading(pdf, _("Recent payments"))
    if not recent:
        _paragraph(pdf, _("No payments received yet."))
        return
    _table(
        pdf,
        [Column(_("Date"), 3), Column(_("Reference"), 7), Column(_("Amount"), 3, "RIGHT")],
        [(_date(p.paid_on, locale), p.reference, p.amount.format(locale)) for p in recent],
    )


def _how_to_pay(pdf: FPDF, creditor: Creditor, *, portal_url: str, number: str) -> None:
    _heading(pdf, _("How to pay"))
    _paragraph(
        pdf,
        _(
            "Pay online at %(url)s: open your account with the link in any email from "
            "%(creditor)s (the page there emails you a new link if you have none), then pay "
            "invoice %(number)s.",
            url=portal_url,
            creditor=creditor.name,
            number=number,
        ),
    )
    _paragraph(pdf, _questions(creditor))


def _questions(creditor: Creditor) -> str:
    if creditor.phone:
        return str(
            _(
                "Questions? Email %(email)s or call %(phone)s.",
                email=creditor.email,
                phone=creditor.phone,
            )
        )
    return str(_("Questions? Email %(email)s.", email=creditor.email))


def _closing(pdf: FPDF, creditor: Creditor) -> None:
    pdf.ln(2)
    _paragraph(
        pdf,
        _(
            "To pay online, open your account from the link in any email from %(creditor)s.",
            creditor=creditor.name,
        ),
    )
    _paragraph(pdf, _questions(creditor))


# --- primitives -----------------------------------------------------------------------------


def _heading(pdf: FPDF, text: str) -> None:
    if pdf.will_page_break(22):
        pdf.add_page()  # never strand a heading at the foot of a page
    pdf.set_font(FONT, "B", 11)
    pdf.set_text_color(*INK)
    pdf.cell(0, 7, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)


def _paragraph(pdf: FPDF, text: str) -> None:
    pdf.set_font(FONT, size=9.5)
    pdf.set_text_color(*INK)
    pdf.multi_cell(0, 5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


TABLE_FONT_SIZE = 9.0
TABLE_PADDING = 1.8  # mm, left and right of each cell
SMALLEST_TABLE_FONT = 6.0
NARROWEST_TEXT_COLUMN = 16.0  # mm that a wrapping (left-aligned) column keeps


def _cell_text(cell: Cell) -> str:
    return str(cell.get("text", "")) if isinstance(cell, dict) else str(cell)


def _fitted_widths(
    pdf: FPDF, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]
) -> tuple[list[float], float]:
    """Column widths (mm, summing to the page's width) and the font size (pt) at which
    every right-aligned cell (amounts, quantities, counts) fits on one line.

    The columns' weights share out the width; a right-aligned column narrower than its
    widest cell takes what it lacks from the left-aligned (wrapping) columns, which
    keep NARROWEST_TEXT_COLUMN each. Only if that is not enough does the table's font
    shrink (down to SMALLEST_TABLE_FONT): 30,000,000.00 USD never wraps to "0".
    """
    total = sum(c.width for c in columns)
    widths = [c.width / total * pdf.epw for c in columns]
    pdf.set_font(FONT, size=TABLE_FONT_SIZE)
    needed = [
        max((pdf.get_string_width(_cell_text(row[i])) for row in rows), default=0.0)
        + 2 * TABLE_PADDING
        + 0.5
        if c.align == "RIGHT"
        else 0.0
        for i, c in enumerate(columns)
    ]
    lacking = sum(max(0.0, n - w) for n, w in zip(needed, widths, strict=True))
    if lacking <= 0:
        return widths, TABLE_FONT_SIZE
    text = [i for i, c in enumerate(columns) if c.align != "RIGHT"]
    spare = sum(max(0.0, widths[i] - NARROWEST_TEXT_COLUMN) for i in text)
    taken = min(lacking, spare)
    for i in text:
        share = max(0.0, widths[i] - NARROWEST_TEXT_COLUMN) / spare if spare else 0.0
        widths[i] -= taken * share
    for i, c in enumerate(columns):
        if c.align == "RIGHT" and needed[i] > widths[i]:
            widths[i] = needed[i]
    size = TABLE_FONT_SIZE
    if sum(widths) > pdf.epw:
        # Still too wide: scale the right-aligned columns back and the font with them.
        fixed = sum(w for i, w in enumerate(widths) if i in text)
        scale = (pdf.epw - fixed) / (sum(widths) - fixed)
        widths = [w if i in text else w * scale for i, w in enumerate(widths)]
        size = max(SMALLEST_TABLE_FONT, TABLE_FONT_SIZE * scale)
    return widths, size


def _table(pdf: FPDF, columns: Sequence[Column], rows: Iterable[Sequence[Cell]]) -> None:
    """A full-width table whose heading row repeats on every page it runs onto; columns
    fitted to their widest amount (`_fitted_widths`)."""
    rows = list(rows)
    widths, size = _fitted_widths(pdf, columns, rows)
    pdf.set_font(FONT, size=size)
    pdf.set_text_color(*INK)
    with pdf.table(
        col_widths=tuple(widths),
        text_align=tuple(c.align for c in columns),
        borders_layout="HORIZONTAL_LINES",
        headings_style=HEADINGS,
        line_height=4.6,
        padding=(1.4, TABLE_PADDING),
        v_align="TOP",
        repeat_headings=1,
    ) as table:
        table.row([c.heading for c in columns])
        for cells in rows:
            table.row(cells)  # type: ignore[arg-type]  # fpdf2 also takes dicts of Row.cell kwargs
    pdf.ln(6)


def _customer_lines(customer: Customer) -> list[str]:
    return [customer.name, _("Account number %(number)s", number=customer.account_number)]


def _nth(args: Sequence[object], index: int) -> object:
    return args[index] if len(args) > index else ""


def _date(value: date, locale: str) -> str:
    return str(format_date(value, format="medium", locale=locale))


def _deduction(amount: Money, locale: str) -> str:
    """Paid and credited amounts reduce the total: shown negative once there is any."""
    return (-amount if amount.is_positive else amount).format(locale)


def _days_overdue(days: int, locale: str) -> Cell:
    if days <= 0:
        return "–"
    return {"text": format_decimal(days, locale=locale), "style": OVERDUE}
