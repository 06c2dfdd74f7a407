"""The `portal` command: Flask's commands plus import, link and demo."""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path
from typing import NoReturn

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup

from portal.audit.actors import Actor
from portal.extensions import db
from portal.imports.services import KINDS as IMPORT_KINDS
from portal.jobs.registry import JOBS as _JOBS


def _create_app() -> Flask:
    from portal import create_app
    from portal.config import ConfigurationError

    try:
        return create_app()
    except ConfigurationError as error:
        _stop_on(error)


def _stop_on(error: Exception) -> NoReturn:
    """One line, no traceback: the operator has a variable to fix, not a bug to read."""
    click.echo(f"portal: configuration error: {error}", err=True)
    raise SystemExit(2) from None


class PortalGroup(FlaskGroup):
    """Flask's command group, with a database that is not ready said in one line."""

    def invoke(self, ctx: click.Context) -> object:
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            return super().invoke(ctx)
        except (OperationalError, ProgrammingError) as error:
            # A missing table (never migrated) or an unreachable server: the operator has
            # a command to run, not a traceback to read.
            reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            click.echo(
                f"portal: database error: {reason} (is the schema up to date? "
                "run `portal db upgrade`)",
                err=True,
            )
            raise SystemExit(1) from None


@click.group(cls=PortalGroup, create_app=_create_app)
def main() -> None:
    """Manage the collections portal."""


def register_cli(app: Flask) -> None:
    app.cli.add_command(import_group)
    app.cli.add_command(link_command)
    app.cli.add_command(demo_command)
    app.cli.add_command(jobs_group)
    app.cli.add_command(report_group)
    app.cli.add_command(staff_group)


@click.group("import")
def import_group() -> None:
    """Load a creditor's ledger from CSV files (see README for the columns)."""


def _run_import(
    kind: str, path: Path, dry_run: bool, delimiter: str | None, decimal_comma: bool | None
) -> None:
    from flask_babel import gettext as _
    from flask_babel import ngettext
    from sqlalchemy.exc import SQLAlchemyError

    from portal.db import utcnow
    from portal.imports.parsing import COMMA
    from portal.imports.services import ImportFailed, import_file

    try:
        report = import_file(
            kind,
            path,
            dry_run=dry_run,
            now=utcnow(),
            actor=Actor.importer("cli"),
            delimiter=delimiter,
            decimal_comma=decimal_comma,
        )
    except ImportFailed as failure:
        db.session.rollback()
        rows = ngettext("%(num)d bad row", "%(num)d bad rows", failure.bad_rows)
        problems = ngettext("%(num)d problem", "%(num)d problems", len(failure.errors))
        click.echo(
            _(
                "%(path)s: %(rows)s (%(problems)s); nothing was imported.",
                path=str(path),
                rows=rows,
                problems=problems,
            ),
            err=True,
        )
        for error in failure.errors:
            click.echo(f"  line {error.line}: {error.message}", err=True)
        raise SystemExit(1) from None
    except (OSError, SQLAlchemyError) as error:
        # Validation should leave nothing for the database to refuse; if it does, say so
        # in one line rather than a traceback.
        db.session.rollback()
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:300]
        click.echo(
            _("%(path)s: nothing was imported: %(reason)s", path=str(path), reason=reason),
            err=True,
        )
        raise SystemExit(1) from None
    for warning in report.warnings:
        click.echo(f"  line {warning.line}: warning: {warning.message}", err=True)
    if report.dialect and report.dialect != COMMA.describe():
        click.echo(f"{path}: read with {report.dialect}.")
    if dry_run:
        db.session.rollback()
        click.echo(f"{path}: valid ({report.summary()}); dry run, nothing written.")
    else:
        db.session.commit()
        click.echo(f"{path}: imported ({report.summary()}).")


for _kind in IMPORT_KINDS:

    def _make(kind: str) -> click.Command:
        @click.command(kind, help=f"Import {kind.replace('-', ' ')} from a CSV file.")
        @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
        @click.option("--dry-run", is_flag=True, help="Validate only; write nothing.")
        @click.option(
            "--delimiter",
            type=click.Choice([",", ";"]),
            default=None,
            help="The separator between fields (default: read from the header line).",
        )
        @click.option(
            "--decimal-comma/--decimal-point",
            "decimal_comma",
            default=None,
            help="Numbers are written 1.234,50 (default: with a ';' separator).",
        )
        def command(
            path: Path, dry_run: bool, delimiter: str | None, decimal_comma: bool | None
        ) -> None:
            _run_import(kind, path, dry_run, delimiter, decimal_comma)

        return command

    import_group.add_command(_make(_kind))


@click.command("link")
@click.argument("account_number")
@click.option("--invoice", "invoice_number", help="Open this invoice rather than the account.")
@click.option(
    "--ttl-days",
    type=click.IntRange(min=1, max=365),
    default=None,
    help="Days before the link expires (default ACCESS_LINK_TTL_DAYS).",
)
def link_command(account_number: str, invoice_number: str | None, ttl_days: int | None) -> None:
    """Print a new portal link for a customer."""
    from portal.access.services import issue_link
    from portal.customers.queries import get_customer_by_account
    from portal.db import utcnow
    from portal.invoices.queries import get_invoice_for

    customer = get_customer_by_account(account_number)
    if customer is None:
        raise click.ClickException(f"no customer with account number {account_number!r}")
    invoice = None
    if invoice_number:
        invoice = get_invoice_for(customer, invoice_number)
        if invoice is None:
            raise click.ClickException(
                f"customer {account_number} has no invoice {invoice_number!r}"
            )
    days = ttl_days or current_app.config["ACCESS_LINK_TTL_DAYS"]
    issued = issue_link(
        customer, now=utcnow(), ttl=timedelta(days=days), actor=Actor.cli(), invoice=invoice
    )
    db.session.commit()
    click.echo(issued.url(current_app.config["PORTAL_BASE_URL"]))


@click.group("staff")
def staff_group() -> None:
    """Staff accounts (admins manage the rest at /staff/admin/staff)."""


@staff_group.command("create")
@click.argument("email")
@click.option("--name", required=True, help="The member's name as shown to colleagues.")
@click.option(
    "--role", type=click.Choice(["specialist", "admin"]), default="specialist", show_default=True
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of a prompt.",
)
def staff_create(email: str, name: str, role: str, password_stdin: bool) -> None:
    """Create a staff member with a password; they enrol TOTP at their first sign-in."""
    from portal.db import utcnow
    from portal.staff.services import StaffInputError, create_staff

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        member = create_staff(
            email, name=name, role=role, password=password, actor=Actor.cli(), now=utcnow()
        )
    except StaffInputError as error:
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"created {member.role} {member.email} (id {member.id})")


@click.command("demo")
@click.option("--links/--no-links", default=True, help="Print two customer links.")
@click.option(
    "--load/--no-load", default=True, help="Load the demo ledger if the database is empty."
)
def demo_command(links: bool, load: bool) -> None:
    """Load the demo ledger (once) and print links for an English and a Spanish customer."""
    from portal.demo.loader import load_demo

    for line in load_demo(print_links=links, load=load):
        click.echo(line)


@click.group("jobs")
def jobs_group() -> None:
    """The background worker: email delivery, reminders and every timed action."""


@jobs_group.command("run")
@click.option("--once", is_flag=True, help="Run every job now, due or not, then exit.")
@click.option("--loop", is_flag=True, help="Keep running; a pass every JOBS_LOOP_SECONDS.")
@click.option(
    "--only",
    "only",
    type=click.Choice(sorted(_JOBS)),
    help="Run one kind only: "
    + "; ".join(f"{kind}: {job.description}" for kind, job in sorted(_JOBS.items())),
)
def jobs_run(once: bool, loop: bool, only: str | None) -> None:
    """Do whatever is due and exit (for cron), or keep at it with --loop."""
    import time

    from portal.config import ConfigurationError
    from portal.db import utcnow
    from portal.jobs.registry import sender_from_config
    from portal.jobs.runner import run_jobs, runner_id

    if only in (None, "deliver_email"):
        try:  # before any pass: a worker that cannot deliver email must not look healthy
            sender_from_config()
        except ConfigurationError as error:
            _stop_on(error)
    me = runner_id()
    while True:
        for outcome in run_jobs(now=utcnow(), runner=me, only=only, force=once):
            click.echo(f"{outcome.kind}: {outcome.outcome} ({outcome.detail})")
        if not loop:
            return
        once = False
        next_pass = time.monotonic() + current_app.config["JOBS_LOOP_SECONDS"]
        if only in (None, "apply_webhooks"):
            _apply_webhooks_until(next_pass)
        else:
            time.sleep(max(0.0, next_pass - time.monotonic()))


def _apply_webhooks_until(deadline: float) -> None:
    """Between two passes, apply Stripe's events as they arrive."""
    import time

    from portal.jobs.webhook_worker import apply_as_they_arrive

    apply_as_they_arrive(
        lambda: deadline - time.monotonic(),
        poll_seconds=current_app.config["WEBHOOK_POLL_SECONDS"],
        report=lambda n: click.echo(f"apply_webhooks: ok ({n} webhook events applied)"),
    )


@click.group("report")
def report_group() -> None:
    """Print the receivables reports that staff see under /staff/reports."""


def _parse_day(value: str) -> date:
    from flask_babel import gettext as _

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            _("%(value)s is not a date; use YYYY-MM-DD.", value=value)
        ) from None


@report_group.command("aging")
@click.option("--as-of", "as_of", required=True, help="The day, YYYY-MM-DD.")
@click.option("--currency", default=None, help="One currency (ISO 4217); default: each in use.")
@click.option(
    "--format", "output", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--customers", is_flag=True, help="CSV: one row per customer, then the totals.")
def report_aging(as_of: str, currency: str | None, output: str, customers: bool) -> None:
    """Open receivables by days past due on a day (as the aging report shows them).

    JSON: one object per currency, one per line: {"as_of", "currency", "buckets", "total"},
    amounts as decimal strings in major units.
    """
    import json

    from flask_babel import gettext as _

    from portal.money import UnknownCurrency, normalize_currency
    from portal.reports import exports
    from portal.reports.queries import aging, currencies_in_use

    day = _parse_day(as_of)
    if currency is not None:
        try:
            currency = normalize_currency(currency)
        except UnknownCurrency:
            raise click.BadParameter(
                _("%(code)s is not an ISO 4217 currency code.", code=currency),
                param_hint="--currency",
            ) from None
    report = aging(day, currency=currency, customer_limit=None if customers else 0)
    # The same currencies in every format: one with nothing open prints a zero row.
    codes = (
        [currency] if currency else currencies_in_use() or [current_app.config["DEFAULT_CURRENCY"]]
    )
    if output == "json":
        for code in codes:
            click.echo(json.dumps(exports.aging_json(report, code)))
    elif customers:
        click.echo(exports.aging_customers_csv(report), nl=False)
    else:
        click.echo(exports.aging_totals_csv(report, codes), nl=False)
