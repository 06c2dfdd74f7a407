"""Staff members: who may sign in to /staff/, with what role, and their second factor."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from sqlalchemy import BigInteger, CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import UTCDateTime, utcnow
from portal.extensions import db


class StaffRole(StrEnum):
    """A specialist works customers; an admin also manages staff and reads the audit log."""

    SPECIALIST = "specialist"
    ADMIN = "admin"

    @property
    def label(self) -> str:
        return str(ROLE_LABELS[self])


ROLE_LABELS = {StaffRole.SPECIALIST: _l("Specialist"), StaffRole.ADMIN: _l("Admin")}


class StaffMember(db.Model):
    """One person on the creditor's side.

    `password_hash` is Argon2id (argon2-cffi), None until an invited member sets one.
    `totp_secret` is the base32 TOTP secret (RFC 6238, 30 s steps); it exists from the
    first sign-in's enrolment page, `mfa_enrolled` only once a code from it was accepted.
    `totp_last_step` is the time step (unix seconds // 30) of the last accepted code: a
    code is accepted only for a later step, so each works once. Ten failed sign-ins in a
    row set `locked_until` 15 minutes ahead. A set-password link's token is stored as its
    SHA-256 only. Times are aware UTC datetimes.
    """

    __tablename__ = "staff_members"
    __table_args__ = (
        # One account per address, whatever its case: stored in lower case, unique.
        CheckConstraint("email = lower(email)", name="email_lower_case"),
        CheckConstraint("role IN ('specialist', 'admin')", name="role_known"),
        CheckConstraint("failed_logins >= 0", name="failed_logins_not_negative"),
        CheckConstraint("NOT mfa_enrolled OR totp_secret IS NOT NULL", name="enrolled_has_secret"),
        CheckConstraint(
            "(password_token_hash IS NULL) = (password_token_expires_at IS NULL)",
            name="password_token_has_expiry",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=StaffRole.SPECIALIST.value)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    mfa_enrolled: Mapped[bool] = mapped_column(default=False)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def staff_role(self) -> StaffRole:
        return StaffRole(self.role)

    @property
    def is_admin(self) -> bool:
        return self.role == StaffRole.ADMIN

    @property
    def is_active(self) -> bool:
        return self.deactivated_at is None

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def has_role(self, role: StaffRole | None) -> bool:
        """Whether this member may do what `role` may (an admin may do all a specialist may)."""
        return role is None or role == StaffRole.SPECIALIST or self.role == role
