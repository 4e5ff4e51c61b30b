"""The SQL store's tables (SQLAlchemy Core) and the row <-> value object conversions.

This metadata describes the schema the Alembic migrations build; a test compares the two.
Datetimes are stored in UTC and read back aware; a cost is an exact integer of micro-units;
tags and schedule requests are JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, Dict, Mapping, Optional, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from smskit.errors import ValidationError
from smskit.models import Direction, Message, State
from smskit.store import rules as c
from smskit.store.base import BatchInfo, BlacklistEntry, EventRecord, Schedule

__all__ = [
    "MESSAGE_COLUMNS",
    "VERSION_TABLE",
    "batches",
    "blacklist",
    "blacklist_audit",
    "blacklist_sync",
    "campaigns",
    "contact_tags",
    "contacts",
    "events",
    "kv_state",
    "link_clicks",
    "links",
    "message_row",
    "message_values",
    "messages",
    "metadata",
    "row_batch",
    "row_blacklist",
    "row_event",
    "row_message",
    "row_schedule",
    "schedule_row",
    "schedules",
]

#: Alembic's version table, named so it cannot clash with another application's.
VERSION_TABLE = "smskit_alembic_version"


class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """An aware datetime stored in UTC (naive UTC text on SQLite), read back aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: Optional[dt.datetime], dialect: Dialect
    ) -> Optional[dt.datetime]:
        """UTC for the database; a naive datetime is refused."""
        value = c.require_aware(value, "datetime")
        if value is not None and dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: Optional[dt.datetime], dialect: Dialect
    ) -> Optional[dt.datetime]:
        """An aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Micros(sa.types.TypeDecorator[Decimal]):
    """A :class:`Decimal` kept exactly as a BIGINT of 10**-6 units (sums stay exact)."""

    impl = sa.BigInteger()
    cache_ok = True

    def process_bind_param(self, value: Optional[Decimal], dialect: Dialect) -> Optional[int]:
        """Integer micro-units; more than six decimal places is refused."""
        return c.cost_to_units(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Optional[Decimal]:
        """The exact Decimal."""
        return c.cost_from_units(value)


class JsonText(sa.types.TypeDecorator[Any]):
    """A JSON-able value stored as text."""

    impl = sa.Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Optional[str]:
        """JSON text; a value that is not JSON-able is refused."""
        if value is None:
            return None
        try:
            return json.dumps(value, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"value is not JSON-serialisable: {exc}") from exc

    def process_result_value(self, value: Optional[str], dialect: Dialect) -> Any:
        """The decoded value."""
        return None if value is None else json.loads(value)


metadata = sa.MetaData()

_Id = sa.String

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", _Id(), primary_key=True),
    sa.Column("provider", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("provider_request_id", sa.String(), nullable=True),
    sa.Column("error_text", sa.Text(), nullable=True),
    sa.Index("ix_batches_status_created", "status", "created_at"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", _Id(), primary_key=True),
    sa.Column("phone", sa.String(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("direction", sa.String(), nullable=False),
    sa.Column("state", sa.String(), nullable=False),
    sa.Column("provider", sa.String(), nullable=True),
    sa.Column("provider_message_id", sa.String(), nullable=True),
    sa.Column("provider_request_id", sa.String(), nullable=True),
    sa.Column("provider_reply_id", sa.String(), nullable=True),
    sa.Column("batch_id", _Id(), sa.ForeignKey("batches.id", name="fk_messages_batch_id"),
              nullable=True),
    sa.Column("encoding", sa.String(), nullable=True),
    sa.Column("segments", sa.Integer(), nullable=False),
    sa.Column("cost", Micros(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("scheduled_at", UtcDateTime(), nullable=True),
    sa.Column("sent_at", UtcDateTime(), nullable=True),
    sa.Column("delivered_at", UtcDateTime(), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=True),
    sa.Column("error_code", sa.String(), nullable=True),
    sa.Column("error_text", sa.Text(), nullable=True),
    sa.Column("campaign_id", sa.String(), nullable=True),
    sa.Column("schedule_id", sa.String(), nullable=True),
    sa.Column("tags", JsonText(), nullable=False),
    sa.Column("partner_ref", sa.String(), nullable=True),
    sa.Column("idempotency_key", sa.String(), nullable=True),
    sa.Column("in_reply_to", _Id(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.UniqueConstraint("idempotency_key", name="uq_messages_idempotency_key"),
    sa.UniqueConstraint("provider", "provider_message_id", name="uq_messages_provider_message_id"),
    sa.UniqueConstraint("provider", "provider_reply_id", name="uq_messages_provider_reply_id"),
    sa.Index("ix_messages_claim", "state", "provider", "batch_id", "scheduled_at"),
    sa.Index("ix_messages_batch_id", "batch_id"),
    sa.Index("ix_messages_created_at", "created_at"),
    sa.Index("ix_messages_campaign_id", "campaign_id"),
    sa.Index("ix_messages_phone", "phone"),
    sa.Index("ix_messages_in_reply_to", "in_reply_to"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("message_id", _Id(), sa.ForeignKey("messages.id", name="fk_events_message_id"),
              nullable=True),
    sa.Column("provider", sa.String(), nullable=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("old_state", sa.String(), nullable=True),
    sa.Column("new_state", sa.String(), nullable=True),
    sa.Column("applied", sa.Boolean(), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("provider_message_id", sa.String(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_events_message_id", "message_id", "id"),
    sa.Index("ix_events_kind", "kind", "created_at"),
)

blacklist = sa.Table(
    "blacklist",
    metadata,
    sa.Column("phone", sa.String(), primary_key=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", _Id(), primary_key=True),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("request", JsonText(), nullable=False),
    sa.Column("timezone", sa.String(), nullable=False),
    sa.Column("rrule", sa.Text(), nullable=True),
    sa.Column("dtstart", UtcDateTime(), nullable=True),
    sa.Column("next_run_at", UtcDateTime(), nullable=True),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("last_run_at", UtcDateTime(), nullable=True),
    sa.Column("runs", sa.Integer(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_schedules_due", "active", "next_run_at"),
)

# Migration 0003: the dashboard's covering index on messages (every aggregate over a date
# range reads the index alone, never the rows), and the short links with their clicks.
sa.Index("ix_messages_stats", messages.c.created_at, messages.c.direction, messages.c.state,
         messages.c.provider, messages.c.campaign_id, messages.c.cost, messages.c.in_reply_to)

# No foreign key from links to messages: a message's links are stored just before the message
# itself (so no message ever goes out with a code the server does not know).
links = sa.Table(
    "links",
    metadata,
    sa.Column("code", sa.String(), primary_key=True),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("message_id", _Id(), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_links_message_id", "message_id"),
    sa.Index("ix_links_campaign_id", "campaign_id"),
)

link_clicks = sa.Table(
    "link_clicks",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("code", sa.String(), sa.ForeignKey("links.code", name="fk_link_clicks_code"),
              nullable=False),
    # copied from the link (which never changes) so the stats read one covering index
    sa.Column("message_id", _Id(), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=True),
    sa.Column("clicked_at", UtcDateTime(), nullable=False),
    sa.Column("user_agent", sa.String(), nullable=True),
    sa.Index("ix_link_clicks_code", "code"),
    sa.Index("ix_link_clicks_stats", "clicked_at", "campaign_id", "message_id", "code"),
)

# Contacts, campaigns, the blacklist audit and sync queue, key/value state (migration 0002).
contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("phone", sa.String(), primary_key=True),
    sa.Column("name", sa.String(), nullable=True),
    sa.Column("tags", JsonText(), nullable=False),
    sa.Column("variables", JsonText(), nullable=False),
    sa.Column("dnd_window", sa.String(), nullable=True),
    sa.Column("dnd_days", JsonText(), nullable=False),
    sa.Column("dnd_until", UtcDateTime(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# One row per (tag, phone): a tags audience is an index range scan, paged by phone.
contact_tags = sa.Table(
    "contact_tags",
    metadata,
    sa.Column("tag", sa.String(), primary_key=True),
    sa.Column("phone", sa.String(), primary_key=True),
    sa.Index("ix_contact_tags_phone", "phone"),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", _Id(), primary_key=True),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("template", sa.Text(), nullable=False),
    sa.Column("segment", JsonText(), nullable=False),  # the audience (Campaign.audience)
    sa.Column("variables", JsonText(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("provider", sa.String(), nullable=True),
    sa.Column("scheduled_at", UtcDateTime(), nullable=True),
    sa.Column("cursor", sa.Text(), nullable=True),
    sa.Column("materialised", sa.Boolean(), nullable=False),
    sa.Column("skipped", sa.Integer(), nullable=False),
    sa.Column("job_ids", JsonText(), nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=True),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Index("ix_campaigns_status", "status"),
)

blacklist_audit = sa.Table(
    "blacklist_audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("phone", sa.String(), nullable=False),
    sa.Column("action", sa.String(), nullable=False),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_blacklist_audit_phone", "phone", "id"),
    sa.Index("ix_blacklist_audit_campaign_id", "campaign_id"),
)

blacklist_sync = sa.Table(
    "blacklist_sync",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("phone", sa.String(), nullable=False),
    sa.Column("action", sa.String(), nullable=False),
    sa.Column("provider", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
    sa.Column("acknowledged_at", UtcDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Index("ix_blacklist_sync_pending", "status", "provider", "next_attempt_at"),
)

kv_state = sa.Table(
    "kv_state",
    metadata,
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)


def message_row(m: Message) -> Dict[str, Any]:
    """The ``messages`` row for a message (``provider_reply_id`` is set by the caller)."""
    c.cost_to_units(m.cost, f"message {m.id} cost")
    return {
        "id": m.id, "phone": m.phone, "body": m.body, "direction": m.direction.value,
        "state": m.state.value, "provider": m.provider,
        "provider_message_id": m.provider_message_id,
        "provider_request_id": m.provider_request_id, "provider_reply_id": None,
        "batch_id": m.batch_id, "encoding": m.encoding, "segments": m.segments, "cost": m.cost,
        "created_at": m.created_at, "scheduled_at": m.scheduled_at, "sent_at": m.sent_at,
        "delivered_at": m.delivered_at, "updated_at": m.updated_at, "error_code": m.error_code,
        "error_text": m.error_text, "campaign_id": m.campaign_id, "schedule_id": m.schedule_id,
        "tags": list(m.tags), "partner_ref": m.partner_ref,
        "idempotency_key": m.idempotency_key, "in_reply_to": m.in_reply_to,
        "attempts": m.attempts,
    }


#: The columns of ``messages`` in table order (what :func:`message_values` gives).
MESSAGE_COLUMNS = tuple(column.key for column in messages.columns)


def message_values(m: Message) -> Tuple[Any, ...]:
    """:func:`message_row`'s values in :data:`MESSAGE_COLUMNS` order, for a message already
    normalised (:func:`smskit.store.rules.normalise_message` checked its cost); tags stay a
    tuple, which the JSON column writes as it writes the list."""
    return (m.id, m.phone, m.body, m.direction.value, m.state.value, m.provider,
            m.provider_message_id, m.provider_request_id, None, m.batch_id, m.encoding,
            m.segments, m.cost, m.created_at, m.scheduled_at, m.sent_at, m.delivered_at,
            m.updated_at, m.error_code, m.error_text, m.campaign_id, m.schedule_id, m.tags,
            m.partner_ref, m.idempotency_key, m.in_reply_to, m.attempts)


_MESSAGE_FIELDS = (
    "id", "phone", "body", "provider", "provider_message_id", "provider_request_id", "batch_id",
    "encoding", "segments", "cost", "created_at", "scheduled_at", "sent_at", "delivered_at",
    "updated_at", "error_code", "error_text", "campaign_id", "schedule_id", "partner_ref",
    "idempotency_key", "in_reply_to", "attempts",
)


def row_message(row: Mapping[Any, Any]) -> Message:
    """The message a ``messages`` row holds."""
    fields = {name: row[name] for name in _MESSAGE_FIELDS}
    return Message(
        direction=Direction(row["direction"]), state=State(row["state"]),
        tags=tuple(row["tags"] or ()), **fields,
    )


def row_batch(row: Mapping[Any, Any], message_ids: Any = ()) -> BatchInfo:
    """The batch a ``batches`` row holds, with its message ids."""
    return BatchInfo(
        id=row["id"], provider=row["provider"], status=row["status"],
        created_at=row["created_at"], updated_at=row["updated_at"],
        message_ids=tuple(message_ids), provider_request_id=row["provider_request_id"],
        error_text=row["error_text"],
    )


def row_event(row: Mapping[Any, Any]) -> EventRecord:
    """The history line an ``events`` row holds."""
    return EventRecord(
        id=int(row["id"]), message_id=row["message_id"], provider=row["provider"],
        kind=row["kind"], old_state=row["old_state"], new_state=row["new_state"],
        applied=bool(row["applied"]), detail=row["detail"],
        provider_message_id=row["provider_message_id"], created_at=row["created_at"],
    )


def row_blacklist(row: Mapping[Any, Any]) -> BlacklistEntry:
    """The entry a ``blacklist`` row holds."""
    return BlacklistEntry(phone=row["phone"], reason=row["reason"], source=row["source"],
                          created_at=row["created_at"])


def schedule_row(s: Schedule) -> Dict[str, Any]:
    """The ``schedules`` row for a schedule."""
    return {
        "id": s.id, "name": s.name, "request": s.request, "timezone": s.timezone,
        "rrule": s.rrule, "dtstart": s.dtstart, "next_run_at": s.next_run_at,
        "active": s.active, "last_run_at": s.last_run_at, "runs": s.runs,
        "created_at": s.created_at,
    }


def row_schedule(row: Mapping[Any, Any]) -> Schedule:
    """The schedule a ``schedules`` row holds."""
    return Schedule(
        id=row["id"], name=row["name"], request=row["request"], timezone=row["timezone"],
        rrule=row["rrule"], dtstart=row["dtstart"], next_run_at=row["next_run_at"],
        active=bool(row["active"]), last_run_at=row["last_run_at"], runs=int(row["runs"]),
        created_at=row["created_at"],
    )
