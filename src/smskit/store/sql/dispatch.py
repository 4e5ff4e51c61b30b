"""The SQL store's part of dispatch: claiming batches of due messages, recording their
send results, releasing or parking a batch, and reading batches back (:meth:`claim_batch`,
:meth:`record_results` and the rest of :class:`smskit.store.sql.store.SqlStore`'s batch
methods), with what a store object remembers of its own claims."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from smskit.errors import NotFoundError, StoreError, ValidationError
from smskit.models import Message, SendResult, State, utcnow
from smskit.store import rules as c
from smskit.store.base import BatchInfo
from smskit.store.sql.driver import DriverMany, SqlBase, chunks
from smskit.store.sql.outreach import held_campaigns
from smskit.store.sql.statuses import _SET_STATUS
from smskit.store.sql.tables import batches, messages, row_batch, row_message

__all__ = ["SqlDispatchMixin"]

# The logger these methods have always logged under (moved from smskit.store.sql.store).
log = logging.getLogger("smskit.store.sql.store")

_m = messages.c

_STATUS_COLUMNS = (_m.id, _m.provider, _m.state, _m.provider_message_id, _m.provider_request_id,
                   _m.sent_at, _m.delivered_at, _m.updated_at, _m.error_code, _m.error_text)
#: What a claim reads of each due message besides its id: every column another writer may
#: change while a message waits unclaimed (a reroute, a release, a status). The others (phone,
#: body, encoding, segments, created_at, tags, campaign, keys...) never change once a message
#: is stored: a claimed message this store object inserted itself is built from the
#: :class:`Message` it wrote (:attr:`SqlStore._written`) and these, not read back whole.
_CLAIM_COLUMNS = (_m.id, _m.provider_message_id, _m.provider_request_id, _m.cost,
                  _m.scheduled_at, _m.sent_at, _m.delivered_at, _m.error_code, _m.error_text,
                  _m.attempts)
#: A claim's UPDATE of one message, run for each claimed id in one ``executemany`` (SQLite).
_CLAIM_ONE = sa.update(messages).where(
    _m.id == sa.bindparam("c_id"), _m.batch_id.is_(None)).values(
    batch_id=sa.bindparam("c_batch"),
    updated_at=sa.bindparam("c_now", type_=_m.updated_at.type))
_CLAIM_ONE_ORDER = ("c_batch", "c_now", "c_id")
#: The most batches a store object remembers having claimed, until their results are recorded.
_CLAIMS_REMEMBERED = 16
#: Whether a batch still holds exactly what its claim left: how many messages it has, and how
#: many of them are still ``outgoing`` as the claim stamped them (every writer of a message sets
#: ``updated_at``; a reroute or a release takes it out of the batch).
_AS_CLAIMED = sa.select(
    sa.func.count(),
    sa.func.coalesce(sa.func.sum(sa.case(
        (sa.and_(_m.state == State.OUTGOING.value,
                 _m.updated_at == sa.bindparam("c_at", type_=_m.updated_at.type)), 1),
        else_=0)), 0),
).where(_m.batch_id == sa.bindparam("c_batch"))


class SqlDispatchMixin(SqlBase):
    """:meth:`claim_batch`, :meth:`claim_batch_messages`, :meth:`record_results`,
    :meth:`release_batch`, :meth:`mark_batch_ambiguous`, :meth:`batches` and
    :meth:`get_batch` of :class:`smskit.store.sql.store.SqlStore`."""

    # Set by the store's constructor (smskit.store.sql.store.SqlStore.__init__).
    _written: Dict[str, Message]
    _written_lock: threading.Lock
    _claims: Dict[str, Tuple[dt.datetime, Dict[str, _StatusRow]]]
    _claim_many: Optional[DriverMany]
    _set_status_many: Optional[DriverMany]

    def claim_batch(
        self, provider: str, limit: int, now: dt.datetime, batch_id: str
    ) -> Optional[BatchInfo]:
        """Take up to ``limit`` due ``outgoing`` messages of ``provider``, oldest first."""
        claimed = self._claim(provider, limit, now, batch_id, read=False)
        return claimed[0] if claimed is not None else None

    def claim_batch_messages(
        self, provider: str, limit: int, now: dt.datetime, batch_id: str
    ) -> Optional[Tuple[BatchInfo, List[Message]]]:
        """:meth:`claim_batch`, and the claimed messages as stored once claimed (in the
        batch's order), read in the claim's transaction: what ``get_many`` of the batch's ids
        would give right after, without a second transaction."""
        return self._claim(provider, limit, now, batch_id, read=True)

    def _claim(
        self, provider: str, limit: int, now: dt.datetime, batch_id: str, *, read: bool
    ) -> Optional[Tuple[BatchInfo, List[Message]]]:
        now = c.require_utc(now, "now")
        if limit < 1:
            raise ValidationError(f"claim limit must be at least 1, got {limit!r}")
        query = (
            sa.select(*_CLAIM_COLUMNS)
            .where(_m.state == State.OUTGOING.value, _m.provider == provider,
                   _m.batch_id.is_(None),
                   sa.or_(_m.scheduled_at.is_(None), _m.scheduled_at <= now),
                   sa.or_(_m.campaign_id.is_(None), _m.campaign_id.not_in(held_campaigns())))
            .order_by(_m.created_at, _m.id)
            .limit(limit)
        )
        if self._pg:
            query = query.with_for_update(skip_locked=True)
        with self._tx("claim_batch", write=True) as conn:
            due = list(conn.execute(query))
            if not due:
                return None
            ids = [row[0] for row in due]
            if conn.execute(sa.select(batches.c.id).where(batches.c.id == batch_id)).first():
                raise StoreError(f"batch {batch_id!r} already exists")
            conn.execute(sa.insert(batches).values(
                id=batch_id, provider=provider, status=c.BATCH_CLAIMED, created_at=now,
                updated_at=now))
            taken = 0
            if self._claim_many is not None:  # one driver-level executemany, no IN lists
                taken = self._claim_many.run_values(conn, [(batch_id, now, i) for i in ids])
            else:
                for chunk in chunks(ids):
                    taken += conn.execute(
                        sa.update(messages)
                        .where(_m.id.in_(chunk), _m.batch_id.is_(None))
                        .values(batch_id=batch_id, updated_at=now)
                    ).rowcount
            claimed: List[Message] = []
            if read:
                claimed = self._claimed(conn, due, provider, batch_id, now,
                                        whole=taken == len(ids))
        if not self._pg and taken == len(ids):
            self._remember_claim(batch_id, now, {row[0]: _StatusRow(
                row[0], provider, State.OUTGOING, row[1], row[2], row[5], row[6], now, row[7],
                row[8]) for row in due})
        batch = BatchInfo(id=batch_id, provider=provider, status=c.BATCH_CLAIMED, created_at=now,
                          updated_at=now, message_ids=tuple(ids))
        return batch, claimed

    def _claimed(self, conn: Connection, due: Sequence[Any], provider: str, batch_id: str,
                 now: dt.datetime, *, whole: bool) -> List[Message]:
        """The messages of a claim as stored once claimed, in the claim's order.

        ``due`` holds the claim's rows (:data:`_CLAIM_COLUMNS`), read under the claim's lock,
        so after the claim each row is what it was plus ``batch_id`` and ``updated_at``. A
        message this object inserted is built from what it wrote and those columns; the
        others (and every one when ``whole`` is false: a row the claim did not take) are
        read back.
        """
        with self._written_lock:
            written = self._written
            mine = {row[0]: written.pop(row[0]) for row in due if row[0] in written}
        read: Dict[str, Any] = {}
        if not whole or len(mine) < len(due):
            rows = conn.execute(sa.select(messages).where(_m.batch_id == batch_id)).mappings()
            read = {r["id"]: r for r in rows if not whole or r["id"] not in mine}
            if not whole:
                mine = {}
        out: List[Message] = []
        for row in due:
            message_id = row[0]
            known = mine.get(message_id)
            if known is None:
                if message_id in read:
                    out.append(row_message(read[message_id]))
                continue
            out.append(Message(
                id=message_id, phone=known.phone, body=known.body, direction=known.direction,
                state=State.OUTGOING, provider=provider, provider_message_id=row[1],
                provider_request_id=row[2], batch_id=batch_id, encoding=known.encoding,
                segments=known.segments, cost=row[3], created_at=known.created_at,
                scheduled_at=row[4], sent_at=row[5], delivered_at=row[6], updated_at=now,
                error_code=row[7], error_text=row[8], campaign_id=known.campaign_id,
                schedule_id=known.schedule_id, tags=known.tags, partner_ref=known.partner_ref,
                idempotency_key=known.idempotency_key, in_reply_to=known.in_reply_to,
                attempts=row[9]))
        return out

    def _remember_claim(self, batch_id: str, now: dt.datetime,
                        rows: Dict[str, _StatusRow]) -> None:
        with self._written_lock:
            self._claims[batch_id] = (now, rows)
            if len(self._claims) > _CLAIMS_REMEMBERED:
                del self._claims[next(iter(self._claims))]

    def _as_claimed(self, conn: Connection, batch_id: str) -> Optional[Dict[str, _StatusRow]]:
        """The status columns of ``batch_id``'s messages as this object's claim left them, if
        the batch still holds exactly those, unchanged (:data:`_AS_CLAIMED`, in the caller's
        write transaction: nothing changes them before it ends); ``None`` otherwise."""
        with self._written_lock:
            known = self._claims.pop(batch_id, None)
        if known is None:
            return None
        claimed_at, rows = known
        count, untouched = conn.execute(_AS_CLAIMED, {"c_batch": batch_id,
                                                      "c_at": claimed_at}).one()
        return rows if count == untouched == len(rows) else None

    def _require_batch(self, conn: Connection, batch_id: str) -> None:
        query = self._locked(sa.select(batches.c.id).where(batches.c.id == batch_id))
        if conn.execute(query).first() is None:
            raise NotFoundError(f"no batch {batch_id!r}")

    def record_results(
        self, batch_id: str, results: Sequence[SendResult], now: dt.datetime
    ) -> None:
        """Write per-message results forward only, and mark the batch ``done`` (``ambiguous``
        while a claimed message is still ``outgoing``).

        A provider id another message already owns is not stored (a ``conflict`` event says
        so in the message's history); a result for a message outside the batch is ignored.
        """
        now = c.require_utc(now, "now")
        results = [c.without_nul(result) for result in results]
        with self._tx("record_results", write=True) as conn:
            self._require_batch(conn, batch_id)
            # Only the columns a result can read or change: no full Message per row; none read
            # when the batch is as this object's claim left it.
            members = self._as_claimed(conn, batch_id)
            if members is None:
                query = self._locked(sa.select(*_STATUS_COLUMNS)
                                     .where(_m.batch_id == batch_id))
                members = {r[0]: _StatusRow(r[0], r[1], State(r[2]), *r[3:])
                           for r in conn.execute(query)}
            owners = self._pid_owners(
                conn, [(members[r.message_id].provider, r.provider_message_id)
                       for r in results if r.message_id in members])
            conflicts: List[Dict[str, Any]] = []
            changed: Dict[str, _StatusRow] = {}
            for result in results:
                message = changed.get(result.message_id) or members.get(result.message_id)
                if message is None:
                    log.warning("result for message %s ignored: not in batch %s",
                                result.message_id, batch_id)
                    continue
                changes = c.merge_result(message, result, now)
                pid = changes.get("provider_message_id")
                if pid and message.provider:
                    owner = owners.setdefault((message.provider, pid), message.id)
                    if owner != message.id:
                        del changes["provider_message_id"]
                        conflicts.append({
                            "message_id": message.id, "provider": message.provider,
                            "kind": c.KIND_CONFLICT,
                            "detail": c.pid_conflict_detail(message.provider, pid, owner)})
                if changes:
                    changed[message.id] = message._replace(**changes)
            if changed and self._set_status_many is not None:
                self._set_status_many.run_values(conn, [
                    (m.state.value, m.provider_message_id, m.provider_request_id, m.sent_at,
                     m.delivered_at, m.updated_at, m.error_code, m.error_text, m.id)
                    for m in changed.values()])
            elif changed:
                conn.execute(_SET_STATUS, [
                    {"b_id": m.id, "b_state": m.state.value,
                     "b_provider_message_id": m.provider_message_id,
                     "b_provider_request_id": m.provider_request_id, "b_sent_at": m.sent_at,
                     "b_delivered_at": m.delivered_at, "b_updated_at": m.updated_at,
                     "b_error_code": m.error_code, "b_error_text": m.error_text}
                    for m in changed.values()])
            self._event_row(conn, conflicts)
            # In the same transaction: a claimed message still outgoing without a result
            # keeps the batch waiting for reconciliation, so a crash after this call cannot
            # strand it in a finished batch.
            unsettled = sum(1 for m in members.values()
                            if (changed.get(m.id) or m).state is State.OUTGOING)
            done: Dict[str, Any] = {"status": c.BATCH_DONE, "updated_at": now}
            if unsettled:
                done.update(status=c.BATCH_AMBIGUOUS, error_text=c.unsettled_text(unsettled))
            request_id = c.request_id_of(results)
            if request_id is not None:
                done["provider_request_id"] = request_id
            conn.execute(sa.update(batches).where(batches.c.id == batch_id).values(**done))

    def release_batch(
        self, batch_id: str, error_text: str, retry_at: Optional[dt.datetime] = None
    ) -> None:
        """Put the batch's still-outgoing messages back in the queue, one attempt more each."""
        retry_at = c.require_aware(retry_at, "retry_at")
        now = utcnow()
        values: Dict[str, Any] = {"batch_id": None, "attempts": _m.attempts + 1, "updated_at": now}
        if retry_at is not None:
            values["scheduled_at"] = retry_at
        with self._tx("release_batch", write=True) as conn:
            self._require_batch(conn, batch_id)
            conn.execute(sa.update(messages)
                         .where(_m.batch_id == batch_id, _m.state == State.OUTGOING.value)
                         .values(values))
            conn.execute(sa.update(batches).where(batches.c.id == batch_id).values(
                status=c.BATCH_RELEASED, error_text=error_text, updated_at=now))

    def mark_batch_ambiguous(self, batch_id: str, error_text: str) -> None:
        """The request may have arrived: the batch waits for reconciliation."""
        with self._tx("mark_batch_ambiguous", write=True) as conn:
            done = conn.execute(sa.update(batches).where(batches.c.id == batch_id).values(
                status=c.BATCH_AMBIGUOUS, error_text=error_text, updated_at=utcnow()))
            if done.rowcount != 1:
                raise NotFoundError(f"no batch {batch_id!r}")

    def batches(
        self, *, status: Optional[str] = None, older_than: Optional[dt.datetime] = None
    ) -> List[BatchInfo]:
        """Batches by status, oldest first; ``older_than`` compares the claim time."""
        older_than = c.require_aware(older_than, "older_than")
        query = sa.select(batches).order_by(batches.c.created_at, batches.c.id)
        if status is not None:
            query = query.where(batches.c.status == status)
        if older_than is not None:
            query = query.where(batches.c.created_at < older_than)
        with self._tx("batches") as conn:
            rows = list(conn.execute(query).mappings())
            members: Dict[str, List[str]] = {r["id"]: [] for r in rows}
            for chunk in chunks(list(members)):
                found = conn.execute(
                    sa.select(_m.id, _m.batch_id).where(_m.batch_id.in_(chunk))
                    .order_by(_m.created_at, _m.id))
                for message_id, owner in found:
                    members[owner].append(message_id)
        return [row_batch(r, members[r["id"]]) for r in rows]

    def get_batch(self, batch_id: str) -> Optional[BatchInfo]:
        """One batch with its message ids, or ``None``."""
        with self._tx("get_batch") as conn:
            row = conn.execute(sa.select(batches).where(batches.c.id == batch_id)).mappings()
            found = row.first()
            if found is None:
                return None
            ids = conn.execute(sa.select(_m.id).where(_m.batch_id == batch_id)
                               .order_by(_m.created_at, _m.id)).scalars()
            return row_batch(found, list(ids))



class _StatusRow(NamedTuple):
    """What :meth:`SqlStore.record_results` reads of a message: its status columns."""

    id: str
    provider: Optional[str]
    state: State
    provider_message_id: Optional[str]
    provider_request_id: Optional[str]
    sent_at: Optional[dt.datetime]
    delivered_at: Optional[dt.datetime]
    updated_at: Optional[dt.datetime]
    error_code: Optional[str]
    error_text: Optional[str]

