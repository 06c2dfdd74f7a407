"""Column types and clocks shared by every model."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Every money column (amounts in minor units) and quantity: 64-bit on every database, so
# that 30,000,000.00 USD (3e9 cents) fits. SQLite's INTEGER already holds 8 bytes and
# must stay INTEGER for its type affinity (and so that migrations need not rebuild the
# tables other tables cascade from).
MinorUnits = BigInteger().with_variant(Integer(), "sqlite")

if TYPE_CHECKING:
    from flask import Flask


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every dialect (SQLite forgets the offset; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite: whether the next transaction on this thread (or task) takes the write lock as
# it begins. A deferred BEGIN that reads and then writes cannot wait for the lock when
# another connection committed in between: SQLite answers SQLITE_BUSY ("database is
# locked") at once, whatever the busy timeout (https://sqlite.org/lang_transaction.html,
# https://sqlite.org/rescode.html#busy_snapshot). BEGIN IMMEDIATE waits its turn instead.
_begin_immediate: ContextVar[bool] = ContextVar("sqlite_begin_immediate", default=False)

# How long a SQLite connection waits for the write lock before failing, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def begin_immediate(flag: bool = True) -> Token[bool]:
    """From now on in this context, SQLite transactions begin IMMEDIATE (see above).

    No effect on PostgreSQL. Reset with `end_immediate(token)`."""
    return _begin_immediate.set(flag)


def writes_immediately() -> bool:
    """Whether SQLite transactions begun now in this context begin IMMEDIATE."""
    return _begin_immediate.get()


def end_immediate(token: Token[bool]) -> None:
    _begin_immediate.reset(token)


@contextmanager
def immediate_transactions() -> Iterator[None]:
    """Transactions begun inside this block take SQLite's write lock as they begin."""
    token = begin_immediate()
    try:
        yield
    finally:
        end_immediate(token)


def ping_when_idle(engine: Any, seconds: float) -> None:
    """Before a pooled connection is handed out, ping it if it sat idle `seconds` or more
    (0: always, as `pool_pre_ping`); a dead one is replaced (the pool retries on
    DisconnectionError), so a connection dropped while idle (a server restart, a
    firewall's idle timeout) costs no request. A connection checked in moments ago is
    used as is: under load, no round trip per request for the ping. One dropped while
    in use fails its request, and SQLAlchemy then replaces every older connection."""
    from sqlalchemy import event
    from sqlalchemy.exc import DisconnectionError

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(str(error)) from error


def configure_engine(
    engine: Any, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, ping_after_idle_s: float = 0
) -> None:
    """Dialect seams, in one place.

    SQLite: enforce foreign keys (off by default there); write-ahead logging, so that
    readers never wait for the writer nor the writer for readers; wait up to
    `busy_timeout_ms` for another writer rather than failing at once; and let SQLAlchemy
    own BEGIN so that SAVEPOINTs work (pysqlite's own transaction handling breaks them;
    see SQLAlchemy's pysqlite docs, "Serializable isolation / Savepoints / Transactional
    DDL"), beginning IMMEDIATE where the caller will write (`immediate_transactions`, and
    every request other than GET/HEAD/OPTIONS: `init_write_intent`).
    """
    from sqlalchemy import event

    if engine.dialect.name != "sqlite":
        ping_when_idle(engine, ping_after_idle_s)
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # In-memory databases answer "memory" and keep their journal: harmless.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()
        # SQLite's own lower() folds ASCII only ("Ü" stays "Ü"); PostgreSQL's folds every
        # letter. Python's str.lower makes the case-insensitive searches (the staff customer
        # search) agree on both.
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _begin_immediate.get() else "BEGIN")


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


_View = TypeVar("_View", bound=Callable[..., Any])


def writes_on_get(view: _View) -> _View:
    """Mark a view whose GET may write (a card page that makes the customer's Stripe
    Customer and SetupIntent, a return page that records the payment Stripe reports, an
    export that audits itself): its transactions begin IMMEDIATE like a POST's, so that
    on SQLite it waits for the write lock instead of failing with "database is locked"
    when another request committed after its first read. Put it right under the route
    decorator: Flask registers the function this returns."""
    view.writes_on_get = True  # type: ignore[attr-defined]
    return view


def init_write_intent(app: Flask) -> None:
    """Requests that may write (POST and the like, and GETs of views marked
    `writes_on_get`) begin their transactions IMMEDIATE."""
    from flask.globals import _cv_app, _cv_request

    # The request and `g` from their context variables: these run on every request.
    @app.before_request
    def _declare_write_intent() -> None:
        request = _cv_request.get().request
        if request.method not in SAFE_METHODS or getattr(
            app.view_functions.get(request.endpoint or ""), "writes_on_get", False
        ):
            _cv_app.get().g._immediate_token = begin_immediate()

    @app.teardown_request
    def _drop_write_intent(_error: BaseException | None) -> None:
        token = _cv_app.get().g.pop("_immediate_token", None)
        if token is not None:
            end_immediate(token)
