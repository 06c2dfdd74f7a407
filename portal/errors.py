"""Domain errors and the localized error pages."""

from __future__ import annotations

from flask import Flask, render_template
from flask_babel import lazy_gettext as _l
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException


class DomainError(Exception):
    """A service refused an action; `message` is safe to show to the user."""

    message = _l("This action could not be completed.")

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or str(self.message))
        if message:
            self.message = message


ERROR_TITLES = {
    400: _l("This request could not be understood"),
    401: _l("Please open the link from your email"),
    403: _l("You do not have access to this page"),
    404: _l("Page not found"),
    405: _l("This action is not allowed here"),
    410: _l("This link is no longer valid"),
    413: _l("The upload is too large"),
    429: _l("Too many attempts"),
    500: _l("Something went wrong on our side"),
}
ERROR_MESSAGES = {
    400: _l("Please go back and try again."),
    401: _l("For your security, your account opens only from the link we emailed you."),
    403: _l("If you think this is a mistake, please contact us."),
    404: _l("The page you asked for does not exist, or is not part of your account."),
    405: _l("Please go back and try again."),
    410: _l("Please ask for a new link below."),
    413: _l("Please choose a smaller file."),
    429: _l("For your security, please wait a minute before trying again."),
    500: _l("Nothing was changed. Please try again in a few minutes."),
}


def render_error(code: int):  # type: ignore[no-untyped-def]
    title = ERROR_TITLES.get(code, ERROR_TITLES[500])
    message = ERROR_MESSAGES.get(code, ERROR_MESSAGES[500])
    return render_template("errors/error.html", code=code, title=title, message=message), code


def init_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):  # type: ignore[no-untyped-def]
        return render_template(
            "errors/error.html",
            code=400,
            title=_l("Your session has expired"),
            message=_l("Please reload the page and try again."),
        ), 400

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(error: RateLimitExceeded):  # type: ignore[no-untyped-def]
        return render_error(429)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        return render_error(error.code or 500)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error")
        from portal.extensions import db

        db.session.rollback()
        return render_error(500)
