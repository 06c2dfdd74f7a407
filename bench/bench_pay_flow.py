"""Benchmark: the server-side part of a card payment, against localstripe.

    .venv/bin/python bench/bench_pay_flow.py                 # a fresh SQLite file
    .venv/bin/python bench/bench_pay_flow.py --reset \
        --database-url postgresql://postgres@127.0.0.1/bench

Each payment is the customer's whole journey through the app: choose the invoices
(POST /pay), open the card page (a SetupIntent), press Pay (the SetupIntent checked,
the card attached, the PaymentIntent created and confirmed, the ledger written, the
receipt queued), and see the confirmation page. What the browser does with Stripe.js
is not timed; the time spent waiting for Stripe (here localstripe) inside our requests
is measured and subtracted, so what remains is our own code and database. Exits 1 when
the 95th percentile exceeds the budget (150 ms by default).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests
from benchsetup import empty_schema
from sqlalchemy import func, select

from portal import create_app
from portal.access.services import issue_link
from portal.config import normalize_database_url
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import QUANTITY_SCALE, Invoice, InvoiceLine
from portal.payments import gateway
from portal.payments.models import Payment

PUBLISHABLE = "pk_test_bench"
SETUP_SECRET = re.compile(r'data-setup-secret="([^"]+)"')
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
STEPS = ("choose", "card page", "pay", "confirmation")


class StripeClock:
    """Seconds spent inside gateway calls (waiting for Stripe), since the last reset."""

    def __init__(self) -> None:
        self.seconds = 0.0
        original = gateway.StripeGateway._call

        def timed(gateway_self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(gateway_self, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        gateway.StripeGateway._call = timed  # type: ignore[method-assign]


@contextmanager
def localstripe() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.payments.devserver", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    try:
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def confirm_card(stripe_url: str, client_secret: str) -> str:
    """Stripe.js's part (untimed): confirm the SetupIntent with a test card."""
    setup_id = client_secret.split("_secret_")[0]
    body = requests.post(
        f"{stripe_url}/v1/setup_intents/{setup_id}/confirm",
        json={
            "key": PUBLISHABLE,
            "client_secret": client_secret,
            "payment_method_data": {
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": "12",
                    "exp_year": "2034",
                    "cvc": "123",
                },
            },
        },
        timeout=10,
    ).json()
    assert body["status"] == "succeeded", body
    return str(body["id"])


def seed_customer(n: int, today: date) -> None:
    """A customer with an overdue and an upcoming invoice of two lines each."""
    customer = Customer(
        account_number=f"PF-{n:05d}",
        name=f"Pay Flow Customer {n}",
        email=f"ap{n}@bench.example",
        currency="USD",
        locale="en",
        kind="business",
        segment="standard",
        timezone="UTC",
    )
    db.session.add(customer)
    db.session.flush()
    for k, days in enumerate((-20, 10)):
        lines = [
            InvoiceLine(
                line_number=1,
                description="Services",
                quantity_milli=2 * QUANTITY_SCALE,
                unit_price_units=6125,
                unit_price_scale=2,
                tax_minor=980,
                amount_minor=13230,
            ),
            InvoiceLine(
                line_number=2,
                description="Travel",
                quantity_milli=QUANTITY_SCALE,
                unit_price_units=4510,
                unit_price_scale=2,
                tax_minor=0,
                amount_minor=4510,
            ),
        ]
        db.session.add(
            Invoice(
                customer_id=customer.id,
                number=f"PF-{n:05d}-{k}",
                issue_date=today - timedelta(days=40),
                due_date=today + timedelta(days=days),
                currency="USD",
                total_minor=13230 + 4510,
                lines=lines,
            )
        )


def link_token(n: int) -> str:
    customer = db.session.scalar(select(Customer).where(Customer.account_number == f"PF-{n:05d}"))
    return issue_link(customer, now=utcnow(), ttl=timedelta(days=1), actor="bench").token


def signed_in_client(app: Any, token: str) -> Any:
    """A browser that opened the customer's emailed link and pressed Continue. (Outside
    any app context, as a real request: Flask-WTF keeps the CSRF token in `g`.)"""
    client = app.test_client()
    landing = client.get(f"/l/{token}")
    client.post(f"/l/{token}", data={"csrf_token": CSRF.search(landing.text).group(1)})
    return client


def pay_once(client: Any, n: int, clock: StripeClock, stripe_url: str) -> dict[str, float]:
    """One payment; seconds of our own time per step, and of Stripe's in total."""
    spent: dict[str, float] = {"stripe": 0.0}

    def timed(step: str, call: Any) -> Any:
        before = clock.seconds
        started = time.perf_counter()
        response = call()
        waited = clock.seconds - before
        spent[step] = time.perf_counter() - started - waited
        spent["stripe"] += waited
        return response

    token = CSRF.search(client.get("/pay").text).group(1)  # the choose page: not timed
    numbers = [f"PF-{n:05d}-0", f"PF-{n:05d}-1"]
    started = timed(
        "choose", lambda: client.post("/pay", data={"csrf_token": token, "invoices": numbers})
    )
    location = started.headers["Location"]
    card = timed("card page", lambda: client.get(location))
    setup = confirm_card(stripe_url, SETUP_SECRET.search(card.text).group(1))
    form = {"csrf_token": token, "setup_intent": setup, "card_choice": "new"}
    paid = timed("pay", lambda: client.post(f"{location}/confirm", data=form))
    assert paid.headers["Location"].endswith("/done"), paid.status_code
    done = timed("confirmation", lambda: client.get(paid.headers["Location"]))
    assert "your payment is complete" in done.text
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--reset", action="store_true", help="drop every table first")
    parser.add_argument("--payments", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--budget-ms", type=float, default=150.0, help="p95, server side")
    args = parser.parse_args()

    clock = StripeClock()
    with tempfile.TemporaryDirectory(prefix="bench-pay-") as tmp, localstripe() as stripe_url:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": normalize_database_url(url),
                "PORTAL_BASE_URL": "https://portal.example.test",
                "LINK_RATE_LIMIT": "100000 per minute",
                # Every payment comes from 127.0.0.1: the card-testing limits per IP (and per
                # session) would refuse the run after 30; this measures the flow, not them.
                "CARD_RATE_LIMIT": "100000 per minute",
                "CARD_RATE_LIMIT_PER_IP": "100000 per minute",
                "STRIPE_SECRET_KEY": "sk_test_bench",
                "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE,
                "STRIPE_WEBHOOK_SECRET": "whsec_bench",
                "STRIPE_API_BASE": stripe_url,
                "STRIPE_JS_URL": f"{stripe_url}/js.stripe.com/v3/",
            },
            "testing",
        )
        total = args.warmup + args.payments
        with app.app_context():
            if not empty_schema(url, reset=args.reset):
                return 2
            dialect = db.engine.dialect.name
            today = utcnow().date()
            for n in range(total):
                seed_customer(n, today)
            db.session.commit()
            tokens = [link_token(n) for n in range(total)]
            db.session.commit()
        clients = [(n, signed_in_client(app, token)) for n, token in enumerate(tokens)]

        server_ms: list[float] = []
        stripe_ms: list[float] = []
        by_step: dict[str, list[float]] = {step: [] for step in STEPS}
        for n, client in clients:
            spent = pay_once(client, n, clock, stripe_url)
            if n < args.warmup:
                continue
            server_ms.append(1000 * sum(spent[step] for step in STEPS))
            stripe_ms.append(1000 * spent["stripe"])
            for step in STEPS:
                by_step[step].append(1000 * spent[step])

        with app.app_context():
            payments = db.session.scalar(select(func.count(Payment.id)))
            db.engine.dispose()

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20, method="inclusive")[-1]

    print(f"database: {dialect}; {len(server_ms)} payments measured ({payments} recorded)")
    print(
        f"server side per payment: p50 {statistics.median(server_ms):.1f} ms, "
        f"p95 {p95(server_ms):.1f} ms, max {max(server_ms):.1f} ms "
        f"(waiting for Stripe, excluded: p50 {statistics.median(stripe_ms):.1f} ms)"
    )
    for step in STEPS:
        median, high = statistics.median(by_step[step]), p95(by_step[step])
        print(f"  {step:>12}: p50 {median:6.1f} ms, p95 {high:6.1f} ms")
    if p95(server_ms) > args.budget_ms:
        print(f"FAIL: p95 over the {args.budget_ms:.0f} ms budget")
        return 1
    print(f"OK: p95 within the {args.budget_ms:.0f} ms budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
