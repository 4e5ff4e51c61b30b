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
import threading
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from smskit.errors import NotFoundError, StoreError, ValidationError
from smskit.models import Direction, Message, State, utcnow
from smskit.store import rules as c
from smskit.store.base import AddOutcome, BatchInfo, ClaimedAdd, InsertClaim, Store
from smskit.store.sql.analytics import SqlAnalyticsMixin
from smskit.store.sql.dispatch import _CLAIM_ONE, _CLAIM_ONE_ORDER, SqlDispatchMixin, _StatusRow
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
from smskit.store.sql.rows import DriverMessages
from smskit.store.sql.statuses import (
    _SET_STATUS,
    _SET_STATUS_FROM,
    _SET_STATUS_ORDER,
    SqlStatusMixin,
)
from smskit.store.sql.tables import (
    MESSAGE_COLUMNS,
    batches,
    campaigns,
    message_row,
    message_values,
    messages,
    row_message,
)

__all__ = ["SqlStore", "schema_revision", "upgrade"]

_m = messages.c
_cp = campaigns.c

#: The most messages a store object remembers having inserted ``outgoing`` (oldest forgotten
#: first): enough for the chunks a bulk send stores and then dispatches, a few MB at most.
_REMEMBERED = 5000


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


class SqlStore(SqlOutreachMixin, SqlListsMixin, SqlAnalyticsMixin, SqlRoutingMixin,
               SqlDispatchMixin, SqlStatusMixin, Store):
    """A :class:`~smskit.store.base.Store` in SQLite or PostgreSQL (see the module docs).

    Short links, clicks and the dashboard's aggregates: :class:`SqlAnalyticsMixin`; claims,
    send results and batches: :class:`SqlDispatchMixin`; status events and replies:
    :class:`SqlStatusMixin`.
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
        # ... and its read of the messages (where the dialect allows: SQLite).
        self._messages_by_id = None if self._pg else DriverMessages.for_dialect(
            self._engine.dialect)
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
        return self._add([c.normalise_message(m) for m in messages_], None).outcomes

    def add_messages_claimed(self, messages_: Iterable[Message],
                             claim: InsertClaim) -> ClaimedAdd:
        """:meth:`add_messages`, opening batch ``claim.batch_id`` in the same transaction
        (see :class:`~smskit.store.base.ClaimingStore`): one write per message before the
        request instead of an insert and a claim."""
        return self._add([c.normalise_message(m) for m in messages_], c.checked_claim(claim))

    def _add(self, given: List[Message], claim: Optional[InsertClaim]) -> ClaimedAdd:
        if not given:
            return ClaimedAdd([])
        claimed: List[Message] = []
        with self._tx("add_messages", write=True) as conn:
            if claim is not None:
                given, claimed = self._open_batch(conn, given, claim)
            unseen = self._add_unseen(conn, given) if self._insert_many is not None else None
            if unseen is not None:
                result = unseen
                inserted = {o.message.id for o in unseen if o.created}
            else:
                result, inserted = self._add_checked(conn, given)
            if claim is not None and claimed:
                claimed = [m for m in claimed if m.id in inserted]
                if not claimed:  # every claimable one was already stored: no empty batch
                    conn.execute(sa.delete(batches).where(batches.c.id == claim.batch_id))
        # Committed: what this call inserted is what the rows hold.
        self._remember([m for m in given if m.id in inserted])
        if claim is None or not claimed:
            return ClaimedAdd(result)
        if not self._pg:
            self._remember_claim(claim.batch_id, claim.now, {m.id: _StatusRow(
                m.id, m.provider, m.state, m.provider_message_id, m.provider_request_id,
                m.sent_at, m.delivered_at, m.updated_at, m.error_code, m.error_text)
                for m in claimed})
        batch = BatchInfo(id=claim.batch_id, provider=claim.provider, status=c.BATCH_CLAIMED,
                          created_at=claim.now, updated_at=claim.now,
                          message_ids=tuple(m.id for m in claimed))
        return ClaimedAdd(result, (batch, claimed))

    def _open_batch(self, conn: Connection, given: List[Message],
                    claim: InsertClaim) -> Tuple[List[Message], List[Message]]:
        """Insert batch ``claim.batch_id`` and stamp the messages it takes; the messages to
        insert and those stamped (``[]``, and no batch, when none is claimable)."""
        campaigns = {m.campaign_id for m in given if m.campaign_id is not None}
        held: Set[str] = set()
        if campaigns:
            held = set(conn.execute(held_campaigns().where(_cp.id.in_(campaigns))).scalars())
        now, batch_id = claim.now, claim.batch_id
        out, stamped = c.stamp_claimed(given, claim, held)
        if not stamped:
            return given, []
        if conn.execute(sa.select(batches.c.id).where(batches.c.id == batch_id)).first():
            raise StoreError(f"batch {batch_id!r} already exists")
        conn.execute(sa.insert(batches).values(
            id=batch_id, provider=claim.provider, status=c.BATCH_CLAIMED, created_at=now,
            updated_at=now))
        return out, stamped

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
        try:
            outcomes, fresh = _new_in_call(given, {})
        except StoreError:  # a repeat in the call: the checked way says what it is
            return None
        savepoint = conn.begin_nested()
        # the rows as values in the statement's order: no dict per row
        if many.run_values(conn, [message_values(m) for m in fresh.values()]) == len(fresh):
            savepoint.commit()
            return [AddOutcome(m, True) if o is None else o for m, o in zip(given, outcomes)]
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
        outcomes, fresh = _new_in_call(given, stored_keys)
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


def _new_in_call(given: List[Message], stored_keys: Mapping[Optional[str], Message]
                 ) -> Tuple[List[Optional[AddOutcome]], Dict[str, Message]]:
    """For each given message, its outcome when its key is stored (``stored_keys``) or came
    earlier in the call, else ``None``; and the new messages by id. A call that repeats an id
    or a provider id among its new messages raises the :class:`StoreError` of
    :meth:`SqlStore.add_messages`."""
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
    return outcomes, fresh
