"""The Odoo bridge's own tables in the sidecar database: a durable journal of Odoo writes.

Three tables live next to the SQL store's (same database URL, own names, created if absent):

* ``smskit_odoo_ops``: Odoo writes not done yet (mirror a message, post a chatter note,
  route a reply into the ChatRoom, mirror a blacklist change). An op is written *before* the
  Odoo call it stands for and removed (or marked ``done``) after it, so a write that could
  not happen because Odoo was down is replayed when Odoo is back; ``key`` makes an op unique
  (one note per message and event, ever). A process replaying ops first *leases* them
  (:meth:`Journal.lease`), so two processes (two Odoo workers, the cron and a webhook) never
  write the same op at once; a lease left by a dead process expires. An op queued again
  while leased (a mirror op: the message changed meanwhile) gets a new ``version``, and the
  lessee's completion then leaves it pending, so the change is written too.
* ``smskit_odoo_links``: our message id -> the Odoo record id, the idempotency key, the
  provider's reply reference and the partner.
* ``smskit_odoo_partners``: phone (E.164) -> partner id, also the claim that stops two
  processes from creating two partners for one number.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from smskit.store.sql.engine import (
    WRITE,
    create_store_engine,
    db_errors,
    is_memory_sqlite,
    normalise_url,
    upsert,
)

__all__ = ["Journal", "Link", "Op"]

PENDING = "pending"
DONE = "done"
FAILED = "failed"

_meta = sa.MetaData()
ops = sa.Table(
    "smskit_odoo_ops", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("key", sa.String(255), nullable=True, unique=True),
    sa.Column("message_id", sa.String(40), nullable=True, index=True),
    sa.Column("payload", sa.Text, nullable=False, default="{}"),
    sa.Column("status", sa.String(10), nullable=False, default=PENDING, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
)
#: Columns added after the first release, with their DDL (added to an older sidecar).
_ADDED_COLUMNS = (("smskit_odoo_ops", "version", "INTEGER NOT NULL DEFAULT 0"),
                  ("smskit_odoo_ops", "lease_owner", "VARCHAR(64)"),
                  ("smskit_odoo_ops", "lease_until", "FLOAT"))
links = sa.Table(
    "smskit_odoo_links", _meta,
    sa.Column("message_id", sa.String(40), primary_key=True),
    sa.Column("odoo_id", sa.Integer, nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True, index=True),
    sa.Column("reply_ref", sa.String(255), nullable=True),
    sa.Column("partner_id", sa.Integer, nullable=True),
    sa.Column("odoo_state", sa.String(20), nullable=True),
)
partners = sa.Table(
    "smskit_odoo_partners", _meta,
    sa.Column("phone", sa.String(32), primary_key=True),
    sa.Column("partner_id", sa.Integer, nullable=True),
    sa.Column("owner", sa.String(64), nullable=True),
    sa.Column("claimed_at", sa.Float, nullable=False),
)
_CHUNK = 500


@attrs.frozen(kw_only=True)
class Op:
    """One pending Odoo write."""

    id: int
    kind: str
    key: Optional[str]
    message_id: Optional[str]
    payload: Mapping[str, Any]
    attempts: int = 0
    status: str = PENDING
    last_error: Optional[str] = None
    version: int = 0


@attrs.frozen(kw_only=True)
class Link:
    """Our message id and what it is in Odoo."""

    message_id: str
    odoo_id: Optional[int] = None
    idempotency_key: Optional[str] = None
    reply_ref: Optional[str] = None
    partner_id: Optional[int] = None
    odoo_state: Optional[str] = None


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


class Journal:
    """The sidecar tables, on a SQLite file or PostgreSQL (``url``: a SQL store URL)."""

    def __init__(self, url: str) -> None:
        self._url = normalise_url(url)
        self._engine = create_store_engine(self._url)
        self._pg = self._engine.dialect.name == "postgresql"
        self._serial = threading.RLock() if is_memory_sqlite(self._url) else None
        self._ensure_tables()

    def __repr__(self) -> str:
        return f"Journal({self._url.render_as_string(hide_password=True)!r})"

    @contextlib.contextmanager
    def _tx(self, what: str, write: bool = False) -> Iterator[Connection]:
        lock = self._serial if self._serial is not None else contextlib.nullcontext()
        with lock, db_errors(what), self._engine.connect() as conn:
            if write:
                conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn

    def _ensure_tables(self) -> None:
        """Create the tables (and add columns an older sidecar lacks) in one write
        transaction: processes opening a fresh sidecar at once take turns (SQLite's ``BEGIN
        IMMEDIATE``, a transaction-scoped advisory lock on PostgreSQL) instead of failing with
        "database is locked" or a duplicate table."""
        with self._tx("creating the Odoo bridge tables", write=True) as conn:
            if self._pg:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('smskit_odoo_ops'))"))
            _meta.create_all(conn, checkfirst=True)
            inspector = sa.inspect(conn)
            for table, column, ddl in _ADDED_COLUMNS:
                if column not in {c["name"] for c in inspector.get_columns(table)}:
                    conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))

    def _insert_ignore(self, table: sa.Table) -> Any:
        insert = postgresql.insert(table) if self._pg else sqlite.insert(table)
        return insert.on_conflict_do_nothing()

    # -- ops ------------------------------------------------------------------------------
    def enqueue(self, kind: str, payload: Mapping[str, Any], *, key: Optional[str] = None,
                message_id: Optional[str] = None) -> bool:
        """Add an op; ``False`` when an op with ``key`` already exists (pending or done)."""
        return self.enqueue_many([(kind, payload, key, message_id)]) == 1

    def enqueue_many(self, items: Iterable[Any], *, touch: bool = False) -> int:
        """Add ``(kind, payload, key, message_id)`` ops in one transaction; how many went in.

        With ``touch`` an op whose key exists already gets a new version and is pending again
        (the thing it writes changed: a lessee writing the older state leaves it pending)."""
        rows = [{"kind": kind, "payload": json.dumps(dict(payload), sort_keys=True),
                 "key": key, "message_id": message_id, "status": PENDING, "attempts": 0,
                 "created_at": time.time(), "version": 0}
                for kind, payload, key, message_id in items]
        if not rows:
            return 0
        if len(rows) == 1 or any(row["key"] is None for row in rows):
            return self._enqueue_each(rows, touch)
        # many keyed ops (a batch's mirror ops): the keys present are read once, the new ops
        # inserted with one executemany, the present ones touched with another
        with self._tx("recording Odoo writes", write=True) as conn:
            present: Set[str] = set()
            keys = [row["key"] for row in rows]
            for chunk in _chunks(keys):
                present.update(conn.execute(sa.select(ops.c.key).where(
                    ops.c.key.in_(chunk))).scalars())
            fresh = {row["key"]: row for row in rows if row["key"] not in present}
            if fresh:
                conn.execute(self._insert_ignore(ops), list(fresh.values()))
            if touch and present:
                conn.execute(sa.update(ops).where(ops.c.key == sa.bindparam("k")).values(
                    version=ops.c.version + 1, status=PENDING), [{"k": k} for k in present])
        return len(fresh)

    def _enqueue_each(self, rows: List[Dict[str, Any]], touch: bool) -> int:
        """One statement per op: exact counts (a key taken meanwhile is not counted)."""
        added = 0
        with self._tx("recording Odoo writes", write=True) as conn:
            for row in rows:
                stmt = self._insert_ignore(ops).values(row)
                if self._pg:
                    new = conn.execute(stmt.returning(ops.c.id)).first() is not None
                else:
                    result = conn.execute(stmt.execution_options(preserve_rowcount=True))
                    new = result.rowcount == 1
                added += new
                if touch and not new and row["key"] is not None:
                    conn.execute(sa.update(ops).where(ops.c.key == row["key"]).values(
                        version=ops.c.version + 1, status=PENDING))
        return added

    def pending(self, kinds: Optional[Sequence[str]] = None, limit: int = 5000) -> List[Op]:
        """Pending ops, oldest first."""
        query = sa.select(ops).where(ops.c.status == PENDING)
        if kinds:
            query = query.where(ops.c.kind.in_(list(kinds)))
        with self._tx("reading pending Odoo writes") as conn:
            rows = conn.execute(query.order_by(ops.c.id).limit(limit)).mappings().all()
        return [_op(dict(r)) for r in rows]

    def lease(self, kinds: Sequence[str], owner: str, *, limit: int = 2000,
              seconds: float = 120.0) -> List[Op]:
        """Pending ops of ``kinds`` nobody else holds, oldest first, now held by ``owner`` for
        ``seconds`` (released by :meth:`finish` or :meth:`attempt`; a dead owner's lease
        expires). Taken in one write transaction: two processes never lease the same op."""
        now = time.time()
        free = sa.or_(ops.c.lease_until.is_(None), ops.c.lease_until < now,
                      ops.c.lease_owner == owner)
        query = (sa.select(ops).where(ops.c.status == PENDING, ops.c.kind.in_(list(kinds)),
                                      free).order_by(ops.c.id).limit(limit))
        with self._tx("looking for pending Odoo writes") as conn:
            # most flushes find nothing: no write transaction (SQLite's write lock) for them
            if conn.execute(query.with_only_columns(ops.c.id).limit(1)).first() is None:
                return []
        with self._tx("leasing pending Odoo writes", write=True) as conn:
            if self._pg:
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).mappings().all()
            for chunk in _chunks([r["id"] for r in rows]):
                conn.execute(sa.update(ops).where(ops.c.id.in_(chunk)).values(
                    lease_owner=owner, lease_until=now + seconds))
        return [_op(dict(r)) for r in rows]

    def failed(self) -> List[Op]:
        """Ops Odoo refused (kept for a person to look at; :meth:`retry` puts them back)."""
        with self._tx("reading failed Odoo writes") as conn:
            rows = conn.execute(sa.select(ops).where(ops.c.status == FAILED)
                                .order_by(ops.c.id)).mappings().all()
        return [_op(dict(r)) for r in rows]

    def count(self, status: str = PENDING) -> int:
        """How many ops have ``status``."""
        with self._tx("counting Odoo writes") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(ops)
                                    .where(ops.c.status == status)).scalar_one())

    def finish(self, done: Sequence[int], *, keep: Sequence[int] = (),
               versions: Optional[Mapping[int, int]] = None) -> None:
        """Ops written to Odoo: ``done`` are removed, ``keep`` stay as ``done`` (their key
        keeps guarding against a repeat). With ``versions`` (op id -> the version written) an
        op queued again meanwhile stays pending instead. Every lease is released."""
        same = _same_version(versions)
        with self._tx("completing Odoo writes", write=True) as conn:
            if done:
                conn.execute(sa.delete(ops).where(same), _params(done, versions))
            if keep:
                conn.execute(sa.update(ops).where(same).values(status=DONE, last_error=None),
                             _params(keep, versions))
            self._release(conn, [*done, *keep])

    @staticmethod
    def _release(conn: Connection, op_ids: Sequence[int]) -> None:
        for chunk in _chunks(list(op_ids)):
            conn.execute(sa.update(ops).where(ops.c.id.in_(chunk))
                         .values(lease_owner=None, lease_until=None))

    def attempt(self, op_ids: Sequence[int], error: str, *, give_up: bool = False,
                versions: Optional[Mapping[int, int]] = None) -> None:
        """Count a failed attempt and release the lease; ``give_up`` marks the ops ``failed``
        (not retried), except one queued again since ``versions`` (it stays pending)."""
        with self._tx("recording a failed Odoo write", write=True) as conn:
            for chunk in _chunks(list(op_ids)):
                conn.execute(sa.update(ops).where(ops.c.id.in_(chunk)).values(
                    attempts=ops.c.attempts + 1, last_error=error[:2000],
                    lease_owner=None, lease_until=None))
            if give_up and op_ids:
                conn.execute(sa.update(ops).where(_same_version(versions))
                             .values(status=FAILED), _params(op_ids, versions))

    def retry(self, op_ids: Optional[Sequence[int]] = None) -> int:
        """Put the failed ops back in the queue (those of ``op_ids``, else every one); how
        many. Their attempts start again from zero."""
        query = sa.update(ops).where(ops.c.status == FAILED)
        if op_ids is not None:
            query = query.where(ops.c.id.in_([int(i) for i in op_ids]))
        with self._tx("retrying failed Odoo writes", write=True) as conn:
            result = conn.execute(query.values(status=PENDING, attempts=0)
                                  .execution_options(preserve_rowcount=True))
            return int(result.rowcount or 0)

    # -- links ----------------------------------------------------------------------------
    def links(self, message_ids: Iterable[str]) -> Dict[str, Link]:
        """The links of these messages (missing ids are absent)."""
        wanted = list(dict.fromkeys(message_ids))
        found: Dict[str, Link] = {}
        with self._tx("reading Odoo links") as conn:
            for chunk in _chunks(wanted):
                for row in conn.execute(sa.select(links).where(
                        links.c.message_id.in_(chunk))).mappings():
                    found[row["message_id"]] = Link(**dict(row))
        return found

    def by_keys(self, keys: Iterable[str]) -> Dict[str, str]:
        """Idempotency key -> message id, for the keys already linked."""
        wanted = [k for k in dict.fromkeys(keys) if k]
        found: Dict[str, str] = {}
        with self._tx("reading idempotency keys") as conn:
            for chunk in _chunks(wanted):
                for key, mid in conn.execute(sa.select(links.c.idempotency_key,
                                                       links.c.message_id)
                                             .where(links.c.idempotency_key.in_(chunk))):
                    found[key] = mid
        return found

    def put_links(self, rows: Sequence[Link]) -> None:
        """Insert or replace links (the last of ``rows`` for a message wins), in one upsert:
        the two deliveries of one reply, racing in two processes, both link it."""
        if not rows:
            return
        latest = {r.message_id: attrs.asdict(r) for r in rows}
        with self._tx("writing Odoo links", write=True) as conn:
            conn.execute(upsert(links, links.c.message_id, postgres=self._pg),
                         list(latest.values()))

    # -- partner claims -------------------------------------------------------------------------
    def partners(self, phones: Iterable[str]) -> Dict[str, Optional[int]]:
        """Phone -> partner id (``None``: claimed, being created) for known phones."""
        wanted = list(dict.fromkeys(phones))
        found: Dict[str, Optional[int]] = {}
        with self._tx("reading partner claims") as conn:
            for chunk in _chunks(wanted):
                for phone, pid in conn.execute(sa.select(partners.c.phone, partners.c.partner_id)
                                               .where(partners.c.phone.in_(chunk))):
                    found[phone] = pid
        return found

    def claim(self, phones: Sequence[str], owner: str, stale_after: float = 60.0) -> List[str]:
        """Claim the right to create a partner for each phone; the phones this owner got.

        A claim left without a partner for ``stale_after`` seconds (its process died) is
        taken over.
        """
        now = time.time()
        won: List[str] = []
        with self._tx("claiming partner numbers", write=True) as conn:
            conn.execute(sa.delete(partners).where(partners.c.partner_id.is_(None),
                                                   partners.c.claimed_at < now - stale_after))
            for phone in phones:
                stmt = self._insert_ignore(partners).values(
                    phone=phone, partner_id=None, owner=owner, claimed_at=now)
                if self._pg:
                    got = conn.execute(stmt.returning(partners.c.phone)).first() is not None
                else:
                    got = conn.execute(stmt.execution_options(
                        preserve_rowcount=True)).rowcount == 1
                if got:
                    won.append(phone)
        return won

    def set_partners(self, found: Mapping[str, int], owner: str = "") -> None:
        """Record phone -> partner id (creating or completing the claim)."""
        if not found:
            return
        now = time.time()
        with self._tx("recording partners", write=True) as conn:
            conn.execute(upsert(partners, partners.c.phone, postgres=self._pg), [
                {"phone": phone, "partner_id": pid, "owner": owner, "claimed_at": now}
                for phone, pid in found.items()])

    def release(self, phones: Sequence[str], owner: str) -> None:
        """Drop this owner's unfinished claims (the partner could not be created)."""
        with self._tx("releasing partner claims", write=True) as conn:
            for chunk in _chunks(list(phones)):
                conn.execute(sa.delete(partners).where(partners.c.phone.in_(chunk),
                                                       partners.c.owner == owner,
                                                       partners.c.partner_id.is_(None)))

    def forget_partners(self, phones: Sequence[str]) -> None:
        """Drop phone -> partner entries that turned out stale."""
        with self._tx("forgetting partners", write=True) as conn:
            for chunk in _chunks(list(phones)):
                conn.execute(sa.delete(partners).where(partners.c.phone.in_(chunk)))

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()


def _same_version(versions: Optional[Mapping[int, int]]) -> Any:
    """``WHERE`` for one op of an ``executemany`` (``op``, and ``version`` when known)."""
    cond = ops.c.id == sa.bindparam("op")
    if versions is not None:
        cond = sa.and_(cond, ops.c.version == sa.bindparam("v"))
    return cond


def _params(op_ids: Sequence[int], versions: Optional[Mapping[int, int]]
            ) -> List[Dict[str, int]]:
    if versions is None:
        return [{"op": op_id} for op_id in op_ids]
    return [{"op": op_id, "v": versions.get(op_id, 0)} for op_id in op_ids]


def _op(row: Mapping[str, Any]) -> Op:
    return Op(id=int(row["id"]), kind=row["kind"], key=row["key"],
              message_id=row["message_id"], payload=json.loads(row["payload"] or "{}"),
              attempts=int(row["attempts"]), status=row["status"],
              last_error=row["last_error"], version=int(row.get("version") or 0))
