"""Contacts, campaigns, the blacklist audit trail and gateway sync queue, key/value state.

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-15

* ``contacts`` (phone E.164 key, name, tags and variables as JSON text, do-not-disturb) and
  ``contact_tags`` (one row per tag and phone: tag segments are index range scans);
* ``campaigns`` (template, segment as JSON data, status, materialisation cursor, job ids);
* ``blacklist_audit`` (who/what changed the blacklist, when and why) and ``blacklist_sync``
  (changes to push to each gateway, retried until acknowledged);
* ``kv_state`` (small shared state such as the last balance seen);
* ``ix_messages_in_reply_to`` so campaign reply counts are an indexed join.

Existing blacklist entries get an ``add`` audit line (source and reason kept). Types are spelled
out here, as in 0001.
"""

from __future__ import annotations

from typing import Any, Optional

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: Optional[str] = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _serial() -> sa.Column[Any]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                     primary_key=True, autoincrement=True)


def upgrade() -> None:
    """Create the tables and indexes; audit the entries already on the blacklist."""
    op.create_table(
        "contacts",
        sa.Column("phone", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False),
        sa.Column("dnd_window", sa.String(), nullable=True),
        sa.Column("dnd_days", sa.Text(), nullable=False),
        _ts("dnd_until"),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
    )
    op.create_table(
        "contact_tags",
        sa.Column("tag", sa.String(), primary_key=True),
        sa.Column("phone", sa.String(), primary_key=True),
    )
    op.create_index("ix_contact_tags_phone", "contact_tags", ["phone"])

    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("segment", sa.Text(), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=True),
        _ts("scheduled_at"),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("materialised", sa.Boolean(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("job_ids", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
    )
    op.create_index("ix_campaigns_status", "campaigns", ["status"])

    op.create_table(
        "blacklist_audit",
        _serial(),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=True),
        _ts("created_at", nullable=False),
    )
    op.create_index("ix_blacklist_audit_phone", "blacklist_audit", ["phone", "id"])
    op.create_index("ix_blacklist_audit_campaign_id", "blacklist_audit", ["campaign_id"])
    op.execute(
        "INSERT INTO blacklist_audit (phone, action, source, reason, campaign_id, created_at) "
        "SELECT phone, 'add', source, reason, NULL, created_at FROM blacklist "
        "ORDER BY created_at, phone"
    )

    op.create_table(
        "blacklist_sync",
        _serial(),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("next_attempt_at", nullable=False),
        _ts("acknowledged_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_blacklist_sync_pending", "blacklist_sync",
                    ["status", "provider", "next_attempt_at"])

    op.create_table(
        "kv_state",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        _ts("updated_at", nullable=False),
    )
    op.create_index("ix_messages_in_reply_to", "messages", ["in_reply_to"])


def downgrade() -> None:
    """Drop what :func:`upgrade` created (the audit trail, contacts and campaigns are lost)."""
    op.drop_index("ix_messages_in_reply_to", table_name="messages")
    op.drop_table("kv_state")
    op.drop_index("ix_blacklist_sync_pending", table_name="blacklist_sync")
    op.drop_table("blacklist_sync")
    op.drop_index("ix_blacklist_audit_campaign_id", table_name="blacklist_audit")
    op.drop_index("ix_blacklist_audit_phone", table_name="blacklist_audit")
    op.drop_table("blacklist_audit")
    op.drop_index("ix_campaigns_status", table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_index("ix_contact_tags_phone", table_name="contact_tags")
    op.drop_table("contact_tags")
    op.drop_table("contacts")
