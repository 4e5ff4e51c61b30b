"""Whole ``messages`` rows read at driver level (SQLite): the messages of a list of our ids,
built into :class:`~smskit.models.Message` objects exactly as :func:`row_message` builds them
from SQLAlchemy's rows, with less work per row.

SQLAlchemy runs every column of every row through its result processor (five datetimes, the
cost, the tags), builds a row object and a mapping of it, and :func:`row_message` then reads
that mapping by name. Here the driver's rows are unpacked by position, and only the columns
that have a processor go through it: the very processor SQLAlchemy would call (taken from the
dialect), once per distinct value within a call, since a processor is a pure function of its
value and a group of messages shares many (a batch's send time, no tags, one price).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from smskit.models import Direction, Message, State
from smskit.store.sql.driver import DriverIn
from smskit.store.sql.tables import JsonText, Micros, UtcDateTime, messages

__all__ = ["DriverMessages"]

_m = messages.c
#: The columns read, in the order :meth:`DriverMessages.by_ids` unpacks them: every field of
#: a :class:`Message` (not ``provider_reply_id``, which is none).
_COLUMNS = ("id", "phone", "body", "direction", "state", "provider", "provider_message_id",
            "provider_request_id", "batch_id", "encoding", "segments", "cost", "created_at",
            "scheduled_at", "sent_at", "delivered_at", "updated_at", "error_code",
            "error_text", "campaign_id", "schedule_id", "tags", "partner_ref",
            "idempotency_key", "in_reply_to", "attempts")
_TIMES = ("created_at", "scheduled_at", "sent_at", "delivered_at", "updated_at")
#: The column types whose values :meth:`DriverMessages.by_ids` converts (every other column's
#: type must have no result processor on the dialect: its values are used as the driver gives
#: them, as SQLAlchemy does).
_CONVERTED = {"cost": Micros, "tags": JsonText, **dict.fromkeys(_TIMES, UtcDateTime)}
_DIRECTIONS = {d.value: d for d in Direction}
_STATES = {s.value: s for s in State}
_MISSING = object()
_Processor = Callable[[Any], Any]


class DriverMessages:
    """The messages of a list of our ids, read in one driver-level ``SELECT ... IN`` per
    chunk of ids (:class:`DriverIn`) and built as :func:`row_message` builds SQLAlchemy's
    rows. :meth:`for_dialect` gives ``None`` where that cannot be done exactly (a dialect
    without positional parameters, or one whose column types convert other columns)."""

    def __init__(self, lookup: DriverIn, time: _Processor, cost: _Processor,
                 tags: _Processor) -> None:
        """``lookup`` selects :data:`_COLUMNS`; the others are the result processors of the
        datetime, cost and tags columns."""
        self._lookup = lookup
        self._time = time
        self._cost = cost
        self._tags = tags

    @classmethod
    def for_dialect(cls, dialect: sa.engine.Dialect) -> Optional[DriverMessages]:
        """The reader for ``dialect``, or ``None`` when SQLAlchemy's path must be kept."""
        processors: Dict[str, Optional[_Processor]] = {}
        for name in _COLUMNS:
            kind = _CONVERTED.get(name)
            column_type = _m[name].type
            if kind is not None and type(column_type) is not kind:
                return None  # the schema changed under this reader: keep SQLAlchemy's path
            processors[name] = column_type.dialect_impl(dialect).result_processor(dialect, None)
        if any(processors[name] is not None for name in _COLUMNS if name not in _CONVERTED):
            return None
        if len({repr(_m[name].type) for name in _TIMES}) != 1:
            return None  # one processor converts the five datetimes: they must be alike
        lookup = DriverIn.for_dialect(
            lambda places: sa.select(*[_m[name] for name in _COLUMNS]).where(_m.id.in_(places)),
            dialect)
        time, cost, tags = processors["created_at"], processors["cost"], processors["tags"]
        if lookup is None or time is None or cost is None or tags is None:
            return None
        return cls(lookup, time, cost, tags)

    def by_ids(self, conn: Connection, ids: Sequence[str]) -> Dict[str, Message]:
        """The stored messages among ``ids`` (distinct), by id."""
        time, cost, tags = self._time, self._cost, self._tags
        # Within the call, each distinct value is converted once (None too, by the processor).
        times: Dict[Any, Any] = {}
        costs: Dict[Any, Any] = {}
        tag_tuples: Dict[Any, Tuple[Any, ...]] = {}

        def at(value: Any) -> Any:
            found = times.get(value, _MISSING)
            if found is _MISSING:
                found = times[value] = time(value)
            return found

        found: Dict[str, Message] = {}
        for (id_, phone, body, direction, state, provider, provider_message_id,
             provider_request_id, batch_id, encoding, segments, cost_units, created_at,
             scheduled_at, sent_at, delivered_at, updated_at, error_code, error_text,
             campaign_id, schedule_id, tags_text, partner_ref, idempotency_key, in_reply_to,
             attempts) in self._lookup.rows(conn, ids):
            amount = costs.get(cost_units, _MISSING)
            if amount is _MISSING:
                amount = costs[cost_units] = cost(cost_units)
            labels = tag_tuples.get(tags_text)
            if labels is None:
                labels = tag_tuples[tags_text] = tuple(tags(tags_text) or ())
            found[id_] = Message(
                id=id_, phone=phone, body=body,
                direction=_DIRECTIONS.get(direction) or Direction(direction),
                state=_STATES.get(state) or State(state), provider=provider,
                provider_message_id=provider_message_id,
                provider_request_id=provider_request_id, batch_id=batch_id, encoding=encoding,
                segments=segments, cost=amount, created_at=at(created_at),
                scheduled_at=at(scheduled_at), sent_at=at(sent_at),
                delivered_at=at(delivered_at), updated_at=at(updated_at),
                error_code=error_code, error_text=error_text, campaign_id=campaign_id,
                schedule_id=schedule_id, tags=labels, partner_ref=partner_ref,
                idempotency_key=idempotency_key, in_reply_to=in_reply_to, attempts=attempts)
        return found
