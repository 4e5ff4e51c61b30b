"""Plumbing of the SQL store: the engine, transactions and the queries every part shares."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import weakref
from decimal import Decimal
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from smskit.errors import StoreError
from smskit.models import Message, utcnow
from smskit.store.sql.checkpoint import WalCheckpointer
from smskit.store.sql.engine import (
    WRITE,
    create_store_engine,
    db_errors,
    is_memory_sqlite,
    migrate,
    normalise_url,
)
from smskit.store.sql.tables import blacklist, events, messages, row_message

__all__ = ["EVENT_COLUMNS", "DriverIn", "DriverMany", "SqlBase", "chunks"]

#: Values per ``IN (...)`` list: below SQLite's historical limit of 999 bound parameters.
_CHUNK = 500
_m = messages.c
_INSERT_EVENT = sa.insert(events)  # built once: its compiled form is reused
#: The columns of a history line, in the order :meth:`SqlBase._event_values` takes them.
EVENT_COLUMNS = ("message_id", "provider", "kind", "old_state", "new_state", "applied",
                 "detail", "provider_message_id", "created_at")
#: :data:`_INSERT_EVENT` binding exactly :data:`EVENT_COLUMNS` (for :class:`DriverMany`).
_INSERT_EVENT_VALUES = sa.insert(events).values(
    {name: sa.bindparam(f"e_{name}", type_=events.c[name].type) for name in EVENT_COLUMNS})
_EVENT_DEFAULTS = {"message_id": None, "provider": None, "old_state": None, "new_state": None,
                   "applied": False, "provider_message_id": None}


def chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``values`` in slices small enough for one ``IN (...)`` list."""
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class DriverMany:
    """An INSERT or UPDATE compiled once, run as one DBAPI ``executemany`` of plain tuples.

    Each value still goes through its column type's own bind processor (the conversions
    SQLAlchemy applies: aware UTC datetimes, exact costs, JSON), but without SQLAlchemy's
    per-row parameter machinery, most of the cost of a large ``executemany``. Only for
    dialects with positional parameters (SQLite); :meth:`for_dialect` gives ``None`` otherwise.

    A processor that turns ``None`` into ``None`` (every one of smskit's columns) is not
    called for it, and within one call each distinct datetime, cost or tuple of texts is
    converted once (a batch's ``now``, a send's price, its tags): a processor is a pure
    function of its value, and equal values of those types convert alike. Parameters of one
    kind (``kinds``: equal keys) share what was converted: a status event's time is its
    message's ``updated_at`` and ``delivered_at`` both.
    """

    def __init__(self, sql: str, names: Sequence[str], processors: Sequence[Any],
                 kinds: Optional[Sequence[Any]] = None) -> None:
        """``sql`` with positional parameters ``names``, converted by ``processors``; two
        parameters whose ``kinds`` are equal are converted alike (by default none are)."""
        self.sql = sql
        self.names: Tuple[str, ...] = tuple(names)
        self._pairs = list(zip(names, processors))
        slots: Dict[Any, int] = {}
        keys = list(kinds) if kinds is not None else list(range(len(processors)))
        self._converted = [(i, p, p(None) is None, slots.setdefault(keys[i], len(slots)))
                           for i, p in enumerate(processors) if p is not None]

    @classmethod
    def for_dialect(cls, stmt: Any, dialect: sa.engine.Dialect) -> Optional[DriverMany]:
        """``stmt`` compiled for ``dialect``, or ``None`` if its parameters are not positional."""
        compiled = stmt.compile(dialect=dialect)
        names = compiled.positiontup
        if not dialect.positional or not names:
            return None
        binds = compiled.binds
        return cls(str(compiled), names,
                   [binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names],
                   [_conversion(binds[n].type, i) for i, n in enumerate(names)])

    def run(self, conn: Connection, rows: Sequence[Dict[str, Any]]) -> int:
        """Execute once per row (a mapping of parameter name to value); the rows changed."""
        names = self.names
        return self.run_values(conn, [[row[n] for n in names] for row in rows])

    def run_values(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
        """Execute once per row, given as the values of :attr:`names` in that order (each
        converted here); the rows changed."""
        converted = self._converted
        memos: List[Dict[Any, Any]] = [{} for _ in converted]
        params: List[Tuple[Any, ...]] = []
        for row in rows:
            values = list(row)
            for i, process, keeps_none, slot in converted:
                value = values[i]
                if value is None and keeps_none:
                    continue
                kind = type(value)
                if kind in _MEMO_TYPES or (kind is tuple and _texts(value)):
                    memo = memos[slot]
                    found = memo.get(value, _MISSING)
                    if found is _MISSING:
                        found = memo[value] = process(value)
                    values[i] = found
                else:
                    values[i] = process(value)
            params.append(tuple(values))
        result = conn.exec_driver_sql(self.sql, params,
                                      execution_options={"preserve_rowcount": True})
        return int(result.rowcount)


#: Types whose equal values a bind processor converts alike (equal aware datetimes are one
#: instant, equal decimals one amount); a tuple counts when it holds texts only.
_MEMO_TYPES = frozenset({dt.datetime, Decimal})
_MISSING = object()


def _texts(value: Tuple[Any, ...]) -> bool:
    return all(type(v) is str for v in value)


def _conversion(column_type: Any, index: int) -> Any:
    """What makes two bound types convert alike: SQLAlchemy's cache key of the type (its
    compiled statements, and their bind processors, are shared by types with equal keys),
    or the parameter's place, unique, for a type without one."""
    key = column_type._static_cache_key
    if isinstance(key, tuple) and key and key[0] is type(column_type):
        return key
    return ("parameter", index)


class DriverIn:
    """A ``SELECT ... WHERE <column> IN (...)`` of texts run at driver level, one chunk of at
    most :data:`_CHUNK` values at a time. SQLAlchemy otherwise expands the IN list and
    processes its values in Python on every call.

    The statement is compiled once per size of list, a power of two up to :data:`_CHUNK`, the
    unused places bound to NULL (which matches nothing): a short list binds few parameters,
    and a handful of statements serve every length (the driver keeps them prepared). Only
    for texts in (no bind processors) and dialects with positional parameters (SQLite);
    :meth:`for_dialect` gives ``None`` otherwise. The rows are as the driver gives them (no
    result processors: a caller converts what needs it).
    """

    def __init__(self, build: Any, dialect: sa.engine.Dialect) -> None:
        """``build(placeholders)``: the SELECT whose IN list is the given bind parameters."""
        self._build = build
        self._dialect = dialect
        #: size -> (SQL, the names bound before the list, the names bound after it)
        self._sized: Dict[int, Tuple[str, Tuple[str, ...], Tuple[str, ...]]] = {}

    @classmethod
    def for_dialect(cls, build: Any, dialect: sa.engine.Dialect) -> Optional[DriverIn]:
        """A look-up for ``build`` (see :meth:`__init__`) compiled for ``dialect``; ``None``
        if its parameters are not positional."""
        if not dialect.positional:
            return None
        made = cls(build, dialect)
        made.statement(_CHUNK)  # a statement that binds its list otherwise fails here
        return made

    def statement(self, size: int) -> Tuple[str, Tuple[str, ...], Tuple[str, ...]]:
        """The SQL for a list of ``size`` places (``in_0``...), with the names of the other
        parameters it binds before and after them."""
        found = self._sized.get(size)
        if found is None:
            places = tuple(f"in_{i}" for i in range(size))
            compiled = self._build([sa.bindparam(p) for p in places]).compile(
                dialect=self._dialect)
            names = tuple(compiled.positiontup or ())
            start = names.index(places[0]) if places[0] in names else 0
            before, after = names[:start], names[start + size :]
            if names[start : start + size] != places or set(places) & set(before + after):
                raise StoreError("an IN list look-up does not bind its list in one run")
            found = self._sized[size] = (str(compiled), before, after)
        return found

    def rows(self, conn: Connection, values: Sequence[str],
             **fixed: Any) -> Iterator[Any]:
        """The rows for ``values`` (the other parameters in ``fixed``), chunk by chunk."""
        for chunk in chunks(values):
            size = min(_CHUNK, 1 << (len(chunk) - 1).bit_length())
            sql, before, after = self.statement(size)
            params = (*[fixed[name] for name in before], *chunk,
                      *[None] * (size - len(chunk)), *[fixed[name] for name in after])
            yield from conn.exec_driver_sql(sql, params).fetchall()


class SqlBase:
    """An open database with the schema at the newest migration, and shared helpers."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Open ``url`` and bring its schema to the newest migration."""
        self._url = normalise_url(url)
        memory = is_memory_sqlite(self._url)
        sqlite_file = self._url.get_backend_name() == "sqlite" and not memory
        self._engine = create_store_engine(self._url, echo=echo,
                                           background_checkpoints=sqlite_file)
        self._pg = self._engine.dialect.name == "postgresql"
        # sqlite:// is one connection (StaticPool): callers must take turns on it.
        self._serial: Optional[threading.RLock] = threading.RLock() if memory else None
        # A SQLite file's WAL is checkpointed in the background, not by its commits.
        self._checkpointer = WalCheckpointer(self._engine) if sqlite_file else None
        if self._checkpointer is not None:  # a store dropped unclosed ends its thread too
            weakref.finalize(self, self._checkpointer.stop)
        # A SQLite file has one writer at a time: this process's writers queue here, handed
        # over at once, instead of polling SQLite's lock with its busy handler's sleeps.
        self._writers: Optional[threading.RLock] = (
            threading.RLock() if self._serial is None and not self._pg else None
        )
        try:
            with db_errors(f"opening {self!r}"):
                migrate(self._engine)
        except BaseException:
            self._engine.dispose()
            raise
        # Look-ups of texts by IN list at driver level where the dialect allows (SQLite).
        dialect = self._engine.dialect
        self._pid_owners_in = None if self._pg else DriverIn.for_dialect(
            lambda places: sa.select(_m.id, _m.provider_message_id).where(
                _m.provider == sa.bindparam("provider"), _m.provider_message_id.in_(places)),
            dialect)
        self._blacklisted_in = None if self._pg else DriverIn.for_dialect(
            lambda places: sa.select(blacklist.c.phone).where(blacklist.c.phone.in_(places)),
            dialect)
        # History lines at driver level where the dialect allows (SQLite).
        self._events_many = None if self._pg else DriverMany.for_dialect(
            _INSERT_EVENT_VALUES, dialect)
        if self._events_many is not None and \
                self._events_many.names != tuple(f"e_{n}" for n in EVENT_COLUMNS):
            raise StoreError("the events INSERT does not bind its values in the expected order")

    def __repr__(self) -> str:
        return f"SqlStore({self._url.render_as_string(hide_password=True)!r})"

    # -- plumbing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self, what: str, *, write: bool = False) -> Iterator[Connection]:
        """One transaction; ``write`` takes SQLite's write lock up front (BEGIN IMMEDIATE)."""
        lock: Any = self._serial or (self._writers if write else None)
        with lock or contextlib.nullcontext(), db_errors(what), self._engine.connect() as conn:
            if write:
                conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn
        if write and self._checkpointer is not None:
            self._checkpointer.wrote()

    def _locked(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.with_for_update() if self._pg else query

    def _insert_ignore(self, table: sa.Table) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING`` for the store's dialect."""
        insert = postgresql.insert(table) if self._pg else sqlite.insert(table)
        return insert.on_conflict_do_nothing()

    def _insert_new(self, conn: Connection, table: sa.Table, row: Dict[str, Any]) -> bool:
        """Insert ``row`` unless it breaks a unique constraint; whether it went in."""
        stmt = self._insert_ignore(table).values(row)
        if self._pg:  # psycopg gives no rowcount for INSERT once the cursor is closed
            stmt = stmt.returning(*table.primary_key.columns)
            return conn.execute(stmt).first() is not None
        stmt = stmt.execution_options(preserve_rowcount=True)
        return bool(conn.execute(stmt).rowcount == 1)

    @staticmethod
    def _one(conn: Connection, query: sa.Select[Any]) -> Optional[Message]:
        row = conn.execute(query).mappings().first()
        return row_message(row) if row is not None else None

    @staticmethod
    def _where_in(
        conn: Connection, column: sa.ColumnElement[Any], values: Iterable[Any]
    ) -> List[Message]:
        unique = list(dict.fromkeys(values))
        found: List[Message] = []
        for chunk in chunks(unique):
            rows = conn.execute(sa.select(messages).where(column.in_(chunk))).mappings()
            found.extend(row_message(row) for row in rows)
        return found

    def _event_row(self, conn: Connection, rows: List[Dict[str, Any]]) -> None:
        """Write history lines given as column mappings (the unnamed columns empty)."""
        if not rows:
            return
        now = utcnow()
        full = [{**_EVENT_DEFAULTS, "created_at": now, **row} for row in rows]
        if self._events_many is not None:
            self._events_many.run_values(conn, [[row[n] for n in EVENT_COLUMNS] for row in full])
        else:
            conn.execute(_INSERT_EVENT, full)

    def _event_values(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Write history lines given as the values of :data:`EVENT_COLUMNS` in that order."""
        if not rows:
            return
        if self._events_many is not None:
            self._events_many.run_values(conn, rows)
        else:
            conn.execute(_INSERT_EVENT, [dict(zip(EVENT_COLUMNS, row)) for row in rows])

    def _pid_owners(
        self, conn: Connection, pairs: Iterable[Tuple[Optional[str], Optional[str]]]
    ) -> Dict[Tuple[str, str], str]:
        by_provider: Dict[str, Set[str]] = {}
        for provider, pid in pairs:
            if provider and pid:
                by_provider.setdefault(provider, set()).add(pid)
        owners: Dict[Tuple[str, str], str] = {}
        # Filtered on the provider too, so the (provider, provider_message_id) unique index
        # serves the look-up (a scan of the whole table otherwise); only the ids are read.
        driver = self._pid_owners_in
        for provider, pids in by_provider.items():
            if driver is not None:
                for message_id, pid in driver.rows(conn, sorted(pids), provider=provider):
                    owners[(provider, str(pid))] = message_id
                continue
            for chunk in chunks(sorted(pids)):
                found = conn.execute(sa.select(_m.id, _m.provider_message_id).where(
                    _m.provider == provider, _m.provider_message_id.in_(chunk)))
                for message_id, pid in found:
                    owners[(provider, str(pid))] = message_id
        return owners

    def close(self) -> None:
        """Stop the WAL checkpoints and release every pooled connection."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._engine.dispose()

