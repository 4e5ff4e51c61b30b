"""The initial schema: batches, messages, events, blacklist and schedules.

Revision ID: 0001
Revises:
Create Date: 2024-06-01

Types are spelled out here (not imported from the store) so this revision never changes when
the store's code does. Datetimes are ``TIMESTAMP WITH TIME ZONE`` (UTC text on SQLite), costs
BIGINT micro-units, tags and schedule requests JSON text.
"""

from __future__ import annotations

from typing import Any, Optional

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: Optional[str] = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create every table of the store."""
    op.create_table(
        "batches",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        sa.Column("provider_request_id", sa.String(), nullable=True),
        sa.Column("error_text", sa.Text(), nullable=True),
    )
    op.create_index("ix_batches_status_created", "batches", ["status", "created_at"])

    op.create_table(
        "messages",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("provider_message_id", sa.String(), nullable=True),
        sa.Column("provider_request_id", sa.String(), nullable=True),
        sa.Column("provider_reply_id", sa.String(), nullable=True),
        sa.Column("batch_id", sa.String(),
                  sa.ForeignKey("batches.id", name="fk_messages_batch_id"), nullable=True),
        sa.Column("encoding", sa.String(), nullable=True),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=True),
        _ts("created_at", nullable=False),
        _ts("scheduled_at"),
        _ts("sent_at"),
        _ts("delivered_at"),
        _ts("updated_at"),
        sa.Column("error_code", sa.String(), nullable=True),
        sa.Column("error_text", sa.Text(), nullable=True),
        sa.Column("campaign_id", sa.String(), nullable=True),
        sa.Column("schedule_id", sa.String(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("partner_ref", sa.String(), nullable=True),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("in_reply_to", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_messages_idempotency_key"),
        sa.UniqueConstraint("provider", "provider_message_id",
                            name="uq_messages_provider_message_id"),
        sa.UniqueConstraint("provider", "provider_reply_id", name="uq_messages_provider_reply_id"),
    )
    op.create_index("ix_messages_claim", "messages",
                    ["state", "provider", "batch_id", "scheduled_at"])
    op.create_index("ix_messages_batch_id", "messages", ["batch_id"])
    op.create_index("ix_messages_created_at", "messages", ["created_at"])
    op.create_index("ix_messages_campaign_id", "messages", ["campaign_id"])
    op.create_index("ix_messages_phone", "messages", ["phone"])

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("message_id", sa.String(),
                  sa.ForeignKey("messages.id", name="fk_events_message_id"), nullable=True),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("old_state", sa.String(), nullable=True),
        sa.Column("new_state", sa.String(), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("provider_message_id", sa.String(), nullable=True),
        _ts("created_at", nullable=False),
    )
    op.create_index("ix_events_message_id", "events", ["message_id", "id"])

    op.create_table(
        "blacklist",
        sa.Column("phone", sa.String(), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        _ts("created_at", nullable=False),
    )

    op.create_table(
        "schedules",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("timezone", sa.String(), nullable=False),
        sa.Column("rrule", sa.Text(), nullable=True),
        _ts("dtstart"),
        _ts("next_run_at"),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("last_run_at"),
        sa.Column("runs", sa.Integer(), nullable=False),
        _ts("created_at", nullable=False),
    )
    op.create_index("ix_schedules_due", "schedules", ["active", "next_run_at"])


def downgrade() -> None:
    """Drop every table of the store (operators only: this loses all data)."""
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
    op.drop_table("blacklist")
    op.drop_index("ix_events_message_id", table_name="events")
    op.drop_table("events")
    for name in ("ix_messages_phone", "ix_messages_campaign_id", "ix_messages_created_at",
                 "ix_messages_batch_id", "ix_messages_claim"):
        op.drop_index(name, table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_batches_status_created", table_name="batches")
    op.drop_table("batches")
