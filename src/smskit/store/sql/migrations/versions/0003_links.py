"""Short links and their clicks (link tracking); the dashboard's covering index.

Revision ID: 0003
Revises: 0002
Create Date: 2024-07-01

``links``: one row per short code, the original URL and the message (and campaign) it was
made for. ``link_clicks``: one row per click, with the time, a truncated user agent and the
link's message and campaign (copied, so the stats read one covering index); no IP address is
kept. ``ix_messages_stats`` covers the dashboard's aggregates over ``messages``. Types are
spelled out here, as in 0001.
"""

from __future__ import annotations

from typing import Optional

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: Optional[str] = "0002"
branch_labels = None
depends_on = None

#: The dashboard's covering index: every aggregate over a date range reads only the index.
_STATS_COLUMNS = ["created_at", "direction", "state", "provider", "campaign_id", "cost",
                  "in_reply_to"]


def upgrade() -> None:
    """Create ``links`` and ``link_clicks`` with their indexes, and ``ix_messages_stats``."""
    op.create_table(
        "links",
        sa.Column("code", sa.String(), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_links_message_id", "links", ["message_id"])
    op.create_index("ix_links_campaign_id", "links", ["campaign_id"])
    op.create_table(
        "link_clicks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("code", sa.String(), sa.ForeignKey("links.code", name="fk_link_clicks_code"),
                  nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=True),
        sa.Column("clicked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_agent", sa.String(), nullable=True),
    )
    op.create_index("ix_link_clicks_code", "link_clicks", ["code"])
    op.create_index("ix_link_clicks_stats", "link_clicks",
                    ["clicked_at", "campaign_id", "message_id", "code"])
    op.create_index("ix_messages_stats", "messages", _STATS_COLUMNS)


def downgrade() -> None:
    """Drop the link tables (their clicks are lost) and ``ix_messages_stats``."""
    op.drop_index("ix_messages_stats", table_name="messages")
    op.drop_index("ix_link_clicks_stats", table_name="link_clicks")
    op.drop_index("ix_link_clicks_code", table_name="link_clicks")
    op.drop_table("link_clicks")
    op.drop_index("ix_links_campaign_id", table_name="links")
    op.drop_index("ix_links_message_id", table_name="links")
    op.drop_table("links")
