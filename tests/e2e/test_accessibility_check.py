"""The axe-core helper itself: a check that cannot fail would prove nothing."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.e2e.conftest import assert_accessible

pytestmark = pytest.mark.e2e


def test_assert_accessible_reports_a_critical_violation_with_its_place(page: Page) -> None:
    # given a page whose only field has no label (axe-core: "label", critical)
    page.set_content(
        '<!doctype html><html lang="en"><head><title>Form</title></head>'
        '<body><main><h1>Form</h1><input id="unlabelled" type="text"></main></body></html>'
    )
    # when it is checked, then the failure names the rule, its impact and the element
    with pytest.raises(AssertionError, match=r"(?s)label \(critical\).*#unlabelled"):
        assert_accessible(page)


def test_assert_accessible_passes_a_plain_page(page: Page) -> None:
    page.set_content(
        '<!doctype html><html lang="en"><head><title>Fine</title></head>'
        '<body><main><h1>Fine</h1><label for="name">Name</label><input id="name"></main>'
        "</body></html>"
    )
    assert_accessible(page)
