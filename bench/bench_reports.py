"""Benchmark: the staff reports on 100,000 customers and 1,000,000 invoices (PostgreSQL).

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_x \
        .venv/bin/python bench/bench_reports.py [--customers N] [--invoices N] [--rounds 3]

Generates (or reuses) the data set of `dataset.py`, then times each report's queries as
the report page runs them, `--rounds` times each, and prints the best and the median:

- aging totals as of a date (the `portal report aging` query): target <= 2 s;
- the aging page (totals and the 50 customers owing the most, one statement): <= 2 s;
- DSO and CEI for a month (receivables on two days and the month's credit sales);
- collections per day and payments by channel for a month.

Writes the figures to bench/results/reports.json. Exits 1 when a target is missed.
Without BENCH_DATABASE_URL it says so and exits 0 (the targets are set for PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from dataset import ensure_dataset

from portal import create_app
from portal.config import normalize_database_url
from portal.extensions import db
from portal.reports.queries import (
    Period,
    aging,
    collections_per_day,
    effectiveness,
    payments_by_channel,
)

AGING_TARGET_SECONDS = 2.0
AS_OF_DATES = (date(2026, 11, 1), date(2026, 3, 31), date(2025, 6, 30))
MONTH = Period(date(2026, 9, 1), date(2026, 9, 30))
RESULTS = Path(__file__).resolve().parent / "results" / "reports.json"


def timed(work: Callable[[], object], rounds: int) -> tuple[float, float]:
    """(best, median) wall-clock seconds of `rounds` runs, each in a fresh transaction."""
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
        db.session.rollback()
    return min(seconds), statistics.median(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        print("bench_reports: set BENCH_DATABASE_URL to a PostgreSQL database; skipped")
        return 0
    info = ensure_dataset(url, args.customers, args.invoices)
    how = "reused" if info.reused else f"generated in {info.seconds} s"
    print(
        f"data set ({how}): {info.customers:,} customers, {info.invoices:,} invoices,"
        f" {info.payments:,} payments, {info.credit_notes:,} credit notes"
    )
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(url),
            "PORTAL_BASE_URL": "http://127.0.0.1",
        }
    )
    figures: dict[str, dict[str, float]] = {}
    failed = []
    with app.app_context():
        cases: list[tuple[str, Callable[[], object], float | None]] = []
        for as_of in AS_OF_DATES:
            cases.append(
                (f"aging totals as of {as_of}", lambda d=as_of: aging(d), AGING_TARGET_SECONDS)
            )
        cases += [
            (
                f"aging page as of {AS_OF_DATES[0]} (EUR, top 50 customers)",
                lambda: aging(AS_OF_DATES[0], currency="EUR", customer_limit=50),
                AGING_TARGET_SECONDS,
            ),
            (
                f"aging page as of {AS_OF_DATES[0]} (all currencies, top 50)",
                lambda: aging(AS_OF_DATES[0], customer_limit=50),
                AGING_TARGET_SECONDS,
            ),
            (f"DSO and CEI {MONTH.start}..{MONTH.end}", lambda: effectiveness(MONTH, "EUR"), None),
            (
                f"collections per day and by channel {MONTH.start}..{MONTH.end}",
                lambda: (collections_per_day(MONTH, "EUR"), payments_by_channel(MONTH, "EUR")),
                None,
            ),
        ]
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"load average {load} on {os.cpu_count()} CPUs")
        print(f"{'report':<62} {'best':>8} {'median':>8}  target")
        for name, work, target in cases:
            best, median = timed(work, args.rounds)
            figures[name] = {"best_s": round(best, 3), "median_s": round(median, 3)}
            verdict = ""
            if target is not None:
                verdict = f"<= {target:.1f} s " + ("ok" if median <= target else "MISSED")
                if median > target:
                    failed.append(name)
            print(f"{name:<62} {best:>7.3f}s {median:>7.3f}s  {verdict}")
        totals = aging(AS_OF_DATES[0]).totals
        for row in totals:
            print(
                f"  as of {AS_OF_DATES[0]}, {row.currency}: total {row.total.to_decimal()},"
                " " + ", ".join(f"{k} {v.to_decimal()}" for k, v in row.buckets.items())
            )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "customers": info.customers,
                "invoices": info.invoices,
                "rounds": args.rounds,
                "cpus": os.cpu_count(),
                "figures": figures,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {RESULTS}")
    if failed:
        print("FAIL: " + "; ".join(failed))
        return 1
    print(f"OK: aging as of a date within {AGING_TARGET_SECONDS:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
