"""Benchmark: the customer's pages under load, side by side with a bare Flask route.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_x \
        .venv/bin/python bench/bench_pages.py [--seconds 10] [--rounds 2] [--reset]

On a generated data set (dataset.py: 100,000 customers, 1,000,000 invoices), starts the
portal (production settings behind one trusted proxy, as deployed) and bench/bare_app.py
under the same gunicorn configuration (2 sync workers), signs a customer in through a
real link (the landing page, then Continue with its CSRF token), checks each page answers
200 with what it should show, then drives each with wrk on loopback (16 connections):
the bare route, the account page, an invoice page (open, nothing paid: most invoices),
the page of an invoice half paid (`part-paid`: its payment is listed too), the pay page
(step 1), the statement PDF, and the bare route again; also the accessibility statement,
signed in (`frame`, no target: a page with no content of its own from the database, so
what every signed-in page pays for the session check, CSRF, CSP and the layout). Prints
throughput, p50/p95/p99 and the ratio to the bare route (the mean of the two bare runs of
that round), for each round, with the load average of the machine, and the CPU each
request cost the gunicorn workers, PostgreSQL and wrk (ms, from /proc: when the machine is
CPU-bound, the ratio of two pages' throughputs is the inverse ratio of these sums), and
writes everything to bench/results/pages-<time>.json.
Exits 1 when a target is missed in the last round (the table says which).
"""

# S603/S607: runs our own tools (gunicorn from the venv, wrk, pgrep) with arguments it builds.
# ruff: noqa: S603, S607
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from dataset import DatasetInfo, ensure_dataset
from sqlalchemy import select

from portal import create_app
from portal.access.services import issue_link
from portal.config import normalize_database_url
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CONNECTIONS = 16
WORKERS = 2
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
# Behind one trusted proxy that terminates TLS, as in production.
PROXY_HEADERS = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "portal.example.test",
    "X-Forwarded-For": "203.0.113.7",
}
# name, path (filled in later), minimum share of the bare route's throughput, max p95 ms
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "account": (0.25, 30.0),
    "invoice": (0.25, 30.0),
    "part-paid": (0.25, 30.0),  # an invoice page too
    "pay": (0.20, None),
    "statement": (None, 150.0),
}
MAX_WORKER_RSS_MB = 150.0
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "socket_errors": %d, "non2xx3xx": %d,'
    .. ' "p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_average() -> float:
    return os.getloadavg()[0]


def portal_environment(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PORTAL_ENV": "production",
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_hex(32),
            "PORTAL_BASE_URL": "https://portal.example.test",
            "PROXY_FIX_X_FOR": "1",
            "STRIPE_SECRET_KEY": "sk_test_bench",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
            "STRIPE_WEBHOOK_SECRET": "whsec_bench",
            "STRIPE_API_BASE": "http://127.0.0.1:9",  # step 1 of paying calls no one
            "STRIPE_JS_URL": "http://127.0.0.1:9/js.stripe.com/v3/",
            "LINK_RATE_LIMIT": "1000 per minute",
        }
    )
    return env


@contextmanager
def gunicorn(app: str, env: dict[str, str], cwd: Path) -> Iterator[tuple[str, list[int]]]:
    """Serve `app` on a free loopback port with 2 sync workers; yield its URL and worker pids."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--workers",
            str(WORKERS),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            app,
        ],
        cwd=cwd,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # at most 30 s to boot
            try:
                requests.get(url + "/", timeout=5, headers=PROXY_HEADERS)
                break
            except requests.RequestException:
                if process.poll() is not None:
                    message = f"gunicorn {app} exited with status {process.returncode}"
                    raise SystemExit(message) from None
                time.sleep(0.1)
        children = subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False
        )
        yield url, [int(pid) for pid in children.stdout.split()]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes `pids` have used so far (those still running)."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """The local PostgreSQL server's processes (its backends do the pages' queries)."""
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def worker_rss_mb(pids: list[int]) -> list[float]:
    sizes = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        kilobytes = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        sizes.append(round(kilobytes / 1024, 1))
    return sizes


def sign_in(database_url: str, base: str, info: DatasetInfo) -> str:
    """Open a fresh link for the sample customer as a browser would; the Cookie header."""
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url),
            "PORTAL_BASE_URL": "https://portal.example.test",
        },
        "testing",
    )
    with app.app_context():
        customer = db.session.scalar(
            select(Customer).where(Customer.account_number == info.sample_account)
        )
        token = issue_link(customer, now=utcnow(), ttl=timedelta(days=1), actor="bench").token
        db.session.commit()
        db.engine.dispose()
    browser = requests.Session()
    landing = browser.get(f"{base}/l/{token}", headers=PROXY_HEADERS, timeout=10)
    landing.raise_for_status()
    cookies = {c.name: c.value for c in browser.cookies}
    entered = requests.post(
        f"{base}/l/{token}",
        data={"csrf_token": CSRF.search(landing.text).group(1)},  # type: ignore[union-attr]
        # Flask-WTF checks the Referer of https form posts (same origin).
        headers={**PROXY_HEADERS, "Referer": f"https://portal.example.test/l/{token}"},
        cookies=cookies,
        allow_redirects=False,
        timeout=10,
    )
    # The cookies are Secure (production): carried by hand over loopback http.
    cookies.update({c.name: c.value for c in entered.cookies})
    if entered.status_code != 302 or "portal_customer" not in cookies:
        raise SystemExit(f"sign-in failed: {entered.status_code}")
    # The first page after signing in sets the cookie that keeps the CSRF secret; a
    # browser sends it back with every later request, so the load generator does too.
    first = requests.get(f"{base}/account", headers=PROXY_HEADERS, cookies=cookies, timeout=10)
    cookies.update({c.name: c.value for c in first.cookies})
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def check_pages(base: str, cookie: str, pages: dict[str, str], info: DatasetInfo) -> None:
    """Each page answers 200 with what it should show, before anything is timed."""
    expected = {
        "frame": "<main",
        "account": info.sample_invoice,
        "invoice": info.sample_invoice,
        "part-paid": info.sample_paid_invoice,
        "pay": info.sample_invoice,
        "statement": "%PDF",
    }
    for name, path in pages.items():
        response = requests.get(
            base + path,
            headers={**PROXY_HEADERS, "Cookie": cookie},
            allow_redirects=False,
            timeout=30,
        )
        body = response.content.decode("latin-1")
        if response.status_code != 200 or expected[name] not in body:
            raise SystemExit(f"{name} ({path}) answered {response.status_code} without its content")


def wrk(
    url: str, seconds: int, cookie: str | None, script: Path, workers: list[int] | None = None
) -> dict[str, Any]:
    """One wrk run against `url`; with `workers` (the gunicorn worker pids serving it),
    also the CPU per request of those workers, of PostgreSQL and of wrk itself."""
    headers = [f"{k}: {v}" for k, v in PROXY_HEADERS.items()]
    if cookie:
        headers.append(f"Cookie: {cookie}")
    command = [
        "wrk",
        "-t2",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
    ]
    for header in headers:
        command += ["-H", header]
    load = load_average()
    database = postgres_pids()
    before = (cpu_seconds(workers or []), cpu_seconds(database), children_cpu_seconds())
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    after = (cpu_seconds(workers or []), cpu_seconds(database), children_cpu_seconds())
    report = json.loads(output.strip().splitlines()[-1])
    duration = report["duration_us"] / 1e6
    per_request = [
        round((end - start) * 1000 / max(report["requests"], 1), 3)
        for start, end in zip(before, after, strict=True)
    ]
    cpu = dict(zip(("worker", "postgres", "wrk"), per_request, strict=True))
    return {
        "rps": round(report["requests"] / duration, 1),
        "p50_ms": report["p50_us"] / 1000,
        "p95_ms": report["p95_us"] / 1000,
        "p99_ms": report["p99_us"] / 1000,
        "requests": report["requests"],
        "errors": report["socket_errors"] + report["non2xx3xx"],
        "load_before": round(load, 2),
        "load_after": round(load_average(), 2),
        "cpu_ms": {**cpu, "all": round(sum(per_request), 3)} if workers else None,
    }


def children_cpu_seconds() -> float:
    """CPU used so far by this process's children that ended (each wrk run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def verdict(name: str, row: dict[str, Any]) -> str:
    share, p95 = TARGETS.get(name, (None, None))
    missed = []
    if share is not None and row["ratio"] < share:
        missed.append(f"ratio < {share:.0%}")
    if p95 is not None and row["p95_ms"] > p95:
        missed.append(f"p95 > {p95:g} ms")
    if row["errors"]:
        missed.append(f"{row['errors']} errors")
    return "MISSED " + ", ".join(missed) if missed else ("ok" if name in TARGETS else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--seconds", type=int, default=10, help="per page and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reset", action="store_true", help="regenerate the data set")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="drop the database's tables unless they hold the data set (make bench: the"
        " webhook benchmark fills the same database)",
    )
    args = parser.parse_args(argv)
    if not args.database_url:
        print("bench_pages: set BENCH_DATABASE_URL (PostgreSQL); skipped")
        return 0
    info = ensure_dataset(args.database_url, reset=args.reset, replace=args.replace)
    print(
        f"data set: {info.customers:,} customers, {info.invoices:,} invoices, "
        f"{info.invoice_lines:,} lines, {info.payments:,} payments, "
        f"{info.credit_notes:,} credit notes"
        + (" (reused)" if info.reused else f" (generated in {info.seconds} s)")
    )
    pages = {
        "frame": "/accessibility",
        "account": "/account",
        "invoice": f"/invoices/{info.sample_invoice}",
        "part-paid": f"/invoices/{info.sample_paid_invoice}",
        "pay": "/pay",
        "statement": "/account/statement.pdf",
    }
    script = RESULTS / "report.lua"
    RESULTS.mkdir(exist_ok=True)
    script.write_text(WRK_REPORT)
    env = portal_environment(args.database_url)
    rounds: list[list[dict[str, Any]]] = []
    with (
        gunicorn("wsgi:app", env, ROOT) as (portal_url, portal_pids),
        gunicorn("bare_app:app", env, HERE) as (bare_url, bare_pids),
    ):
        cookie = sign_in(args.database_url, portal_url, info)
        check_pages(portal_url, cookie, pages, info)
        for number in range(1, args.rounds + 1):
            runs = [("bare", bare_url + "/", None, bare_pids)]
            runs += [(name, portal_url + path, cookie, portal_pids) for name, path in pages.items()]
            runs += [("bare again", bare_url + "/", None, bare_pids)]
            rows = []
            for name, url, with_cookie, pids in runs:
                wrk(url, 2, with_cookie, script)  # warm up: connections, caches
                rows.append({"page": name, **wrk(url, args.seconds, with_cookie, script, pids)})
            bare = (rows[0]["rps"] + rows[-1]["rps"]) / 2
            for row in rows:
                row["ratio"] = round(row["rps"] / bare, 3)
                row["verdict"] = verdict(row["page"], row)
            rounds.append(rows)
            print(f"\nround {number}: {WORKERS} gunicorn workers, {CONNECTIONS} connections")
            print(
                f"{'page':<11}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
                f"{'ratio':>8}{'load':>7}  {'CPU ms: worker':>14}{'pg':>6}{'wrk':>6}{'all':>6}"
                "  verdict"
            )
            for row in rows:
                cpu = row["cpu_ms"]
                print(
                    f"{row['page']:<11}{row['rps']:>9.0f}{row['p50_ms']:>9.1f}"
                    f"{row['p95_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['ratio']:>8.1%}"
                    f"{row['load_before']:>7.2f}  {cpu['worker']:>14.2f}{cpu['postgres']:>6.2f}"
                    f"{cpu['wrk']:>6.2f}{cpu['all']:>6.2f}  {row['verdict']}"
                )
        rss = worker_rss_mb(portal_pids)
    print(
        f"\nportal worker resident memory after the run: {rss} MB (target <= {MAX_WORKER_RSS_MB:g})"
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "taken_at": stamp,
        "machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
        "dataset": info.__dict__,
        "gunicorn": {"workers": WORKERS, "worker_class": "sync"},
        "wrk": {"connections": CONNECTIONS, "threads": 2, "seconds": args.seconds},
        "rounds": rounds,
        "worker_rss_mb": rss,
    }
    path = RESULTS / f"pages-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written to {path.relative_to(ROOT)}")
    missed = [r["page"] for r in rounds[-1] if r["verdict"].startswith("MISSED")]
    if any(size > MAX_WORKER_RSS_MB for size in rss):
        missed.append("worker memory")
    if missed:
        print("targets missed: " + ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
