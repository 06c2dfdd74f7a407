"""Shared fixtures.

The schema comes from `alembic upgrade head` (never `create_all`), once per session.
Each test runs inside an outer transaction that is rolled back; the code under test
commits into SAVEPOINTs. SQLite by default; PostgreSQL when TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask, g
from flask.testing import FlaskClient
from flask_migrate import upgrade
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession

from portal import create_app
from portal.config import normalize_database_url
from portal.db import utcnow
from portal.extensions import db, limiter

pytest_plugins = ["tests.smtp_server"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(normalize_database_url(url))
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
    except sa.exc.OperationalError as error:
        message = f"TEST_DATABASE_URL={url} is unreachable: {error.orig}"
        if os.environ.get("CI") == "true":
            pytest.exit(message, returncode=3)
        raise
    finally:
        engine.dispose()


def database_url(tmp_dir: Path) -> str:
    if TEST_DATABASE_URL:
        return TEST_DATABASE_URL
    return f"sqlite:///{tmp_dir / 'test.sqlite3'}"


def build_test_app(url: str, **overrides: object) -> Flask:
    if url.startswith(("postgres://", "postgresql")):
        _reset_postgres(url)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(url),
            "PORTAL_BASE_URL": "https://portal.example.test",
            "SERVER_NAME": None,
            **overrides,
        },
        env_name="testing",
    )
    with app.app_context():
        upgrade()
    return app


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--days-ahead",
        type=float,
        default=0,
        metavar="N",
        help="run with this process's clock N days ahead (`make test-later`; 0.5 is twelve "
        "hours, for a test that holds only at some hours of the day): a test that "
        "passes today and fails then depends on today's date, as a mailed link issued on "
        "a fixed day and opened with the real clock did (it failed CI 30 days later).",
    )


_later: time_machine.travel | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _later
    days = config.getoption("--days-ahead")
    if days:
        _later = time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True)
        _later.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _later is not None:
        _later.stop()


_WRITES = ("INSERT", "UPDATE", "DELETE")


def _no_deferred_writes_in_a_get(app: Flask) -> None:
    """Fail any GET that writes in a transaction not begun IMMEDIATE: on SQLite, once
    another request commits after its first read, such a write fails at once with
    "database is locked" (a 500 a phone tester met on the plan's card page). Mark the
    view `portal.db.writes_on_get`, or write in `immediate_transactions()`."""
    from contextvars import ContextVar

    from flask import request

    from portal.db import SAFE_METHODS, writes_immediately

    with app.app_context():
        engine = db.engine
    # Set while the app serves a request (not while a test's own code runs in a
    # test_request_context, which runs no before_request).
    serving: ContextVar[bool] = ContextVar("serving", default=False)

    def _serving() -> None:
        db.session.flush()  # what the test itself left pending is not the request's write
        serving.set(True)

    app.before_request_funcs.setdefault(None, []).insert(0, _serving)  # before the app's own

    @app.teardown_request
    def _served(_error: BaseException | None) -> None:
        serving.set(False)

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _check(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if (
            statement.lstrip()[:6].upper() in _WRITES
            and serving.get()
            and request.method in SAFE_METHODS
            and not writes_immediately()
        ):
            raise AssertionError(
                f"{request.method} {request.path} writes outside an IMMEDIATE transaction "
                f"({statement.split(None, 3)[:3]}): mark its view portal.db.writes_on_get"
            )


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = build_test_app(database_url(tmp_path_factory.mktemp("db")))
    _no_deferred_writes_in_a_get(app)
    yield app
    with app.app_context():
        db.engine.dispose()


class ConnectionBoundSession(FlaskSQLAlchemySession):
    """Flask-SQLAlchemy's session picks the app's engine even when given a connection."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):  # type: ignore[no-untyped-def]
        if bind is None and self.bind is not None:
            return self.bind
        return super().get_bind(mapper, clause, bind, **kwargs)


@pytest.fixture
def db_session(app: Flask) -> Iterator[sa.orm.scoped_session]:
    """A session in an outer transaction rolled back after the test."""
    with app.app_context():
        connection = db.engine.connect()
        transaction = connection.begin()
        original = db.session
        session = db._make_scoped_session(
            {
                "class_": ConnectionBoundSession,
                "bind": connection,
                "join_transaction_mode": "create_savepoint",
            }
        )
        db.session = session
        try:
            yield session
            _reconcile_ledger(connection)
        finally:
            session.remove()
            db.session = original
            transaction.rollback()
            connection.close()


# Every invoice's balance, from the ledger rows alone: total - allocations - credits +
# refunds. Written independently of portal.invoices.queries so that the two check each other.
_LEDGER_BALANCES = sa.text(
    """
    SELECT i.id, i.number, i.total_minor
        - COALESCE((SELECT SUM(a.amount_minor) FROM payment_allocations a
                    WHERE a.invoice_id = i.id), 0)
        - COALESCE((SELECT SUM(c.amount_minor) FROM credit_notes c
                    WHERE c.invoice_id = i.id), 0)
        + COALESCE((SELECT SUM(r.amount_minor) FROM refund_allocations r
                    WHERE r.invoice_id = i.id), 0)
    FROM invoices i
    """
)
_LEDGER_PROBLEMS = sa.text(
    """
    SELECT 'payment ' || p.reference || ' allocates more than it is' FROM payments p
    WHERE (SELECT COALESCE(SUM(a.amount_minor), 0) FROM payment_allocations a
           WHERE a.payment_id = p.id) > p.amount_minor
    UNION ALL
    SELECT 'allocation of payment ' || p.reference || ' to ' || i.number || ' mixes currencies'
    FROM payment_allocations a JOIN payments p ON p.id = a.payment_id
    JOIN invoices i ON i.id = a.invoice_id WHERE p.currency <> i.currency
    UNION ALL
    SELECT 'invoice ' || i.number || ' is not in its customer''s currency'
    FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE c.currency <> i.currency
    UNION ALL
    SELECT 'credit note ' || n.reference || ' is not in its invoice''s currency'
    FROM credit_notes n JOIN invoices i ON i.id = n.invoice_id WHERE n.currency <> i.currency
    UNION ALL
    SELECT 'credit note ' || n.reference || ' names a line of another invoice'
    FROM credit_notes n JOIN invoice_lines l ON l.id = n.invoice_line_id
    WHERE l.invoice_id <> n.invoice_id
    UNION ALL
    SELECT 'dispute ' || d.id || ' is on a line of another invoice'
    FROM dispute_lines dl JOIN disputes d ON d.id = dl.dispute_id
    JOIN invoice_lines l ON l.id = dl.invoice_line_id WHERE l.invoice_id <> d.invoice_id
    UNION ALL
    SELECT 'dispute ' || d.id || ' credited lines other than its credit notes say'
    FROM disputes d
    WHERE (SELECT COALESCE(SUM(dl.credited_minor), 0) FROM dispute_lines dl
           WHERE dl.dispute_id = d.id)
       <> (SELECT COALESCE(SUM(n.amount_minor), 0) FROM credit_notes n WHERE n.dispute_id = d.id)
    UNION ALL
    SELECT 'open disputes hold more than line ' || l.id || ' is'
    FROM invoice_lines l
    WHERE (SELECT COALESCE(SUM(dl.amount_minor), 0) FROM dispute_lines dl
           JOIN disputes d ON d.id = dl.dispute_id
           WHERE dl.invoice_line_id = l.id AND d.status IN ('open', 'waiting_on_customer'))
       > l.amount_minor
    """
)


def _reconcile_ledger(connection: sa.Connection) -> None:
    """After every database test: the balances module agrees with the ledger rows, and
    no payment, allocation or credit breaks the rules the database enforces."""
    from portal.invoices.queries import invoice_balances_by_customer

    if not connection.in_transaction() or not connection.get_transaction().is_active:
        return
    try:
        with connection.begin_nested():
            ledger = {row[0]: (row[1], row[2]) for row in connection.execute(_LEDGER_BALANCES)}
            problems = [row[0] for row in connection.execute(_LEDGER_PROBLEMS)]
    except sa.exc.DBAPIError:
        return  # the test left the transaction failed (PostgreSQL); it reports that itself
    if not ledger and not problems:
        return
    with db.session.no_autoflush:
        customer_ids = db.session.scalars(sa.text("SELECT id FROM customers")).all()
        computed = {
            balance.invoice.id: balance.balance.minor
            for balances in invoice_balances_by_customer(
                dict.fromkeys(customer_ids, utcnow().date())
            ).values()
            for balance in balances
        }
    for invoice_id, (number, expected) in ledger.items():
        if computed.get(invoice_id) != expected:
            problems.append(
                f"invoice {number}: balances module says {computed.get(invoice_id)}, "
                f"the ledger {expected}"
            )
    if problems:
        pytest.fail("ledger does not reconcile: " + "; ".join(problems))


class FreshGlobalsClient(FlaskClient):
    """Each request gets an empty `g`, as on a real server.

    The test holds one app context open (the rolled-back session lives in it), and
    Flask reuses that context for the client's requests; without this, state cached
    in `g` (the logged-in user, the locale) would leak from one request to the next.
    """

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        vars(g._get_current_object()).clear()
        return super().open(*args, **kwargs)


@pytest.fixture(autouse=True)
def _limiter_state_restored() -> Iterator[None]:
    """Put the rate limiter back as it was before the test.

    Flask-Limiter keeps its storage, its `enabled` flag and (first set, then kept) its
    strategy and key prefix on the one `limiter` object, written by each `init_app`: an
    app a test builds beside the session's (test_proxies, test_rate_limit_storage's Redis
    apps, test_sqlite_concurrency's RATELIMIT_ENABLED=False, the PostgreSQL race apps)
    would otherwise decide the limits, and the counts, of every test that runs after it.
    """
    saved = dict(vars(limiter))
    options = dict(limiter._storage_options)  # updated in place by init_app
    try:
        yield
    finally:
        vars(limiter).clear()
        vars(limiter).update(saved)
        limiter._storage_options.clear()
        limiter._storage_options.update(options)


@pytest.fixture
def client(app: Flask, db_session: sa.orm.scoped_session) -> FlaskClient:
    limiter.reset()
    app.test_client_class = FreshGlobalsClient
    return app.test_client()


@pytest.fixture
def staff_client(client: FlaskClient) -> FlaskClient:
    """A client signed in as a new specialist (through the real sign-in, with TOTP);
    the member is `client.staff_member`."""
    from tests.factories import login_as_staff, make_staff

    member = make_staff("specialist")
    response = login_as_staff(client, member)
    assert response.status_code == 302, response.text
    client.staff_member = member  # type: ignore[attr-defined]
    return client


@pytest.fixture
def admin_client(client: FlaskClient) -> FlaskClient:
    """As `staff_client`, signed in as an admin."""
    from tests.factories import login_as_staff, make_staff

    member = make_staff("admin")
    response = login_as_staff(client, member)
    assert response.status_code == 302, response.text
    client.staff_member = member  # type: ignore[attr-defined]
    return client
