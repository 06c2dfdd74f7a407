"""staffauth: staff members, staff sessions

- staff_members: email unique (stored in lower case), role, Argon2 hash, TOTP secret and the
  last accepted time step (a code works once), failed sign-ins and lock-out, a
  set-password link's token hash.
- principal_sessions.staff_id: a staff session belongs to a staff member.
- audit_events: indexes for the audit log page (newest first, by actor).
- audit_events is append-only: triggers refuse UPDATE and DELETE (and, on PostgreSQL,
  TRUNCATE). A later SQLite batch migration that rebuilds audit_events drops them and
  must create them again (tests/integration/test_staff_audit.py checks they exist).

Revision ID: c4e8a1f2d903
Revises: 9a1d0c4e7b21
Create Date: 2026-11-29 22:30:00

"""
from alembic import op
import sqlalchemy as sa

import portal.db


# revision identifiers, used by Alembic.
revision = 'c4e8a1f2d903'
down_revision = '9a1d0c4e7b21'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('staff_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('totp_secret', sa.String(length=64), nullable=True),
    sa.Column('mfa_enrolled', sa.Boolean(), nullable=False),
    sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('password_token_hash', sa.String(length=64), nullable=True),
    sa.Column('password_token_expires_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deactivated_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('email = lower(email)', name=op.f('ck_staff_members_email_lower_case')),
    sa.CheckConstraint("role IN ('specialist', 'admin')", name=op.f('ck_staff_members_role_known')),
    sa.CheckConstraint('failed_logins >= 0', name=op.f('ck_staff_members_failed_logins_not_negative')),
    sa.CheckConstraint('NOT mfa_enrolled OR totp_secret IS NOT NULL', name=op.f('ck_staff_members_enrolled_has_secret')),
    sa.CheckConstraint('(password_token_hash IS NULL) = (password_token_expires_at IS NULL)', name=op.f('ck_staff_members_password_token_has_expiry')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_members')),
    sa.UniqueConstraint('email', name=op.f('uq_staff_members_email')),
    sa.UniqueConstraint('password_token_hash', name=op.f('uq_staff_members_password_token_hash'))
    )
    with op.batch_alter_table('principal_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staff_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_principal_sessions_staff_id'), ['staff_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_principal_sessions_staff_id_staff_members'), 'staff_members', ['staff_id'], ['id'], ondelete='CASCADE')
        batch_op.create_check_constraint('staff_session_has_staff_member', "principal_kind <> 'staff' OR (staff_id IS NOT NULL AND customer_id IS NULL AND link_id IS NULL)")


    # Plain CREATE INDEX (no batch): rebuilding audit_events would drop its triggers.
    op.create_index('ix_audit_events_time', 'audit_events', ['occurred_at'], unique=False)
    op.create_index('ix_audit_events_actor_time', 'audit_events', ['actor', 'occurred_at'], unique=False)
    _create_audit_triggers(op.get_bind().dialect.name)


APPEND_ONLY = "audit_events is append-only"


def _create_audit_triggers(dialect):
    if dialect == 'postgresql':
        op.execute(
            "CREATE FUNCTION trg_audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER trg_audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events"
            " FOR EACH ROW EXECUTE FUNCTION trg_audit_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER trg_audit_events_no_truncate BEFORE TRUNCATE ON audit_events"
            " FOR EACH STATEMENT EXECUTE FUNCTION trg_audit_events_append_only()"
        )
    else:
        for event in ('UPDATE', 'DELETE'):
            op.execute(
                f"CREATE TRIGGER trg_audit_events_append_only_{event.lower()} BEFORE {event}"
                f" ON audit_events BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def _drop_audit_triggers(dialect):
    if dialect == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS trg_audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS trg_audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS trg_audit_events_append_only()")
    else:
        for event in ('update', 'delete'):
            op.execute(f"DROP TRIGGER IF EXISTS trg_audit_events_append_only_{event}")


def downgrade():
    _drop_audit_triggers(op.get_bind().dialect.name)
    op.drop_index('ix_audit_events_actor_time', table_name='audit_events')
    op.drop_index('ix_audit_events_time', table_name='audit_events')
    with op.batch_alter_table('principal_sessions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_principal_sessions_staff_session_has_staff_member'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_principal_sessions_staff_id_staff_members'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_principal_sessions_staff_id'))
        batch_op.drop_column('staff_id')

    op.drop_table('staff_members')
