"""Headers every response carries, and the cookie settings that go with them."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from portal.extensions import talisman

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


def init_security(app: Flask) -> None:
    production = app.config["ENV_NAME"] == "production"
    proxies = int(app.config.get("PROXY_FIX_X_FOR", 0) or 0)
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    talisman.init_app(
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
