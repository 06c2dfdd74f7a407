"""Scaffolding of the PostgreSQL race tests: the portal in a schema of its own, and calls
released together from threads.

Each race module runs the migrated portal in its own schema (`schema_app`), so that its
threads commit for real (each thread its own app context and database connection)
without touching the rolled-back test transaction the other tests share; then starts
its calls at the same moment behind a barrier (`run_together`, `at_once`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from portal import create_app
from portal.extensions import db


@contextmanager
def schema_app(
    app: Flask,
    schema: str,
    config: Mapping[str, Any] | None = None,
    *,
    pool_size: int = 10,
    max_overflow: int = 5,
) -> Iterator[Flask]:
    """A portal on the test database's PostgreSQL in schema `schema` (dropped before and
    after), migrated to head, with `config` on top of the testing settings. Skips the
    test on another database: real concurrency and row locks are PostgreSQL's."""
    with app.app_context():
        url = db.engine.url
    if url.get_backend_name() != "postgresql":
        pytest.skip("real concurrency and row locks are tested on PostgreSQL")
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    race = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url.update_query_dict(
                {"options": f"-csearch_path={schema}"}
            ).render_as_string(hide_password=False),
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": pool_size, "max_overflow": max_overflow},
            "PORTAL_BASE_URL": "https://portal.example.test",
            **(config or {}),
        },
        env_name="testing",
    )
    with race.app_context():
        upgrade()
    try:
        yield race
    finally:
        with race.app_context():
            db.session.remove()
            db.engine.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def run_together(
    calls: list[Callable[[], Any]], *, timeout: float = 60
) -> tuple[list[Any], list[BaseException]]:
    """Each call in a thread of its own, released together by a barrier; waits up to
    `timeout` seconds for each. (results in the calls' order, exceptions raised)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as error:  # the caller asserts on them
            errors.append(error)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results, errors


def at_once(app: Flask, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread, request context and session, released together;
    each commits what it did, or rolls back and returns the exception it raised (the
    outcome under test)."""

    def in_context(call: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with app.test_request_context():
                try:
                    result = call()
                    db.session.commit()
                    return result
                except Exception as error:
                    db.session.rollback()
                    return error
                finally:
                    db.session.remove()

        return run

    results, errors = run_together([in_context(call) for call in calls])
    assert errors == []
    return results
