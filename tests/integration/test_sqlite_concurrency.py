"""SQLite under concurrent writes: writers wait for the lock (WAL, busy timeout, BEGIN
IMMEDIATE for requests that write) and never answer 500 "database is locked".

A real threaded HTTP server (werkzeug's) on a file database, 20 clients at once, 200
mixed requests: language changes of signed-in customers, lost-link requests, Stripe
webhooks, and account pages (which touch the session row).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select
from werkzeug.serving import make_server

from portal.access.services import issue_link
from portal.audit.models import AuditEvent
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.payments.models import WebhookEvent
from tests.conftest import build_test_app
from tests.factories import csrf_token_from
from tests.stripe_journeys import WEBHOOK_SECRET, event_body, signature

CLIENTS = 20
REQUESTS_PER_CLIENT = 10


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    app = build_test_app(
        f"sqlite:///{tmp_path / 'concurrent.sqlite3'}",
        RATELIMIT_ENABLED=False,
        STRIPE_SECRET_KEY="sk_test_concurrency",
        STRIPE_PUBLISHABLE_KEY="pk_test_concurrency",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE="http://127.0.0.1:9",  # never called: receiving needs no Stripe
        STRIPE_JS_URL="http://127.0.0.1:9/js.stripe.com/v3/",
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        with app.app_context():
            db.engine.dispose()


def _seed(app: Flask) -> list[tuple[str, str, str]]:
    """One customer and one link per client: (account number, email, link token)."""
    seeded = []
    with app.app_context():
        for n in range(CLIENTS):
            customer = Customer(
                account_number=f"ACC-C{n:03d}",
                name=f"Concurrent {n}",
                email=f"c{n}@example.com",
                currency="USD",
                locale="en",
                kind="business",
                segment="standard",
            )
            db.session.add(customer)
            db.session.flush()
            issued = issue_link(customer, now=utcnow(), ttl=timedelta(days=1), actor="system")
            seeded.append((customer.account_number, customer.email, issued.token))
        db.session.commit()
    return seeded


def _client(base: str, number: int, account: str, email: str, token: str, start, statuses):  # type: ignore[no-untyped-def]
    browser = requests.Session()
    landing = browser.get(f"{base}/l/{token}", timeout=60)
    browser.post(
        f"{base}/l/{token}",
        data={"csrf_token": csrf_token_from(landing.text)},
        allow_redirects=False,
        timeout=60,
    )
    csrf = csrf_token_from(browser.get(f"{base}/account", timeout=60).text)
    languages = iter(("es", "fr", "de", "en") * REQUESTS_PER_CLIENT)  # each one a change
    start.wait()
    for i in range(REQUESTS_PER_CLIENT):
        kind = ("language", "lost_link", "webhook", "account", "language")[i % 5]
        if kind == "language":
            response = browser.post(
                f"{base}/language",
                data={"csrf_token": csrf, "locale": next(languages), "next": "/"},
                allow_redirects=False,
                timeout=60,
            )
        elif kind == "lost_link":
            response = browser.post(
                f"{base}/link/new",
                data={"csrf_token": csrf, "account_number": account, "email": email},
                allow_redirects=False,
                timeout=60,
            )
        elif kind == "webhook":
            body = event_body(f"evt_c{number}_{i}", "customer.created", {"object": "customer"})
            response = requests.post(
                f"{base}/stripe/webhook",
                data=body,
                headers={"Content-Type": "application/json", "Stripe-Signature": signature(body)},
                timeout=60,
            )
        else:
            response = browser.get(f"{base}/account", timeout=60)
        statuses.append((kind, response.status_code))


def test_200_concurrent_mixed_writes_on_sqlite_give_no_error(served):
    # given 20 signed-in customers on a file database behind a threaded server
    app, base = served
    seeded = _seed(app)
    start = threading.Barrier(CLIENTS)
    statuses: list[tuple[str, int]] = []
    threads = [
        threading.Thread(target=_client, args=(base, n, *seeded[n], start, statuses))
        for n in range(CLIENTS)
    ]
    # when they all write at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    # then every request got its normal answer, none a 500
    assert len(statuses) == CLIENTS * REQUESTS_PER_CLIENT == 200
    answers = Counter(statuses)
    assert all(status < 500 for _kind, status in statuses), answers
    assert answers[("language", 302)] == CLIENTS * 4
    assert answers[("lost_link", 302)] == CLIENTS * 2
    assert answers[("webhook", 200)] == CLIENTS * 2
    assert answers[("account", 200)] == CLIENTS * 2
    # and every write is there
    with app.app_context():
        assert db.session.scalar(select(func.count(WebhookEvent.id))) == CLIENTS * 2
        changes = db.session.scalar(
            select(func.count(AuditEvent.id)).where(AuditEvent.action.like("%locale%"))
        )
        assert changes == CLIENTS * 4
        journal = db.session.connection().exec_driver_sql("PRAGMA journal_mode").scalar()
        assert journal == "wal"
