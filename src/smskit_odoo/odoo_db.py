"""smskit's store inside Odoo's own PostgreSQL database, in a schema of its own.

The Odoo addon keeps smskit's SQL store (messages, history, batches, schedules, campaigns,
blacklist and its audit, the journal of pending Odoo writes) in the database Odoo itself uses,
in the schema ``smskit`` (:data:`SCHEMA`), reached through Odoo's own driver (psycopg2) with
``search_path`` set to that schema. smskit's tables, migrations (Alembic) and transactions are
exactly those of any SQL store; what the addon adds is read-only SQL views in Odoo's schema
that show those tables to Odoo's screens, so there is one copy of every record and nothing to
keep in step.

Two things follow from views over smskit's tables, and :class:`StoreSchema` takes care of both:

* Odoo's records need an integer id; ``messages`` and ``blacklist`` are keyed by text (our
  message id, the phone). The addon gives them one more column, ``odoo_seq`` (a ``BIGSERIAL``
  with a unique index): PostgreSQL fills it on every insert, smskit never reads or writes it.
* PostgreSQL refuses to drop or change a column a view reads. Before a smskit migration runs,
  :meth:`StoreSchema.ensure` drops the views it is given (the caller creates them again), so
  the addon never stands in the way of smskit's own schema changes.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool

from smskit.errors import ConfigurationError
from smskit.store.sql import upgrade
from smskit.store.sql.engine import current_revision, db_errors, head_revision, normalise_url
from smskit_odoo.journal import Journal

__all__ = ["KEYED_TABLES", "SCHEMA", "SEQ_COLUMN", "StoreSchema", "store_url"]

#: The schema of Odoo's database that holds smskit's tables.
SCHEMA = "smskit"
#: The integer key the addon adds to smskit's text-keyed tables (for Odoo's record ids).
SEQ_COLUMN = "odoo_seq"
#: The smskit tables that get :data:`SEQ_COLUMN`.
KEYED_TABLES = ("messages", "blacklist")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_QUALIFIED = re.compile(r"^(?:[a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$")
#: The advisory lock that serialises two processes preparing the schema at once ("smskit-o").
_LOCK = 0x736D736B69746F


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ConfigurationError(f"{what} must be a lower-case SQL name, got {value!r}")
    return value


def store_url(connection_info: Mapping[str, Any], *, schema: str = SCHEMA) -> str:
    """The SQL store URL of the database Odoo connects to, its ``search_path`` set to
    ``schema``, through psycopg2 (the driver Odoo itself uses).

    ``connection_info`` is what ``odoo.sql_db.connection_info_for(dbname)[1]`` returns:
    ``database``, ``host``, ``port``, ``user``, ``password``, ``sslmode`` (the ``db_*``
    options), or a single ``dsn`` when Odoo was given a ``postgresql://`` URI.
    """
    query = {"options": f"-csearch_path={_name(schema, 'the schema')}",
             "application_name": "smskit"}
    dsn = connection_info.get("dsn")
    if dsn:
        parsed = normalise_url(str(dsn)).set(drivername="postgresql+psycopg2")
        return parsed.update_query_dict(query).render_as_string(hide_password=False)
    if not connection_info.get("database"):
        raise ConfigurationError("Odoo's connection info names no database")
    if connection_info.get("sslmode"):
        query["sslmode"] = str(connection_info["sslmode"])
    url = URL.create(
        "postgresql+psycopg2", username=connection_info.get("user") or None,
        password=connection_info.get("password") or None,
        host=connection_info.get("host") or None,
        port=int(connection_info["port"]) if connection_info.get("port") else None,
        database=str(connection_info["database"]), query=query)
    return url.render_as_string(hide_password=False)


class StoreSchema:
    """smskit's schema in Odoo's database: made, migrated and given :data:`SEQ_COLUMN`.

    ``url`` is the store URL (:func:`store_url`); ``schema`` the name in its ``search_path``.
    """

    def __init__(self, url: str, *, schema: str = SCHEMA) -> None:
        self.url = url
        self.schema = _name(schema, "the schema")
        # one short-lived connection per call: nothing is kept open between uses
        self._engine = sa.create_engine(normalise_url(url), poolclass=NullPool)

    def __repr__(self) -> str:
        return f"StoreSchema({self.schema!r})"

    def close(self) -> None:
        """Release the engine."""
        self._engine.dispose()

    def ensure(self, views: Sequence[str] = ()) -> bool:
        """Make the schema ready: created, at smskit's newest migration, with the journal's
        tables and :data:`SEQ_COLUMN`. When a migration is due, the ``views`` (names
        qualified with their schema: ``public.smskit_message``) are dropped first and
        ``True`` is returned: the caller creates them again. Safe to call from several
        processes at once (an advisory lock)."""
        with db_errors("preparing smskit's schema"), self._engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            due = current_revision(conn) != head_revision()
            if due:
                for view in views:
                    if not _QUALIFIED.match(view):
                        raise ConfigurationError(f"not a view name: {view!r}")
                    conn.exec_driver_sql(f"DROP VIEW IF EXISTS {view} CASCADE")
        if due:
            upgrade(self.url)
        Journal(self.url).close()  # creates its tables when missing
        with db_errors("preparing smskit's schema"), self._engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
            for table in KEYED_TABLES:
                self._add_seq(conn, table)
        return due

    def _add_seq(self, conn: Connection, table: str) -> None:
        # Looked up first: ALTER TABLE and CREATE INDEX lock the table even when there is
        # nothing to do, and this runs every time a kit is built.
        column = conn.execute(sa.text(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = :schema "
            "AND table_name = :table AND column_name = :column"),
            {"schema": self.schema, "table": table, "column": SEQ_COLUMN}).first()
        if column is None:
            # BIGSERIAL: PostgreSQL numbers every row, those there now and every later insert
            conn.exec_driver_sql(f'ALTER TABLE "{self.schema}"."{table}" '
                                 f"ADD COLUMN {SEQ_COLUMN} BIGSERIAL")
        index = f"ix_{table}_{SEQ_COLUMN}"
        found = conn.execute(sa.text(
            "SELECT 1 FROM pg_indexes WHERE schemaname = :schema AND indexname = :index"),
            {"schema": self.schema, "index": index}).first()
        if found is None:
            conn.exec_driver_sql(f'CREATE UNIQUE INDEX "{index}" '
                                 f'ON "{self.schema}"."{table}" ({SEQ_COLUMN})')

    def in_schema(self) -> bool:
        """Whether smskit's tables are there (the addon's screens can show them)."""
        with db_errors("reading smskit's schema"), self._engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = :schema "
                "AND table_name = 'messages'"), {"schema": self.schema}).first() is not None
