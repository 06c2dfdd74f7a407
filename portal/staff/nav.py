"""The staff top bar's links. Each area adds or renames its entry here when it lands;
an entry whose endpoint does not exist yet is not shown."""

from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l

# (endpoint, label, admins only)
STAFF_NAV = (
    ("desk.customers", _l("Customers"), False),
    ("desk.follow_up", _l("Follow-up"), False),
    ("staff.disputes", _l("Disputes"), False),
    ("staff_plans.queue", _l("Plans"), False),
    ("reports.aging_report", _l("Reports"), False),
    ("desk.outbox", _l("Outbox"), False),
    ("staff.audit_log", _l("Audit log"), True),
    ("staff_plans.policies", _l("Plan policies"), True),
    ("staff.admin_staff", _l("Staff"), True),
)


def staff_nav() -> list[tuple[str, str, bool]]:
    """The entries whose views exist in this app."""
    return [
        (endpoint, str(label), admin_only)
        for endpoint, label, admin_only in STAFF_NAV
        if endpoint in current_app.view_functions
    ]
