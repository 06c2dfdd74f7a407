"""The `portal` command as an operator runs it: a separate process, its exit code and
exactly what it prints (one clear line, never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PORTAL = str(Path(sys.executable).parent / "portal")


def _environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PORTAL_", "STRIPE_", "SMTP_", "DATABASE_URL", "SECRET_KEY"))
        and name not in ("ACCESS_LINK_TTL_DAYS", "FLASK_APP")
    }
    env["PORTAL_INSTANCE_PATH"] = str(tmp_path)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    env.update(variables)
    return env


def portal(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PORTAL, *args],
        env=_environment(tmp_path, **variables),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


BAD_SETTINGS = [
    (
        {"PORTAL_ENV": "staging"},
        "PORTAL_ENV must be one of development, testing, production; got 'staging'",
    ),
    ({"PORTAL_BASE_URL": "portal.example.com"}, "PORTAL_BASE_URL must be an absolute http(s) URL."),
    (
        {"PORTAL_ENV": "production", "SECRET_KEY": "x" * 40, "PORTAL_BASE_URL": "http://a.example"},
        "PORTAL_BASE_URL must use https in production.",
    ),
    ({"PORTAL_ENV": "production"}, "SECRET_KEY must be set in production."),
    (
        {
            "PORTAL_ENV": "production",
            "SECRET_KEY": "x" * 40,
            "PORTAL_BASE_URL": "https://a.example",
        },
        "SMTP_URL must be set in production to deliver email.",
    ),
    (
        {"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_PUBLISHABLE_KEY": "pk_test_x"},
        "STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY.",
    ),
    (
        {"ACCESS_LINK_TTL_DAYS": "thirty"},
        "ACCESS_LINK_TTL_DAYS must be a whole number; got 'thirty'.",
    ),
    (
        {"SMTP_URL": "mail.example.com:587"},
        "SMTP_URL must look like smtp://user:pass@host:587?starttls=true",
    ),
    (
        {"DATABASE_URL": "not a url"},
        "DATABASE_URL must be a database URL such as postgresql://user@host/name.",
    ),
]


@pytest.mark.parametrize(("variables", "message"), BAD_SETTINGS, ids=lambda v: str(v)[:30])
def test_a_configuration_error_is_one_line_and_a_non_zero_exit(tmp_path, variables, message):
    result = portal(tmp_path, "jobs", "run", "--once", **variables)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"portal: configuration error: {message}\n"


@pytest.mark.parametrize(
    "command",
    [
        ["import", "customers", "customers.csv"],
        ["link", "A-1"],
        ["demo"],
        ["db", "upgrade"],
        ["run"],
        ["--help"],
    ],
    ids=" ".join,
)
def test_every_command_stops_on_a_configuration_error(tmp_path, command):
    (tmp_path / "customers.csv").write_text("account_number,name,email\n")
    result = portal(tmp_path, *command, PORTAL_ENV="prod")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "portal: configuration error: PORTAL_ENV must be one of development, testing, "
        "production; got 'prod'"
    ]


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["real-run", "dry-run"])
def test_an_import_with_a_nul_byte_is_a_line_numbered_error_in_a_real_process(
    app, tmp_path, dry_run
):
    # given the test database (SQLite or PostgreSQL), migrated, and a file with a NUL byte
    path = tmp_path / "customers.csv"
    path.write_bytes(b"account_number,name,email\nA-1,Acme\x00 Ltd,ap@acme.example\n")
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    # when
    result = portal(tmp_path, "import", "customers", str(path), *dry_run, DATABASE_URL=url)
    # then
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{path}: 1 bad row (1 problem); nothing was imported.",
        "  line 2: name contains the invisible character U+0000, which cannot be stored; "
        "remove it and try again",
    ]


def test_an_import_into_a_database_that_was_never_migrated_is_one_line(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("account_number,name,email\nA-1,Acme,ap@acme.example\n")
    result = portal(tmp_path, "import", "customers", str(path))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{path}: nothing was imported: ")
    assert "no such table: customers" in line


@pytest.mark.parametrize(
    "command",
    [("demo", "--no-links"), ("report", "aging", "--as-of", "2026-01-31", "--format", "json")],
)
def test_a_command_on_a_database_that_was_never_migrated_is_one_line(tmp_path, command):
    result = portal(tmp_path, *command)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("portal: database error: no such table: ")
    assert line.endswith("run `portal db upgrade`)")
