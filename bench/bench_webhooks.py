"""Benchmark: Stripe webhooks processed per second, 30 % of them duplicate deliveries.

    .venv/bin/python bench/bench_webhooks.py            # a fresh SQLite file, one worker
    .venv/bin/python bench/bench_webhooks.py --reset \
        --database-url postgresql://postgres@127.0.0.1/bench   # PostgreSQL, a web process per CPU

Seeds one in-flight card checkout per customer, then delivers signed
`payment_intent.succeeded` events to POST /stripe/webhook through the whole app
(signature check, JSON, the event row in the inbox) from several processes at once, as
gunicorn workers would, while one worker process (`portal jobs run --loop`'s applier,
woken by NOTIFY on PostgreSQL) applies them: the customer's lock, the ledger, the audit
rows, the receipt and its link in the outbox. A duplicate is a second delivery of an
event id already sent. The clock runs from the first delivery until the last event is
applied; every event must have been applied exactly once. Exits 1 under the target
(500 deliveries/s by default). No Stripe server is needed: the customers asked to keep
their cards, so applying saves them and calls no Stripe (an unsaved card settled by a
webhook is detached afterwards, one call to Stripe each, outside the benchmark).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from benchsetup import empty_schema
from sqlalchemy import func, insert, make_url, select

from portal import create_app
from portal.config import normalize_database_url
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import Invoice, InvoiceLine
from portal.jobs.webhook_worker import apply_as_they_arrive
from portal.notifications.models import OutboxMessage
from portal.payments.models import (
    Checkout,
    CheckoutInvoice,
    Payment,
    PaymentAccount,
    WebhookEvent,
)

SECRET = "whsec_bench"  # noqa: S105  (a throwaway signing secret)
AMOUNT = 12_345  # cents per invoice


def settings(url: str) -> dict[str, object]:
    return {
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(url),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 4},
        "PORTAL_BASE_URL": "https://portal.example.test",
        "STRIPE_SECRET_KEY": "sk_test_bench",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "STRIPE_API_BASE": "http://127.0.0.1:9",  # never called while applying events
        "STRIPE_JS_URL": "http://127.0.0.1:9/js.stripe.com/v3/",
    }


def seed(count: int) -> None:
    """`count` customers, each with an invoice and a card checkout awaiting Stripe's word."""
    now = utcnow()
    today = date(2026, 11, 1)
    db.session.execute(
        insert(Customer),
        [
            {
                "account_number": f"W-{n:06d}",
                "name": f"Webhook Customer {n}",
                "email": f"ap{n}@bench.example",
                "currency": "USD",
                "locale": ("en", "es", "fr", "de")[n % 4],
                "kind": "business",
                "segment": "standard",
                "timezone": "UTC",
                "created_at": now,
                "updated_at": now,
            }
            for n in range(count)
        ],
    )
    ids = dict(db.session.execute(select(Customer.account_number, Customer.id)).all())
    customer_ids = [ids[f"W-{n:06d}"] for n in range(count)]
    db.session.execute(
        insert(Invoice),
        [
            {
                "customer_id": cid,
                "number": f"WI-{n:06d}",
                "issue_date": today,
                "due_date": today + timedelta(days=30),
                "currency": "USD",
                "total_minor": AMOUNT,
                "created_at": now,
            }
            for n, cid in enumerate(customer_ids)
        ],
    )
    invoices = dict(db.session.execute(select(Invoice.number, Invoice.id)).all())
    db.session.execute(
        insert(InvoiceLine),
        [
            {
                "invoice_id": invoices[f"WI-{n:06d}"],
                "line_number": 1,
                "description": "Services",
                "quantity_milli": 1000,
                "unit_price_minor": AMOUNT,
                "tax_minor": 0,
                "amount_minor": AMOUNT,
            }
            for n in range(count)
        ],
    )
    db.session.execute(
        insert(PaymentAccount),
        [
            {"customer_id": cid, "stripe_customer_id": f"cus_bench_{n}", "created_at": now}
            for n, cid in enumerate(customer_ids)
        ],
    )
    db.session.execute(
        insert(Checkout),
        [
            {
                "customer_id": cid,
                "status": "processing",
                "amount_minor": AMOUNT,
                "currency": "USD",
                "in_flight_customer_id": cid,
                "attempt": 1,
                "attempt_key": f"checkout-bench-{n}",
                "payment_method_id": f"pm_bench_{n}",
                "save_card": True,  # kept: applying calls no Stripe (see the docstring)
                "card_brand": "visa",
                "card_last4": "4242",
                "created_at": now,
                "updated_at": now,
            }
            for n, cid in enumerate(customer_ids)
        ],
    )
    checkouts = dict(db.session.execute(select(Checkout.customer_id, Checkout.id)).all())
    db.session.execute(
        insert(CheckoutInvoice),
        [
            {"checkout_id": checkouts[cid], "invoice_id": invoices[f"WI-{n:06d}"]}
            for n, cid in enumerate(customer_ids)
        ],
    )
    db.session.commit()


def events(count: int) -> list[tuple[str, str]]:
    """(body, Stripe-Signature) of one succeeded event per seeded checkout."""
    rows = db.session.execute(
        select(Checkout.id, Checkout.customer_id, PaymentAccount.stripe_customer_id)
        .join(PaymentAccount, PaymentAccount.customer_id == Checkout.customer_id)
        .order_by(Checkout.id)
    ).all()
    stamp = int(time.time())
    signed = []
    for n, (checkout_id, customer_id, stripe_customer) in enumerate(rows[:count]):
        body = json.dumps(
            {
                "id": f"evt_bench_{n}",
                "object": "event",
                "type": "payment_intent.succeeded",
                "created": stamp,
                "data": {
                    "object": {
                        "id": f"pi_bench_{n}",
                        "object": "payment_intent",
                        "amount": AMOUNT,
                        "currency": "usd",
                        "status": "succeeded",
                        "customer": stripe_customer,
                        "payment_method": f"pm_bench_{n}",
                        "metadata": {
                            "portal_checkout": str(checkout_id),
                            "portal_customer": str(customer_id),
                            "portal_attempt": "1",
                        },
                        "last_payment_error": None,
                    }
                },
            }
        )
        mac = hmac.new(SECRET.encode(), f"{stamp}.{body}".encode(), hashlib.sha256)
        signed.append((body, f"t={stamp},v1={mac.hexdigest()}"))
    return signed


def deliveries(signed: list[tuple[str, str]], duplicate_share: float) -> list[tuple[str, str]]:
    """Every event once, plus repeats of random ones, so that repeats are `duplicate_share`."""
    extra = round(len(signed) * duplicate_share / (1 - duplicate_share))
    rng = random.Random(7)
    sent = signed + [rng.choice(signed) for _ in range(extra)]
    rng.shuffle(sent)
    return sent


def poster(url: str, batch: list[tuple[str, str]], barrier, results) -> None:  # type: ignore[no-untyped-def]
    """A web worker: Stripe's deliveries through the whole Flask app."""
    app = create_app(settings(url), "testing")
    client = app.test_client()
    failures = 0
    barrier.wait()
    for body, signature in batch:
        response = client.post(
            "/stripe/webhook",
            data=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )
        failures += response.status_code != 200
    results.put(("posted", time.perf_counter(), failures, time.process_time()))


def applier(url: str, events: int, barrier, results) -> None:  # type: ignore[no-untyped-def]
    """The worker's loop (`portal jobs run --loop`), until every event is applied."""
    app = create_app(settings(url), "testing")
    with app.app_context():
        barrier.wait()
        deadline = time.monotonic() + 600

        def keep_going() -> float:
            done = db.session.scalar(
                select(func.count(WebhookEvent.id)).where(WebhookEvent.outcome != "pending")
            )
            db.session.commit()
            return 0 if done >= events or time.monotonic() > deadline else 1.0

        apply_as_they_arrive(keep_going, poll_seconds=1)
        db.engine.dispose()
    results.put(("applied", time.perf_counter(), 0, time.process_time()))


@dataclass
class Round:
    deliveries: int
    answered: float  # seconds until the last delivery was answered
    applied: float  # seconds until the last event was applied
    python_cpu: float  # CPU seconds of the web processes and the worker (not PostgreSQL's)
    failures: int
    exactly_once: bool

    @property
    def rate(self) -> float:
        return self.deliveries / self.applied


def one_round(url: str, *, reset: bool, events_count: int, share: float, workers: int) -> Round:
    app = create_app(settings(url), "testing")
    with app.app_context():
        if not empty_schema(url, reset=reset):
            raise SystemExit(2)
        seed(events_count)
        sent = deliveries(events(events_count), share)
        db.engine.dispose()

    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(workers + 2)
    results = context.Queue()
    batches = [sent[i::workers] for i in range(workers)]
    processes = [
        context.Process(target=poster, args=(url, batch, barrier, results)) for batch in batches
    ]
    processes.append(context.Process(target=applier, args=(url, events_count, barrier, results)))
    for process in processes:
        process.start()
    barrier.wait()
    started = time.perf_counter()
    finished = [results.get(timeout=900) for _ in processes]
    for process in processes:
        process.join()

    with app.app_context():
        payments = db.session.scalar(select(func.count(Payment.id)))
        stored = db.session.scalar(select(func.count(WebhookEvent.id)))
        paid = db.session.scalar(
            select(func.count(Checkout.id)).where(Checkout.status == "succeeded")
        )
        receipts = db.session.scalar(
            select(func.count(OutboxMessage.id)).where(OutboxMessage.kind == "receipt")
        )
        db.engine.dispose()
    return Round(
        deliveries=len(sent),
        answered=max(end for what, end, _, _ in finished if what == "posted") - started,
        applied=max(end for _, end, _, _ in finished) - started,
        python_cpu=sum(cpu for _, _, _, cpu in finished),
        failures=sum(f for _, _, f, _ in finished),
        exactly_once=payments == stored == paid == receipts == events_count,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--reset", action="store_true", help="drop every table first")
    parser.add_argument("--events", type=int, default=3_000, help="distinct events")
    parser.add_argument("--duplicates", type=float, default=0.30, help="share of deliveries")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="web processes; default: one per CPU (one on SQLite)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="the target applies to the median round"
    )
    parser.add_argument("--target", type=float, default=500.0, help="deliveries per second")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        dialect = make_url(normalize_database_url(url)).get_backend_name()
        workers = args.workers or (1 if dialect == "sqlite" else os.cpu_count() or 2)
        rounds = []
        for n in range(args.rounds):
            # Later rounds drop the tables the first one made and filled.
            result = one_round(
                url,
                reset=args.reset or n > 0,
                events_count=args.events,
                share=args.duplicates,
                workers=workers,
            )
            rounds.append(result)
            print(
                f"round {n + 1}: all answered in {result.answered:.2f} s, all applied in "
                f"{result.applied:.2f} s: {result.rate:,.0f} deliveries/s; "
                f"{result.python_cpu / result.deliveries * 1000:.2f} ms of Python CPU "
                f"per delivery; {result.failures} non-200 answers"
            )

    sent = rounds[0].deliveries
    median = statistics.median(r.rate for r in rounds)
    print(
        f"database: {dialect}; {workers} web process(es) and a worker; {sent:,} deliveries "
        f"({args.events:,} events, {sent - args.events:,} duplicates = "
        f"{(sent - args.events) / sent:.0%}); {os.cpu_count()} CPUs"
    )
    print(f"median of {len(rounds)} rounds: {median:,.0f} deliveries/s")
    if not all(r.exactly_once and not r.failures for r in rounds):
        print("FAIL: every event must be applied exactly once")
        return 1
    if dialect != "postgresql":
        print(f"(the {args.target:,.0f}/s target is set for PostgreSQL: --database-url)")
        return 0
    if median < args.target:
        print(f"FAIL: {median:,.0f}/s is under the {args.target:,.0f}/s target")
        return 1
    print(f"OK: at least {args.target:,.0f} deliveries/s, each event applied exactly once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
