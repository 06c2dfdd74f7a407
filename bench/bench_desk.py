"""Benchmark: the staff customer search and customer page on a large ledger (PostgreSQL).

    .venv/bin/python bench/bench_desk.py --reset \
        --database-url postgresql://postgres@127.0.0.1/bench

Seeds 100,000 customers and 1,000,000 invoices in SQL, and one customer with 200
timeline events (invoices, payments, emails sent, notes). Then times, through the whole
app (a signed-in specialist, the test client): 300 searches by prefixes of names, account
numbers, emails and invoice numbers, and 100 loads of that customer's page. Prints p50 and
p95 and exits 1 if a target is missed (search p95 <= 100 ms, page p95 <= 50 ms).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchsetup import empty_schema
from sqlalchemy import text

from portal import create_app
from portal.config import normalize_database_url
from portal.db import utcnow
from portal.extensions import db

WORDS = [
    "acme",
    "alpine",
    "apex",
    "atlas",
    "aurora",
    "beacon",
    "birch",
    "boreal",
    "cascade",
    "cedar",
    "civic",
    "cobalt",
    "comet",
    "coral",
    "crest",
    "delta",
    "ember",
    "falcon",
    "fjord",
    "garnet",
    "glacier",
    "granite",
    "harbor",
    "hazel",
    "helix",
    "indigo",
    "iris",
    "jasper",
    "juniper",
    "kestrel",
    "lagoon",
    "laurel",
    "lumen",
    "maple",
    "meridian",
    "mesa",
    "nimbus",
    "nova",
    "oak",
    "onyx",
    "orbit",
    "pine",
    "prairie",
    "quartz",
    "raven",
    "ridge",
    "sable",
    "sierra",
    "summit",
    "tundra",
    "vertex",
    "willow",
    "zephyr",
]

# Names like "Cedar Maple 4711": a three-letter prefix matches about 2 % of the customers.
SEED_CUSTOMERS = """
INSERT INTO customers (account_number, name, email, currency, kind, segment, locale,
                       created_at, updated_at)
SELECT 'AC-' || lpad(n::text, 7, '0'),
       initcap(w[1 + n % cardinality(w)]) || ' '
         || initcap(w[1 + (n / cardinality(w)) % cardinality(w)]) || ' ' || n,
       'ap' || n || '@' || w[1 + (n * 7) % cardinality(w)] || '.example',
       'USD', 'business', 'standard', 'en', now(), now()
FROM generate_series(1, 100000) AS n, CAST(:words AS text[]) AS w
"""
SEED_INVOICES = """
INSERT INTO invoices (customer_id, number, issue_date, due_date, currency, total_minor, created_at)
SELECT c.id, 'INV-' || lpad((c.id * 10 + k)::text, 8, '0'),
       date '2026-01-01' + (k * 20), date '2026-01-31' + (k * 20), 'USD', 10000 + k, now()
FROM customers c, generate_series(0, 9) AS k
"""


def seed_busy_customer() -> str:
    """A customer with 200 events on the page: 50 invoices, 50 payments, 50 emails sent
    (two events each: queued and sent)."""
    from portal.audit.actors import Actor
    from portal.notifications.models import OutboxMessage
    from portal.promises.models import NoteKind
    from portal.promises.services import add_note
    from tests.factories import make_customer, make_invoice, make_payment

    customer = make_customer(account_number="BUSY-1", name="Busy Customer", timezone="UTC")
    for n in range(50):
        invoice = make_invoice(customer, number=f"BUSY-INV-{n:03d}")
        if n < 25:
            make_payment(customer, [(invoice, "10.00")], reference=f"BUSY-PAY-{n:03d}")
        db.session.add(
            OutboxMessage(
                message_id=f"<busy{n}@bench>",
                customer_id=customer.id,
                kind="reminder_overdue",
                to_address=customer.email,
                locale="en",
                subject="Invoice is overdue",
                body_text="Hello,\n" * 20,
                status="sent",
                sent_at=utcnow(),
            )
        )
    for n in range(25):
        add_note(
            customer, kind=NoteKind.CALL, body=f"call {n}", actor=Actor("system"), now=utcnow()
        )
    db.session.commit()
    return customer.account_number


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--reset", action="store_true", help="drop every table first")
    args = parser.parse_args()
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": normalize_database_url(args.database_url)}, "testing"
    )
    with app.app_context():
        if args.reset:  # the whole schema: drop_all leaves the ledger's trigger functions
            with db.engine.begin() as connection:
                connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        if not empty_schema(args.database_url, reset=False):
            return 2
        started = time.perf_counter()
        with db.engine.begin() as connection:
            connection.execute(text(SEED_CUSTOMERS), {"words": WORDS})
            connection.execute(text(SEED_INVOICES))
            connection.exec_driver_sql("ANALYZE")
        print(
            f"seeded 100,000 customers, 1,000,000 invoices in {time.perf_counter() - started:.1f} s"
        )
        with app.test_request_context():
            account = seed_busy_customer()
        from tests.factories import login_as_staff, make_staff

        member = make_staff("specialist")
        db.session.commit()
        client = app.test_client()
        assert login_as_staff(client, member).status_code == 302
        rng = random.Random(7)
        queries = (
            [rng.choice(WORDS)[:3] for _ in range(100)]
            + [f"ac-{rng.randrange(1, 100000):07d}"[:8] for _ in range(100)]
            + [f"inv-{rng.randrange(10, 1000000):08d}"[:10] for _ in range(50)]
            + [f"ap{rng.randrange(1, 100000)}@" for _ in range(50)]
        )
        search: list[float] = []
        for q in queries:
            t = time.perf_counter()
            response = client.get("/staff/customers", query_string={"q": q})
            search.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
        page: list[float] = []
        for _ in range(100):
            t = time.perf_counter()
            response = client.get(f"/staff/customers/{account}")
            page.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
    results = {
        "search": (search, 100.0),
        "customer page (200 events)": (page, 50.0),
    }
    missed = False
    for name, (samples, target) in results.items():
        p95 = percentile(samples, 0.95)
        print(
            f"{name}: p50 {statistics.median(samples):.1f} ms, p95 {p95:.1f} ms "
            f"(target p95 <= {target:.0f} ms){'  MISSED' if p95 > target else ''}"
        )
        missed = missed or p95 > target
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
