"""Domain errors and the localized error pages."""

from __future__ import annotations

from flask import Flask, has_request_context, render_template, request
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
    413: _l("What you sent is too large"),
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
    413: _l("Please choose a smaller file or shorten your text."),
    429: _l("For your security, please wait a minute before trying again."),
    500: _l("Nothing was changed. Please try again in a few minutes."),
}


# The staff side's own words where the customer's would mislead (no emailed link there).
STAFF_ERROR_TITLES = {
    401: _l("Please sign in"),
    403: _l("Your role does not include this page"),
    410: _l("This link is no longer valid"),
}
STAFF_ERROR_MESSAGES = {
    401: _l("Sign in again to go on."),
    403: _l("Ask an administrator if you need it."),
    404: _l("The page or record you asked for does not exist."),
    410: _l("Ask an administrator for a new one."),
}


def on_staff_side() -> bool:
    """True for a request under /staff (the staff cookie's path): its pages, errors
    included, use the staff layout."""
    return has_request_context() and request.path.startswith("/staff")


def error_page(code: int, title: object, message: object):  # type: ignore[no-untyped-def]
    """The error page in the layout of the side the request came from."""
    template = "staff/error.html" if on_staff_side() else "errors/error.html"
    return render_template(template, code=code, title=title, message=message), code


def render_error(code: int):  # type: ignore[no-untyped-def]
    titles, messages = ERROR_TITLES, ERROR_MESSAGES
    if on_staff_side():
        titles, messages = ERROR_TITLES | STAFF_ERROR_TITLES, ERROR_MESSAGES | STAFF_ERROR_MESSAGES
    title = titles.get(code, titles[500])
    message = messages.get(code, messages[500])
    return error_page(code, title, message)


def init_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):  # type: ignore[no-untyped-def]
        return error_page(
            400, _l("Your session has expired"), _l("Please reload the page and try again.")
        )

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
