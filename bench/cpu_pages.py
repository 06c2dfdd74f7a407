"""CPU time per request of the customer's pages, in one process, without a load generator.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_x \
        .venv/bin/python bench/cpu_pages.py [--requests 300] [--batches 5] \
        [--profile account] [--pyinstrument]

On the data set of bench_pages.py (dataset.py), builds the portal with production
settings (as bench_pages.py serves it: behind one trusted proxy, https), signs the sample
customer in through a real link, then calls the WSGI application directly (as gunicorn's
worker does: an environ, start_response, the body read to its end) for each page and
for a bare Flask route, and prints the CPU time (`time.process_time`, so other processes
on a loaded machine do not count) per request: the best and the median of `--batches`
batches of `--requests` requests each. That figure is steady on a shared machine where
wrk's throughput swings by 2x; the ratio bare/page approximates the throughput ratio
bench_pages.py measures (both CPU-bound on the same cores).

`--profile PAGE` runs cProfile over the batches of that page and prints the top
functions by cumulative and by own time; `--pyinstrument` prints pyinstrument's tree
instead (when it is installed).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
HOST = "portal.example.test"


def _environment(database_url: str) -> None:
    """bench_pages.py's settings for the portal. They are read from the environment when
    portal.config is first imported, so this runs before anything imports the portal."""
    os.environ.update(
        {
            "PORTAL_ENV": "production",
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_hex(32),
            "PORTAL_BASE_URL": f"https://{HOST}",
            "PROXY_FIX_X_FOR": "1",
            "STRIPE_SECRET_KEY": "sk_test_bench",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
            "STRIPE_WEBHOOK_SECRET": "whsec_bench",
            "STRIPE_API_BASE": "http://127.0.0.1:9",  # step 1 of paying calls no one
            "STRIPE_JS_URL": "http://127.0.0.1:9/js.stripe.com/v3/",
            "LINK_RATE_LIMIT": "1000 per minute",
        }
    )


def wsgi_caller(app: Any, path: str, cookie: str | None) -> Callable[[], tuple[str, bytes]]:
    """A function that runs one GET of `path` through `app` as a WSGI server would."""
    from werkzeug.test import EnvironBuilder

    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": HOST,
        "X-Forwarded-For": "203.0.113.7",
    }
    if cookie:
        headers["Cookie"] = cookie
    builder = EnvironBuilder(path=path, base_url="http://127.0.0.1:8000", headers=headers)
    template = builder.get_environ()
    builder.close()

    def call() -> tuple[str, bytes]:
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(b"")
        status: list[str] = []

        def start_response(code: str, _headers: Any, _exc: Any = None) -> Any:
            status.append(code)
            return lambda _data: None

        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return status[0], body

    return call


def sign_in(app: Any, account: str) -> str:
    """The Cookie header of a browser that opened a fresh link of `account`."""
    from sqlalchemy import select

    from portal.access.services import issue_link
    from portal.customers.models import Customer
    from portal.db import utcnow
    from portal.extensions import db

    with app.app_context():
        customer = db.session.scalar(select(Customer).where(Customer.account_number == account))
        token = issue_link(customer, now=utcnow(), ttl=timedelta(days=1), actor="bench").token
        db.session.commit()
    client = app.test_client()
    base = f"https://{HOST}"
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": HOST, "X-Forwarded-For": "1.2.3.4"}
    landing = client.get(f"/l/{token}", base_url=base, headers=headers)
    csrf = CSRF.search(landing.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    entered = client.post(
        f"/l/{token}",
        base_url=base,
        data={"csrf_token": csrf},
        headers={**headers, "Referer": f"{base}/l/{token}"},
    )
    assert entered.status_code == 302, entered.status_code
    # The first page after signing in sets the cookie that keeps the CSRF secret; a
    # browser sends it back with every later request, so the benchmark does too.
    client.get("/account", base_url=base, headers=headers)
    cookies = {c.key: c.value for c in client._cookies.values()}
    assert "portal_customer" in cookies
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def measure(call: Callable[[], tuple[str, bytes]], requests: int, batches: int) -> list[float]:
    """Milliseconds of CPU per request, one figure per batch (after 20 warm-up calls)."""
    for _ in range(20):
        status, _body = call()
        assert status.startswith("200"), status
    figures = []
    for _ in range(batches):
        start = time.process_time()
        for _ in range(requests):
            call()
        figures.append((time.process_time() - start) * 1000 / requests)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--pages", default="bare,static,account,invoice,part-paid,pay,statement")
    parser.add_argument("--profile", help="a page to profile (cProfile)")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--all", action="store_true", help="pyinstrument: every frame")
    args = parser.parse_args(argv)
    if not args.database_url:
        print("cpu_pages: set BENCH_DATABASE_URL (PostgreSQL)")
        return 2
    _environment(args.database_url)
    from bare_app import app as bare
    from dataset import ensure_dataset

    from portal import create_app

    info = ensure_dataset(args.database_url)
    app = create_app()
    cookie = sign_in(app, info.sample_account)
    paths = {
        "bare": None,
        "static": "/accessibility",
        "account": "/account",
        "invoice": f"/invoices/{info.sample_invoice}",
        "part-paid": f"/invoices/{info.sample_paid_invoice}",
        "pay": "/pay",
        "statement": "/account/statement.pdf",
    }
    wanted = [p.strip() for p in args.pages.split(",") if p.strip()]
    if args.profile:
        wanted = [args.profile]
    print(f"{'page':<11}{'best ms':>9}{'median ms':>11}{'bytes':>9}  (CPU per request)")
    for name in wanted:
        path = paths[name]
        call = wsgi_caller(bare, "/", None) if path is None else wsgi_caller(app, path, cookie)
        status, body = call()
        assert status.startswith("200"), (name, status, body[:500])
        requests = args.requests if name != "statement" else max(args.requests // 10, 10)
        if args.profile and args.pyinstrument:
            from pyinstrument import Profiler
            from pyinstrument.stack_sampler import get_stack_sampler

            get_stack_sampler().timer_func = time.process_time  # CPU, not waits on the database
            profiler = Profiler(interval=0.001)
            profiler.start()
            figures = measure(call, requests, args.batches)
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=args.all))
        elif args.profile:
            profile = cProfile.Profile(time.process_time)  # CPU, as measured
            profile.enable()
            figures = measure(call, requests, args.batches)
            profile.disable()
            for order in ("cumulative", "tottime"):
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
                print(out.getvalue())
        else:
            figures = measure(call, requests, args.batches)
        print(f"{name:<11}{min(figures):>9.2f}{statistics.median(figures):>11.2f}{len(body):>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
