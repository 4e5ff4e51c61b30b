"""Plumbing of the SQL store: the engine, transactions and the queries every part shares."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from decimal import Decimal
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from smskit.errors import StoreError
from smskit.models import Message, utcnow
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
    function of its value, and equal values of those types convert alike.
    """

    def __init__(self, sql: str, names: Sequence[str], processors: Sequence[Any]) -> None:
        """``sql`` with positional parameters ``names``, converted by ``processors``."""
        self.sql = sql
        self.names: Tuple[str, ...] = tuple(names)
        self._pairs = list(zip(names, processors))
        self._converted = [(i, p, p(None) is None)
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
                   [binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names])

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
            for (i, process, keeps_none), memo in zip(converted, memos):
                value = values[i]
                if value is None and keeps_none:
                    continue
                kind = type(value)
                if kind in _MEMO_TYPES or (kind is tuple and _texts(value)):
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


class DriverIn:
    """A ``SELECT ... WHERE <column> IN (...)`` of texts compiled once with :data:`_CHUNK`
    placeholders, run at driver level one chunk at a time (the unused places bound to NULL,
    which matches nothing). SQLAlchemy otherwise expands the IN list and processes its
    values in Python on every call. Only for texts in and out (no processors either way) and
    dialects with positional parameters (SQLite); :meth:`for_dialect` gives ``None``
    otherwise."""

    def __init__(self, sql: str, names: Sequence[str]) -> None:
        """``sql`` with positional parameters ``names`` (``in_0``... for the list)."""
        self.sql = sql
        self.names = tuple(names)

    @classmethod
    def for_dialect(cls, build: Any, dialect: sa.engine.Dialect) -> Optional[DriverIn]:
        """``build(placeholders)``, a SELECT whose IN list is the given bind parameters,
        compiled for ``dialect``; ``None`` if its parameters are not positional."""
        if not dialect.positional:
            return None
        compiled = build([sa.bindparam(f"in_{i}") for i in range(_CHUNK)]).compile(
            dialect=dialect)
        return cls(str(compiled), compiled.positiontup or ())

    def rows(self, conn: Connection, values: Sequence[str],
             **fixed: Any) -> Iterator[Any]:
        """The rows for ``values`` (the other parameters in ``fixed``), chunk by chunk."""
        for chunk in chunks(values):
            bound: Dict[str, Any] = dict(fixed)
            bound.update(zip([f"in_{i}" for i in range(len(chunk))], chunk))
            params = tuple([bound.get(name) for name in self.names])
            yield from conn.exec_driver_sql(self.sql, params)


class SqlBase:
    """An open database with the schema at the newest migration, and shared helpers."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Open ``url`` and bring its schema to the newest migration."""
        self._url = normalise_url(url)
        self._engine = create_store_engine(self._url, echo=echo)
        self._pg = self._engine.dialect.name == "postgresql"
        # sqlite:// is one connection (StaticPool): callers must take turns on it.
        self._serial: Optional[threading.RLock] = (
            threading.RLock() if is_memory_sqlite(self._url) else None
        )
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
        """Release every pooled connection."""
        self._engine.dispose()

