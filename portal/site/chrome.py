"""The layout's chrome (header, language buttons, footer), rendered once per language.

The header and footer of `base.html` are the same for every visitor who reads the same
language of the same portal: only the CSRF token, the `next` path, whether someone is
signed in and the flashed messages differ, and those stay outside the cached parts.
`{% chrome "name" %}…{% endchrome %}` renders its body on first use and keeps the
result per (name, language, script root, the creditor settings it shows), so a page
pays for none of its url_for calls, translations or loops afterwards. Nothing in it is
per customer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.globals import _cv_app, _cv_request
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from markupsafe import Markup

from portal.i18n import current_locale

# The settings the chrome shows: a change (a test, a reconfigured app) is a new entry.
CHROME_SETTINGS = ("CREDITOR_NAME", "CREDITOR_ADDRESS", "CREDITOR_EMAIL", "CREDITOR_PHONE")
MAX_ENTRIES = 512  # a few names x 4 languages; a bound in case script roots vary


class ChromeExtension(Extension):
    """`{% chrome "name" %}body{% endchrome %}`: the body, rendered once per language."""

    tags = {"chrome"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        name = parser.parse_expression()
        body = parser.parse_statements(("name:endchrome",), drop_needle=True)
        call = self.call_method("_fragment", [name])
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _fragment(self, name: str, caller: Callable[[], str]) -> str:
        request_ctx = _cv_request.get(None)
        if request_ctx is None:  # outside a request: nothing to share
            return caller()
        app_ctx = _cv_app.get()
        app = app_ctx.app
        # What the chrome depends on, worked out once per request and language.
        locale = current_locale()
        known = app_ctx.g.__dict__.get("_portal_chrome_key")  # no exception on a miss
        if known is None or known[0] != locale:
            config = app.config
            known = (
                locale,
                request_ctx.request.script_root,
                *(config.get(setting) for setting in CHROME_SETTINGS),
            )
            app_ctx.g._portal_chrome_key = known
        key: tuple[Any, ...] = (name, *known)
        cache: dict[tuple[Any, ...], str] = app.extensions["portal_chrome"]
        try:
            return cache[key]
        except KeyError:
            pass
        rendered = caller()
        if len(cache) >= MAX_ENTRIES:
            cache.clear()
        cache[key] = Markup(rendered)  # noqa: S704  (rendered by our autoescaped template)
        return cache[key]


def init_chrome(app: Flask) -> None:
    """Enable `{% chrome %}` in the app's templates, with a cache of its own."""
    app.extensions["portal_chrome"] = {}
    app.jinja_env.add_extension(ChromeExtension)
