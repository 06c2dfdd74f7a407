"""Invoice, statement and receipt PDFs print every script the pages show, and say what to do.

Names, addresses and line descriptions in Latin, Greek, Cyrillic, Japanese, Chinese,
Korean, Arabic and Hebrew are read back from each PDF. Arabic and Hebrew are read with
poppler's `pdftotext`, which orders text by where each glyph stands on the page: it gives
the logical order back only if the PDF draws right-to-left runs right to left.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from pypdf import PdfReader

from portal.creditor import Creditor
from portal.customers.models import Customer
from portal.invoices import fonts
from portal.invoices.models import Invoice, InvoiceLine
from portal.invoices.pdf import invoice_pdf, statement_pdf
from portal.invoices.queries import InvoiceBalance, summarize
from portal.money import Money
from portal.payments.models import Payment, PaymentAllocation
from portal.payments.receipt import receipt_pdf

TODAY = date(2026, 4, 20)
PORTAL_URL = "https://pay.northwind.example"

# One customer per script: their name, a line description and the creditor's address.
SCRIPTS = {
    "latin": ("Müller & Søn GmbH", "Beratung: Straße, Çà, ñ", "1 Harbour Street, Springfield"),
    "greek": ("Ελληνική Εμπορική Α.Ε.", "Συμβουλευτικές υπηρεσίες", "Οδός Αθηνάς 12, Αθήνα"),
    "cyrillic": ("ООО «Ромашка»", "Консультационные услуги", "Невский проспект 1, Москва"),
    "japanese": ("株式会社さくら商事", "コンサルティング料金", "東京都千代田区丸の内1-1"),
    "chinese": ("北京贸易有限公司", "技术咨询服务费", "北京市朝阳区建国路88号"),
    "korean": ("한국무역 주식회사", "컨설팅 서비스 요금", "서울특별시 중구 세종대로 110"),
    "arabic": ("شركة النور للتجارة", "خدمات استشارية", "شارع الملك فهد، الرياض"),
    "hebrew": ("חברת אור בעמ", "שירותי ייעוץ", "רחוב הרצל 5, תל אביב"),
}
RTL = ("arabic", "hebrew")
BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def request_context(app):
    with app.test_request_context():
        yield


def _creditor(address: str) -> Creditor:
    return Creditor(
        name="Northwind Supplies Ltd",
        email="billing@northwind.example",
        phone="+1 555 0100",
        address=address,
        timezone="UTC",
    )


def _documents(script: str) -> dict[str, bytes]:
    """The invoice, statement and receipt of a customer whose texts are all in `script`."""
    name, description, address = SCRIPTS[script]
    customer = Customer(account_number="ACC-7", name=name, email="ap@example.com", currency="EUR")
    invoice = Invoice(
        customer=customer,
        number="INV-7",
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        currency="EUR",
        total_minor=50000,
    )
    invoice.lines = [
        InvoiceLine(
            line_number=1,
            description=description,
            quantity_milli=1000,
            unit_price_units=50000,
            unit_price_scale=2,
            tax_minor=0,
            amount_minor=50000,
        )
    ]
    payment = Payment(
        id=7,
        customer=customer,
        reference="ch_7",
        source="card",
        amount_minor=20000,
        currency="EUR",
        paid_on=date(2026, 4, 10),
    )
    PaymentAllocation(payment=payment, invoice=invoice, amount_minor=20000)
    balance = InvoiceBalance(invoice, Money(20000, "EUR"), Money(0, "EUR"), TODAY)
    creditor = _creditor(address)
    return {
        "invoice": invoice_pdf(
            balance, [], [], creditor=creditor, locale="en", portal_url=PORTAL_URL
        ),
        "statement": statement_pdf(
            customer,
            [balance],
            summarize([balance], "EUR"),
            [payment],
            creditor=creditor,
            locale="en",
            today=TODAY,
        ),
        "receipt": receipt_pdf(payment, [balance], creditor=creditor, locale="en", today=TODAY),
    }


def _pypdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _pdftotext(pdf: bytes) -> str:
    """The text as poppler reads it, in logical order, without bidi control characters."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is missing: `make fonts` installs poppler-utils (as root)")
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"],  # noqa: S607 - found on PATH above
        input=pdf,
        capture_output=True,
        check=True,
    )
    return BIDI_CONTROLS.sub("", done.stdout.decode("utf-8"))


def _glyph_codes_per_character(pdf: bytes) -> dict[tuple[str, str], set[str]]:
    """For each font and character, the glyph codes the PDF prints it with (from the fonts'
    ToUnicode maps). A letter drawn in several shapes (initial, medial, final) has several."""
    codes: dict[tuple[str, str], set[str]] = defaultdict(set)
    reader = PdfReader(io.BytesIO(pdf))
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            if "/ToUnicode" not in font:
                continue
            cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
            for code, target in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", cmap):
                text = bytes.fromhex(target).decode("utf-16-be")
                codes[str(font["/BaseFont"]), text].add(code)
    return codes


@pytest.mark.usefixtures("request_context")
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_every_document_prints_the_name_line_and_address_in_each_script(script):
    name, description, address = SCRIPTS[script]

    for kind, pdf in _documents(script).items():
        text = _pdftotext(pdf) if script in RTL else _pypdf_text(pdf)
        assert name in text, kind
        # each word of the address: poppler reads a line as a left-to-right paragraph, so
        # the comma and house number of a right-to-left address come out between its parts
        # (their order is checked on the name and description below)
        assert all(word in text for word in re.split(r"[\s,،]+", address)), kind
        if kind == "invoice":
            assert description in text


@pytest.mark.usefixtures("request_context")
@pytest.mark.parametrize("script", RTL)
def test_right_to_left_text_reads_in_logical_order(script):
    name, description, _ = SCRIPTS[script]
    backwards = name[::-1]

    text = _pdftotext(_documents(script)["invoice"])

    # poppler orders glyphs by position: drawn left to right in logical order, the name
    # would come back reversed
    assert name in text
    assert description in text
    assert backwards not in text


@pytest.mark.usefixtures("request_context")
def test_arabic_letters_are_joined():
    # "شركة النور للتجارة" has lam (ل) at the start of a word (initial form, in "النور"
    # after a non-joining alef) and inside one ("للتجارة", medial form): joined letters are
    # printed with different glyphs; unshaped text prints one glyph per letter.
    codes = _glyph_codes_per_character(_documents("arabic")["invoice"])

    bold = next(font for font, _ in codes if "Bold" in font)  # the name is printed in bold
    assert len(codes[bold, "ل"]) >= 2
    assert len(codes[bold, "ر"]) >= 2  # isolated after waw in "النور", final in "للتجارة"


@pytest.mark.usefixtures("request_context")
def test_latin_letters_have_one_glyph_each():
    # the counter-check of the test above: a script without joining keeps one glyph a letter
    codes = _glyph_codes_per_character(_documents("latin")["invoice"])

    bold = next(font for font, _ in codes if "Bold" in font)
    assert all(len(codes[bold, letter]) == 1 for letter in "Müller")


@pytest.mark.usefixtures("request_context")
def test_emoji_print_without_blanking_the_rest_of_the_field():
    customer = Customer(
        account_number="ACC-8", name="Party 🎉 Shop ✅", email="p@example.com", currency="EUR"
    )
    invoice = Invoice(
        customer=customer,
        number="INV-8",
        issue_date=TODAY,
        due_date=TODAY + timedelta(days=30),
        currency="EUR",
        total_minor=1000,
    )
    invoice.lines = [
        InvoiceLine(
            line_number=1,
            # 🫠 (Unicode 14) is in no installed font: it is left out, the rest prints
            description="Balloons 🎈 and melting faces 🫠 for the office",
            quantity_milli=1000,
            unit_price_units=1000,
            unit_price_scale=2,
            tax_minor=0,
            amount_minor=1000,
        )
    ]
    balance = InvoiceBalance(invoice, Money(0, "EUR"), Money(0, "EUR"), TODAY)

    pdf = invoice_pdf(balance, [], [], creditor=_creditor("x"), locale="en", portal_url=PORTAL_URL)

    text = " ".join(_pypdf_text(pdf).split())  # the description wraps in its cell
    assert "Party 🎉 Shop ✅" in text
    assert "Balloons 🎈 and melting faces" in text
    assert "for the office" in text


@pytest.mark.usefixtures("request_context")
@pytest.mark.parametrize(
    ("locale", "how_to_pay"),
    [
        ("en", "Pay online at https://pay.northwind.example"),
        ("es", "Pague en línea en https://pay.northwind.example"),
        ("fr", "Payez en ligne sur https://pay.northwind.example"),
        ("de", "Bezahlen Sie online unter https://pay.northwind.example"),
    ],
)
def test_invoice_says_how_to_pay_with_the_portal_address_and_its_number(locale, how_to_pay):
    customer = Customer(account_number="A-1", name="Acme", email="a@example.com", currency="EUR")
    invoice = Invoice(
        customer=customer,
        number="FA/2026/0042",
        issue_date=TODAY,
        due_date=TODAY + timedelta(days=30),
        currency="EUR",
        total_minor=1000,
    )
    invoice.lines = []
    balance = InvoiceBalance(invoice, Money(0, "EUR"), Money(0, "EUR"), TODAY)

    pdf = invoice_pdf(
        balance, [], [], creditor=_creditor("x"), locale=locale, portal_url=PORTAL_URL
    )

    text = " ".join(_pypdf_text(pdf).split())  # the paragraph wraps
    assert how_to_pay in text
    assert "FA/2026/0042." in text  # the sentence ends with the invoice to pay


@pytest.mark.usefixtures("request_context")
def test_a_paid_invoice_does_not_ask_for_payment():
    customer = Customer(account_number="A-1", name="Acme", email="a@example.com", currency="EUR")
    invoice = Invoice(
        customer=customer,
        number="INV-9",
        issue_date=TODAY,
        due_date=TODAY,
        currency="EUR",
        total_minor=1000,
    )
    invoice.lines = []
    balance = InvoiceBalance(invoice, Money(1000, "EUR"), Money(0, "EUR"), TODAY)

    text = _pypdf_text(
        invoice_pdf(balance, [], [], creditor=_creditor("x"), locale="en", portal_url=PORTAL_URL)
    )

    assert "Pay online" not in text
    assert "How to pay" not in text


@pytest.mark.usefixtures("request_context")
@pytest.mark.parametrize(
    ("locale", "owed"),
    [
        ("en", "Still owed on your account as of Apr 20, 2026: €300.00."),
        ("es", "Pendiente en su cuenta a 20 abr 2026: 300,00\xa0€."),
        ("fr", "Reste dû sur votre compte au 20 avr. 2026 : 300,00\xa0€."),
        ("de", "Auf Ihrem Konto noch offen am 20.04.2026: 300,00\xa0€."),
    ],
)
def test_receipt_shows_what_is_still_owed_after_the_payment(locale, owed):
    customer = Customer(account_number="A-1", name="Acme", email="a@example.com", currency="EUR")
    invoice = Invoice(
        customer=customer,
        number="INV-10",
        issue_date=TODAY,
        due_date=TODAY + timedelta(days=30),
        currency="EUR",
        total_minor=50000,
    )
    payment = Payment(
        id=10,
        customer=customer,
        reference="ch_10",
        source="card",
        amount_minor=20000,
        currency="EUR",
        paid_on=TODAY,
    )
    PaymentAllocation(payment=payment, invoice=invoice, amount_minor=20000)
    balance = InvoiceBalance(invoice, Money(20000, "EUR"), Money(0, "EUR"), TODAY)

    pdf = receipt_pdf(payment, [balance], creditor=_creditor("x"), locale=locale, today=TODAY)

    text = " ".join(_pypdf_text(pdf).split())
    assert owed.replace("\xa0", " ") in text.replace("\xa0", " ")


@pytest.mark.usefixtures("request_context")
def test_receipt_of_the_last_payment_says_nothing_more_is_owed():
    customer = Customer(account_number="A-1", name="Acme", email="a@example.com", currency="EUR")
    invoice = Invoice(
        customer=customer,
        number="INV-11",
        issue_date=TODAY,
        due_date=TODAY,
        currency="EUR",
        total_minor=20000,
    )
    payment = Payment(
        id=11,
        customer=customer,
        reference="ch_11",
        source="card",
        amount_minor=20000,
        currency="EUR",
        paid_on=TODAY,
    )
    PaymentAllocation(payment=payment, invoice=invoice, amount_minor=20000)
    balance = InvoiceBalance(invoice, Money(20000, "EUR"), Money(0, "EUR"), TODAY)

    text = _pypdf_text(
        receipt_pdf(payment, [balance], creditor=_creditor("x"), locale="en", today=TODAY)
    )

    assert "As of Apr 20, 2026 you owe nothing more on your account." in text


@pytest.mark.usefixtures("request_context")
def test_fonts_are_parsed_once_per_process():
    _documents("japanese")
    before = fonts._load_templates.cache_info()

    _documents("korean")
    _documents("arabic")

    after = fonts._load_templates.cache_info()
    assert after.misses == before.misses  # nothing parsed again
    assert after.hits > before.hits


@pytest.mark.usefixtures("request_context")
def test_fallback_fonts_are_loaded_only_for_text_that_needs_them():
    # As in a fresh process: nothing parsed yet (the fonts parsed so far are closed).
    parsed = [*fonts._templates(None), *fonts._templates(fonts.font_dirs())]
    fonts._load_templates.cache_clear()
    fonts._primary_coverage.cache_clear()
    for _spec, template in parsed:
        template.font.ttfont.close()

    latin = _documents("latin")
    _documents("arabic")  # DejaVu draws Arabic and Hebrew

    assert fonts._load_templates.cache_info().currsize == 1  # the bundled fonts only
    assert not any("WenQuanYi" in name for name in _font_names(latin["invoice"]))

    japanese = _documents("japanese")

    assert fonts._load_templates.cache_info().currsize == 2  # and now the fallbacks
    assert any("WenQuanYi" in name for name in _font_names(japanese["invoice"]))
    assert "INV-7" in _pypdf_text(japanese["invoice"])


def _font_names(pdf: bytes) -> set[str]:
    reader = PdfReader(io.BytesIO(pdf))
    return {
        str(font.get_object()["/BaseFont"])
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    }


def test_documents_made_at_once_in_threads_are_the_ones_made_alone(app):
    # the parsed fonts are shared by every document: making some at once changes nothing
    def made(script: str) -> dict[str, bytes]:
        with app.test_request_context():
            return _documents(script)

    alone = {script: made(script) for script in ("japanese", "arabic", "latin")}

    scripts = list(alone) * 2
    with ThreadPoolExecutor(max_workers=3) as pool:
        together = list(pool.map(made, scripts))

    assert together == [alone[script] for script in scripts]


@pytest.mark.usefixtures("request_context")
def test_a_missing_fallback_font_is_logged_and_the_rest_still_prints(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("PDF_FONT_DIRS", str(tmp_path))  # holds no font

    with caplog.at_level(logging.WARNING, logger="portal.invoices.fonts"):
        pdf = _documents("japanese")["invoice"]

    assert "fonts-wqy-microhei" in caplog.text
    assert "fonts-symbola" in caplog.text
    text = _pypdf_text(pdf)
    assert "INV-7" in text
    assert "Account number ACC-7" in text


def test_fallback_fonts_are_found_under_any_configured_directory(monkeypatch, tmp_path):
    nested = tmp_path / "b" / "truetype" / "wqy"
    nested.mkdir(parents=True)
    (nested / "wqy-microhei.ttc").write_bytes(b"")
    monkeypatch.setenv("PDF_FONT_DIRS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")

    assert fonts.font_dirs() == (tmp_path / "a", tmp_path / "b")
    assert fonts.find_font("wqy-microhei.ttc", fonts.font_dirs()) == nested / "wqy-microhei.ttc"
    assert fonts.find_font("nothing.ttf", fonts.font_dirs()) is None


@pytest.mark.parametrize(
    ("text", "shaped"),
    [
        ("INV-0042 €1,234.50", False),
        ("Ελληνική ООО 株式会社 한국", False),  # print right letter by letter
        ("شركة النور", True),  # joined letters, right to left
        ("חברת אור", True),  # right to left
        ("١٢٣", True),  # Arabic-Indic digits
        ("हिन्दी", True),  # vowel signs
        ("e\u0301", True),  # a decomposed accent
        ("👩\u200d💻", True),  # an emoji sequence
    ],
)
def test_only_text_that_needs_it_is_shaped(text, shaped):
    assert fonts.needs_shaping(text) is shaped


def _large_documents(currency: str, minor: int) -> dict[str, bytes]:
    """An invoice of one line whose unit price and tax are each `minor` (30,000,000.00)."""
    customer = Customer(account_number="ACC-8", name="Big Buyer", email="b@example.com")
    customer.currency = currency
    invoice = Invoice(
        customer=customer,
        number="INV-8",
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        currency=currency,
        total_minor=2 * minor,
    )
    scale = 3 if currency == "KWD" else 2
    invoice.lines = [
        InvoiceLine(
            line_number=1,
            description="Turbine, delivered and installed, with a long description",
            quantity_milli=1000,
            unit_price_units=minor,
            unit_price_scale=scale,
            tax_minor=minor,
            amount_minor=2 * minor,
        )
    ]
    payment = Payment(
        id=8,
        customer=customer,
        reference="ch_8",
        source="card",
        amount_minor=minor,
        currency=currency,
        paid_on=date(2026, 4, 10),
    )
    PaymentAllocation(payment=payment, invoice=invoice, amount_minor=minor)
    balance = InvoiceBalance(invoice, Money(minor, currency), Money(0, currency), TODAY)
    creditor = _creditor("1 Main Street")
    return {
        "invoice": invoice_pdf(
            balance, [], [], creditor=creditor, locale="en", portal_url=PORTAL_URL
        ),
        "statement": statement_pdf(
            customer,
            [balance],
            summarize([balance], currency),
            [payment],
            creditor=creditor,
            locale="en",
            today=TODAY,
        ),
        "receipt": receipt_pdf(payment, [balance], creditor=creditor, locale="en", today=TODAY),
    }


@pytest.mark.usefixtures("request_context")
@pytest.mark.parametrize(
    ("currency", "minor", "shown"),
    [("USD", 3_000_000_000, "$30,000,000.00"), ("KWD", 30_000_000_000, "KWD30,000,000.000")],
)
def test_large_amounts_print_on_one_line(currency, minor, shown):
    # A 30,000,000.00 unit price wrapped ("$30,000,000.0" / "0") in a 3.2-weight column.
    for kind, pdf in _large_documents(currency, minor).items():
        lines = [line.strip() for line in _pdftotext(pdf).splitlines()]
        # every 30,000,000 amount in full: the unit price, tax, paid, allocated...
        whole = sum(line.count(shown) for line in lines)
        assert whole >= {"invoice": 3, "statement": 2, "receipt": 2}[kind], (kind, lines)
        # and no amount cut in two: no line holds only the tail of a number
        assert not [line for line in lines if re.fullmatch(r"[0-9]*[.,][0-9]*|0+", line)], kind
