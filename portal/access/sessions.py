"""Signed-in sessions, kept on the server and checked on every request.

A session is a `PrincipalSession` row; the browser holds only a random token in a
cookie of its own per kind of principal (customer, staff), and the row holds its
SHA-256. Every request that carries the cookie costs one indexed lookup (the session
joined to its customer and link); ending a session is a write, so a copied cookie stops
working at once after sign-out, the idle limit, the absolute lifetime, or when the link
that opened it expires or is revoked (OWASP Session Management Cheat Sheet: "Session
Expiration", "Manual Session Expiration"). Flask's signed cookie keeps only the CSRF
token and the chosen language.

Each kind has its own rules (`rules_for`): cookie name and path, idle limit, absolute
lifetime. A customer cookie is never read as a staff one, nor the reverse:
`customer_required` / `current_customer()` here, and the staff side builds
`staff_required(role)` on `principal_required` and `load_session`.
"""

from __future__ import annotations

import secrets
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    request,
    session,
    url_for,
)
from flask.globals import _cv_app, _cv_request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import ColumnElement, bindparam, delete, or_, select, update

from portal.access.models import AccessLink, PrincipalKind, PrincipalSession, SessionEnd
from portal.access.services import hash_token
from portal.customers.models import Customer, CustomerSnapshot
from portal.db import immediate_transactions, utcnow
from portal.extensions import db

SESSION_TOKEN_BYTES = 32  # 256 bits, as for links
# `last_seen_at` is written at most this often, so that browsing costs no write per page;
# the idle limit is therefore exact to within this much.
TOUCH_EVERY = timedelta(seconds=60)

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


@dataclass(frozen=True)
class SessionRules:
    """How one kind of principal's sessions live: each kind has its own cookie."""

    kind: PrincipalKind
    cookie_name: str
    cookie_path: str
    idle: timedelta
    lifetime: timedelta  # absolute, from sign-in; a customer's is also capped by its link


def rules_for(kind: PrincipalKind) -> SessionRules:
    config = current_app.config
    if kind == PrincipalKind.CUSTOMER:
        return SessionRules(
            kind,
            "portal_customer",
            "/",
            timedelta(minutes=config["SESSION_IDLE_MINUTES"]),
            timedelta(hours=config["CUSTOMER_SESSION_MAX_HOURS"]),
        )
    return SessionRules(
        kind,
        "portal_staff",
        "/staff",
        timedelta(minutes=config["STAFF_SESSION_IDLE_MINUTES"]),
        timedelta(hours=config["STAFF_SESSION_MAX_HOURS"]),
    )


class LoadedSession:
    """What this request's cookie of one kind opened (if anything), and why not.

    `row` is the session (for a customer, a row of `_CUSTOMER_LOOKUP`'s columns: `id`,
    `expires_at`, `last_seen_at`…); `principal` the Customer or StaffMember. A customer's
    ORM object is loaded only when asked for (`principal_id` known from the check): a
    page that only needs to know someone is signed in, and in which language, builds
    none."""

    __slots__ = ("_principal", "_snapshot", "ended_now", "locale", "principal_id", "row")

    def __init__(
        self,
        row: Any = None,
        principal: Any = None,
        ended_now: SessionEnd | None = None,
        *,
        principal_id: int | None = None,
        locale: str | None = None,
    ) -> None:
        self.row = row
        self._principal = principal
        self._snapshot: CustomerSnapshot | None = None
        self.ended_now = ended_now  # ended by this very request (idle, expired…)
        self.principal_id = principal_id if principal is None else principal.id
        self.locale = locale if principal is None else getattr(principal, "locale", None)

    @property
    def signed_in(self) -> bool:
        return self.principal_id is not None

    @property
    def principal(self) -> Any:
        if self._principal is None and self.principal_id is not None:
            self._principal = db.session.get(Customer, self.principal_id)
        return self._principal

    @property
    def snapshot(self) -> CustomerSnapshot | None:
        """A customer's columns, read with the session (`_CUSTOMER_LOOKUP`), or from
        the Customer when this request loaded or made it; None when not signed in."""
        if self.principal_id is None:
            return None
        if self._principal is not None:  # it may have changed in this request
            return CustomerSnapshot.of(self._principal, self.principal_id)
        if self._snapshot is None:
            self._snapshot = CustomerSnapshot.of(self.row, self.principal_id)
        return self._snapshot


def new_session_token() -> str:
    return secrets.token_urlsafe(SESSION_TOKEN_BYTES)


# --- the cookie -----------------------------------------------------------------------
def _queue_cookie(kind: PrincipalKind, token: str | None, expires: datetime | None) -> None:
    """Set (or, with None, delete) this kind's cookie on the response."""
    cookies: dict[PrincipalKind, tuple[str | None, datetime | None]] = g.setdefault(
        "_session_cookies", {}
    )
    cookies[kind] = (token, expires)


def _write_cookies(response: Any) -> Any:
    request_globals = _cv_app.get().g
    if request_globals.__dict__.get("_customer_session") is not None:
        # The response depended on the session cookie (as on Flask's own cookie).
        session_ = _cv_request.get().session
        if not getattr(session_, "accessed", True):
            response.vary.add("Cookie")
    queued = request_globals.__dict__.get("_session_cookies")
    if not queued:
        return response
    secure = bool(current_app.config["SESSION_COOKIE_SECURE"])
    for kind, (token, expires) in queued.items():
        rules = rules_for(kind)
        if token is None:
            response.delete_cookie(
                rules.cookie_name, path=rules.cookie_path, secure=secure, httponly=True
            )
        else:
            response.set_cookie(
                rules.cookie_name,
                token,
                expires=expires,
                path=rules.cookie_path,
                secure=secure,
                httponly=True,
                samesite="Lax",
            )
    return response


# --- writes ---------------------------------------------------------------------------
def _commit_write(statement: Any) -> None:
    """Run one UPDATE in a transaction of its own, taking SQLite's write lock as it
    begins (the lookup before it only read): called at the start of a request."""
    db.session.commit()
    with immediate_transactions():
        db.session.execute(statement, execution_options={"synchronize_session": False})
        db.session.commit()


def end_sessions(*where: ColumnElement[bool], now: datetime, reason: SessionEnd) -> Any:
    """The UPDATE that ends every open session matching `where` (run it, or `_commit_write`)."""
    return (
        update(PrincipalSession)
        .where(PrincipalSession.ended_at.is_(None), *where)
        .values(ended_at=now, ended_reason=reason.value)
    )


def end_sessions_of_link(link_id: int, *, now: datetime, reason: SessionEnd) -> None:
    """End the sessions opened from this link (it was revoked). Flushes, never commits."""
    db.session.execute(
        end_sessions(PrincipalSession.link_id == link_id, now=now, reason=reason),
        execution_options={"synchronize_session": False},
    )


def end_sessions_of_customer(customer_id: int, *, now: datetime, reason: SessionEnd) -> None:
    """End every session of this customer (all their links revoked). Never commits."""
    db.session.execute(
        end_sessions(PrincipalSession.customer_id == customer_id, now=now, reason=reason),
        execution_options={"synchronize_session": False},
    )


def purge_old_sessions(*, now: datetime, keep: timedelta) -> int:
    """Delete the session rows that ended, or whose absolute lifetime ran out, more than
    `keep` before `now` (aware UTC); the number deleted. Never commits.

    Only the row of a live session can open anything, and a row past its `expires_at`
    opens nothing (`load_session`), so removing old rows changes no outcome; sign-ins stay
    in the audit log (`link.opened`, `staff.signed_in`). Without this the table grows by a
    row per visit.
    """
    cutoff = now - keep
    result = db.session.execute(
        delete(PrincipalSession).where(
            or_(PrincipalSession.ended_at < cutoff, PrincipalSession.expires_at < cutoff)
        ),
        execution_options={"synchronize_session": False},
    )
    return int(result.rowcount or 0)


# --- starting and ending --------------------------------------------------------------
def start_session(
    kind: PrincipalKind,
    *,
    now: datetime,
    not_after: datetime | None = None,
    customer_id: int | None = None,
    link_id: int | None = None,
    staff_id: int | None = None,
) -> PrincipalSession:
    """A new session of `kind` for this browser; its cookie goes out with the response.

    Lives `rules.lifetime` at most, and never past `not_after` (a link's expiry). A
    session this browser already had is ended (rotation: no fixation). Flushes only."""
    rules = rules_for(kind)
    old_token = request.cookies.get(rules.cookie_name)
    if old_token:
        db.session.execute(
            end_sessions(
                PrincipalSession.token_hash == hash_token(old_token),
                PrincipalSession.principal_kind == kind.value,
                now=now,
                reason=SessionEnd.REPLACED,
            ),
            execution_options={"synchronize_session": False},
        )
    expires_at = now + rules.lifetime
    if not_after is not None:
        expires_at = min(expires_at, not_after)
    token = new_session_token()
    row = PrincipalSession(
        token_hash=hash_token(token),
        principal_kind=kind.value,
        customer_id=customer_id,
        link_id=link_id,
        staff_id=staff_id,
        created_at=now,
        last_seen_at=now,
        expires_at=expires_at,
    )
    db.session.add(row)
    db.session.flush()
    _queue_cookie(kind, token, expires_at)
    return row


def _rotate_flask_session() -> None:
    """A fresh signed cookie (new CSRF token); only the chosen language survives."""
    locale = session.get("locale")
    session.clear()
    if locale:
        session["locale"] = locale


def start_customer_session(link: AccessLink, now: datetime) -> None:
    """Sign the browser in to the link's account, until the link expires at the latest."""
    _rotate_flask_session()
    row = start_session(
        PrincipalKind.CUSTOMER,
        now=now,
        not_after=link.expires_at,
        customer_id=link.customer_id,
        link_id=link.id,
    )
    g._customer_session = LoadedSession(row, link.customer)


def end_current_session(kind: PrincipalKind, *, now: datetime) -> None:
    """Sign this browser out (the row is ended, the cookie deleted). Flushes only."""
    rules = rules_for(kind)
    token = request.cookies.get(rules.cookie_name)
    if token:
        db.session.execute(
            end_sessions(
                PrincipalSession.token_hash == hash_token(token),
                PrincipalSession.principal_kind == kind.value,
                now=now,
                reason=SessionEnd.SIGNED_OUT,
            ),
            execution_options={"synchronize_session": False},
        )
    _queue_cookie(kind, None, None)
    setattr(g, f"_{kind.value}_session", LoadedSession())


def end_customer_session(now: datetime) -> None:
    end_current_session(PrincipalKind.CUSTOMER, now=now)
    _rotate_flask_session()


# --- the check on every request -------------------------------------------------------
def _why_over(row: PrincipalSession, rules: SessionRules, now: datetime) -> SessionEnd | None:
    if now >= row.expires_at:
        return SessionEnd.EXPIRED
    if now - row.last_seen_at > rules.idle:
        return SessionEnd.IDLE
    return None


def _why_link_over(
    revoked_at: datetime | None, expires_at: datetime, now: datetime
) -> SessionEnd | None:
    """The link's own rules (`AccessLink.is_revoked`, `is_expired`), on its two columns."""
    if revoked_at is not None:
        return SessionEnd.LINK_REVOKED
    if now >= expires_at:
        return SessionEnd.LINK_EXPIRED
    return None


_LOOKUPS: dict[tuple[PrincipalKind, Callable[[Any], Any]], Any] = {}


def _lookup_statement(kind: PrincipalKind, lookup: Callable[[Any], Any]) -> Any:
    """The query by token hash (a bound parameter, `token_hash`) that `lookup` extends,
    built once per process: building it costs more than running it."""
    statement = _LOOKUPS.get((kind, lookup))
    if statement is None:
        statement = lookup(
            select(PrincipalSession).where(
                PrincipalSession.token_hash == bindparam("token_hash"),
                PrincipalSession.principal_kind == kind.value,
            )
        )
        _LOOKUPS[(kind, lookup)] = statement
    return statement


def load_session(
    kind: PrincipalKind,
    lookup: Callable[[Any], Any],
    check: Callable[[Any, datetime], SessionEnd | None],
) -> LoadedSession:
    """This request's session of `kind`, checked, touched at most once a minute.

    `lookup(select)` adds the principal (and what else `check` needs) to the one query
    by token hash; `check(row, now)` names a reason the principal's side ends it (a
    revoked link; later a deactivated staff member). An ended or unknown session
    deletes the cookie. Cached for the request in `g`."""
    cache_key = f"_{kind.value}_session"
    cached: LoadedSession | None = g.get(cache_key)
    if cached is not None:
        return cached
    rules = rules_for(kind)
    loaded = LoadedSession()
    token = request.cookies.get(rules.cookie_name)
    if token:
        now = utcnow()
        result = db.session.execute(
            _lookup_statement(kind, lookup), {"token_hash": hash_token(token)}
        ).one_or_none()
        if result is None or result[0].is_ended:
            _queue_cookie(kind, None, None)
        else:
            row = result[0]
            reason = _why_over(row, rules, now) or check(result, now)
            if reason is not None:
                _commit_write(end_sessions(PrincipalSession.id == row.id, now=now, reason=reason))
                _queue_cookie(kind, None, None)
                loaded = LoadedSession(ended_now=reason)
            else:
                principal = result[1] if len(result) > 1 else None
                if now - row.last_seen_at >= TOUCH_EVERY:
                    _commit_write(
                        update(PrincipalSession)
                        .where(PrincipalSession.id == row.id)
                        .values(last_seen_at=now)
                    )
                loaded = LoadedSession(row, principal)
    g.setdefault(cache_key, loaded)
    return cast(LoadedSession, g.get(cache_key))


# The customer's check, in one Core statement built and compiled once per process: the
# session, its customer's id and the columns of `CustomerSnapshot` (what a page shows of
# them), and the two link columns its check reads. Plain columns, no ORM entity: the
# Customer is loaded when a view that writes asks for it.
_SESSIONS = PrincipalSession.__table__
_LINKS = AccessLink.__table__
_CUSTOMERS = Customer.__table__
_CUSTOMER_LOOKUP = (
    select(
        _SESSIONS.c.id,
        _SESSIONS.c.ended_at,
        _SESSIONS.c.expires_at,
        _SESSIONS.c.last_seen_at,
        _SESSIONS.c.customer_id,
        _CUSTOMERS.c.locale,
        _CUSTOMERS.c.account_number,
        _CUSTOMERS.c.name,
        _CUSTOMERS.c.email,
        _CUSTOMERS.c.currency,
        _CUSTOMERS.c.timezone,
        _LINKS.c.revoked_at.label("link_revoked_at"),
        _LINKS.c.expires_at.label("link_expires_at"),
    )
    .select_from(_SESSIONS)
    .join(_CUSTOMERS, _CUSTOMERS.c.id == _SESSIONS.c.customer_id)
    .join(_LINKS, _LINKS.c.id == _SESSIONS.c.link_id)
    .where(
        _SESSIONS.c.token_hash == bindparam("token_hash"),
        _SESSIONS.c.principal_kind == PrincipalKind.CUSTOMER.value,
    )
)


def _runs_alone() -> bool:
    """Whether a read may run on a pooled connection of its own in autocommit: the
    request's ORM session has not begun a transaction (nor been made), and is not bound
    to one connection (the tests' rolled-back transaction)."""
    scoped = db.session
    if scoped.registry.has():  # this request already made its ORM session
        session = scoped()
        return session.bind is None and not session.in_transaction()
    # none yet (made only when a view needs it): is it bound to one connection?
    return scoped.session_factory.kw.get("bind") is None


def _run_lookup(statement: Any, parameters: dict[str, Any]) -> Any:
    """The one row of the session lookup `statement` (its columns by name), or None.

    On PostgreSQL, before the request's ORM session has begun, it runs alone on a pooled
    connection in autocommit, through the driver with the SQL compiled once: one round
    trip, where inside the session's transaction it took three (BEGIN, SELECT, and
    ROLLBACK when the request ends); the connection goes back to the pool for the view's
    own queries. PostgreSQL's timestamptz comes back aware, as `UTCDateTime` gives it. A
    session already in a transaction, or bound to one connection (the tests' rolled-back
    transaction), runs it there through SQLAlchemy."""
    if _runs_alone():
        engine = db.engine
        if engine.dialect.name == "postgresql":
            return _run_on_driver(engine, statement, parameters)
    return db.session.connection().execute(statement, parameters).one_or_none()


def run_read(statement: Any, parameters: dict[str, Any]) -> list[Any]:
    """All rows of one read-only `statement` (a tuple each, in its column order), run as
    the session lookup runs (`_run_lookup`): on PostgreSQL, when the request's ORM
    session has no transaction, alone on a pooled connection in autocommit (one
    statement is consistent by itself) through the driver, so that a page that only
    reads opens no ORM session; else in the session's transaction, after a flush (what
    the request changed is part of what it reads, as autoflush would have it).

    The driver path applies no SQLAlchemy result types: columns come back as the driver
    gives them (int, str, date; timestamptz aware, in the connection's time zone)."""
    if _runs_alone():
        engine = db.engine
        if engine.dialect.name == "postgresql":
            return cast(list[Any], _run_on_driver(engine, statement, parameters, every=True))
    session = db.session
    session.flush()
    return list(session.connection().execute(statement, parameters))


@dataclass(frozen=True)
class _DriverStatement:
    sql: str
    parameters: dict[str, Any]  # the statement's own bound values (principal_kind)
    row: Callable[[tuple[Any, ...]], Any]  # a driver row as a named tuple


_DRIVER_STATEMENTS: dict[tuple[int, int], _DriverStatement] = {}


def _driver_statement(engine: Any, statement: Any) -> _DriverStatement:
    key = (id(engine.dialect), id(statement))
    known = _DRIVER_STATEMENTS.get(key)
    if known is None:
        compiled = statement.compile(dialect=engine.dialect)
        # Unlabelled columns (a run_read's subqueries) get positional names.
        fields = [str(column.key) for column in statement.selected_columns]
        row_type = namedtuple("LookupRow", fields, rename=True)  # type: ignore[misc]
        known = _DriverStatement(str(compiled), dict(compiled.params), row_type._make)
        _DRIVER_STATEMENTS[key] = known
    return known


def _run_on_driver(
    engine: Any, statement: Any, parameters: dict[str, Any], *, every: bool = False
) -> Any:
    """The one row (named tuple) of `statement`, or None; with `every`, all its rows
    (plain tuples)."""
    prepared = _driver_statement(engine, statement)
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        # One cursor per driver connection, kept in the pool's record of it (SQLAlchemy
        # empties `info` when it replaces the connection): making a psycopg cursor cost
        # a third as much as running the statement.
        cursor = pooled.info.get("portal_cursor")
        if cursor is None:
            cursor = pooled.info["portal_cursor"] = driver.cursor()
        driver.autocommit = True  # client-side only: no round trip
        try:
            cursor.execute(prepared.sql, {**prepared.parameters, **parameters})
            found = cursor.fetchall() if every else cursor.fetchone()
        finally:
            driver.autocommit = False
    except Exception:
        pooled.invalidate()  # a broken connection is not handed out again
        raise
    finally:
        pooled.close()
    if every:
        return found
    return None if found is None else prepared.row(found)


def _load_customer_session(token: str) -> LoadedSession:
    """`load_session` for the customer's cookie `token`, on the request's connection."""
    config = _cv_app.get().app.config
    now = utcnow()
    found = _run_lookup(_CUSTOMER_LOOKUP, {"token_hash": hash_token(token)})
    if found is None or found.ended_at is not None:
        _queue_cookie(PrincipalKind.CUSTOMER, None, None)
        return LoadedSession()
    reason = (
        SessionEnd.EXPIRED
        if now >= found.expires_at
        else SessionEnd.IDLE
        if now - found.last_seen_at > timedelta(minutes=config["SESSION_IDLE_MINUTES"])
        else _why_link_over(found.link_revoked_at, found.link_expires_at, now)
    )
    if reason is not None:
        _commit_write(end_sessions(PrincipalSession.id == found.id, now=now, reason=reason))
        _queue_cookie(PrincipalKind.CUSTOMER, None, None)
        return LoadedSession(ended_now=reason)
    if now - found.last_seen_at >= TOUCH_EVERY:
        _commit_write(
            update(PrincipalSession).where(PrincipalSession.id == found.id).values(last_seen_at=now)
        )
    return LoadedSession(found, principal_id=found.customer_id, locale=found.locale)


def customer_session() -> LoadedSession:
    """This request's customer session (checked once, cached for the request), or an
    empty one: checked, ended if over its idle limit, lifetime or link, touched at most
    once a minute."""
    ctx = _cv_request.get(None)
    if ctx is None:
        return LoadedSession()
    request_globals = _cv_app.get().g
    # `g`'s own dict: `getattr(g, name, None)` raises and catches two exceptions on a miss.
    cached: LoadedSession | None = request_globals.__dict__.get("_customer_session")
    if cached is not None:
        return cached
    token = ctx.request.cookies.get("portal_customer")
    loaded = _load_customer_session(token) if token else LoadedSession()
    request_globals._customer_session = loaded
    return loaded


def is_customer_signed_in() -> bool:
    """Whether this request's customer cookie opens a live session (no Customer built)."""
    return customer_session().signed_in


def signed_in_customer_locale() -> str | None:
    """The stored language of the signed-in customer ("es_MX"), or None."""
    return customer_session().locale


def signed_in_customer() -> Customer | None:
    """The customer this request's customer session belongs to, or None."""
    return cast(Customer | None, customer_session().principal)


def customer_snapshot() -> CustomerSnapshot:
    """The signed-in customer's columns, read-only (no ORM object, no query of its own:
    the session check read them), in a view behind `customer_required` (else a 401).
    For pages that only show them; a view that changes the customer uses
    `current_customer()`."""
    snapshot = customer_session().snapshot
    if snapshot is None:
        abort(401)
    return snapshot


def current_customer() -> Customer:
    """The signed-in customer, in a view behind `customer_required` (else a 401)."""
    customer = signed_in_customer()
    if customer is None:
        abort(401)
    return customer


# --- decorators -----------------------------------------------------------------------
def _refuse_customer(loaded: LoadedSession) -> ResponseReturnValue:
    from portal.errors import render_error

    if loaded.ended_now == SessionEnd.IDLE:
        flash(
            _("Your session ended after a period of inactivity. Please open your link again."),
            "info",
        )
        return redirect(url_for("access.signed_out"))
    return cast(ResponseReturnValue, render_error(401))


def principal_required(
    load: Callable[[], LoadedSession], refuse: Callable[[LoadedSession], ResponseReturnValue]
) -> Callable[[View], View]:
    """A view decorator: `load()` must give a live session, else `refuse(loaded)` answers.

    The building block of `customer_required` and of the staff side's `staff_required`."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            loaded = load()
            if not loaded.signed_in:
                return refuse(loaded)
            return view(*args, **kwargs)

        return cast(View, guarded)

    return decorate


customer_required = principal_required(customer_session, _refuse_customer)
customer_required.__doc__ = "Only a signed-in customer may open this view; others get a 401."


# --- wiring ---------------------------------------------------------------------------
def init_sessions(app: Flask) -> None:
    @app.before_request
    def check_customer_session() -> None:
        # At the start of the request, before the view has changed anything: ending or
        # touching a session commits.
        ctx = _cv_request.get()
        if ctx.request.url_rule is not None and ctx.request.url_rule.endpoint == "static":
            return
        if "portal_customer" in ctx.request.cookies:
            customer_session()

    app.after_request(_write_cookies)

    @app.context_processor
    def inject_customer() -> dict[str, Any]:
        # Emails are rendered by the jobs runner, outside any request.
        return {"signed_in": is_customer_signed_in()}
