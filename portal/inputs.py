"""Bounds on what a request may carry, checked where it enters, so that no input reaches
the database, a header or the arithmetic in a shape they cannot hold (a 500).

Each kind of input has one gate here:
- ids in URLs and forms: at most 2**31-1, the largest value of the INTEGER key columns
  on PostgreSQL (`RowIdConverter` replaces Flask's `int` converter for every route);
- redirect targets taken from a request: a path on this site, printable, no CR/LF
  (`local_redirect_target`);
- the Referer header, which Flask-WTF parses on HTTPS (`CSRFProtect` in `extensions`);
- NUL characters anywhere in the path, query or form: PostgreSQL's text cannot hold one
  (psycopg raises DataError), and no person types one (`refuse_nul_characters`);
- the size of a request body: MAX_CONTENT_LENGTH (1 MiB, any form), raised to
  UPLOAD_MAX_CONTENT_LENGTH only for the views marked `accepts_uploads` (dispute
  evidence), before anything reads the body (`allow_uploads_where_accepted`).
Amounts have theirs in `portal.money.parse_decimal`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from flask import Flask, abort
from flask.globals import _cv_request
from werkzeug.datastructures import MultiDict
from werkzeug.routing import IntegerConverter, Map

# Our keys are INTEGER columns: 32 bits on PostgreSQL (64 on SQLite). A larger id names
# no row, but the databases do not say "not found": PostgreSQL raises "integer out of
# range" on the bound parameter (SQLAlchemy casts it to the column's type), and SQLite's
# driver raises OverflowError beyond 64 bits. Either was a 500.
MAX_ROW_ID = 2**31 - 1
_MAX_ROW_ID_DIGITS = len(str(MAX_ROW_ID))


class RowIdConverter(IntegerConverter):
    """Flask's `<int:…>`, bounded to MAX_ROW_ID unless a route says less: a larger id is
    a 404, never a 500."""

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = None,
        signed: bool = False,
    ) -> None:
        bound = MAX_ROW_ID if max is None else max
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=bound, signed=signed)


def row_id(value: object) -> int | None:
    """A form's id field as a usable row id, or None (absent, not a number, out of range)."""
    text = str(value or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_ROW_ID_DIGITS:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ROW_ID else None


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in text)


def local_redirect_target(target: str | None) -> str | None:
    """`target` if it is a path on this site that a Location header can carry, else None.

    Refused: another site ("https://…", "//host", "////host", "/\\host", which browsers
    read as a host), and anything with control characters: CR/LF would split the header
    (Werkzeug raises, a 500) and a tab or NUL is read differently by different browsers.
    """
    if not target or len(target) > 2048 or not target.startswith("/"):
        return None
    if target.startswith("//") or "\\" in target or _has_control_characters(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _holds_nul(pairs: MultiDict[str, str]) -> bool:
    return any("\x00" in key or "\x00" in value for key, value in pairs.items(multi=True))


def refuse_nul_characters() -> None:
    """400 for a request whose path, query or form holds a NUL, before any view reads it."""
    req = _cv_request.get().request  # as `request`, without the proxy on every read
    if "\x00" in req.path or (req.query_string and _holds_nul(req.args)):
        abort(400)
    if req.method in ("POST", "PUT", "PATCH") and _holds_nul(req.form):
        abort(400)


View = TypeVar("View", bound=Callable[..., object])


def accepts_uploads(view: View) -> View:
    """Mark a view whose form carries files: its request may be as large as
    UPLOAD_MAX_CONTENT_LENGTH; every other request stops at MAX_CONTENT_LENGTH (a 413).
    Put it right under the route decorator (the function the route registers)."""
    view.accepts_uploads = True  # type: ignore[attr-defined]
    return view


def allow_uploads_where_accepted() -> None:
    """Before anything reads the body (the NUL gate, CSRF, the view): raise this
    request's size limit when its view accepts uploads (Flask 3.1 per-request limit)."""
    ctx = _cv_request.get()  # `request` and `current_app`, without their proxies
    view = ctx.app.view_functions.get(ctx.request.endpoint or "")
    if view is not None and getattr(view, "accepts_uploads", False):
        ctx.request.max_content_length = ctx.app.config["UPLOAD_MAX_CONTENT_LENGTH"]


def check_inputs() -> None:
    """The request-wide gates, in one hook: the size limit first (before anything reads
    the body), then NUL characters."""
    allow_uploads_where_accepted()
    refuse_nul_characters()


def init_inputs(app: Flask) -> None:
    """Route ids bounded, and the request-wide gates run before anything else."""
    app.url_map.converters["int"] = RowIdConverter
    app.before_request(check_inputs)
