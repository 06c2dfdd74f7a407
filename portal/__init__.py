"""The portal: a Flask application built by `create_app`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.globals import _cv_app, _cv_request
from flask.templating import _default_template_ctx_processor

from portal.config import (
    PACKAGE_DIR,
    SUPPORTED_LOCALES,
    ConfigurationError,
    load_config,
    small_balance_tolerances,
)
from portal.i18n import catalog_of, current_locale
from portal.site.localized import PortalEnvironment


class PortalFlask(Flask):
    """Flask, with the sync-or-async answer for each hook and view found once (Flask asks
    `inspect.iscoroutinefunction` of each of the dozen hooks on every request), the
    template context processors listed once per blueprint chain, and a Jinja environment
    per language (`jinja_env`, `portal.site.localized`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._localized_envs: dict[str, PortalEnvironment] = {}
        self._context_processors: dict[tuple[str | None, ...], tuple[Callable[..., Any], ...]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync_functions[func]
        except KeyError:
            sync = super().ensure_sync(func)
        except TypeError:  # not hashable: ask each time
            return super().ensure_sync(func)
        if len(self._sync_functions) < 4096:
            self._sync_functions[func] = sync
        return sync

    def update_template_context(self, context: dict[str, Any]) -> None:
        """Flask's: the context processors of the app, then of the request's blueprints
        (innermost last), the values passed to `render_template` winning. Their list is
        worked out once per chain of blueprints when the app serves (none can be added
        then), and Flask's default processor (`g`, `request`, `session`) runs once: Flask copies
        it into every blueprint's list, so it ran twice per page."""
        request_ctx = _cv_request.get(None)
        names = (None, *reversed(request_ctx.request.blueprints)) if request_ctx else (None,)
        processors = self._context_processors.get(names)
        if processors is None:
            processors = self._processors_of(names)
            if self._got_first_request:  # from then on no processor can be added
                self._context_processors[names] = processors
        passed = context.copy()
        for processor in processors:
            context.update(processor())
        context.update(passed)

    def _processors_of(self, names: tuple[str | None, ...]) -> tuple[Callable[..., Any], ...]:
        found: list[Callable[..., Any]] = []
        for name in names:
            for func in self.template_context_processors.get(name, ()):
                if func is not _default_template_ctx_processor or func not in found:
                    found.append(func)
        return tuple(self.ensure_sync(func) for func in found)

    jinja_environment = PortalEnvironment

    @property
    def jinja_env(self) -> PortalEnvironment:  # type: ignore[override]
        """The Jinja environment of the language being rendered (`portal.site.localized`:
        constant messages translated when a template is compiled), within an app context
        and when `TEMPLATES_TRANSLATED_AT_COMPILE` is on; else the app's own environment
        (the one set up with filters, globals and extensions, translating at render time)."""
        base: PortalEnvironment | None = self.__dict__.get("_portal_jinja_env")
        if base is None:
            base = self.__dict__["_portal_jinja_env"] = self.create_jinja_environment()  # type: ignore[assignment]
        app_ctx = _cv_app.get(None)
        if (
            app_ctx is None
            or app_ctx.app is not self
            or not self.config["TEMPLATES_TRANSLATED_AT_COMPILE"]
        ):
            return base  # type: ignore[return-value]
        locale = current_locale()
        localized = self._localized_envs.get(locale)
        if localized is None:
            if locale not in SUPPORTED_LOCALES:
                return base  # type: ignore[return-value]
            localized = self._localized_envs[locale] = base.translated_for(catalog_of(locale))
        return localized


def create_app(config: dict[str, Any] | None = None, env_name: str | None = None) -> Flask:
    """Build the app for `PORTAL_ENV` (or `env_name`), with `config` overriding settings."""
    settings = load_config(env_name)
    app = PortalFlask(
        __name__,
        instance_path=None,
        template_folder=str(PACKAGE_DIR / "templates"),
        static_folder=str(PACKAGE_DIR / "static"),
    )
    from portal.inputs import init_inputs

    # First: the int converter must be in place before any route is added, and the
    # request-wide input gates run before every other hook (CSRF, sessions, limits).
    init_inputs(app)
    app.config.from_object(settings)
    if config:
        app.config.update(config)
    _check_settings(app)

    from portal import models  # noqa: F401  (register every table with the metadata)
    from portal.db import configure_engine, init_write_intent
    from portal.extensions import babel, csrf, db, limiter, migrate
    from portal.i18n import init_i18n
    from portal.security import init_security

    db.init_app(app)
    migrate.init_app(
        app,
        db,
        directory=str(PACKAGE_DIR.parent / "migrations"),
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with app.app_context():
        configure_engine(
            db.engine,
            busy_timeout_ms=app.config["SQLITE_BUSY_TIMEOUT_MS"],
            ping_after_idle_s=app.config["DB_PING_AFTER_IDLE_SECONDS"],
        )
    init_write_intent(app)
    csrf.init_app(app)
    limiter.init_app(app)
    init_i18n(app, babel)
    init_security(app)

    from portal.site.chrome import init_chrome

    init_chrome(app)

    from portal.access.sessions import init_sessions

    init_sessions(app)

    from portal.access.views import bp as access_bp
    from portal.customers.views import bp as customers_bp
    from portal.desk.views import bp as desk_bp
    from portal.disputes.staff_views import bp as staff_disputes_bp
    from portal.disputes.views import bp as disputes_bp
    from portal.errors import init_errors
    from portal.invoices.views import bp as invoices_bp
    from portal.notifications.views import bp as notifications_bp
    from portal.notifications.views import mailbox as mailbox_bp
    from portal.payments import webhooks
    from portal.payments.views import bp as payments_bp
    from portal.plans.staff_views import bp as staff_plans_bp
    from portal.plans.views import bp as plans_bp
    from portal.promises.views import bp as promises_bp
    from portal.reports.views import bp as reports_bp
    from portal.site.views import bp as site_bp
    from portal.staff.views import bp as staff_bp

    app.register_blueprint(site_bp)
    app.register_blueprint(access_bp)
    app.register_blueprint(customers_bp)
    app.register_blueprint(invoices_bp)
    app.register_blueprint(notifications_bp)
    app.register_blueprint(mailbox_bp)
    app.register_blueprint(payments_bp)
    app.register_blueprint(staff_bp)
    app.register_blueprint(reports_bp)
    app.register_blueprint(desk_bp)
    app.register_blueprint(promises_bp)
    app.register_blueprint(disputes_bp)
    app.register_blueprint(staff_disputes_bp)
    app.register_blueprint(plans_bp)
    app.register_blueprint(staff_plans_bp)
    init_errors(app)
    webhooks.mount(app)

    from portal.cli import register_cli

    register_cli(app)
    return app


def _check_settings(app: Flask) -> None:
    if not app.config.get("SECRET_KEY"):
        raise ConfigurationError("SECRET_KEY is required.")
    base_url = app.config["PORTAL_BASE_URL"]
    if not base_url.startswith(("http://", "https://")):
        raise ConfigurationError("PORTAL_BASE_URL must be an absolute http(s) URL.")
    if app.config["ENV_NAME"] == "production" and not base_url.startswith("https://"):
        raise ConfigurationError("PORTAL_BASE_URL must use https in production.")
    small_balance_tolerances(app.config.get("SMALL_BALANCE_TOLERANCE", ""))  # raises if bad
    from portal.plans.retries import CollectionRulesInvalid, rules_from_config

    try:
        rules_from_config(app.config)  # autopay's retry days, grace period, reminder lead
    except (CollectionRulesInvalid, ValueError) as error:
        raise ConfigurationError(str(error)) from None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    except ArgumentError:
        raise ConfigurationError(
            "DATABASE_URL must be a database URL such as postgresql://user@host/name."
        ) from None
    if app.config["STAFF_MFA"] not in ("required", "optional"):
        raise ConfigurationError("STAFF_MFA must be required or optional.")
    if app.config["STAFF_MFA"] != "required" and app.config["ENV_NAME"] == "production":
        raise ConfigurationError("STAFF_MFA must be required in production.")
    if app.config.get("SMTP_URL"):
        from portal.notifications.sender import SmtpSettings

        try:
            SmtpSettings.from_url(app.config["SMTP_URL"])
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
    from portal.payments.gateway import settings_problems

    problems = settings_problems(app.config)
    if problems:
        raise ConfigurationError(" ".join(problems))
