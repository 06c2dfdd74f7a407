"""Settings from the environment, one class per environment.

Every variable read here is listed in the README's configuration table.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from portal.money import Money, MoneyError, normalize_currency, parse_decimal

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
INSTANCE_DIR = Path(os.environ.get("PORTAL_INSTANCE_PATH", PROJECT_DIR / "instance"))

SUPPORTED_LOCALES = ("en", "es", "fr", "de")


def normalize_database_url(url: str) -> str:
    """Accept the usual `postgres://` / `postgresql://` forms and use psycopg 3 for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# Variables that could not be read; `load_config` reports them (raising here, while the
# module is imported, would end any command with a traceback instead of one clear line).
_UNREADABLE: list[str] = []


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        _UNREADABLE.append(f"{name} must be a whole number; got {value!r}.")
        return default


def _development_secret_key() -> str:
    """Generate once into instance/ so that sessions survive restarts in development."""
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


class Config:
    ENV_NAME = "base"
    SQLALCHEMY_DATABASE_URI = normalize_database_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'portal.sqlite3'}")
    )
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, object] = {}
    # A pooled connection idle this long is pinged before use (a dropped connection is
    # replaced, not a 500); one used more recently is not: a ping on every checkout
    # (pool_pre_ping) was a round trip on every request. 0 pings on every checkout.
    DB_PING_AFTER_IDLE_SECONDS = _env_int("DB_PING_AFTER_IDLE_SECONDS", 10)
    SECRET_KEY: str | None = os.environ.get("SECRET_KEY")
    PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:5000").rstrip("/")

    # The creditor whose receivables this portal collects.
    CREDITOR_NAME = os.environ.get("CREDITOR_NAME", "Northwind Supplies Ltd")
    CREDITOR_EMAIL = os.environ.get("CREDITOR_EMAIL", "billing@northwind.example")
    CREDITOR_PHONE = os.environ.get("CREDITOR_PHONE", "+1 555 0100")
    CREDITOR_ADDRESS = os.environ.get("CREDITOR_ADDRESS", "1 Harbour Street, Springfield")
    CREDITOR_TIMEZONE = os.environ.get("CREDITOR_TIMEZONE", "America/New_York")
    DEFAULT_CURRENCY = os.environ.get("DEFAULT_CURRENCY", "USD")
    # A third-party debt collector must say so in every collection message (FDCPA §807(11)).
    CREDITOR_IS_DEBT_COLLECTOR = os.environ.get("CREDITOR_IS_DEBT_COLLECTOR", "false").lower() in (
        "1",
        "true",
        "yes",
    )

    # Email: SMTP_URL like smtp://user:pass@host:587?starttls=true; unset in development,
    # where messages stay in the outbox and show at /dev/mailbox.
    SMTP_URL = os.environ.get("SMTP_URL")
    MAIL_FROM = os.environ.get(
        "MAIL_FROM", os.environ.get("CREDITOR_EMAIL", "billing@northwind.example")
    )
    DEV_MAILBOX = False
    JOBS_LOOP_SECONDS = _env_int("JOBS_LOOP_SECONDS", 30)
    # Without PostgreSQL's LISTEN/NOTIFY (SQLite), how often the worker looks for events.
    WEBHOOK_POLL_SECONDS = _env_int("WEBHOOK_POLL_SECONDS", 1)

    ACCESS_LINK_TTL_DAYS = _env_int("ACCESS_LINK_TTL_DAYS", 30)
    # How many days ahead a customer may promise to pay from the portal (portal.promises).
    PROMISE_MAX_DAYS = _env_int("PROMISE_MAX_DAYS", 14)
    # Autopay of payment plans (portal.plans.autopay, README "Payment plans: autopay"):
    # a declined installment is tried again this many days after its due date ("1,3,5":
    # on days 1, 3 and 5), and an installment still unpaid more than PLAN_GRACE_DAYS
    # after its due date breaks the plan. Reminders go INSTALLMENT_REMINDER_DAYS before.
    INSTALLMENT_RETRY_DAYS = os.environ.get("INSTALLMENT_RETRY_DAYS", "1,3,5")
    PLAN_GRACE_DAYS = _env_int("PLAN_GRACE_DAYS", 7)
    INSTALLMENT_REMINDER_DAYS = _env_int("INSTALLMENT_REMINDER_DAYS", 3)
    # Disputes (portal.disputes): evidence files live in UPLOAD_DIR (outside static/; a
    # directory several app servers share); a customer asked for information has
    # DISPUTE_REPLY_DAYS to answer before the jobs runner hands the dispute back to staff;
    # the staff queue measures a dispute's age against DISPUTE_TARGET_BUSINESS_DAYS.
    DISPUTE_REPLY_DAYS = _env_int("DISPUTE_REPLY_DAYS", 14)
    DISPUTE_TARGET_BUSINESS_DAYS = _env_int("DISPUTE_TARGET_BUSINESS_DAYS", 10)
    # Signed-in sessions live in the `principal_sessions` table (`access.sessions`): each
    # kind of principal has its own cookie, idle limit and absolute lifetime. A customer
    # session never outlives the link that opened it.
    SESSION_IDLE_MINUTES = _env_int("SESSION_IDLE_MINUTES", 30)
    CUSTOMER_SESSION_MAX_HOURS = _env_int("CUSTOMER_SESSION_MAX_HOURS", 12)
    STAFF_SESSION_IDLE_MINUTES = _env_int("STAFF_SESSION_IDLE_MINUTES", 15)
    STAFF_SESSION_MAX_HOURS = _env_int("STAFF_SESSION_MAX_HOURS", 10)
    # Session rows that ended (or expired) longer ago than this are deleted by the jobs runner.
    SESSION_RETENTION_DAYS = _env_int("SESSION_RETENTION_DAYS", 30)
    # Staff sign-in (portal.staff): "required" makes every member enrol and use a TOTP
    # second factor; "optional" (the development default) lets a member without one in
    # on their password alone. Argon2id cost: argon2-cffi's RFC 9106 low-memory profile.
    STAFF_MFA = os.environ.get("STAFF_MFA", "required")
    STAFF_ARGON2_TIME_COST = _env_int("STAFF_ARGON2_TIME_COST", 3)
    STAFF_ARGON2_MEMORY_KIB = _env_int("STAFF_ARGON2_MEMORY_KIB", 65536)
    STAFF_ARGON2_PARALLELISM = _env_int("STAFF_ARGON2_PARALLELISM", 4)
    STAFF_LOGIN_RATE_LIMIT = os.environ.get("STAFF_LOGIN_RATE_LIMIT", "30 per minute; 300 per hour")
    # Flask's own signed cookie now holds only the CSRF token and the chosen language.
    PERMANENT_SESSION_LIFETIME = timedelta(days=ACCESS_LINK_TTL_DAYS)
    SESSION_COOKIE_NAME = "portal_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False

    BABEL_DEFAULT_LOCALE = "en"
    BABEL_DEFAULT_TIMEZONE = "UTC"
    BABEL_TRANSLATION_DIRECTORIES = str(PACKAGE_DIR / "translations")
    # Templates compiled once per language with their constant messages translated
    # (portal.site.localized); off, every message is translated when a page is rendered.
    TEMPLATES_TRANSLATED_AT_COMPILE = True

    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_ENABLED = True
    RATELIMIT_HEADERS_ENABLED = True
    LINK_RATE_LIMIT = os.environ.get("LINK_RATE_LIMIT", "20 per minute; 200 per hour")
    LOST_LINK_RATE_LIMIT = os.environ.get("LOST_LINK_RATE_LIMIT", "5 per minute; 30 per hour")

    WTF_CSRF_TIME_LIMIT = None  # the session's idle timeout already bounds a token's life
    # Dispute evidence (portal.disputes.evidence, stored in UPLOAD_DIR above): at most this
    # many files a form, each at most this many bytes and (images) pixels.
    EVIDENCE_MAX_FILES = _env_int("EVIDENCE_MAX_FILES", 5)
    EVIDENCE_MAX_BYTES = _env_int("EVIDENCE_MAX_BYTES", 10 * 1024 * 1024)
    EVIDENCE_MAX_PIXELS = _env_int("EVIDENCE_MAX_PIXELS", 64_000_000)
    # A request body is at most 1 MiB (a 5,000-character message is 20 KB in UTF-8); a
    # view that takes evidence (`inputs.accepts_uploads`) may take the most evidence a
    # form allows plus its fields. Anything larger is a friendly 413.
    MAX_CONTENT_LENGTH = 1024 * 1024
    UPLOAD_MAX_CONTENT_LENGTH = EVIDENCE_MAX_FILES * EVIDENCE_MAX_BYTES + 1024 * 1024
    # Per account: disputes opened (only a dispute actually opened counts), and every POST
    # that may carry evidence (each file is parsed: it costs CPU even when refused).
    DISPUTE_RATE_LIMIT = os.environ.get("DISPUTE_RATE_LIMIT", "10 per hour; 30 per day")
    EVIDENCE_RATE_LIMIT = os.environ.get("EVIDENCE_RATE_LIMIT", "30 per hour")
    FORCE_HTTPS = False
    PROXY_FIX_X_FOR = _env_int("PROXY_FIX_X_FOR", 0)
    # SQLite only: how long a write waits for another writer's lock before failing.
    SQLITE_BUSY_TIMEOUT_MS = _env_int("SQLITE_BUSY_TIMEOUT_MS", 30_000)

    # Card payments through Stripe (README, "Payments"). Without a secret key the portal
    # takes no card payments. STRIPE_API_BASE and STRIPE_JS_URL point at localstripe in
    # development and tests; a live key refuses any other API than Stripe's own.
    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY")
    STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY")
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET")
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")
    STRIPE_JS_URL = os.environ.get("STRIPE_JS_URL", "https://js.stripe.com/v3/")
    STRIPE_TIMEOUT_SECONDS = _env_int("STRIPE_TIMEOUT_SECONDS", 20)
    # The smallest partial payment, in major units of the invoice currency, and
    # per-currency exceptions ("JPY=100,KWD=0.5"); paying everything is always allowed.
    PAYMENT_MINIMUM = os.environ.get("PAYMENT_MINIMUM", "1.00")
    PAYMENT_MINIMUMS = os.environ.get("PAYMENT_MINIMUMS", "")
    # Remainders no card can pay, written off per currency up to this much (major units,
    # "USD=0.50,KWD=0.010"); empty: nothing is written off. See small_balance_tolerances.
    SMALL_BALANCE_TOLERANCE = os.environ.get("SMALL_BALANCE_TOLERANCE", "")
    # Card testing (README, "Card testing"): opening checkouts, card pages and charges
    # share one budget per session and per account, and a larger one per IP (an office
    # shares its address); declined attempts per customer in 24 hours are capped.
    CARD_RATE_LIMIT = os.environ.get("CARD_RATE_LIMIT", "10 per minute; 40 per hour")
    CARD_RATE_LIMIT_PER_IP = os.environ.get("CARD_RATE_LIMIT_PER_IP", "30 per minute; 200 per hour")
    CARD_FAILURES_PER_DAY = _env_int("CARD_FAILURES_PER_DAY", 5)


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    DEV_MAILBOX = True
    STAFF_MFA = os.environ.get("STAFF_MFA", "optional")


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret-key-not-for-production"  # noqa: S105
    SQLALCHEMY_DATABASE_URI = normalize_database_url(
        os.environ.get("TEST_DATABASE_URL", "sqlite://")
    )
    RATELIMIT_STORAGE_URI = "memory://"
    # Cheap hashes: the suite signs staff in many times (production keeps the real cost).
    STAFF_ARGON2_TIME_COST = 1
    STAFF_ARGON2_MEMORY_KIB = 8
    STAFF_ARGON2_PARALLELISM = 1
    # Tests that take card payments start localstripe and set these themselves.
    STRIPE_SECRET_KEY = STRIPE_PUBLISHABLE_KEY = STRIPE_WEBHOOK_SECRET = None


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = True
    FORCE_HTTPS = True


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


class ConfigurationError(RuntimeError):
    """The environment does not describe a safe, working portal."""


def small_balance_tolerances(text: str) -> dict[str, Money]:
    """Parse SMALL_BALANCE_TOLERANCE ("USD=0.50,KWD=0.010") into an amount per currency.

    Raises ConfigurationError naming the bad entry: an unknown currency, a negative or
    malformed amount, more decimals than the currency has, or a currency given twice.
    """
    tolerances: dict[str, Money] = {}
    for entry in (part.strip() for part in (text or "").split(",")):
        if not entry:
            continue
        code, sep, value = entry.partition("=")
        where = f"SMALL_BALANCE_TOLERANCE entry {entry!r}"
        if not sep:
            raise ConfigurationError(f"{where} must look like CUR=AMOUNT, e.g. USD=0.50")
        try:
            currency = normalize_currency(code)
            amount = parse_decimal(value)
        except MoneyError as error:
            raise ConfigurationError(f"{where}: {error}") from None
        tolerance = Money.from_decimal(amount, currency)
        if amount < 0 or tolerance.to_decimal() != amount:
            raise ConfigurationError(
                f"{where}: the amount must be zero or more, with at most "
                f"{tolerance.exponent} decimal places for {currency}"
            )
        if currency in tolerances:
            raise ConfigurationError(f"{where}: {currency} is given twice")
        tolerances[currency] = tolerance
    return tolerances


def load_config(env_name: str | None = None) -> type[Config]:
    if _UNREADABLE:
        raise ConfigurationError(" ".join(_UNREADABLE))
    name = env_name or os.environ.get("PORTAL_ENV", "development")
    try:
        config = CONFIGS[name]
    except KeyError:
        raise ConfigurationError(
            f"PORTAL_ENV must be one of {', '.join(CONFIGS)}; got {name!r}"
        ) from None
    if config.SECRET_KEY is None:
        if name == "production":
            raise ConfigurationError("SECRET_KEY must be set in production.")
        config.SECRET_KEY = _development_secret_key()
    return config
