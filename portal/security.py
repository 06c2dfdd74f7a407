"""Headers every response carries, and the cookie settings that go with them."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, redirect, request
from flask_talisman import Talisman
from werkzeug.middleware.proxy_fix import ProxyFix

# No third-party origin yet: Stripe.js joins this list on the card page only.
BASE_CSP: dict[str, str | list[str]] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": ["'self'", "data:"],
    "font-src": "'self'",
    "connect-src": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "object-src": "'none'",
}


# Stripe's own origins for Stripe.js, its card frames and 3-D Secure, and its API
# (https://docs.stripe.com/security/guide#content-security-policy). Any other
# STRIPE_JS_URL (localstripe in development and tests) serves all of these itself.
STRIPE_JS_ORIGINS = {
    "script-src": ["https://js.stripe.com", "https://*.js.stripe.com"],
    "frame-src": ["https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"],
    "connect-src": ["https://api.stripe.com"],
}


def card_page_csp(config: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """The card page's policy: ours, plus the configured Stripe.js origin only."""
    parts = urlsplit(config["STRIPE_JS_URL"])
    origin = f"{parts.scheme}://{parts.netloc}"
    if origin == "https://js.stripe.com":
        extra = STRIPE_JS_ORIGINS
    else:
        extra = {"script-src": [origin], "frame-src": [origin], "connect-src": [origin]}
    policy = dict(BASE_CSP)
    policy["script-src"] = ["'self'", *extra["script-src"]]
    policy["frame-src"] = list(extra["frame-src"])
    policy["connect-src"] = ["'self'", *extra["connect-src"]]
    return policy


class PolicyFromConfig(Mapping[str, str | list[str]]):
    """A per-view CSP for `@talisman(content_security_policy=…)` built from the app's
    config on each response (flask-talisman reads it through `items()`), so that the
    Stripe origin follows STRIPE_JS_URL rather than the value at import time."""

    def __init__(self, build: Callable[[Mapping[str, Any]], dict[str, str | list[str]]]) -> None:
        self._build = build

    def _policy(self) -> dict[str, str | list[str]]:
        return self._build(current_app.config)

    def __getitem__(self, key: str) -> str | list[str]:
        return self._policy()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._policy())

    def __len__(self) -> int:
        return len(self._policy())


CARD_PAGE_CSP = PolicyFromConfig(card_page_csp)


# A link's token in a URL path (`/l/<token>`, `/email/opt-out/<signed id>`): what
# `init_log_redaction` hides in every log line.
LINK_IN_TEXT = re.compile(r"(/l/|/email/opt-out/)[A-Za-z0-9_.-]{16,}")
REDACTED = r"\1[redacted]"


def redact_links(text: str) -> str:
    if "/l/" in text or "/email/opt-out/" in text:
        return LINK_IN_TEXT.sub(REDACTED, text)
    return text


def _redact(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:
        return
    redacted = redact_links(message)
    if redacted != message:
        record.msg, record.args = redacted, None


def init_log_redaction(app: Flask) -> None:
    """Every log record of the process, whatever its logger (Flask's exception log names
    the path; werkzeug's and gunicorn's access logs the request line; the worker), has
    link tokens redacted as it is created. Installed once per process."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts_links", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _redact(record)
        return record

    make_record.redacts_links = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)


def init_https_redirect(app: Flask) -> None:
    """Plain http goes to the same path on PORTAL_BASE_URL (https in production), never
    to the request's Host header, which whoever sends the request chooses."""
    base = app.config["PORTAL_BASE_URL"].rstrip("/")

    @app.before_request
    def redirect_to_https():  # type: ignore[no-untyped-def]
        if request.is_secure:
            return None
        path = request.full_path if request.query_string else request.path
        code = 301 if request.method in ("GET", "HEAD") else 308
        return redirect(base + path, code=code)


def init_security(app: Flask) -> None:
    production = app.config["ENV_NAME"] == "production"
    proxies = int(app.config.get("PROXY_FIX_X_FOR", 0) or 0)
    if proxies:
        # Trust that many proxies: each appends the address it received the request from
        # to X-Forwarded-For, so the client is the `proxies`-th address from the right;
        # anything further left was written by the client and is ignored.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    init_log_redaction(app)
    if app.config["FORCE_HTTPS"]:
        init_https_redirect(app)
    # One Talisman per app: init_app keeps its options on the instance, so sharing one
    # would let the last app built (say, a production one in a test) set every app's
    # headers. The shared `extensions.talisman` only serves as the per-view decorator,
    # which merely tags the view function.
    Talisman(
        app,
        force_https=False,  # `init_https_redirect` does it, from PORTAL_BASE_URL
        strict_transport_security=production,
        strict_transport_security_max_age=31536000,
        content_security_policy=BASE_CSP,
        content_security_policy_nonce_in=["script-src"],
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=True,
        x_content_type_options=True,
    )

    @app.after_request
    def no_store_for_account_pages(response):  # type: ignore[no-untyped-def]
        # Account pages hold personal financial data: never keep them in a shared cache.
        if response.mimetype in ("text/html", "application/pdf"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
