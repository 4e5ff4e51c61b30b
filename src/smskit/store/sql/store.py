"""The SQL :class:`~smskit.store.base.Store` on SQLAlchemy Core: SQLite and PostgreSQL.

``SqlStore("sqlite:///smskit.db")`` (the default), ``SqlStore("sqlite://")`` (in memory, one
connection shared under a lock) or ``SqlStore("postgresql://user:pw@host/db")`` (psycopg 3).
Opening a store brings its schema to the newest migration; :func:`upgrade` does only that.

Concurrency: on SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (one writer at
a time across processes; readers are never blocked in WAL mode). On PostgreSQL a claim takes
rows with ``FOR UPDATE SKIP LOCKED``, a status update locks its row, and inserts rely on the
unique constraints (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from smskit.errors import NotFoundError, StoreError, ValidationError
from smskit.models import (
    Direction,
    InboundMessage,
    Message,
    SendResult,
    State,
    StatusEvent,
    apply_status,
    utcnow,
)
from smskit.store import rules as c
from smskit.store.base import (
    AddOutcome,
    ApplyOutcome,
    BatchInfo,
    InboundOutcome,
    Store,
)
from smskit.store.sql.analytics import SqlAnalyticsMixin
from smskit.store.sql.driver import DriverMany, chunks
from smskit.store.sql.engine import (
    create_store_engine,
    current_revision,
    db_errors,
    migrate,
    normalise_url,
)
from smskit.store.sql.lists import SqlListsMixin
from smskit.store.sql.outreach import SqlOutreachMixin, held_campaigns
from smskit.store.sql.routing import SqlRoutingMixin
from smskit.store.sql.tables import (
    MESSAGE_COLUMNS,
    batches,
    message_row,
    message_values,
    messages,
    row_batch,
    row_message,
)

__all__ = ["SqlStore", "schema_revision", "upgrade"]

log = logging.getLogger(__name__)

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
_STATUS_COLUMNS = (_m.id, _m.provider, _m.state, _m.provider_message_id, _m.provider_request_id,
                   _m.sent_at, _m.delivered_at, _m.updated_at, _m.error_code, _m.error_text)
_BY_ID = sa.select(messages).where(_m.id == sa.bindparam("m_id"))
_BY_PROVIDER_ID = sa.select(messages).where(_m.provider == sa.bindparam("m_provider"),
                                            _m.provider_message_id == sa.bindparam("m_pid"))
_BY_ID_LOCKED = _BY_ID.with_for_update()
#: The messages of a list of our ids (one chunk): built once, not per call (its cache key).
_BY_IDS = sa.select(messages).where(_m.id.in_(sa.bindparam("m_ids", expanding=True)))
_BY_IDS_LOCKED = _BY_IDS.with_for_update()
_BY_PROVIDER_ID_LOCKED = _BY_PROVIDER_ID.with_for_update()
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
#: The most messages a store object remembers having inserted ``outgoing`` (oldest forgotten
#: first): enough for the chunks a bulk send stores and then dispatches, a few MB at most.
_REMEMBERED = 5000
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


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (what opening a store does)."""
    engine = create_store_engine(normalise_url(url))
    try:
        with db_errors("upgrading the schema"):
            migrate(engine)
    finally:
        engine.dispose()


def schema_revision(url: str) -> Optional[str]:
    """The schema revision of the database at ``url`` (``None``: no smskit schema yet),
    read without changing anything (``smskit db check``; compare with
    :func:`~smskit.store.sql.engine.head_revision`)."""
    engine = create_store_engine(normalise_url(url))
    try:
        with db_errors("reading the schema revision"), engine.connect() as conn:
            return current_revision(conn)
    finally:
        engine.dispose()


class SqlStore(SqlOutreachMixin, SqlListsMixin, SqlAnalyticsMixin, SqlRoutingMixin, Store):
    """A :class:`~smskit.store.base.Store` in SQLite or PostgreSQL (see the module docs).

    Short links, clicks and the dashboard's aggregates: :class:`SqlAnalyticsMixin`.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Open the database at ``url`` (``echo`` logs every statement) and migrate it."""
        super().__init__(url, echo=echo)
        # The bulk insert of add_messages, at driver level where the dialect allows (SQLite).
        self._insert_many = (None if self._pg else
                             DriverMany.for_dialect(self._insert_ignore(messages),
                                                    self._engine.dialect))
        if self._insert_many is not None and self._insert_many.names != MESSAGE_COLUMNS:
            raise StoreError("the messages INSERT does not bind the columns in table order")
        self._set_status_many = (None if self._pg else
                                 DriverMany.for_dialect(_SET_STATUS, self._engine.dialect))
        self._claim_many = (None if self._pg else
                            DriverMany.for_dialect(_CLAIM_ONE, self._engine.dialect))
        if self._claim_many is not None and self._claim_many.names != _CLAIM_ONE_ORDER:
            raise StoreError("the claim UPDATE does not bind its values in the expected order")
        if self._set_status_many is not None and \
                self._set_status_many.names != _SET_STATUS_ORDER:
            raise StoreError("the status UPDATE does not bind its values in the expected order")
        # apply_statuses' guarded UPDATE at driver level where the dialect allows (SQLite).
        self._set_status_from_many = (None if self._pg else DriverMany.for_dialect(
            _SET_STATUS_FROM, self._engine.dialect))
        if self._set_status_from_many is not None and \
                self._set_status_from_many.names != (*_SET_STATUS_ORDER, "b_old_state"):
            raise StoreError("the guarded status UPDATE does not bind its values in the "
                             "expected order")
        # The messages this object inserted ``outgoing`` and has not claimed yet, as stored (by
        # id, oldest first; at most _REMEMBERED): its own claim builds them from here instead
        # of reading every column back (see _CLAIM_COLUMNS).
        self._written: Dict[str, Message] = {}
        self._written_lock = threading.Lock()
        # On SQLite, the status columns of each batch this object claimed (by batch id, at most
        # _CLAIMS_REMEMBERED), so that record_results need not read them back when the batch
        # is as the claim left it (_AS_CLAIMED).
        self._claims: Dict[str, Tuple[dt.datetime, Dict[str, _StatusRow]]] = {}

    # -- messages ---------------------------------------------------------------------------
    def add_messages(self, messages_: Iterable[Message]) -> List[AddOutcome]:
        """Insert messages all or nothing, idempotent on ``idempotency_key``.

        A message whose id, or (provider, provider_message_id), is already stored raises
        :class:`StoreError` and nothing of the call is stored.
        """
        given = [c.normalise_message(m) for m in messages_]
        if not given:
            return []
        with self._tx("add_messages", write=True) as conn:
            unseen = self._add_unseen(conn, given) if self._insert_many is not None else None
            if unseen is not None:
                result = unseen
                inserted = {o.message.id for o in unseen if o.created}
            else:
                result, inserted = self._add_checked(conn, given)
        # Committed: what this call inserted is what the rows hold.
        self._remember([m for m in given if m.id in inserted])
        return result

    def _add_unseen(self, conn: Connection, given: List[Message]) -> Optional[List[AddOutcome]]:
        """SQLite: :meth:`add_messages` on the bet that no id, key or provider id of the call
        is stored yet (a new send's messages): one ``INSERT ... ON CONFLICT DO NOTHING`` in a
        savepoint, no look-up first. Every row went in only if none conflicted with a stored
        one, and then the outcomes are what the checked way gives; otherwise the savepoint is
        rolled back and ``None`` says to take the checked way (so does a call that repeats an
        id or a provider id)."""
        many = self._insert_many
        if many is None:
            return None
        outcomes: List[AddOutcome] = []
        fresh: Dict[str, Message] = {}
        fresh_keys: Dict[str, Message] = {}
        fresh_pids: Set[Tuple[str, str]] = set()
        for m in given:
            key = m.idempotency_key
            known = fresh_keys.get(key) if key else None
            if known is not None:
                outcomes.append(AddOutcome(known, False))
                continue
            if m.id in fresh:
                return None
            if m.provider and m.provider_message_id:
                pid = (m.provider, m.provider_message_id)
                if pid in fresh_pids:
                    return None
                fresh_pids.add(pid)
            fresh[m.id] = m
            if key:
                fresh_keys[key] = m
            outcomes.append(AddOutcome(m, True))
        savepoint = conn.begin_nested()
        # the rows as values in the statement's order: no dict per row
        if many.run_values(conn, [message_values(m) for m in fresh.values()]) == len(fresh):
            savepoint.commit()
            return outcomes
        savepoint.rollback()
        return None

    def _add_checked(self, conn: Connection,
                     given: List[Message]) -> Tuple[List[AddOutcome], Set[str]]:
        """:meth:`add_messages` with every key, id and provider id looked up first (keys
        already stored, a conflict to refuse); the outcomes and the ids inserted."""
        stored_keys = {
            m.idempotency_key: m
            for m in self._where_in(conn, _m.idempotency_key,
                                    [g.idempotency_key for g in given if g.idempotency_key])
        }
        outcomes: List[Optional[AddOutcome]] = []
        fresh: Dict[str, Message] = {}
        fresh_keys: Dict[str, Message] = {}
        fresh_pids: Set[Tuple[str, str]] = set()
        for m in given:
            key = m.idempotency_key
            known = stored_keys.get(key) or fresh_keys.get(key) if key else None
            if known is not None:
                outcomes.append(AddOutcome(known, False))
                continue
            if m.id in fresh:
                raise c.message_conflict(m, "the id appears twice in the call")
            if m.provider and m.provider_message_id:
                if (m.provider, m.provider_message_id) in fresh_pids:
                    raise c.message_conflict(
                        m, f"provider id {m.provider_message_id!r} appears twice")
                fresh_pids.add((m.provider, m.provider_message_id))
            fresh[m.id] = m
            if key:
                fresh_keys[key] = m
            outcomes.append(None)
        self._check_new(conn, list(fresh.values()))
        inserted: Set[str] = set()
        if fresh and self._insert_many is not None:
            values = [message_values(m) for m in fresh.values()]
            if self._insert_many.run_values(conn, values) == len(fresh):
                inserted.update(fresh)  # every row went in: nothing to read back
        elif fresh:
            conn.execute(self._insert_ignore(messages),
                         [message_row(m) for m in fresh.values()])
        if len(inserted) != len(fresh):
            for chunk in chunks(list(fresh)):
                inserted.update(
                    conn.execute(sa.select(_m.id).where(_m.id.in_(chunk))).scalars())
        lost = [m for m in fresh.values() if m.id not in inserted]
        raced = {
            s.idempotency_key: s
            for s in self._where_in(conn, _m.idempotency_key,
                                    [m.idempotency_key for m in lost if m.idempotency_key])
        }
        for m in lost:
            if m.idempotency_key not in raced:
                raise c.message_conflict(m, "it conflicts with a stored message")
        result: List[AddOutcome] = []
        for m, outcome in zip(given, outcomes):
            if outcome is not None:
                result.append(outcome)
            elif m.id in inserted:
                result.append(AddOutcome(m, True))
            else:
                result.append(AddOutcome(raced[m.idempotency_key], False))
        return result, inserted

    def _remember(self, stored: List[Message]) -> None:
        """Keep the messages just inserted that a claim may take (``outgoing``, unclaimed)."""
        due = [m for m in stored if m.state is State.OUTGOING and m.batch_id is None]
        if not due:
            return
        with self._written_lock:
            written = self._written
            for m in due:
                written[m.id] = m
            excess = len(written) - _REMEMBERED
            if excess > 0:
                for key in list(itertools.islice(written, excess)):
                    del written[key]

    def _check_new(self, conn: Connection, fresh: List[Message]) -> None:
        """Refuse new messages whose id or provider id is already stored."""
        taken = self._where_in(conn, _m.id, [m.id for m in fresh])
        if taken:
            raise c.message_conflict(taken[0], "a message with this id exists")
        owners = self._pid_owners(conn, [(m.provider, m.provider_message_id) for m in fresh])
        for m in fresh:
            if (m.provider or "", m.provider_message_id or "") in owners:
                raise c.message_conflict(m, f"provider id {m.provider_message_id!r} is taken")

    def get(self, message_id: str) -> Optional[Message]:
        """A message by our id, or ``None``."""
        with self._tx("get") as conn:
            return self._one(conn, sa.select(messages).where(_m.id == message_id))

    def get_many(self, message_ids: Sequence[str]) -> List[Message]:
        """The messages with these ids that exist, in the given order."""
        with self._tx("get_many") as conn:
            found = {m.id: m for m in self._where_in(conn, _m.id, message_ids)}
        return [found[i] for i in message_ids if i in found]

    def find_by_provider_id(self, provider: str, provider_message_id: str) -> Optional[Message]:
        """A message by the provider's id, or ``None``."""
        with self._tx("find_by_provider_id") as conn:
            return self._one(conn, sa.select(messages).where(
                _m.provider == provider, _m.provider_message_id == provider_message_id))

    def list_messages(
        self,
        *,
        state: Optional[State] = None,
        phone: Optional[str] = None,
        campaign_id: Optional[str] = None,
        limit: int = 100,
        offset: int = 0,
    ) -> List[Message]:
        """Messages, newest first, filtered."""
        if limit < 0 or offset < 0:
            raise ValidationError(f"limit and offset must be >= 0, got {limit!r} and {offset!r}")
        query = sa.select(messages).order_by(_m.created_at.desc(), _m.id.desc())
        if state is not None:
            query = query.where(_m.state == State(state).value)
        if phone is not None:
            query = query.where(_m.phone == phone)
        if campaign_id is not None:
            query = query.where(_m.campaign_id == campaign_id)
        with self._tx("list_messages") as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).mappings()
            return [row_message(row) for row in rows]

    def awaiting_status(self, provider: str, sent_before: dt.datetime, *,
                        after: Optional[Tuple[dt.datetime, str]] = None,
                        limit: int = 1000) -> List[Message]:
        """``sent`` messages of ``provider`` sent at or before ``sent_before``, by
        (``sent_at``, ``id``) after ``after``: one query (``ix_messages_claim`` narrows it to
        the provider's ``sent`` messages, the messages still in flight)."""
        sent_before = c.require_utc(sent_before, "sent_before")
        query = (sa.select(messages)
                 .where(_m.state == State.SENT.value, _m.provider == provider,
                        _m.sent_at <= sent_before)
                 .order_by(_m.sent_at, _m.id).limit(limit))
        if after is not None:
            at, last = c.require_utc(after[0], "after"), after[1]
            query = query.where(sa.or_(_m.sent_at > at, sa.and_(_m.sent_at == at,
                                                               _m.id > last)))
        with self._tx("awaiting_status") as conn:
            return [row_message(row) for row in conn.execute(query).mappings()]

    def count_by_state(self, provider: Optional[str] = None) -> Dict[Tuple[str, State], int]:
        """``{(provider, state): count}`` over outbound messages (provider ``""`` when unset)."""
        query = (
            sa.select(_m.provider, _m.state, sa.func.count())
            .where(_m.direction == Direction.OUTBOUND.value)
            .group_by(_m.provider, _m.state)
        )
        if provider is not None:
            query = query.where(_m.provider == provider)
        with self._tx("count_by_state") as conn:
            return {(p or "", State(s)): int(n) for p, s, n in conn.execute(query)}

    def cancel(self, message_id: str, reason: str) -> Optional[Message]:
        """Cancel a draft/outgoing message not yet claimed; ``None`` when it is too late."""
        now = utcnow()
        with self._tx("cancel", write=True) as conn:
            message = self._one(conn, self._locked(sa.select(messages).where(_m.id == message_id)))
            if message is None:
                raise NotFoundError(f"no message {message_id!r}")
            done = conn.execute(
                sa.update(messages)
                .where(_m.id == message_id, _m.batch_id.is_(None),
                       _m.state.in_([s.value for s in c.CANCELABLE]))
                .values(state=State.CANCELED.value, error_text=reason, updated_at=now)
            )
            if done.rowcount != 1:
                return None
            return c.evolve(message, {"state": State.CANCELED, "error_text": reason,
                                      "updated_at": now})

    # -- dispatch ---------------------------------------------------------------------------
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

    # -- status and inbound -----------------------------------------------------------------
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
        ids = [e.message_id for e in events if e.message_id]
        current: Dict[str, Message] = {}
        by_ids = _BY_IDS_LOCKED if self._pg else _BY_IDS
        for chunk in chunks(list(dict.fromkeys(ids))):
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

        def one_by_one(event: StatusEvent) -> ApplyOutcome:
            flush()
            outcome = self._apply_one(conn, event)
            if outcome.message is not None and outcome.message.id in current:
                current[outcome.message.id] = outcome.message
                read_state[outcome.message.id] = outcome.message.state.value
            return outcome

        outcomes: List[ApplyOutcome] = []
        for event in events:
            message = current.get(event.message_id) if event.message_id else None
            if message is None:
                outcomes.append(one_by_one(event))
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

    def _apply_one(self, conn: Connection, event: StatusEvent) -> ApplyOutcome:
        """Apply one status event inside the caller's write transaction."""
        for _attempt in range(5):
            message = self._match(conn, event)
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

    def _match(self, conn: Connection, event: StatusEvent) -> Optional[Message]:
        row = None
        if event.message_id:
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

