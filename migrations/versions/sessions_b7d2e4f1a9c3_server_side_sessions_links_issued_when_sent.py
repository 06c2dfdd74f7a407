"""sessions: server-side principal sessions; emails get their portal link when sent

Revision ID: b7d2e4f1a9c3
Revises: b7d1e0a4c2f9
Create Date: 2026-11-29 21:45:00

Also removes working links from what is already stored: queued and sent emails keep
their text with the link replaced by a placeholder (queued ones get a fresh link when
sent), and the links themselves stay valid for whoever received them.
"""

import re

import sqlalchemy as sa
from alembic import op

import portal.db

# revision identifiers, used by Alembic.
revision = "b7d2e4f1a9c3"
down_revision = "b7d1e0a4c2f9"
branch_labels = None
depends_on = None

# Kept in step with portal.notifications.services.PORTAL_LINK_SLOT (a migration must not
# import application code that may change later).
LINK = re.compile(r"(https?://[^\s\"'<>]+?/l/)[A-Za-z0-9_-]{20,}")
SLOT = "link-issued-when-sent"


def upgrade():
    op.create_table(
        "principal_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("principal_kind", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("link_id", sa.Integer(), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "(ended_at IS NULL) = (ended_reason IS NULL)",
            name=op.f("ck_principal_sessions_ended_with_reason"),
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_principal_sessions_expires_after_created")
        ),
        sa.CheckConstraint(
            "principal_kind <> 'customer' OR (customer_id IS NOT NULL AND link_id IS NOT NULL)",
            name=op.f("ck_principal_sessions_customer_session_has_customer_and_link"),
        ),
        sa.CheckConstraint(
            "principal_kind IN ('customer', 'staff')",
            name=op.f("ck_principal_sessions_principal_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_principal_sessions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["access_links.id"],
            name=op.f("fk_principal_sessions_link_id_access_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_principal_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_principal_sessions_token_hash")),
    )
    with op.batch_alter_table("principal_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_principal_sessions_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_principal_sessions_link_id"), ["link_id"], unique=False)

    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_purpose", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("access_link_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_messages_access_link_id_access_links"),
            "access_links",
            ["access_link_id"],
            ["id"],
            ondelete="SET NULL",
        )
    _remove_stored_links()


def _remove_stored_links():
    """Replace every stored portal link in the outbox by the placeholder."""
    connection = op.get_bind()
    outbox = sa.table(
        "outbox_messages",
        sa.column("id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("status", sa.String),
        sa.column("subject", sa.String),
        sa.column("body_text", sa.Text),
        sa.column("body_html", sa.Text),
        sa.column("context", sa.JSON),
        sa.column("link_purpose", sa.String),
    )
    rows = connection.execute(
        sa.select(
            outbox.c.id,
            outbox.c.kind,
            outbox.c.status,
            outbox.c.body_text,
            outbox.c.body_html,
            outbox.c.context,
        )
    ).all()
    for row in rows:
        text = LINK.sub(lambda m: m.group(1) + SLOT, row.body_text or "")
        html = LINK.sub(lambda m: m.group(1) + SLOT, row.body_html or "")
        context = dict(row.context) if isinstance(row.context, dict) else row.context
        had_link = text != (row.body_text or "") or html != (row.body_html or "")
        if isinstance(context, dict) and "portal_url" in context:
            del context["portal_url"]
            had_link = True
        if not had_link:
            continue
        values = {
            "body_text": text if row.body_text is not None else None,
            "body_html": html if row.body_html is not None else None,
            "context": context,
        }
        if row.status in ("queued", "sending"):
            values["link_purpose"] = row.kind[:32]
        connection.execute(sa.update(outbox).where(outbox.c.id == row.id).values(**values))


def downgrade():
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_outbox_messages_access_link_id_access_links"), type_="foreignkey"
        )
        batch_op.drop_column("access_link_id")
        batch_op.drop_column("link_purpose")

    with op.batch_alter_table("principal_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_principal_sessions_link_id"))
        batch_op.drop_index(batch_op.f("ix_principal_sessions_customer_id"))

    op.drop_table("principal_sessions")
