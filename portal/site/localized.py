"""Templates compiled once per language, their constant messages translated at compile time.

A page's template says `{{ _("Total due") }}` or `{% trans %}Hello, {{ name }}{% endtrans %}`
dozens of times; each is a call at render time (the catalog looked up, the text marked
safe, escaped values put into its placeholders) that gives the same text to everyone who
reads that language. Each supported language therefore gets its own Jinja environment
(an overlay of the app's: the same loader, globals, filters and extensions, its own
compiled templates), and while a template is compiled there, every `_`, `gettext` and
`pgettext` call whose message is a constant becomes that language's text:

    {{ _("Total due") }}                      ->  Markup("Total à payer")
    {% trans name=customer.name %}…{% endtrans %}
                                              ->  Markup("Bonjour, %(name)s") % {"name": …}

exactly what `portal.i18n.template_gettext` returns at render time (the catalog's text is
markup; placeholders are filled with escaped values; `%%` is a percent sign). Plural
forms (`ngettext`) depend on a number and stay calls, as do messages that are not
constants. `PortalFlask.jinja_env` hands out the environment of the language being
rendered (the request's, or the one a `force_locale` block sets for an email or a PDF);
outside an app context, and for a language we have no catalog for, the app's own
environment, which translates at render time as before.

The catalogs are read once per process: a deployment with new translations restarts its
workers, as it does for new code. `TEMPLATES_TRANSLATED_AT_COMPILE = False` turns this off
(the tests compare both).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import Any, cast

from babel.support import NullTranslations
from flask.templating import Environment as FlaskEnvironment
from jinja2 import Template, nodes
from jinja2.runtime import Context, new_context
from jinja2.visitor import NodeTransformer

# The templates' names for the catalog (portal.i18n.init_i18n puts them in the globals).
_GETTEXT_NAMES = frozenset({"_", "gettext"})
_PGETTEXT_NAME = "pgettext"
TEMPLATE_CACHE_SIZE = 400  # compiled templates kept per language (Jinja's default)


class PortalTemplate(Template):
    """Jinja's template, its render context made from the environment's globals directly
    when the template has none of its own (none of ours has). Jinja keeps a template's
    globals as `ChainMap(own, environment's)` and copies that into every new context
    key by key, each key missing from the empty first map raising a KeyError: a score of
    exceptions per page. The context is the same."""

    def new_context(
        self,
        vars: dict[str, Any] | None = None,
        shared: bool = False,
        locals: Mapping[str, Any] | None = None,
    ) -> Context:
        globals_ = self.globals
        if isinstance(globals_, ChainMap) and len(globals_.maps) == 2 and not globals_.maps[0]:
            globals_ = globals_.maps[1]
        return new_context(self.environment, self.name, self.blocks, vars, shared, globals_, locals)


class PortalEnvironment(FlaskEnvironment):
    """Flask's Jinja environment; in a language's overlay (`translated_for`), constant
    messages are translated while templates are compiled."""

    template_class = PortalTemplate
    folded_translations: NullTranslations | None = None

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        template = super()._parse(source, name, filename)
        if self.folded_translations is not None:
            template = cast(
                nodes.Template, _TranslateConstants(self.folded_translations).visit(template)
            )
            template.set_environment(self)
        return template

    def translated_for(self, translations: NullTranslations) -> PortalEnvironment:
        """An overlay of this environment whose templates are compiled with the constant
        messages of `translations` already translated (its own template cache)."""
        overlay = self.overlay(cache_size=TEMPLATE_CACHE_SIZE)
        overlay.folded_translations = translations
        return overlay


class _TranslateConstants(NodeTransformer):
    """Replaces `_("…")`, `gettext("…", name=…)` and `pgettext("ctx", "…")` calls with
    their translation, as `template_gettext` would give it at render time."""

    def __init__(self, translations: NullTranslations) -> None:
        self.translations = translations

    def visit_Call(self, node: nodes.Call, *args: Any, **kwargs: Any) -> nodes.Node:  # noqa: N802  (Jinja's visitor names)
        node = cast(nodes.Call, self.generic_visit(node, *args, **kwargs))
        text = self._translation(node)
        if text is None:
            return node
        constant = nodes.MarkSafeIfAutoescape(nodes.Const(text), lineno=node.lineno)
        if not node.kwargs and "%" not in text:
            return constant
        # Markup(text) % {…}: escaped values into the placeholders, "%%" into "%".
        values = [
            nodes.Pair(
                nodes.Const(keyword.key, lineno=node.lineno), keyword.value, lineno=node.lineno
            )
            for keyword in node.kwargs
        ]
        return nodes.Mod(constant, nodes.Dict(values, lineno=node.lineno), lineno=node.lineno)

    def _translation(self, node: nodes.Call) -> str | None:
        """The translated text of a call with constant messages, else None."""
        function = node.node
        if not isinstance(function, nodes.Name) or node.dyn_args or node.dyn_kwargs:
            return None
        arguments = [arg.value for arg in node.args if isinstance(arg, nodes.Const)]
        if len(arguments) != len(node.args) or not all(isinstance(a, str) for a in arguments):
            return None
        if function.name in _GETTEXT_NAMES and len(arguments) == 1:
            return str(self.translations.ugettext(arguments[0]))
        if function.name == _PGETTEXT_NAME and len(arguments) == 2:
            return str(self.translations.upgettext(arguments[0], arguments[1]))
        return None
