"""Headers every response carries, and the cookie settings that go with them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app
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


def init_security(app: Flask) -> None:
    production = app.config["ENV_NAME"] == "production"
    proxies = int(app.config.get("PROXY_FIX_X_FOR", 0) or 0)
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    # One Talisman per app: init_app keeps its options on the instance, so sharing one
    # would let the last app built (say, a production one in a test) set every app's
    # headers. The shared `extensions.talisman` only serves as the per-view decorator,
    # which merely tags the view function.
    Talisman(
        app,
        force_https=app.config["FORCE_HTTPS"],
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
