"""Staff sessions and the checks every staff view starts with.

Built on the server-side sessions of `portal.access.sessions`: a staff session is a
`PrincipalSession` of kind STAFF, in its own cookie (`portal_staff`, path /staff) with
its own idle limit and lifetime (STAFF_SESSION_IDLE_MINUTES, STAFF_SESSION_MAX_HOURS).
A customer cookie never passes `staff_required`, and a staff cookie never passes
`customer_required` (each reads only its own cookie). A deactivated member's sessions
end on their next request even if something missed ending them at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar, cast

from flask import abort, flash, has_request_context, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from portal.access.models import PrincipalKind, PrincipalSession, SessionEnd
from portal.access.sessions import (
    LoadedSession,
    end_current_session,
    end_sessions,
    load_session,
    principal_required,
    start_session,
)
from portal.extensions import db
from portal.staff.models import StaffMember, StaffRole

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def _staff_lookup(query: Any) -> Any:
    return query.add_columns(StaffMember).join(
        StaffMember, StaffMember.id == PrincipalSession.staff_id
    )


def _staff_check(result: Any, now: datetime) -> SessionEnd | None:
    _row, member = result
    if not member.is_active:
        return SessionEnd.PRINCIPAL_DISABLED
    return None


def staff_session() -> LoadedSession:
    """This request's staff session (checked, cached in `g`), or an empty one."""
    if not has_request_context():
        return LoadedSession()
    return load_session(PrincipalKind.STAFF, _staff_lookup, _staff_check)


def signed_in_staff() -> StaffMember | None:
    """The staff member this request's staff session belongs to, or None."""
    return cast(StaffMember | None, staff_session().principal)


def current_staff() -> StaffMember:
    """The signed-in staff member, in a view behind `staff_required` (else a 401)."""
    member = signed_in_staff()
    if member is None:
        abort(401)
    return member


def _refuse_staff(loaded: LoadedSession) -> ResponseReturnValue:
    """No live staff session: to the sign-in page, coming back here afterwards."""
    if loaded.ended_now == SessionEnd.IDLE:
        flash(_("Your session ended after a period of inactivity. Please sign in again."), "info")
    elif loaded.ended_now is not None:
        flash(_("Your session has ended. Please sign in again."), "info")
    target = request.full_path if request.method == "GET" else None
    return redirect(url_for("staff.login", next=target.rstrip("?") if target else None))


_staff_session_required = principal_required(staff_session, _refuse_staff)


def staff_required(role: StaffRole | None = None) -> Callable[[View], View]:
    """A view decorator: a live staff session, and `role` if given (admin: 403 otherwise).

    Anonymous visitors and customers (whose cookie is never read here) are sent to the
    staff sign-in page; a specialist on an admin page gets 403."""

    def decorate(view: View) -> View:
        @wraps(view)
        def with_role(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            if not current_staff().has_role(role):
                abort(403)
            return view(*args, **kwargs)

        return _staff_session_required(cast(View, with_role))

    return decorate


# --- starting and ending ---------------------------------------------------------------
def start_staff_session(member: StaffMember, now: datetime) -> None:
    """Sign this browser in as `member` (a fresh session and CSRF token). Flushes only."""
    locale = session.get("locale")
    session.clear()
    if locale:
        session["locale"] = locale
    row = start_session(PrincipalKind.STAFF, now=now, staff_id=member.id)
    from flask import g

    g._staff_session = LoadedSession(row, member)


def end_staff_session(now: datetime) -> None:
    """Sign this browser's staff session out. Flushes only."""
    end_current_session(PrincipalKind.STAFF, now=now)
    session.pop("staff_pending", None)


def end_sessions_of_staff(member_id: int, *, now: datetime, reason: SessionEnd) -> None:
    """End every open session of this staff member at once. Never commits."""
    db.session.execute(
        end_sessions(PrincipalSession.staff_id == member_id, now=now, reason=reason),
        execution_options={"synchronize_session": False},
    )
