"""Benchmark: the staff customer search and customer page on a large ledger (PostgreSQL).

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_x \
        .venv/bin/python bench/bench_desk.py [--database-url URL] [--reset]

Uses (or generates, into an empty database) the shared data set of `dataset.py`: 100,000
customers and 1,000,000 invoices; adds once the customer `BUSY-1` with 200 timeline
events (invoices, payments, emails queued and sent, notes) and the specialist who signs
in, both reused by later runs, so running it again changes nothing. Then times, through
the whole app (a signed-in specialist, the test client): 300 searches by prefixes of
names, account numbers, emails and invoice numbers, and 100 loads of that customer's
page. Prints p50 and p95 and the load average, and exits 1 if a target is missed
(search p95 <= 100 ms, page p95 <= 50 ms). A database holding other data is refused
(exit 2) unless --reset, which destroys it. Without a database URL it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset import DatasetRefused, ensure_dataset
from sqlalchemy import select

from portal import create_app
from portal.config import normalize_database_url
from portal.db import utcnow
from portal.extensions import db

BUSY_ACCOUNT = "BUSY-1"
BENCH_STAFF_EMAIL = "bench-desk@bench.example"


def seed_busy_customer() -> str:
    """A customer with 200 events on the page: 50 invoices, 50 payments, 50 emails sent
    (two events each: queued and sent)."""
    from portal.audit.actors import Actor
    from portal.customers.models import Customer
    from portal.notifications.models import OutboxMessage
    from portal.promises.models import NoteKind
    from portal.promises.services import add_note
    from tests.factories import make_customer, make_invoice, make_payment

    if db.session.scalar(select(Customer.id).where(Customer.account_number == BUSY_ACCOUNT)):
        return BUSY_ACCOUNT  # seeded by an earlier run
    customer = make_customer(account_number=BUSY_ACCOUNT, name="Busy Customer", timezone="UTC")
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


def bench_staff() -> object:
    """The specialist the benchmark signs in as, made on the first run."""
    from portal.staff.models import StaffMember
    from tests.factories import make_staff

    member = db.session.scalar(select(StaffMember).where(StaffMember.email == BENCH_STAFF_EMAIL))
    if member is None:
        member = make_staff("specialist", email=BENCH_STAFF_EMAIL)
    db.session.commit()
    return member


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument(
        "--reset", action="store_true", help="regenerate the data set (destroys the data!)"
    )
    args = parser.parse_args()
    if not args.database_url:
        print("bench_desk: set BENCH_DATABASE_URL (PostgreSQL) to run the desk benchmark")
        return 0
    try:
        info = ensure_dataset(args.database_url, reset=args.reset)
    except DatasetRefused as refused:
        print(f"bench_desk: {refused}")
        return 2
    print(f"data set: {info}")
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": normalize_database_url(args.database_url)}, "testing"
    )
    with app.app_context():
        with app.test_request_context():
            account = seed_busy_customer()
        from tests.factories import login_as_staff

        member = bench_staff()
        client = app.test_client()
        assert login_as_staff(client, member).status_code == 302  # type: ignore[arg-type]
        rng = random.Random(7)
        queries = (
            [f"bench customer {rng.randrange(1, 1000)}" for _ in range(100)]
            + [f"bench-{rng.randrange(1, 100000):07d}"[:10] for _ in range(100)]
            + [f"bench-inv-{rng.randrange(1, 1000000):08d}"[:14] for _ in range(50)]
            + [f"customer{rng.randrange(1, 100000)}@" for _ in range(50)]
        )
        for q in queries[:20]:  # warm the connection pool and the caches
            client.get("/staff/customers", query_string={"q": q})
        search: list[float] = []
        for q in queries:
            t = time.perf_counter()
            response = client.get("/staff/customers", query_string={"q": q})
            search.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
        for _ in range(10):
            client.get(f"/staff/customers/{account}")
        page: list[float] = []
        for _ in range(100):
            t = time.perf_counter()
            response = client.get(f"/staff/customers/{account}")
            page.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
        db.engine.dispose()
    results = {
        "search": (search, 100.0),
        "customer page (200 events)": (page, 50.0),
    }
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")
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
