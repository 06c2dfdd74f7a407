"""A live portal on a real port, one headless Chromium, and an axe-core check for every page.

The live server has its own app and SQLite file: the integration fixtures keep their data
in a transaction that is rolled back and that another thread could never see. Test data
is written with the usual factories inside the live app's context and committed, so the
server thread reads it like any other request would.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.notifications.models import OutboxMessage
from portal.notifications.services import email_to_send
from tests.conftest import build_test_app
from tests.factories import make_customer, make_invoice, make_link_token, make_payment

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NO_CHROMIUM = (
    f"Chromium not found at {CHROMIUM}: run `make browser` as root to install Debian's "
    "chromium; skipping browser tests"
)
BLOCKING_IMPACTS = ("serious", "critical")
TIMEOUT_MS = 10_000

HERE = Path(__file__).resolve().parent
_ledgers = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=NO_CHROMIUM)
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(skip)


# --- the live server -------------------------------------------------------------------


@dataclass(frozen=True)
class Ledger:
    """One customer's account as seeded: what the pages should show."""

    account_number: str
    name: str
    email: str
    overdue_invoice: str  # partly paid, ten days late
    upcoming_invoice: str
    paid_invoice: str
    total_due: str  # as the account page formats it in English
    overdue: str


@dataclass(frozen=True)
class LiveServer:
    url: str
    app: Flask

    def seed_ledger(self) -> Ledger:
        """A new customer with an overdue, an upcoming and a paid invoice."""
        n = next(_ledgers)
        today = utcnow().date()
        with self.app.app_context():
            customer = make_customer(
                account_number=f"E2E-{n:04d}",
                name=f"Globex Corporation {n}",
                email=f"ap{n}@globex.example",
                timezone="UTC",
            )
            overdue = make_invoice(
                customer,
                number=f"E2E-{n:04d}-OVERDUE",
                issue_date=today - timedelta(days=40),
                due_date=today - timedelta(days=10),
                lines=[("Consulting hours", "2.5", "80.00", "20.00"), ("Travel", "1", "45.10")],
            )
            upcoming = make_invoice(
                customer,
                number=f"E2E-{n:04d}-UPCOMING",
                issue_date=today,
                due_date=today + timedelta(days=30),
                lines=[("Support plan", "1", "99.50")],
            )
            paid = make_invoice(
                customer,
                number=f"E2E-{n:04d}-PAID",
                issue_date=today - timedelta(days=120),
                due_date=today - timedelta(days=90),
                lines=[("Onboarding", "1", "100.00")],
            )
            make_payment(
                customer,
                [(paid, "100.00"), (overdue, "50.00")],
                reference=f"E2E-{n:04d}-PAY",
                paid_on=today - timedelta(days=5),
            )
            db.session.commit()
            return Ledger(
                account_number=customer.account_number,
                name=customer.name,
                email=customer.email,
                overdue_invoice=overdue.number,
                upcoming_invoice=upcoming.number,
                paid_invoice=paid.number,
                total_due="$314.60",  # 265.10 - 50.00 + 99.50
                overdue="$215.10",
            )

    def link(self, account_number: str, *, expired: bool = False) -> str:
        """The URL of a new link to this account, as an email would carry it."""
        with self.app.app_context():
            customer = db.session.scalar(
                select(Customer).where(Customer.account_number == account_number)
            )
            assert customer is not None, f"no customer {account_number}"
            if expired:
                issued_at = utcnow() - timedelta(days=31)
                token = make_link_token(customer, now=issued_at, ttl=timedelta(days=30))
            else:
                token = make_link_token(customer)
            db.session.commit()
        return f"{self.url}/l/{token}"

    def run_lost_link_job(self) -> None:
        """What the worker does with lost-link requests (`match_link_requests`)."""
        with self.app.app_context():
            from portal.jobs.runner import run_jobs

            run_jobs(now=utcnow(), runner="e2e", only="match_link_requests", force=True)

    def emails_to(self, address: str) -> list[str]:
        """The plain-text bodies of the emails queued for this address, oldest first, as
        the runner hands them to the mail server (rendered, with a fresh portal link
        each: the stored copies hold none)."""
        with self.app.app_context():
            messages = db.session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.to_address == address)
                .order_by(OutboxMessage.id)
            ).all()
            bodies = []
            for message in messages:
                customer = db.session.get(Customer, message.customer_id)
                email = email_to_send(
                    message,
                    customer,
                    now=utcnow(),
                    sender_name="Portal",
                    sender_address="billing@example.com",
                )
                db.session.expunge(message)  # the stored copy stays as it is
                plain = email.get_body(("plain",))
                bodies.append(str(plain.get_content()) if plain is not None else "")
            db.session.commit()  # the links issued for these copies
            return bodies


class _QuietRequestHandler(WSGIRequestHandler):
    """No access log: the lines would land in whichever test's capture happens to be open."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _not_ready(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"the app is not built yet"]


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # The socket comes first: the app needs its own URL for the links it emails.
    server: BaseWSGIServer = make_server(
        "127.0.0.1", 0, _not_ready, threaded=True, request_handler=_QuietRequestHandler
    )
    url = f"http://127.0.0.1:{server.port}"
    database = tmp_path_factory.mktemp("e2e") / "e2e.sqlite3"
    app = build_test_app(
        f"sqlite:///{database}",
        PORTAL_BASE_URL=url,
        # Every test opens links from 127.0.0.1; the limits have their own tests.
        LINK_RATE_LIMIT="1000 per minute",
        LOST_LINK_RATE_LIMIT="1000 per minute",
        CARD_RATE_LIMIT="1000 per minute",
        CARD_RATE_LIMIT_PER_IP="1000 per minute",
    )
    server.app = app
    thread = threading.Thread(target=server.serve_forever, name="e2e-live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(url=url, app=app)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def ledger(live_server: LiveServer) -> Ledger:
    return live_server.seed_ledger()


# --- the browser -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    manager = sync_playwright().start()
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    try:
        yield browser
    finally:
        browser.close()


def new_context(browser: Browser, live_server: LiveServer, **options: object) -> BrowserContext:
    settings: dict[str, object] = {
        "base_url": live_server.url,
        "locale": "en-US",
        "timezone_id": "UTC",
        "accept_downloads": True,
        "viewport": {"width": 1280, "height": 900},
    }
    settings.update(options)
    context = browser.new_context(**settings)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def context(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    context = new_context(browser, live_server)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def phone(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    context = new_context(
        browser,
        live_server,
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


# --- accessibility ---------------------------------------------------------------------

_axe = Axe()


def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core finding on the page as it is now."""
    violations = _axe.run(page).response["violations"]
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    assert not blocking, f"axe-core on {page.url}:\n" + "\n".join(_describe(v) for v in blocking)


def _describe(violation: dict[str, Any]) -> str:
    targets = "; ".join(" ".join(map(str, node["target"])) for node in violation["nodes"])
    return (
        f"- {violation['id']} ({violation['impact']}): {violation['help']}\n"
        f"  {violation['helpUrl']}\n"
        f"  at: {targets}"
    )
