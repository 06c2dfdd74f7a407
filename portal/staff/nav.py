"""The staff top bar's links. Each area adds or renames its entry here when it lands;
an entry whose endpoint does not exist yet is not shown. A queue's entry also shows how
many items wait in it (`staff_counts`)."""

from __future__ import annotations

from flask import current_app, g
from flask_babel import lazy_gettext as _l

# (endpoint, label, admins only)
STAFF_NAV = (
    ("desk.customers", _l("Customers"), False),
    ("desk.follow_up", _l("Follow-up"), False),
    ("staff_disputes.queue", _l("Disputes"), False),
    ("staff_plans.queue", _l("Plans"), False),
    ("reports.aging_report", _l("Reports"), False),
    ("desk.outbox", _l("Outbox"), False),
    ("staff.audit_log", _l("Audit log"), True),
    ("staff.stripe_events", _l("Stripe events"), True),
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


def staff_counts() -> dict[str, int]:
    """Endpoint -> how many items wait in that queue (shown beside its nav entry):
    the open disputes, the plan requests waiting for review. Computed once per request."""
    if "_staff_counts" not in g:
        counts: dict[str, int] = {}
        if "staff_disputes.queue" in current_app.view_functions:
            from portal.disputes.staff_views import queue_counts

            counts["staff_disputes.queue"] = queue_counts().open
        if "staff_plans.queue" in current_app.view_functions:
            from portal.plans.queries import open_request_count

            counts["staff_plans.queue"] = open_request_count()
        g._staff_counts = counts
    return dict(g._staff_counts)
