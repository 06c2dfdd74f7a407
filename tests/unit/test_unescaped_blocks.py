"""No message with values inside a template's `{% autoescape false %}` block.

The account, invoice and pay pages write cells prepared (and escaped) in Python inside
such blocks. A `{% trans name=x %}` or `_("…%(name)s", name=x)` there would put `x` into
the page unescaped: Jinja's newstyle gettext escapes values only where autoescaping is on,
and so does the compile-time translation of `portal.site.localized`.
"""

from __future__ import annotations

from collections.abc import Iterator

from jinja2 import nodes

from portal import create_app

_MESSAGE_CALLS = {"_", "gettext", "pgettext", "ngettext", "npgettext"}


def _messages_with_values_unescaped(
    node: nodes.Node, unescaped: bool = False
) -> Iterator[tuple[int, str]]:
    if isinstance(node, nodes.ScopedEvalContextModifier):
        for option in node.options:
            if option.key == "autoescape" and isinstance(option.value, nodes.Const):
                unescaped = option.value.value is False
    if (
        unescaped
        and isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name in _MESSAGE_CALLS
        and (node.kwargs or node.dyn_kwargs)
    ):
        yield node.lineno, node.node.name
    for child in node.iter_child_nodes():
        yield from _messages_with_values_unescaped(child, unescaped)


def test_no_template_fills_a_message_with_values_where_autoescaping_is_off() -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"}, "testing")
    env = app.jinja_env  # outside an app context: the app's own environment
    found = []
    for name in env.list_templates(extensions=["html"]):
        source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        found += [(name, *hit) for hit in _messages_with_values_unescaped(env.parse(source))]
    assert found == []


def test_the_check_finds_a_trans_with_values_in_an_unescaped_block() -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"}, "testing")
    parsed = app.jinja_env.parse(
        "{% autoescape false %}{% trans name=who %}Hello, {{ name }}{% endtrans %}"
        "{% endautoescape %}{% trans name=who %}Hi {{ name }}{% endtrans %}"
    )
    assert [name for _line, name in _messages_with_values_unescaped(parsed)] == ["gettext"]
