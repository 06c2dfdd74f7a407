"""Stripe's webhook endpoint: verify the signature on the raw body, store the event once.

The worker applies it (`portal.payments.inbox`).

Stripe is a machine posting JSON: it sends no cookie, reads no page and needs no
language, so the endpoint is a small WSGI application in front of the portal's Flask
app (`mount`), inside the portal's app context (settings, database) but without the
browser-facing request machinery: sessions, CSRF, rate limits, CSP nonces and security
headers, locale selection. That halves the framework's share of a delivery, which is
the portal's busiest request under load (bench/bench_webhooks.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from portal.db import immediate_transactions, utcnow
from portal.extensions import db
from portal.payments.gateway import BadSignature, gateway_from_config, is_enabled
from portal.payments.inbox import receive_event

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

PATH = "/stripe/webhook"
MAX_BODY_BYTES = 1024 * 1024  # Stripe's events are a few kilobytes


def mount(app: Flask) -> None:
    """Serve PATH with `endpoint(app)`; every other path goes to the app as before."""
    portal: WSGIApplication = app.wsgi_app
    stripe = endpoint(app)

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH:
            return stripe(environ, start_response)
        return portal(environ, start_response)

    app.wsgi_app = dispatch  # type: ignore[method-assign]


def endpoint(app: Flask) -> WSGIApplication:
    def receive(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        # Receiving writes (SQLite: take the write lock as the transaction begins).
        with app.app_context(), immediate_transactions():
            try:
                response = _answer(app, request)
            except Exception:  # a bug or the database: Stripe retries a 500 later
                log.exception("webhook delivery failed")
                db.session.rollback()
                response = _json({"error": "internal"}, 500)
            finally:
                db.session.remove()
        return response(environ, start_response)

    return receive


def _answer(app: Flask, request: Request) -> Response:
    if not is_enabled(app.config):
        return _json({"error": "not found"}, 404)
    if request.method != "POST":
        return Response(status=405, headers={"Allow": "POST"})
    request.max_content_length = MAX_BODY_BYTES  # also caps a body sent without a length
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _json({"error": "too large"}, 413)
    gateway = gateway_from_config(app.config)
    try:
        event = gateway.verify_event(body, request.headers.get("Stripe-Signature"))
    except BadSignature:
        log.warning("webhook refused: bad or stale signature")
        return _json({"error": "bad signature"}, 400)  # nothing written
    receipt = receive_event(event, now=utcnow())
    db.session.commit()
    # 200 for duplicates and for events we ignore, or Stripe would keep retrying them.
    return _json({"received": event.id, "status": receipt.value}, 200)


def _json(body: dict[str, str], status: int) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        mimetype="application/json",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )
