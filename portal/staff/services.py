"""Staff accounts: creating, signing in (password, then TOTP), and what admins change.

Rules (issue 11, "Who is who"; OWASP Authentication Cheat Sheet):
- passwords are hashed with Argon2id (argon2-cffi); at least 12 and at most 256
  characters (a longer one would only cost hashing time);
- a sign-in's answer never says whether the address exists, and costs the same work
  either way (an unknown address is checked against a dummy hash);
- ten failed attempts in a row (wrong password or wrong code) lock the account for
  15 minutes;
- a TOTP code (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of clock drift either
  way) works once: a code is accepted only for a later step than the last accepted one,
  and the database decides that, so two requests racing with one code cannot both pass;
- deactivating a member, or resetting their password or second factor, ends their
  sessions at once.

Services flush and never commit; the caller commits (also after a refusal, so that a
failed attempt is counted).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select, update

from portal.access.models import SessionEnd
from portal.access.services import hash_token
from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.errors import DomainError
from portal.extensions import db
from portal.staff.auth import end_sessions_of_staff
from portal.staff.models import StaffMember, StaffRole

MAX_FAILED_LOGINS = 10
LOCK_FOR = timedelta(minutes=15)
PASSWORD_MIN = 12
PASSWORD_MAX = 256
TOTP_STEP_SECONDS = 30
TOTP_DRIFT_STEPS = 1
SET_PASSWORD_LINK_TTL = timedelta(days=3)


class LoginRefused(DomainError):
    """Wrong address or password, locked or deactivated: one answer for all of them."""

    message = _l(
        "The email or password is not right, or the account is locked for a while after "
        "too many attempts."
    )


class CodeRefused(DomainError):
    message = _l(
        "That code is not right, or it was already used. Enter the next code from your app."
    )


class StaffInputError(DomainError):
    """Bad input to an admin or CLI action; the message names the problem."""


class PasswordLinkNotUsable(DomainError):
    message = _l("This link to set a password is not valid any more. Ask an admin for a new one.")


# --- passwords ---------------------------------------------------------------------------
@cache
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def password_hasher() -> PasswordHasher:
    """Argon2id with the configured cost (STAFF_ARGON2_*; argon2-cffi's RFC 9106 low-memory
    profile by default: 3 passes, 64 MiB, 4 lanes)."""
    config = current_app.config
    return _hasher(
        int(config["STAFF_ARGON2_TIME_COST"]),
        int(config["STAFF_ARGON2_MEMORY_KIB"]),
        int(config["STAFF_ARGON2_PARALLELISM"]),
    )


@cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return password_hasher().hash(password)


def _verify(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash, the same work against a dummy one."""
    hasher = password_hasher()
    try:
        return hasher.verify(password_hash or _dummy_hash(hasher), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def check_new_password(password: str) -> str:
    """A new password as given, or StaffInputError saying what is wrong with it."""
    if len(password) < PASSWORD_MIN:
        raise StaffInputError(
            str(_l("A password needs at least %(count)d characters.", count=PASSWORD_MIN))
        )
    if len(password) > PASSWORD_MAX:
        raise StaffInputError(
            str(_l("A password has at most %(count)d characters.", count=PASSWORD_MAX))
        )
    return password


# --- accounts ----------------------------------------------------------------------------
def normalize_staff_email(email: str) -> str:
    """The address as stored and looked up: trimmed, lower case (unique in that form)."""
    return email.strip().lower()


def find_staff_by_email(email: str) -> StaffMember | None:
    key = normalize_staff_email(email)
    if not key:
        return None
    return db.session.scalar(select(StaffMember).where(StaffMember.email == key))


def _checked_email(email: str) -> str:
    key = normalize_staff_email(email)
    try:
        validate_email(key, check_deliverability=False)
    except EmailNotValidError:
        raise StaffInputError(str(_l("Please enter a valid email address."))) from None
    if len(key) > 254:
        raise StaffInputError(str(_l("Please enter a valid email address.")))
    if find_staff_by_email(key) is not None:
        raise StaffInputError(str(_l("A staff member with this email address already exists.")))
    return key


def _checked_name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise StaffInputError(str(_l("Please enter a name of at most 200 characters.")))
    return name


def _checked_role(role: str) -> StaffRole:
    try:
        return StaffRole(role)
    except ValueError:
        raise StaffInputError(str(_l("The role must be specialist or admin."))) from None


def create_staff(
    email: str,
    *,
    name: str,
    role: str,
    password: str | None,
    actor: Actor,
    now: datetime,
) -> StaffMember:
    """A new staff member; without a password they can sign in only after setting one
    through a set-password link (`issue_password_link`). Raises StaffInputError."""
    member = StaffMember(
        email=_checked_email(email),
        name=_checked_name(name),
        role=_checked_role(role).value,
        password_hash=hash_password(check_new_password(password)) if password else None,
        mfa_enrolled=False,
        failed_logins=0,
        created_at=now,
    )
    db.session.add(member)
    db.session.flush()
    record_event(
        "staff.created",
        actor=str(actor),
        now=now,
        subject=member,
        data={"email": member.email, "role": member.role},
    )
    return member


# --- signing in ----------------------------------------------------------------------------
def _count_failure(member: StaffMember, now: datetime) -> None:
    db.session.execute(
        update(StaffMember)
        .where(StaffMember.id == member.id)
        .values(failed_logins=StaffMember.failed_logins + 1),
        execution_options={"synchronize_session": False},
    )
    db.session.refresh(member, ["failed_logins"])
    if member.failed_logins >= MAX_FAILED_LOGINS:
        member.failed_logins = 0
        member.locked_until = now + LOCK_FOR
        record_event(
            "staff.locked",
            actor=str(Actor("system")),
            now=now,
            subject=member,
            data={"until": member.locked_until.isoformat()},
        )
    db.session.flush()


def check_password(email: str, password: str, *, now: datetime) -> StaffMember:
    """The member whose address and password these are, if they may sign in.

    Raises LoginRefused, with one message, for an unknown address, a wrong password, a
    locked or deactivated account or one without a password yet; a wrong password counts
    toward the lock-out. The password is checked (or a dummy) in every case."""
    member = find_staff_by_email(email)
    matches = _verify(member.password_hash if member else None, password[:PASSWORD_MAX])
    if member is None or not member.is_active or member.is_locked(now):
        raise LoginRefused
    if not matches:
        _count_failure(member, now)
        raise LoginRefused
    hasher = password_hasher()
    if member.password_hash and hasher.check_needs_rehash(member.password_hash):
        member.password_hash = hasher.hash(password)
    return member


def _step_of(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_STEP_SECONDS


def _normalized_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "")


def verify_code(member: StaffMember, code: str, *, now: datetime) -> None:
    """Accept `code` from the member's authenticator once, or raise CodeRefused (counted
    toward the lock-out; a locked or deactivated member is refused without looking)."""
    if not member.is_active or member.is_locked(now) or not member.totp_secret:
        raise CodeRefused
    code = _normalized_code(code)
    totp = pyotp.TOTP(member.totp_secret, interval=TOTP_STEP_SECONDS)
    current = _step_of(now)
    if re.fullmatch(r"[0-9]{6}", code):
        for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
            if not hmac.compare_digest(totp.generate_otp(step), code):
                continue
            # The database decides "later than the last accepted step": a racing request
            # with the same code updates no row.
            claimed = db.session.execute(
                update(StaffMember)
                .where(
                    StaffMember.id == member.id,
                    or_(StaffMember.totp_last_step.is_(None), StaffMember.totp_last_step < step),
                )
                .values(totp_last_step=step),
                execution_options={"synchronize_session": False},
            )
            db.session.refresh(member, ["totp_last_step"])
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
                return
            break
    _count_failure(member, now)
    raise CodeRefused


def mfa_required() -> bool:
    return str(current_app.config["STAFF_MFA"]) == "required"


def start_enrolment(member: StaffMember) -> str:
    """The base32 secret being enrolled (made on the first call, kept until enrolled)."""
    if member.mfa_enrolled:
        raise DomainError("already enrolled")
    if not member.totp_secret:
        member.totp_secret = pyotp.random_base32()
        db.session.flush()
    return member.totp_secret


def finish_enrolment(member: StaffMember, code: str, *, now: datetime) -> None:
    """The first code from the new secret proves the app has it. Raises CodeRefused."""
    verify_code(member, code, now=now)
    member.mfa_enrolled = True
    record_event("staff.mfa_enrolled", actor=str(Actor.staff(member)), now=now, subject=member)
    db.session.flush()


def provisioning_uri(member: StaffMember) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    if not member.totp_secret:
        raise DomainError("no TOTP secret to enrol")
    return pyotp.TOTP(member.totp_secret, interval=TOTP_STEP_SECONDS).provisioning_uri(
        name=member.email, issuer_name=f"{current_app.config['CREDITOR_NAME']} staff"
    )


def signed_in(member: StaffMember, *, now: datetime) -> None:
    """A complete sign-in: the failure count starts again."""
    member.failed_logins = 0
    member.locked_until = None
    record_event("staff.signed_in", actor=str(Actor.staff(member)), now=now, subject=member)
    db.session.flush()


# --- what admins change ----------------------------------------------------------------------
@dataclass(frozen=True)
class PasswordLink:
    member: StaffMember
    token: str  # shown once (or emailed); only its SHA-256 is stored


def issue_password_link(member: StaffMember, *, now: datetime) -> PasswordLink:
    """A new set-password link for `member` (any earlier one stops working)."""
    token = secrets.token_urlsafe(32)
    member.password_token_hash = hash_token(token)
    member.password_token_expires_at = now + SET_PASSWORD_LINK_TTL
    db.session.flush()
    return PasswordLink(member, token)


def invite_staff(email: str, *, name: str, role: str, actor: Actor, now: datetime) -> PasswordLink:
    """A new member without a password, and the one-time link to set it."""
    member = create_staff(email, name=name, role=role, password=None, actor=actor, now=now)
    record_event("staff.invited", actor=str(actor), now=now, subject=member)
    return issue_password_link(member, now=now)


def member_for_password_token(token: str, *, now: datetime) -> StaffMember:
    """The active member this set-password link is for, or PasswordLinkNotUsable."""
    member = db.session.scalar(
        select(StaffMember).where(StaffMember.password_token_hash == hash_token(token))
    )
    if (
        member is None
        or not member.is_active
        or member.password_token_expires_at is None
        or now >= member.password_token_expires_at
    ):
        raise PasswordLinkNotUsable
    return member


def set_password_with_token(token: str, password: str, *, now: datetime) -> StaffMember:
    """Set the password from a set-password link, which then stops working."""
    member = member_for_password_token(token, now=now)
    member.password_hash = hash_password(check_new_password(password))
    member.password_token_hash = None
    member.password_token_expires_at = None
    member.failed_logins = 0
    member.locked_until = None
    end_sessions_of_staff(member.id, now=now, reason=SessionEnd.PRINCIPAL_DISABLED)
    record_event("staff.password_set", actor=str(Actor.staff(member)), now=now, subject=member)
    db.session.flush()
    return member


def _not_self(member: StaffMember, actor: Actor) -> None:
    if actor == Actor.staff(member):
        raise StaffInputError(str(_l("You cannot do this to your own account.")))


def deactivate_staff(member: StaffMember, *, actor: Actor, now: datetime) -> None:
    """The member can no longer sign in; their sessions end now."""
    _not_self(member, actor)
    if not member.is_active:
        return
    member.deactivated_at = now
    member.password_token_hash = None
    member.password_token_expires_at = None
    end_sessions_of_staff(member.id, now=now, reason=SessionEnd.PRINCIPAL_DISABLED)
    record_event("staff.deactivated", actor=str(actor), now=now, subject=member)
    db.session.flush()


def reset_mfa(member: StaffMember, *, actor: Actor, now: datetime) -> None:
    """The member enrols a new authenticator at their next sign-in; sessions end now."""
    member.totp_secret = None
    member.mfa_enrolled = False
    member.totp_last_step = None
    end_sessions_of_staff(member.id, now=now, reason=SessionEnd.PRINCIPAL_DISABLED)
    record_event("staff.mfa_reset", actor=str(actor), now=now, subject=member)
    db.session.flush()


def reset_password(member: StaffMember, *, actor: Actor, now: datetime) -> PasswordLink:
    """The old password stops working and sessions end; the member sets a new one
    through the link returned (shown once to the admin, or emailed)."""
    _not_self(member, actor)
    if not member.is_active:
        raise StaffInputError(str(_l("This staff member is deactivated.")))
    member.password_hash = None
    end_sessions_of_staff(member.id, now=now, reason=SessionEnd.PRINCIPAL_DISABLED)
    record_event("staff.password_reset", actor=str(actor), now=now, subject=member)
    return issue_password_link(member, now=now)
