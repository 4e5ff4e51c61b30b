"""smskit's store in Odoo's own database (``smskit_odoo.odoo_db``): the URL built from Odoo's
connection settings, and the schema the addon's screens read (made, migrated, every message and
blacklisted number numbered for Odoo, the screens' views out of the way of a migration)."""

from __future__ import annotations

import os
from typing import Iterator
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from alembic import command

from smskit.errors import ConfigurationError
from smskit.models import Message
from smskit.store.sql import SqlStore
from smskit.store.sql.engine import alembic_config, normalise_url
from smskit_odoo.odoo_db import SEQ_COLUMN, StoreSchema, store_url

PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")


def test_the_url_of_odoos_database_through_psycopg2() -> None:
    url = store_url({"database": "prod", "host": "db.internal", "port": 5433, "user": "odoo",
                     "password": "p@ss:w/rd", "sslmode": "require"})
    parsed = sa.make_url(url)
    assert parsed.drivername == "postgresql+psycopg2"
    assert (parsed.host, parsed.port, parsed.database) == ("db.internal", 5433, "prod")
    assert (parsed.username, parsed.password) == ("odoo", "p@ss:w/rd")
    assert parsed.query["options"] == "-csearch_path=smskit"
    assert parsed.query["sslmode"] == "require"
    assert parsed.query["application_name"] == "smskit"


def test_a_unix_socket_and_odoos_own_uri() -> None:
    local = sa.make_url(store_url({"database": "prod", "user": "odoo"}))
    assert (local.host, local.password, local.database) == (None, None, "prod")
    dsn = sa.make_url(store_url({"dsn": "postgresql://odoo:pw@db:5432/prod"}, schema="sms"))
    assert (dsn.drivername, dsn.host, dsn.database) == ("postgresql+psycopg2", "db", "prod")
    assert dsn.query["options"] == "-csearch_path=sms"


def test_names_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        store_url({"database": "prod"}, schema="smskit; DROP TABLE x")
    with pytest.raises(ConfigurationError, match="no database"):
        store_url({"host": "db"})


@pytest.fixture
def schema() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("set SMSKIT_TEST_POSTGRES_URL to run on PostgreSQL")
    name = f"smskit_t_{os.getpid()}"
    engine = sa.create_engine(normalise_url(PG_URL))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    yield name
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    engine.dispose()


def _url(schema: str) -> str:
    assert PG_URL is not None
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


def test_the_schema_is_made_and_numbers_every_row(schema: str) -> None:
    prepared = StoreSchema(_url(schema), schema=schema)
    try:
        assert prepared.ensure() is True  # a fresh schema: migrated
        assert prepared.ensure() is False  # nothing due the second time
        assert prepared.in_schema()
        store = SqlStore(_url(schema))
        try:
            store.add_messages([Message.new("+5511987654321", "a"),
                                Message.new("+5511987654322", "b")])
            store.blacklist_add("+5511987654323", "SAIR", "inbound:kolmeya")
        finally:
            store.close()
        engine = sa.create_engine(normalise_url(_url(schema)))
        with engine.connect() as conn:
            seqs = [row[0] for row in conn.exec_driver_sql(
                f"SELECT {SEQ_COLUMN} FROM messages ORDER BY {SEQ_COLUMN}")]
            listed = conn.exec_driver_sql(f"SELECT {SEQ_COLUMN} FROM blacklist").scalar()
            journal = conn.exec_driver_sql(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                f"'{schema}' AND table_name LIKE 'smskit_odoo_%%'").scalar()
        engine.dispose()
        assert len(seqs) == 2 and seqs[0] < seqs[1]
        assert listed is not None
        assert journal == 3  # the journal's tables are there too
    finally:
        prepared.close()


def test_a_due_migration_drops_the_views_first(schema: str) -> None:
    engine = sa.create_engine(normalise_url(_url(schema)))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            command.upgrade(alembic_config(conn), "0003")  # an older smskit
            conn.exec_driver_sql(f"CREATE VIEW public.{schema}_screen AS SELECT id, state "
                                 f"FROM {schema}.messages")
        prepared = StoreSchema(_url(schema), schema=schema)
        with pytest.raises(ConfigurationError, match="not a view name"):
            prepared.ensure(views=["x; DROP TABLE y"])
        assert prepared.ensure(views=[f"public.{schema}_screen", "public.not_there"]) is True
        prepared.close()
        with engine.connect() as conn:
            views = conn.exec_driver_sql(
                f"SELECT count(*) FROM pg_views WHERE viewname = '{schema}_screen'").scalar()
        assert views == 0
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS public.{schema}_screen")
        engine.dispose()
