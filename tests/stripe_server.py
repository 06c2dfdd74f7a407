"""localstripe, the fake Stripe, as a pytest plugin: a real HTTP server on loopback.

The portal talks to it through its real gateway and the real `stripe` library; tests
play the browser's part (Stripe.js) with plain HTTP calls to it. It runs in a process
of its own (`python -m portal.payments.devserver`): localstripe is GPL and is never
imported by the portal or by the tests.

A test module that needs it says `pytest_plugins = ["tests.stripe_server"]` and takes
its helpers from `tests.stripe_journeys` (never from this module, which pytest must
import first to rewrite its asserts).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from flask import Flask

from portal.payments.inbox import RELEVANT_EVENTS as WEBHOOK_EVENTS
from tests.stripe_journeys import CARD_OK, PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET


@dataclass
class LocalStripe:
    url: str
    process: subprocess.Popen[str]

    @property
    def js_url(self) -> str:
        return f"{self.url}/js.stripe.com/v3/"

    def config(self) -> dict[str, Any]:
        return {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": self.url,
            "STRIPE_JS_URL": self.js_url,
            "STRIPE_TIMEOUT_SECONDS": 10,
        }

    def reset(self) -> None:
        requests.delete(f"{self.url}/_config/data", timeout=5).raise_for_status()

    def register_webhook(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        """Send the PaymentIntent events the portal subscribes to to `url`, signed."""
        requests.post(
            f"{self.url}/_config/webhooks/portal",
            json={"url": url, "secret": secret, "events": list(WEBHOOK_EVENTS)},
            timeout=5,
        ).raise_for_status()

    # --- what Stripe.js does in the browser ---------------------------------------------
    def confirm_setup(self, client_secret: str, number: str = CARD_OK) -> requests.Response:
        """Confirm a SetupIntent with a card, as `stripe.confirmCardSetup` does."""
        setup_id = client_secret.split("_secret_")[0]
        return requests.post(
            f"{self.url}/v1/setup_intents/{setup_id}/confirm",
            json={
                "key": PUBLISHABLE_KEY,
                "client_secret": client_secret,
                "payment_method_data": {
                    "type": "card",
                    "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
                },
            },
            timeout=5,
        )

    def set_up_card(self, client_secret: str, number: str = CARD_OK) -> str:
        """A confirmed SetupIntent's id (what our card form posts back)."""
        response = self.confirm_setup(client_secret, number)
        body = response.json()
        if body.get("status") == "requires_action":  # 3-D Secure at setup: complete it
            setup_id = client_secret.split("_secret_")[0]
            body = requests.post(
                f"{self.url}/v1/setup_intents/{setup_id}/confirm",
                json={"key": PUBLISHABLE_KEY, "client_secret": client_secret},
                timeout=5,
            ).json()
        assert body.get("status") == "succeeded", body
        return str(body["id"])

    def authenticate(self, payment_intent_id: str, *, success: bool = True) -> dict[str, Any]:
        """Complete (or fail) 3-D Secure, as `stripe.confirmCardPayment` does."""
        intent = self.get(f"/v1/payment_intents/{payment_intent_id}")
        response = requests.post(
            f"{self.url}/v1/payment_intents/{payment_intent_id}/_authenticate"
            f"?success={'true' if success else 'false'}",
            json={"key": PUBLISHABLE_KEY, "client_secret": intent["client_secret"]},
            timeout=5,
        )
        return dict(response.json())

    # --- what the Stripe dashboard would show, and do ---------------------------------
    def get(self, path: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}{path}", auth=(SECRET_KEY, ""), timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def post(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.url}{path}", data=data, auth=(SECRET_KEY, ""), timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def payment_intents(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/payment_intents?limit=100")["data"])

    def charged(self) -> list[dict[str, Any]]:
        """PaymentIntents that took money."""
        return [pi for pi in self.payment_intents() if pi["status"] == "succeeded"]


def _start() -> LocalStripe:
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.payments.devserver", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"localstripe did not start: {line}{process.stdout.read()}")
    url = line.rsplit(" ", 1)[1].strip()
    for _attempt in range(50):
        try:
            requests.get(f"{url}/js.stripe.com/v3/", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    return LocalStripe(url=url, process=process)


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    server = _start()
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
        if server.process.stdout is not None:
            server.process.stdout.close()


@pytest.fixture
def stripe_app(app: Flask, localstripe: LocalStripe) -> Iterator[Flask]:
    """The session's app, configured for localstripe for one test, which starts empty."""
    localstripe.reset()
    saved = {key: app.config.get(key) for key in localstripe.config()}
    app.config.update(localstripe.config())
    try:
        yield app
    finally:
        app.config.update(saved)


@pytest.fixture
def request_context(app: Flask, db_session: object) -> Iterator[None]:
    """Services run inside a request (a view or the webhook); so do their direct tests."""
    with app.test_request_context():
        yield


# --- a failing Stripe: answers 500 to everything -----------------------------------------
class _Failing(BaseHTTPRequestHandler):
    def _fail(self) -> None:
        body = b'{"error": {"type": "api_error", "message": "boom"}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _fail  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_stripe() -> Iterator[str]:
    """The URL of a server that answers every request with a 500, like a Stripe outage."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def unreachable_stripe() -> str:
    """A loopback URL where nothing listens: Stripe unreachable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
