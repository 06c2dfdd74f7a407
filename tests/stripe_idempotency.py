"""Stripe's idempotency keys in front of localstripe, which ignores them.

Real Stripe stores the first answer to a POST that carries an `Idempotency-Key`: the
same request again gets that answer back without being run twice, and the same key with
other parameters gets `400 idempotency_error`
(https://docs.stripe.com/api/idempotent_requests). This loopback proxy gives localstripe
that behaviour, and can lose an answer on its way back (`lose_next_answer`): the request
is run at localstripe, then the connection is closed, as when Stripe took the money and
the network dropped its reply.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

FORWARDED = ("Authorization", "Content-Type", "Stripe-Version", "User-Agent")


@dataclass
class IdempotentStripe:
    url: str
    upstream: str
    answers: dict[str, tuple[bytes, int, bytes]] = field(default_factory=dict)
    lose: set[str] = field(default_factory=set)  # path prefixes whose next answer is lost

    def lose_next_answer(self, path_prefix: str) -> None:
        self.lose.add(path_prefix)


def _handler(proxy: IdempotentStripe) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._forward(b"")

        def do_DELETE(self) -> None:
            self._forward(b"")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.headers.get("Idempotency-Key")
            if key:
                with lock:
                    stored = proxy.answers.get(key)
                if stored is not None:
                    sent, status, answer = stored
                    if sent != body:
                        return self._send(400, _idempotency_error())
                    return self._send(status, answer)
            self._forward(body, key=key)

        def _forward(self, body: bytes, key: str | None = None) -> None:
            headers = {k: v for k, v in self.headers.items() if k in FORWARDED}
            response = requests.request(
                self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=10
            )
            if key:
                with lock:
                    proxy.answers[key] = (body, response.status_code, response.content)
            lost = next((p for p in proxy.lose if self.path.startswith(p)), None)
            if lost is not None and self.command == "POST":
                proxy.lose.discard(lost)
                self.close_connection = True  # the reply never arrives
                return
            self._send(response.status_code, response.content)

        def _send(self, status: int, answer: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


def _idempotency_error() -> bytes:
    return json.dumps(
        {
            "error": {
                "type": "idempotency_error",
                "message": "Keys for idempotent requests can only be used with the same "
                "parameters they were first used with.",
            }
        }
    ).encode()


@pytest.fixture
def idempotent_stripe(localstripe) -> Iterator[IdempotentStripe]:  # type: ignore[no-untyped-def]
    proxy = IdempotentStripe(url="", upstream=localstripe.url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
