"""Engines for the SQL store: URL rules, SQLite connection set-up, and schema migrations.

SQLite connections run in WAL mode with a 30 s busy timeout, ``synchronous=FULL`` (see
:data:`SYNCHRONOUS_MODES`) and foreign keys on. pysqlite's own transaction handling is switched
off (``isolation_level = None``) and the ``begin`` event emits ``BEGIN IMMEDIATE`` for a
connection marked with the :data:`WRITE` execution option (plain ``BEGIN`` otherwise): a write
transaction takes SQLite's write lock up front, so two processes can never read the same state
and both act on it.

The NUL rule, on both databases: every U+0000 in a text parameter of any statement becomes
U+FFFD before it reaches the driver (:func:`without_nul`). PostgreSQL refuses U+0000 in text
outright; replacing it on SQLite too keeps what is stored, and what a look-up finds, the same
on both.
"""

from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator, Optional, Tuple

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import StaticPool

from smskit.errors import ConfigurationError, SmsKitError, StoreError
from smskit.store.sql.tables import VERSION_TABLE

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DEFAULT_SYNCHRONOUS",
    "MIGRATIONS_DIR",
    "SYNCHRONOUS_MODES",
    "WRITE",
    "alembic_config",
    "create_store_engine",
    "current_revision",
    "db_errors",
    "head_revision",
    "is_memory_sqlite",
    "known_revisions",
    "migrate",
    "normalise_url",
    "redact_url",
    "upsert",
    "without_nul",
]

#: Execution option that makes the SQLite ``begin`` event emit ``BEGIN IMMEDIATE``.
WRITE = "smskit_write"
#: How long a SQLite connection waits for another writer before giving up.
BUSY_TIMEOUT_MS = 30_000
#: The Alembic script directory shipped inside the package.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: SQLite's ``synchronous`` settings a store URL may ask for (``?synchronous=normal``):
#: ``FULL`` syncs the WAL on every commit, so a committed write survives an OS crash or a power
#: cut; ``NORMAL`` syncs only at checkpoints, so the last commits before such a crash may be
#: lost (never on a process crash, and never a corrupt file).
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")
#: The default: a webhook answered 2xx was committed durably (see docs/stores.md).
DEFAULT_SYNCHRONOUS = "FULL"
#: Key of the PostgreSQL advisory lock that serialises concurrent migrations ("smskit").
_PG_MIGRATION_LOCK = 0x736D736B6974

_USERINFO = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for error messages)."""
    return _USERINFO.sub(r"\1***@", url)


def normalise_url(url: str) -> URL:
    """Parse a store URL; a plain ``postgresql://`` URL means psycopg 3, and ``postgres://``
    (what Heroku-style platforms and many PaaS hand out) means ``postgresql://``."""
    try:
        parsed = sa.make_url(url)
    except (exc.ArgumentError, ValueError) as error:  # ValueError: a port that is no number
        raise ConfigurationError(f"invalid database URL {redact_url(url)!r}") from error
    backend = parsed.get_backend_name()
    if backend == "postgres":  # SQLAlchemy knows only the long name
        driver = parsed.get_driver_name() if "+" in parsed.drivername else ""
        parsed = parsed.set(drivername=f"postgresql+{driver}" if driver else "postgresql")
        backend = "postgresql"
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        return parsed
    raise ConfigurationError(
        f"unsupported database URL {redact_url(url)!r}: use sqlite:///path.db or "
        "postgresql://user:password@host/db"
    )


def is_memory_sqlite(url: URL) -> bool:
    """Whether ``url`` is a private in-memory SQLite database (``sqlite://``)."""
    if url.get_backend_name() != "sqlite":
        return False
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


_NUL = "\x00"
_REPLACEMENT = "\ufffd"


def _clean(value: Any) -> Any:
    return value.replace(_NUL, _REPLACEMENT) if isinstance(value, str) and _NUL in value \
        else value


def _has_nul(values: Iterable[Any]) -> bool:
    # A plain loop, not any() over a generator (0.65 against 1.0 us for a message's row): this
    # sees every parameter of every statement.
    for v in values:  # noqa: SIM110
        if isinstance(v, str) and _NUL in v:
            return True
    return False


def without_nul(parameters: Any) -> Any:
    """Statement parameters (a mapping, a tuple, or a list of them for ``executemany``) with
    U+0000 replaced by U+FFFD in every text; the same object when none holds one."""
    if isinstance(parameters, dict):
        if _has_nul(parameters.values()):
            return {key: _clean(value) for key, value in parameters.items()}
        return parameters
    if isinstance(parameters, tuple):
        return tuple(_clean(v) for v in parameters) if _has_nul(parameters) else parameters
    if isinstance(parameters, list):
        return [without_nul(row) for row in parameters]
    return parameters


def _before_execute(conn: Connection, cursor: Any, statement: str, parameters: Any,
                    context: Any, executemany: bool) -> Tuple[str, Any]:
    return statement, without_nul(parameters)


def upsert(table: sa.Table, key: sa.Column[Any], *, postgres: bool,
           keep: Collection[str] = ()) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` setting every other column but ``keep``
    (PostgreSQL's or SQLite's form): a row written whole, inserted or replaced. Two
    transactions writing the same key at once both succeed, the later one's values kept,
    where a delete then an insert has the second fail on the key the first inserted (under
    PostgreSQL's READ COMMITTED, it finds nothing to delete)."""
    insert = postgresql.insert(table) if postgres else sqlite.insert(table)
    return insert.on_conflict_do_update(
        index_elements=[key],
        set_={c.name: insert.excluded[c.name] for c in table.c
              if c.name != key.name and c.name not in keep})


def create_store_engine(url: URL, *, echo: bool = False,
                        background_checkpoints: bool = False) -> Engine:
    """An engine for ``url`` with smskit's connection settings. ``background_checkpoints``:
    a SQLite file's connections leave the WAL's checkpoints to a
    :class:`~smskit.store.sql.checkpoint.WalCheckpointer` (``wal_autocheckpoint = 0``),
    which the caller must run."""
    try:
        if url.get_backend_name() == "sqlite":
            engine = _sqlite_engine(url, echo, background_checkpoints)
        else:
            try:
                engine = sa.create_engine(url, echo=echo, pool_pre_ping=True)
            except ImportError as error:
                raise ConfigurationError(
                    f"the PostgreSQL driver is not installed ({error}); "
                    "pip install 'smskit-sdk[postgres]'") from error
    except exc.ArgumentError as error:  # a SQLite URL with a host, an unknown driver name
        reason = str(error).splitlines()[0]
        if reason.startswith("Invalid SQLite URL"):
            reason = "a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db"
        raise ConfigurationError(
            f"invalid database URL {redact_url(url.render_as_string(hide_password=False))!r}: "
            f"{reason}") from error
    event.listen(engine, "before_cursor_execute", _before_execute, retval=True)
    return engine


def _synchronous(url: URL) -> Tuple[URL, str]:
    """The ``synchronous`` query parameter of a SQLite URL (taken out of it), or the default."""
    raw = url.query.get("synchronous")
    if raw is None:
        return url, DEFAULT_SYNCHRONOUS
    mode = (raw if isinstance(raw, str) else raw[-1]).strip().upper()
    if mode not in SYNCHRONOUS_MODES:
        raise ConfigurationError(
            f"synchronous={mode.lower()!r} in the database URL: expected one of "
            f"{', '.join(m.lower() for m in SYNCHRONOUS_MODES)}")
    return url.difference_update_query(["synchronous"]), mode


def _sqlite_engine(url: URL, echo: bool, background_checkpoints: bool) -> Engine:
    url, synchronous = _synchronous(url)
    memory = is_memory_sqlite(url)
    if memory:
        engine = sa.create_engine(
            url, echo=echo, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        engine = sa.create_engine(
            url, echo=echo, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}
        )

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                if background_checkpoints:
                    cursor.execute("PRAGMA wal_autocheckpoint = 0")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


@contextlib.contextmanager
def db_errors(what: str) -> Iterator[None]:
    """Turn a database failure into a :class:`StoreError` naming the operation."""
    try:
        yield
    except exc.StatementError as error:
        if isinstance(error.orig, SmsKitError):
            raise error.orig from error
        raise StoreError(f"{what} failed: {_describe(error)}") from error
    except exc.SQLAlchemyError as error:
        raise StoreError(f"{what} failed: {_describe(error)}") from error


def _describe(error: exc.SQLAlchemyError) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig) if orig is not None else str(error)
    return f"{type(orig or error).__name__}: {text.splitlines()[0] if text else ''}"


def alembic_config(connection: Optional[Connection] = None) -> Config:
    """An Alembic config for the packaged migrations (no ``alembic.ini`` needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.lru_cache(maxsize=1)
def head_revision() -> Optional[str]:
    """The newest migration shipped with this version of smskit."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> Tuple[str, ...]:
    """Every migration shipped with this version of smskit, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return tuple(reversed([rev.revision for rev in script.walk_revisions()]))


def current_revision(conn: Connection) -> Optional[str]:
    """The schema revision of the database behind ``conn`` (``None`` when empty)."""
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is there already.

    The upgrade runs in one write transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory
    lock on PostgreSQL), so processes opening the same fresh database at once take turns and
    the later ones find the schema done.
    """
    with engine.connect() as conn:
        is_current = current_revision(conn) == head_revision()
        conn.rollback()
        if is_current:
            return
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": _PG_MIGRATION_LOCK})
            command.upgrade(alembic_config(conn), "head")
