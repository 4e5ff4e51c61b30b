"""An index on the kind of history events, for the counts of moves between providers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

``ix_events_kind`` (``kind``, ``created_at``): the metrics and the dashboard count the
``rerouted`` events (messages moved to another provider while theirs was down) per pair of
providers, over all time or a date range, without reading the rest of the history.
"""

from __future__ import annotations

from typing import Optional

from alembic import op

revision = "0004"
down_revision: Optional[str] = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``ix_events_kind``."""
    op.create_index("ix_events_kind", "events", ["kind", "created_at"])


def downgrade() -> None:
    """Drop ``ix_events_kind``."""
    op.drop_index("ix_events_kind", table_name="events")
