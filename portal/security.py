"""Headers every response carries, and the cookie settings that go with them."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, redirect, request
from flask.globals import _cv_request
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import Serializer, Signer, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, want_bytes
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


# --- the headers of every response ----------------------------------------------------
NONCE_BYTES = 24  # 32 URL-safe characters, as Flask-Talisman made them

# Options a view may set with `@talisman(...)` (Flask-Talisman's per-view decorator API).
VIEW_OPTIONS = frozenset(
    {"content_security_policy", "content_security_policy_nonce_in", "frame_options"}
)

Policy = Mapping[str, str | list[str]]
ViewFunction = TypeVar("ViewFunction", bound=Callable[..., Any])


class ViewSecurity:
    """`@talisman(content_security_policy=…, content_security_policy_nonce_in=[…],
    frame_options=…)`: a view's own headers, replacing the app's defaults (Flask-Talisman's
    per-view decorator, whose API the views keep). Only tags the view function; the
    app's `SecurityHeaders` reads the tag."""

    def __call__(self, **options: Any) -> Callable[[ViewFunction], ViewFunction]:
        unknown = set(options) - VIEW_OPTIONS
        if unknown:
            raise TypeError(f"unsupported per-view security options: {sorted(unknown)}")

        def decorate(view: ViewFunction) -> ViewFunction:
            view.talisman_view_options = dict(options)  # type: ignore[attr-defined]
            return view

        return decorate


def csp_nonce() -> str:
    """This request's CSP nonce (32 URL-safe characters), made on first use; the
    templates' `csp_nonce()`. The same value goes into the Content-Security-Policy
    header of the response. Empty outside a request."""
    ctx = _cv_request.get(None)
    if ctx is None:
        return ""
    req = ctx.request
    try:
        return req.csp_nonce  # type: ignore[attr-defined,no-any-return]
    except AttributeError:
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        req.csp_nonce = nonce  # type: ignore[attr-defined]
        return nonce


def compile_policy(policy: Policy | str, nonce_in: Iterable[str]) -> tuple[str, ...]:
    """A CSP as the pieces of its header around the nonce: `nonce.join(pieces)` is the
    header ("default-src 'self'; script-src 'self' 'nonce-…'; …"). One piece: no nonce.
    Same text as Flask-Talisman wrote (sections in order, lists joined by spaces)."""
    if isinstance(policy, str):
        sections: list[tuple[str, str]] = []
        for part in policy.split(";"):
            words = part.strip().split(" ")
            sections.append((words[0], " ".join(words[1:])))
    else:
        sections = [
            (name, value if isinstance(value, str) else " ".join(value))
            for name, value in policy.items()
        ]
    nonced = set(nonce_in)
    pieces: list[str] = []
    text = ""
    for index, (name, value) in enumerate(sections):
        text += ("; " if index else "") + f"{name} {value}"
        if name in nonced:
            pieces.append(text + " 'nonce-")
            text = "'"
    pieces.append(text)
    return tuple(pieces)


# Personal or financial data: pages, statements and receipts, staff CSV exports.
_UNCACHED = ("text/html", "application/pdf", "text/csv")


@dataclass(frozen=True)
class _Headers:
    """A view's headers: the fixed ones, and its CSP's pieces around the nonce."""

    fixed: tuple[tuple[str, str], ...]
    csp: tuple[str, ...] | None


class SecurityHeaders:
    """The headers every response carries (permissions, framing, sniffing, CSP with a
    per-response nonce, HSTS in production over https, referrer), as Flask-Talisman set
    them, worked out once per app and view instead of parsing the policy per response."""

    def __init__(
        self,
        *,
        csp: Policy,
        nonce_in: list[str],
        frame_options: str,
        referrer_policy: str,
        hsts_max_age: int | None,
    ) -> None:
        self.csp = csp
        self.nonce_in = nonce_in
        self.frame_options = frame_options
        self.referrer_policy = referrer_policy
        self.hsts = f"max-age={hsts_max_age}; includeSubDomains" if hsts_max_age else None
        self._default = self._headers({})
        self._per_view: dict[Callable[..., Any], _Headers | None] = {}

    def _headers(self, options: Mapping[str, Any]) -> _Headers:
        policy = options.get("content_security_policy", self.csp)
        nonce_in = options.get("content_security_policy_nonce_in", self.nonce_in)
        frame_options = options.get("frame_options", self.frame_options)
        fixed = [("Permissions-Policy", "browsing-topics=()")]
        if frame_options:
            fixed.append(("X-Frame-Options", frame_options))
        fixed.append(("X-Content-Type-Options", "nosniff"))
        csp = compile_policy(policy, nonce_in) if policy else None
        # Checked here, once, as Werkzeug checks each value it is given (`apply` appends
        # these without Werkzeug).
        for value in (*(value for _name, value in fixed), *(csp or ())):
            if "\n" in value or "\r" in value:
                raise ValueError("Header values must not contain newline characters.")
        return _Headers(tuple(fixed), csp)

    def for_view(self, view: Callable[..., Any] | None) -> _Headers:
        """The headers of a response from `view` (None: no view, such as a 404)."""
        if view is None:
            return self._default
        try:
            known = self._per_view[view]
        except KeyError:
            options = getattr(view, "talisman_view_options", None)
            if options is None:
                known = self._default
            elif isinstance(options.get("content_security_policy"), PolicyFromConfig):
                known = None  # follows the app's config: worked out per response
            else:
                known = self._headers(options)
            self._per_view[view] = known
        if known is None:
            return self._headers(view.talisman_view_options)  # type: ignore[attr-defined]
        return known

    def apply(self, response: Response) -> Response:
        """Set this request's headers on `response` (an after_request hook)."""
        ctx = _cv_request.get()
        req = ctx.request
        endpoint = req.url_rule.endpoint if req.url_rule is not None else None
        view = ctx.app.view_functions.get(endpoint) if endpoint else None
        chosen = self.for_view(view)
        ours = list(chosen.fixed)
        if chosen.csp is not None:
            csp = chosen.csp
            ours.append(
                ("Content-Security-Policy", csp[0] if len(csp) == 1 else csp_nonce().join(csp))
            )
        if self.hsts is not None and (
            req.is_secure or req.headers.get("X-Forwarded-Proto", "http") == "https"
        ):
            ours.append(("Strict-Transport-Security", self.hsts))
        ours.append(("Referrer-Policy", self.referrer_policy))
        headers = response.headers
        present = {name.lower() for name, _value in headers._list}
        # Account pages hold personal financial data: never keep them in a shared cache.
        if "cache-control" not in present and response.mimetype in _UNCACHED:
            ours.append(("Cache-Control", "no-store"))
        for name, value in ours:
            if name.lower() in present:  # the view set it: ours replaces it
                headers[name] = value
            else:
                # Werkzeug's Headers keeps its (name, value) pairs in `_list` (Werkzeug
                # 3.1, pinned); appending there skips re-checking our own values for a
                # newline on every response (a regular expression over the whole CSP).
                headers._list.append((name, value))
        return response


class KeyCachingSigner(TimestampSigner):
    """itsdangerous' timestamp signer, with each derived key computed once per process
    (it derives the key anew, one more HMAC, for every token it signs or checks), and
    SHA-1 as `hashlib.sha1`: itsdangerous' default is `_lazy_sha1`, a Python function,
    which makes `hmac` take its pure-Python path; OpenSSL's constructor gets the C HMAC.
    The signatures are the same."""

    default_digest_method = staticmethod(hashlib.sha1)
    _derived: ClassVar[dict[tuple[Any, ...], bytes]] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        secret = self.secret_keys[-1] if secret_key is None else want_bytes(secret_key)
        key = (secret, self.salt, self.key_derivation, self.digest_method)
        derived = self._derived.get(key)
        if derived is None:
            derived = super().derive_key(secret_key)
            if len(self._derived) >= 64:
                self._derived.clear()
            self._derived[key] = derived
        return derived


SMALL_PAYLOAD = 100  # bytes of JSON below which zlib never pays (header + checksum)


class PortalSerializer(URLSafeTimedSerializer):
    """itsdangerous' URL-safe timed serializer (same tokens, readable by it), signing with
    `KeyCachingSigner`, each signer built once per salt (itsdangerous builds one for
    every token it signs or checks; a signer keeps no state between tokens), and not
    trying zlib on a payload too small to shrink: the session cookie and the CSRF token
    are a few dozen bytes."""

    default_signer = KeyCachingSigner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signers: dict[str | bytes | None, Signer] = {}

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer

    def dump_payload(self, obj: Any) -> bytes:
        json = Serializer.dump_payload(self, obj)
        if len(json) < SMALL_PAYLOAD:
            return base64_encode(json)
        return super().dump_payload(obj)


class PortalSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session (same cookie, same signature), with its signer built
    once per key set instead of on every request that reads or writes the cookie, and
    SHA-1 as `hashlib.sha1` (C HMAC, see `KeyCachingSigner`)."""

    digest_method = staticmethod(hashlib.sha1)

    def __init__(self) -> None:
        self._serializers: dict[tuple[Any, ...], URLSafeTimedSerializer] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        key = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(key)
        if serializer is None:
            # As Flask builds it (current key last), with the caching signer.
            serializer = PortalSerializer(
                [*key[1:], key[0]],
                salt=self.salt,
                serializer=self.serializer,
                signer_kwargs={
                    "key_derivation": self.key_derivation,
                    "digest_method": self.digest_method,
                },
            )
            self._serializers = {key: serializer}  # one key set at a time
        return serializer

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        """Flask's; when there is no cookie to write (most requests) only its `Vary`,
        without first working out the cookie's seven settings from the config."""
        if not session.modified and not (
            session and session.permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]
        ):
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


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
    app.session_interface = PortalSessionInterface()
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    # One per app: each app's settings are its own (a production app built in a test
    # does not set the others' headers). `extensions.talisman` only tags views.
    headers = SecurityHeaders(
        csp=BASE_CSP,
        nonce_in=["script-src"],
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
        hsts_max_age=31536000 if production else None,
    )
    app.extensions["security_headers"] = headers
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(headers.apply)
