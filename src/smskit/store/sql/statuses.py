"""The SQL store's part of status callbacks and replies: :meth:`apply_status`,
:meth:`apply_statuses` (the webhook server's group commit) and :meth:`record_inbound` of
:class:`smskit.store.sql.store.SqlStore`, with the statements they share with the dispatch
part (:mod:`smskit.store.sql.dispatch`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from smskit.errors import StoreError
from smskit.models import (
    InboundMessage,
    Message,
    StatusEvent,
    apply_status,
    utcnow,
)
from smskit.store import rules as c
from smskit.store.base import ApplyOutcome, InboundOutcome
from smskit.store.sql.driver import DriverMany, SqlBase, chunks
from smskit.store.sql.rows import DriverMessages
from smskit.store.sql.tables import message_row, messages, row_message

__all__ = ["SqlStatusMixin"]

#: Mutable columns a status event or a send result may change.
_STATUS_FIELDS = ("state", "provider_message_id", "provider_request_id", "sent_at",
                  "delivered_at", "updated_at", "error_code", "error_text")
_m = messages.c

# Hot statements are built once: SQLAlchemy then reuses their compiled form and cache key, which
# building them per call would recompute (most of the cost of a one-row statement).
_SET_STATUS = sa.update(messages).where(_m.id == sa.bindparam("b_id")).values(
    {name: sa.bindparam(f"b_{name}", type_=_m[name].type) for name in _STATUS_FIELDS})
#: The order :meth:`SqlStore.record_results` gives the values of :data:`_SET_STATUS` in.
_SET_STATUS_ORDER = (*(f"b_{name}" for name in _STATUS_FIELDS), "b_id")
_SET_STATUS_FROM = _SET_STATUS.where(_m.state == sa.bindparam("b_old_state"))
_BY_ID = sa.select(messages).where(_m.id == sa.bindparam("m_id"))
_BY_PROVIDER_ID = sa.select(messages).where(_m.provider == sa.bindparam("m_provider"),
                                            _m.provider_message_id == sa.bindparam("m_pid"))
_BY_ID_LOCKED = _BY_ID.with_for_update()
#: The messages of a list of our ids (one chunk): built once, not per call (its cache key).
_BY_IDS = sa.select(messages).where(_m.id.in_(sa.bindparam("m_ids", expanding=True)))
_BY_IDS_LOCKED = _BY_IDS.with_for_update()
_BY_PROVIDER_ID_LOCKED = _BY_PROVIDER_ID.with_for_update()


class SqlStatusMixin(SqlBase):
    """:meth:`apply_status`, :meth:`apply_statuses` and :meth:`record_inbound` of
    :class:`smskit.store.sql.store.SqlStore`."""

    #: apply_statuses' guarded UPDATE at driver level (SQLite; set by the store's constructor).
    _set_status_from_many: Optional[DriverMany]
    #: apply_statuses' read of the messages at driver level (SQLite; likewise).
    _messages_by_id: Optional[DriverMessages]

    def apply_status(self, event: StatusEvent) -> ApplyOutcome:
        """Match the event (our id first, then provider id), apply it forward only, record it."""
        event = c.without_nul(event)
        with self._tx("apply_status", write=True) as conn:
            return self._apply_one(conn, event)

    def apply_statuses(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        """:meth:`apply_status` for each event in turn, all in ONE transaction (group commit).

        The outcomes are in the order of ``events``; a later event sees what an earlier one
        changed. All or nothing: if one event fails, none of the call is stored and the error
        is raised (apply them one by one to isolate it).
        """
        if not events:
            return []
        events = [c.without_nul(event) for event in events]
        with self._tx("apply_statuses", write=True) as conn:
            return self._apply_many(conn, events)

    def _apply_many(self, conn: Connection, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        """:meth:`_apply_one` for each event, with the statements shared by the whole list.

        The messages named by our id are read in one query, the events applied to them in
        memory in order (a later event sees what an earlier one did), then every changed
        message is written with one ``executemany`` UPDATE (guarded by the state read) and
        every history line with one INSERT. An event that needs more (no message under that
        id, or an applied change of provider id, which must be checked for conflicts) first
        writes what is pending and then goes through :meth:`_apply_one`.
        """
        ids = list(dict.fromkeys([e.message_id for e in events if e.message_id]))
        reader = self._messages_by_id
        if reader is not None:
            current = reader.by_ids(conn, ids)
        else:
            current = {}
            by_ids = _BY_IDS_LOCKED if self._pg else _BY_IDS
            for chunk in chunks(ids):
                for row in conn.execute(by_ids, {"m_ids": list(chunk)}).mappings():
                    current[row["id"]] = row_message(row)
        read_state: Dict[str, str] = {mid: m.state.value for mid, m in current.items()}
        changed: Dict[str, Message] = {}
        history: List[Tuple[Any, ...]] = []
        now = utcnow()  # the history lines' time, as _event_row gives it

        many = self._set_status_from_many

        def flush() -> None:
            if changed:
                if many is not None:  # values in the statement's order: no dict per row
                    count = many.run_values(conn, [
                        (m.state.value, m.provider_message_id, m.provider_request_id,
                         m.sent_at, m.delivered_at, m.updated_at, m.error_code, m.error_text,
                         mid, read_state[mid]) for mid, m in changed.items()])
                else:
                    count = conn.execute(_SET_STATUS_FROM, [
                        {**_status_params(m), "b_old_state": read_state[mid]}
                        for mid, m in changed.items()]).rowcount
                if count != len(changed):
                    raise StoreError("apply_statuses: a message changed meanwhile; try again")
                for mid, m in changed.items():
                    read_state[mid] = m.state.value
                changed.clear()
            if history:
                self._event_values(conn, history)
                history.clear()

        def one_by_one(event: StatusEvent, absent: bool = False) -> ApplyOutcome:
            flush()
            outcome = self._apply_one(conn, event, absent=absent)
            if outcome.message is not None and outcome.message.id in current:
                current[outcome.message.id] = outcome.message
                read_state[outcome.message.id] = outcome.message.state.value
            return outcome

        outcomes: List[ApplyOutcome] = []
        for event in events:
            message = current.get(event.message_id) if event.message_id else None
            if message is None:
                # On SQLite nothing else writes during the transaction, and nothing here adds
                # a message: an id the read did not find is not there (it is not read again).
                outcomes.append(one_by_one(event, absent=not self._pg))
                continue
            transition = apply_status(message, event)
            if transition.applied and (transition.message.provider_message_id
                                       != message.provider_message_id):
                outcomes.append(one_by_one(event))
                continue
            updated = transition.message
            if transition.applied:
                # Every message in ``current`` is as a store gives it back (read, or normalised
                # here or by _apply_one), and the event's texts obey the NUL rule already: only
                # the event's time, which the transition copies, may need UTC.
                if updated.updated_at is not None and \
                        updated.updated_at.tzinfo is not dt.timezone.utc:
                    updated = c.normalise_message(updated)
                current[message.id] = changed[message.id] = updated
            history.append((  # in EVENT_COLUMNS order
                message.id, event.provider, c.KIND_STATUS, transition.old.value,
                event.state.value, transition.applied, transition.reason,
                event.provider_message_id, now))
            outcomes.append(ApplyOutcome(updated, transition.applied, transition.old,
                                         transition.new, transition.reason))
        flush()
        return outcomes

    def _apply_one(self, conn: Connection, event: StatusEvent, *,
                   absent: bool = False) -> ApplyOutcome:
        """Apply one status event inside the caller's write transaction (``absent``: no
        message has the event's ``message_id``, known already)."""
        for _attempt in range(5):
            message = self._match(conn, event, absent)
            if message is None:
                self._event_row(conn, [{
                    "provider": event.provider, "kind": c.KIND_STATUS,
                    "new_state": event.state.value, "detail": c.orphan_detail(event),
                    "provider_message_id": event.provider_message_id}])
                return ApplyOutcome(None, False, None, None, c.UNKNOWN_REASON)
            transition = apply_status(message, event)
            updated = transition.message
            extra: List[Dict[str, Any]] = []
            if transition.applied:
                pid = updated.provider_message_id
                if pid and pid != message.provider_message_id:
                    owner = self._pid_owners(conn, [(updated.provider, pid)]).get(
                        (updated.provider or "", pid))
                    if owner is not None and owner != message.id:
                        updated = c.evolve(updated, {
                            "provider_message_id": message.provider_message_id})
                        extra.append({
                            "message_id": message.id, "provider": event.provider,
                            "kind": c.KIND_CONFLICT,
                            "detail": c.pid_conflict_detail(updated.provider, pid, owner)})
                done = conn.execute(_SET_STATUS_FROM, {
                    **_status_params(updated), "b_old_state": message.state.value})
                if done.rowcount != 1:
                    continue
            self._event_row(conn, [{
                "message_id": message.id, "provider": event.provider,
                "kind": c.KIND_STATUS, "old_state": transition.old.value,
                "new_state": event.state.value, "applied": transition.applied,
                "detail": transition.reason,
                "provider_message_id": event.provider_message_id}, *extra])
            return ApplyOutcome(c.normalise_message(updated), transition.applied,
                                transition.old, transition.new, transition.reason)
        raise StoreError(f"apply_status: message {event.message_id!r} kept changing; try again")

    def _match(self, conn: Connection, event: StatusEvent,
               absent: bool = False) -> Optional[Message]:
        row = None
        if event.message_id and not absent:
            reader = self._messages_by_id
            if reader is not None:
                found = reader.by_ids(conn, [event.message_id]).get(event.message_id)
                if found is not None:
                    return found
            else:
                row = conn.execute(_BY_ID_LOCKED if self._pg else _BY_ID,
                                   {"m_id": event.message_id}).mappings().first()
        if row is None and event.provider_message_id:
            row = conn.execute(_BY_PROVIDER_ID_LOCKED if self._pg else _BY_PROVIDER_ID,
                               {"m_provider": event.provider,
                                "m_pid": event.provider_message_id}).mappings().first()
        return row_message(row) if row is not None else None

    def record_inbound(self, inbound: InboundMessage) -> InboundOutcome:
        """Store a reply once per (provider, provider_reply_id)."""
        inbound = c.without_nul(inbound)
        by_reply = sa.select(messages).where(
            _m.provider == inbound.provider, _m.provider_reply_id == inbound.provider_reply_id)
        with self._tx("record_inbound", write=True) as conn:
            existing = self._one(conn, by_reply)
            if existing is not None:
                return InboundOutcome(existing, False)
            reply_to: Optional[str] = None
            if inbound.in_reply_to_message_id:
                reply_to = conn.execute(sa.select(_m.id).where(
                    _m.id == inbound.in_reply_to_message_id)).scalar()
            if reply_to is None and inbound.in_reply_to_provider_id:
                reply_to = self._pid_owners(
                    conn, [(inbound.provider, inbound.in_reply_to_provider_id)]
                ).get((inbound.provider, inbound.in_reply_to_provider_id))
            message = c.inbound_to_message(inbound, reply_to)
            row = dict(message_row(message), provider_reply_id=inbound.provider_reply_id)
            if self._insert_new(conn, messages, row):
                return InboundOutcome(message, True)
            existing = self._one(conn, by_reply)
            if existing is None:
                raise StoreError(f"inbound {inbound.provider_reply_id!r} could not be stored")
            return InboundOutcome(existing, False)



def _status_params(m: Message) -> Dict[str, Any]:
    """The bound values of :data:`_SET_STATUS` for ``m``."""
    return {"b_id": m.id, **{f"b_{k}": v for k, v in _status_values(m).items()}}


def _status_values(m: Message) -> Dict[str, Any]:
    return {
        "state": m.state.value, "provider_message_id": m.provider_message_id,
        "provider_request_id": m.provider_request_id, "sent_at": m.sent_at,
        "delivered_at": m.delivered_at, "updated_at": m.updated_at,
        "error_code": m.error_code, "error_text": m.error_text,
    }


