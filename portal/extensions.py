"""Flask extensions, created unbound here and bound in `create_app`."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any

from flask import Flask
from flask.globals import _cv_app, _cv_request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from portal.security import PortalSerializer, ViewSecurity


class PortalCSRFProtect(CSRFProtect):
    """Flask-WTF's CSRF check, with a Referer it cannot parse refused as a bad referrer.

    On HTTPS Flask-WTF compares the Referer's origin with the Host's, through
    `urlparse(…).port`, which raises ValueError on a port that is not a number
    ("https://portal.example:abc/"): a 500 for any client that sends one. Such a
    request is refused like any other cross-origin one (400, nothing written).
    """

    def protect(self, apply_exemptions: bool = False) -> None:
        # Flask-WTF looks up the view's exemption before the method; a GET is never
        # checked either way, and is most requests.
        if _cv_request.get().request.method not in _cv_app.get().app.config["WTF_CSRF_METHODS"]:
            return
        try:
            super().protect(apply_exemptions)
        except ValueError:
            self._error_response("The referrer does not match the host.")

    def init_app(self, app: Flask) -> None:
        """Flask-WTF's check; the templates' `csrf_token()` is `csrf_token` below (a global
        only: Flask-WTF's context processor, which put it in every context, is dropped)."""
        if app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token") != "csrf_token":
            raise ValueError("WTF_CSRF_FIELD_NAME must be csrf_token")
        processors = app.template_context_processors[None]
        before = list(processors)
        super().init_app(app)
        processors[:] = [p for p in processors if p in before]
        app.jinja_env.globals["csrf_token"] = csrf_token


_CSRF_SALT = "wtf-csrf-token"  # Flask-WTF's, so that its validate_csrf reads our tokens


@lru_cache(maxsize=8)
def _csrf_serializer(secret_key: str | bytes) -> URLSafeTimedSerializer:
    return PortalSerializer(secret_key, salt=_CSRF_SALT)


def csrf_token() -> str:
    """This request's signed CSRF token (Flask-WTF's `generate_csrf`, made at most once
    per request and only when a page asks for it, with the signer built once per key).
    The raw token lives in the session; forms' own fields find the same value in `g`."""
    app_ctx = _cv_app.get()
    request_globals = app_ctx.g
    token: str | None = request_globals.__dict__.get("csrf_token")  # no exception on a miss
    if token is not None:
        return token
    config = app_ctx.app.config
    secret = config.get("WTF_CSRF_SECRET_KEY") or app_ctx.app.secret_key
    if not secret:
        raise RuntimeError("A secret key is required to use CSRF.")
    session = _cv_request.get().session
    raw = session.get("csrf_token")
    if not isinstance(raw, str):
        raw = session["csrf_token"] = secrets.token_hex(20)  # as Flask-WTF: 40 hex digits
    token = _csrf_serializer(secret).dumps(raw)
    request_globals.csrf_token = token
    return token


def _only_if_limited(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Flask-Limiter's `hook`, run only on a request where a limit was looked at."""

    @wraps(hook)
    def run(argument: Any) -> Any:
        request_ctx = _cv_request.get(None)
        if request_ctx is not None and not hasattr(request_ctx, "_limiter_request_context"):
            return argument
        return hook(argument)

    return run


class PortalLimiter(Limiter):
    """Flask-Limiter, without its per-request work on the routes that have no limit.

    The portal sets no default, application or meta limit, and no blueprint-wide one:
    each limit is a decorator on its view (`@limiter.limit`, `shared_limit`), checked by
    that decorator. The before-request check then finds nothing to count on any route,
    so it is skipped while that stays true (checked per request on a few containers),
    unless a decorated limit has been seen on this endpoint's callables (a hint)."""

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if (
            in_middleware
            and callable_name is None
            and self._nothing_app_wide()
            and not self.limit_manager.has_hints(_cv_request.get().request.endpoint or "")
        ):
            return
        super()._check_request_limit(callable_name, in_middleware)

    def init_app(self, app: Flask) -> None:
        """Flask-Limiter's hooks, its after-request and teardown ones skipped on a request
        where no limit was looked at (no limiter context on the request: nothing to put
        in headers, deduct or reset)."""
        after = list(app.after_request_funcs.get(None, []))
        teardown = list(app.teardown_request_funcs.get(None, []))
        super().init_app(app)
        for hooks, before in (
            (app.after_request_funcs.setdefault(None, []), after),
            (app.teardown_request_funcs.setdefault(None, []), teardown),
        ):
            hooks[:] = [hook if hook in before else _only_if_limited(hook) for hook in hooks]

    def _nothing_app_wide(self) -> bool:
        manager = self.limit_manager
        return not (
            manager._application_limits
            or manager._default_limits
            or manager._blueprint_limits
            or self._meta_limits
            or self._request_filters
            or self._storage_dead
        )


class Base(DeclarativeBase):
    # Named constraints so that Alembic migrations are stable on SQLite and PostgreSQL.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = PortalCSRFProtect()
babel = Babel()
limiter = PortalLimiter(key_func=get_remote_address, default_limits=[])
talisman = ViewSecurity()  # @talisman(...): a view's own CSP; the headers are security.py's
