"""Shared fixtures.

The schema comes from `alembic upgrade head` (never `create_all`), once per session.
Each test runs inside an outer transaction that is rolled back; the code under test
commits into SAVEPOINTs. SQLite by default; PostgreSQL when TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, g
from flask.testing import FlaskClient
from flask_migrate import upgrade
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession

from portal import create_app
from portal.config import normalize_database_url
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


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = build_test_app(database_url(tmp_path_factory.mktemp("db")))
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
        finally:
            session.remove()
            db.session = original
            transaction.rollback()
            connection.close()


class FreshGlobalsClient(FlaskClient):
    """Each request gets an empty `g`, as on a real server.

    The test holds one app context open (the rolled-back session lives in it), and
    Flask reuses that context for the client's requests; without this, state cached
    in `g` (the logged-in user, the locale) would leak from one request to the next.
    """

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        vars(g._get_current_object()).clear()
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app: Flask, db_session: sa.orm.scoped_session) -> FlaskClient:
    limiter.reset()
    app.test_client_class = FreshGlobalsClient
    return app.test_client()
