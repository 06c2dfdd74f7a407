"""Run localstripe, the fake Stripe, on loopback for development and tests.

    python -m portal.payments.devserver --port 8420 \\
        --webhook-url http://127.0.0.1:5000/stripe/webhook --webhook-secret whsec_dev

localstripe is GPL software and a development dependency only: the portal never imports
it; this launcher runs it in a process of its own. Two differences from its own CLI:
it listens on 127.0.0.1 only (the CLI binds every interface), and it keeps its data in
memory (the CLI pickles the whole store to /tmp after every request, a file that every
instance on the machine would share). `--port 0` picks a free port; the first line
printed says which.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

HOST = "127.0.0.1"


def _list_payment_intents_by_customer(resources: Any) -> None:
    """Stripe's `customer` parameter on GET /v1/payment_intents, which localstripe's list
    refuses ("Unexpected customer"): the list is filtered to that customer's
    PaymentIntents, as Stripe does (https://docs.stripe.com/api/payment_intents/list).
    Autopay looks a lost charge up this way before sending it again."""
    list_all = resources.PaymentIntent._api_list_all.__func__

    def by_customer(cls: Any, url: str, customer: str | None = None, **kwargs: Any) -> Any:
        found = list_all(cls, url, **kwargs)
        if customer is not None:
            found._list = [pi for pi in found._list if pi.customer == customer]
        return found

    resources.PaymentIntent._api_list_all = classmethod(by_customer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m portal.payments.devserver")
    parser.add_argument("--port", type=int, default=8420, help="0 picks a free port")
    parser.add_argument("--webhook-url", help="register this URL for every event")
    parser.add_argument("--webhook-secret", help="signing secret (whsec_…) for --webhook-url")
    args = parser.parse_args(argv)
    if bool(args.webhook_url) != bool(args.webhook_secret):
        parser.error("--webhook-url and --webhook-secret go together")

    from aiohttp import web
    from localstripe import resources

    resources.Store.dump_to_disk = lambda self: None  # no pickle file in /tmp
    _list_payment_intents_by_customer(resources)
    from localstripe.server import app
    from localstripe.webhooks import register_webhook

    if args.webhook_url:
        # The events the portal acts on (inbox.RELEVANT_EVENTS), as one would
        # subscribe the endpoint in Stripe's dashboard.
        events = [
            "payment_intent.succeeded",
            "payment_intent.payment_failed",
            "payment_intent.canceled",
            "payment_intent.requires_action",
            "payment_intent.processing",
            "charge.refunded",
            # localstripe never sends it (a decline at setup cancels its SetupIntent
            # instead); Stripe does, and the portal counts it (payments.card_testing).
            "setup_intent.setup_failed",
        ]
        register_webhook("portal", args.webhook_url, args.webhook_secret, events)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, args.port))
    port = sock.getsockname()[1]
    print(f"localstripe listening on http://{HOST}:{port}", flush=True)
    web.run_app(app, sock=sock, access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    main(sys.argv[1:])
