"""The SQL store's part of routing: messages taken out of a claimed batch (plain releases and
moves to another provider) and the counts of those moves."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa

from smskit.errors import NotFoundError
from smskit.models import State
from smskit.store import rules as c
from smskit.store.base import KIND_REROUTED, Requeue
from smskit.store.sql.driver import SqlBase, chunks
from smskit.store.sql.tables import batches, events, messages

__all__ = ["SqlRoutingMixin"]

_m = messages.c


class SqlRoutingMixin(SqlBase):
    """:meth:`requeue_messages` and :meth:`reroute_counts` of
    :class:`smskit.store.sql.store.SqlStore`."""

    def requeue_messages(self, batch_id: str, items: Sequence[Requeue], *, reason: str,
                         now: dt.datetime,
                         retry_at: Optional[dt.datetime] = None) -> List[str]:
        """Take the listed messages still ``outgoing`` in the batch back to the queue, under
        the provider each item names, in one transaction (a move writes a ``rerouted``
        event). The rows are locked and re-checked first: a result or a cancel that came
        first wins."""
        now = c.require_utc(now, "now")
        retry_at = c.require_aware(retry_at, "retry_at")
        wanted = [item.message_id for item in items]
        with self._tx("requeue_messages", write=True) as conn:
            found = conn.execute(self._locked(
                sa.select(batches.c.id).where(batches.c.id == batch_id))).first()
            if found is None:
                raise NotFoundError(f"no batch {batch_id!r}")
            current: Dict[str, Optional[str]] = {}
            for chunk in chunks(wanted):
                query = self._locked(sa.select(_m.id, _m.provider).where(
                    _m.id.in_(chunk), _m.batch_id == batch_id,
                    _m.state == State.OUTGOING.value))
                current.update({row[0]: row[1] for row in conn.execute(query)})
            groups: Dict[Tuple[Optional[str], Optional[Decimal]], List[str]] = {}
            moves: List[Dict[str, Any]] = []
            done: List[str] = []
            for item in items:
                if item.message_id not in current or item.message_id in done:
                    continue
                old = current[item.message_id]
                provider = item.provider or old
                moved = provider != old
                cost = item.cost if moved else None
                groups.setdefault((provider, cost), []).append(item.message_id)
                if moved:
                    moves.append({"message_id": item.message_id, "provider": provider,
                                  "kind": KIND_REROUTED, "created_at": now,
                                  "detail": c.reroute_detail(old, provider or "", reason)})
                done.append(item.message_id)
            for (provider, cost), ids in groups.items():
                values: Dict[str, Any] = {"batch_id": None, "provider": provider,
                                          "updated_at": now}
                if cost is not None:
                    values["cost"] = cost
                if retry_at is not None:
                    values["scheduled_at"] = retry_at
                for chunk in chunks(ids):
                    conn.execute(sa.update(messages).where(
                        _m.id.in_(chunk), _m.batch_id == batch_id,
                        _m.state == State.OUTGOING.value).values(values))
            self._event_row(conn, moves)
        return done

    def reroute_counts(self, start: Optional[dt.datetime] = None,
                       end: Optional[dt.datetime] = None) -> Dict[Tuple[str, str], int]:
        """Messages moved from one provider to another, ``{(from, to): count}``, over the
        ``rerouted`` events created in ``[start, end)`` (open sides: all time); one
        aggregate query on ``ix_events_kind``."""
        start = c.require_aware(start, "start")
        end = c.require_aware(end, "end")
        query = (sa.select(events.c.detail, sa.func.count())
                 .where(events.c.kind == KIND_REROUTED).group_by(events.c.detail))
        if start is not None:
            query = query.where(events.c.created_at >= start)
        if end is not None:
            query = query.where(events.c.created_at < end)
        counts: Dict[Tuple[str, str], int] = {}
        with self._tx("reroute_counts") as conn:
            for detail, count in conn.execute(query):
                pair = c.reroute_pair(str(detail))
                if pair is not None:
                    counts[pair] = counts.get(pair, 0) + int(count)
        return counts
