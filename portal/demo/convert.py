"""Turn the IBM late-payment histories into the portal's three import files.

Every date is shifted by one whole number of days so that the ledger's last invoices
were issued a few days before `today`; a settlement that falls after `today` once
shifted has not happened yet, so its invoice is still open (and overdue when its due
date has passed). The output depends only on the source file and `today`.

    python -m portal.demo.convert OUT_DIR [--today YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from portal.imports.services import CUSTOMER_COLUMNS, INVOICE_COLUMNS, PAYMENT_COLUMNS

SOURCE_CSV = Path(__file__).resolve().parent / "ibm-late-payment-histories.csv"
CURRENCY = "USD"
# The newest invoice of the ledger is dated this many days before today.
LAST_INVOICE_DAYS_AGO = 3
TAX_RATE = Decimal("0.0825")
# The first account in each of these languages gets multi-line invoices to show off;
# `make run` prints a link to each (English first).
FEATURED_LOCALES = ("en", "es")


@dataclass(frozen=True)
class Region:
    locale: str
    timezone: str
    phone_prefix: str
    company_forms: tuple[str, ...]
    company_words: tuple[str, ...]
    trades: tuple[str, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]


# The source's five country codes, each given one of the portal's languages.
REGIONS = {
    "770": Region(
        "en",
        "America/New_York",
        "+1 212 555",
        ("Inc.", "LLC", "Corp."),
        ("Harbor", "Summit", "Bluewater", "Redwood", "Granite", "Liberty", "Maple", "Pioneer"),
        ("Logistics", "Supply", "Hardware", "Foods", "Office Solutions", "Builders"),
        ("James", "Linda", "Robert", "Patricia", "Michael", "Jennifer"),
        ("Carter", "Nguyen", "Brooks", "Ramirez", "Sullivan", "Hayes"),
    ),
    "897": Region(
        "en",
        "America/Chicago",
        "+1 312 555",
        ("Inc.", "Co.", "Ltd."),
        ("Prairie", "Lakeshore", "Ironwood", "Northfield", "Cedar", "Riverbend", "Oakridge"),
        ("Distribution", "Printing", "Electric", "Farm Supply", "Janitorial", "Packaging"),
        ("Emily", "David", "Sarah", "Daniel", "Laura", "Kevin"),
        ("Olsen", "Kowalski", "Fischer", "Jackson", "Price", "Hughes"),
    ),
    "391": Region(
        "es",
        "Europe/Madrid",
        "+34 91 555",
        ("S.L.", "S.A."),
        ("Sierra Norte", "Costa Azul", "Los Olivos", "Puerta del Sol", "Río Verde", "La Mancha"),
        ("Distribuciones", "Suministros", "Ferretería", "Alimentación", "Papelería"),
        ("María", "Javier", "Lucía", "Carlos", "Elena", "Pablo"),
        ("García", "Fernández", "López", "Martínez", "Sánchez", "Romero"),
    ),
    "818": Region(
        "fr",
        "Europe/Paris",
        "+33 1 55 55",
        ("SARL", "SAS", "SA"),
        ("du Vieux Port", "de la Loire", "des Alpes", "du Marais", "de Provence", "du Nord"),
        ("Ateliers", "Fournitures", "Transports", "Boulangeries", "Imprimerie", "Quincaillerie"),
        ("Camille", "Julien", "Sophie", "Antoine", "Claire", "Nicolas"),
        ("Dubois", "Lefèvre", "Moreau", "Laurent", "Girard", "Rousseau"),
    ),
    "406": Region(
        "de",
        "Europe/Berlin",
        "+49 30 555",
        ("GmbH", "AG", "KG"),
        ("Bergmann", "Schwarzwald", "Rheinland", "Nordstern", "Elbtal", "Alpenblick"),
        ("Maschinenbau", "Bürobedarf", "Logistik", "Haustechnik", "Druckerei", "Handel"),
        ("Anna", "Lukas", "Julia", "Felix", "Katharina", "Jonas"),
        ("Müller", "Schneider", "Weber", "Becker", "Hoffmann", "Krüger"),
    ),
}

# (description, unit price, quantities to choose from) for the featured invoices.
CATALOG = (
    ("Copier paper A4, 80 g, box of 5 reams", "24.90", ("4", "10", "12")),
    ("Toner cartridge, black, high yield", "89.00", ("1", "2", "3")),
    ("Ergonomic office chair", "249.00", ("1", "2")),
    ("Installation and set-up (hours)", "65.00", ("1.5", "2.25", "3")),
    ("LED desk lamp", "39.95", ("2", "5")),
    ("Cable ties, pack of 100", "6.49", ("3", "8")),
    ("Delivery and handling", "18.50", ("1",)),
)


# The source has no line detail: its invoices become one line with one of these.
LEDGER_DESCRIPTIONS = (
    "Office supplies, monthly order",
    "Printer consumables",
    "Facility maintenance services",
    "Packaging materials",
    "Furniture and fittings",
    "Cleaning and janitorial supplies",
)


@dataclass(frozen=True)
class DemoFiles:
    customers: Path
    invoices: Path
    payments: Path
    featured_accounts: tuple[str, ...]  # customers with multi-line invoices


@dataclass(frozen=True)
class _Invoice:
    account: str
    number: str
    issued: date
    due: date
    amount: str
    settled: date


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "big")


def _pick(options: Sequence[str], *seed: str) -> str:
    return options[_digest(*seed) % len(options)]


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _parse_day(text: str) -> date:
    return datetime.strptime(text, "%d/%m/%Y").date()  # noqa: DTZ007 (a date, not a time)


def _read_source(source: Path) -> tuple[list[_Invoice], dict[str, str]]:
    invoices: list[_Invoice] = []
    countries: dict[str, str] = {}
    with source.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            countries[row["customerID"]] = row["countrycode"]
            invoices.append(
                _Invoice(
                    account=row["customerID"],
                    number=row["invoiceNumber"],
                    issued=_parse_day(row["InvoiceDate"]),
                    due=_parse_day(row["DueDate"]),
                    amount=row["InvoiceAmount"],
                    settled=_parse_day(row["SettledDate"]),
                )
            )
    return invoices, countries


def _customer_row(account: str, country: str, is_featured: bool, names: set[str]) -> list[str]:
    region = REGIONS[country]
    # About one customer in eight is a person rather than a business.
    is_consumer = not is_featured and _digest("kind", account) % 8 == 0
    if is_consumer:
        first = _pick(region.first_names, "first", account)
        last = _pick(region.last_names, "last", account)
        name = f"{first} {last}"
        email_local, domain = _slug(f"{first}.{last}").replace("-", "."), "mail"
    else:
        word = _pick(region.company_words, "word", account)
        trade = _pick(region.trades, "trade", account)
        form = _pick(region.company_forms, "form", account)
        if region.locale in ("es", "fr"):
            name = f"{trade} {word} {form}"
        else:
            name = f"{word} {trade} {form}"
        email_local, domain = "ap", _slug(name.removesuffix(form))
    while name in names:  # two accounts never share a name
        name = f"{name} ({account[:4]})"
        domain = _slug(f"{domain}-{account[:4]}")
    names.add(name)
    phone = f"{region.phone_prefix} {_digest('phone', account) % 10000:04d}"
    return [
        account,
        name,
        f"{email_local}@{domain}.example",
        phone,
        region.locale,
        CURRENCY,
        "consumer" if is_consumer else "business",
        "standard",
        region.timezone,
    ]


def _featured_invoices(
    account: str, position: int, today: date
) -> tuple[list[list[str]], list[list[str]]]:
    """Three multi-line invoices: one overdue, one not yet due, one paid."""
    invoice_rows: list[list[str]] = []
    payment_rows: list[list[str]] = []
    plans = ((40, 4, False), (12, 3, False), (70, 5, True))  # (days ago, lines, is paid)
    for k, (days_ago, line_count, is_paid) in enumerate(plans, start=1):
        number = f"NW-{today.year}-{position}{k:03d}"
        issued = today - timedelta(days=days_ago)
        due = issued + timedelta(days=30)
        total = Decimal(0)
        for line_number in range(1, line_count + 1):
            description, price, quantities = CATALOG[(position * 3 + k + line_number) % 7]
            quantity = _pick(quantities, number, str(line_number))
            net = (Decimal(quantity) * Decimal(price)).quantize(Decimal("0.01"), ROUND_HALF_UP)
            tax = (net * TAX_RATE).quantize(Decimal("0.01"), ROUND_HALF_UP)
            total += net + tax
            invoice_rows.append(
                [
                    *(account, number, issued.isoformat(), due.isoformat(), CURRENCY),
                    *(str(line_number), description, quantity, price, str(tax)),
                ]
            )
        if is_paid:
            paid_on = due - timedelta(days=5)
            payment_rows.append(
                [account, f"PAY-{number}", paid_on.isoformat(), str(total), CURRENCY, number]
            )
    return invoice_rows, payment_rows


def convert(out_dir: Path, today: date, source: Path = SOURCE_CSV) -> DemoFiles:
    """Write customers.csv, invoices.csv and payments.csv into out_dir."""
    invoices, countries = _read_source(source)
    shift = (today - timedelta(days=LAST_INVOICE_DAYS_AGO)) - max(i.issued for i in invoices)
    accounts = sorted(countries)
    featured = tuple(
        next(a for a in accounts if REGIONS[countries[a]].locale == locale)
        for locale in FEATURED_LOCALES
    )

    names: set[str] = set()
    customer_rows = [
        _customer_row(account, countries[account], account in featured, names)
        for account in accounts
    ]
    invoice_rows: list[list[str]] = []
    payment_rows: list[list[str]] = []
    for invoice in sorted(invoices, key=lambda i: (i.issued, i.number)):
        issued, due, settled = (d + shift for d in (invoice.issued, invoice.due, invoice.settled))
        invoice_rows.append(
            [
                *(invoice.account, invoice.number, issued.isoformat(), due.isoformat(), CURRENCY),
                *("1", _pick(LEDGER_DESCRIPTIONS, invoice.number), "1", invoice.amount, ""),
            ]
        )
        if settled <= today:
            payment_rows.append(
                [
                    invoice.account,
                    f"PAY-{invoice.number}",
                    settled.isoformat(),
                    invoice.amount,
                    CURRENCY,
                    invoice.number,
                ]
            )
    for position, account in enumerate(featured, start=1):
        extra_invoices, extra_payments = _featured_invoices(account, position, today)
        invoice_rows.extend(extra_invoices)
        payment_rows.extend(extra_payments)
    payment_rows.sort(key=lambda row: (row[2], row[1]))

    out_dir.mkdir(parents=True, exist_ok=True)
    files = DemoFiles(
        out_dir / "customers.csv", out_dir / "invoices.csv", out_dir / "payments.csv", featured
    )
    _write(files.customers, CUSTOMER_COLUMNS, customer_rows)
    _write(files.invoices, INVOICE_COLUMNS, invoice_rows)
    _write(files.payments, PAYMENT_COLUMNS, payment_rows)
    return files


def _write(path: Path, header: Sequence[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert the demo ledger to import CSV files.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--today", type=date.fromisoformat, default=None)
    args = parser.parse_args(argv)
    today = args.today or datetime.now(UTC).date()
    files = convert(args.out_dir, today)
    print(f"wrote {files.customers}, {files.invoices} and {files.payments}")


if __name__ == "__main__":
    main()
