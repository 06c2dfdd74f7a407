"""GETs that write. On SQLite a transaction begun deferred that reads and then writes
fails at once with "database is locked" when another connection committed in between,
whatever the busy timeout (https://sqlite.org/rescode.html#busy_snapshot): a phone
tester met it as a 500 on a plan's card page, right after "your plan is agreed", while
other customers changed their language. Views whose GET writes are marked
`portal.db.writes_on_get` and begin IMMEDIATE like a POST; the suite's guard
(conftest `_no_deferred_writes_in_a_get`) fails any GET that writes without it.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from flask import Flask

from portal.customers.models import Customer
from portal.db import writes_immediately, writes_on_get
from portal.extensions import db
from tests.conftest import _no_deferred_writes_in_a_get, build_test_app

# Every view whose GET may write, and why. A new one is found by the guard.
WRITING_GETS = {
    "payments.card": "makes the customer's Stripe Customer and SetupIntent",
    "payments.done": "records the payment Stripe reports on the return page",
    "plans.card": "makes the customer's Stripe Customer and SetupIntent",
    "staff.audit_log_csv": "audits the export itself",
    "staff.enrol": "keeps the new authenticator secret until it is confirmed",
}


def test_the_views_whose_get_writes_are_marked(app: Flask) -> None:
    marked = {
        name for name, view in app.view_functions.items() if getattr(view, "writes_on_get", False)
    }
    assert marked == set(WRITING_GETS)


def _customer(number: str) -> Customer:
    return Customer(
        account_number=number,
        name=number,
        email=f"{number}@example.com",
        currency="USD",
        locale="en",
        kind="business",
        segment="standard",
    )


@pytest.fixture
def bare_app(tmp_path: Path) -> Flask:
    app = build_test_app(f"sqlite:///{tmp_path / 'gets.sqlite3'}")

    @app.get("/test/unmarked-write")
    def unmarked_write() -> str:
        db.session.add(_customer("UNMARKED"))
        db.session.commit()
        return "written"

    @app.get("/test/marked-write")
    @writes_on_get
    def marked_write() -> str:
        immediate = writes_immediately()
        db.session.add(_customer("MARKED"))
        db.session.commit()
        return "immediate" if immediate else "deferred"

    _no_deferred_writes_in_a_get(app)
    return app


def test_a_marked_get_writes_in_an_immediate_transaction(bare_app: Flask) -> None:
    response = bare_app.test_client().get("/test/marked-write")
    assert (response.status_code, response.text) == (200, "immediate")


def test_the_guard_fails_a_get_that_writes_unmarked(bare_app: Flask) -> None:
    # (the app answers its 500 page; the log names the view, and nothing is written)
    assert bare_app.test_client().get("/test/unmarked-write").status_code == 500
    with bare_app.app_context():
        assert db.session.query(Customer).filter_by(account_number="UNMARKED").count() == 0


def test_why_sqlite_needs_it_a_deferred_read_then_write_fails_at_once(tmp_path: Path) -> None:
    # The premise, on SQLite itself: a reader that then writes after another connection
    # committed gets "database is locked" at once (BEGIN IMMEDIATE would have waited).
    path = tmp_path / "premise.sqlite3"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (x INTEGER)")
    setup.close()
    reader = sqlite3.connect(path, isolation_level=None, timeout=30)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()
    done = threading.Event()

    def other_request() -> None:
        writer = sqlite3.connect(path, isolation_level=None, timeout=30)
        writer.execute("INSERT INTO t VALUES (1)")
        writer.close()
        done.set()

    threading.Thread(target=other_request).start()
    assert done.wait(10)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        reader.execute("INSERT INTO t VALUES (2)")  # no 30 s wait: SQLITE_BUSY_SNAPSHOT
    reader.execute("ROLLBACK")
    reader.close()
