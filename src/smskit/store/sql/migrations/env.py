"""Alembic environment of the SQL store.

smskit runs it itself (:func:`smskit.store.sql.store.upgrade`, and every time a ``SqlStore`` opens)
with its own connection in ``config.attributes["connection"]``, already inside the write
transaction that serialises concurrent upgrades. Run by the ``alembic`` command instead, it
builds an engine from the ``sqlalchemy.url`` option with the store's connection settings;
``--sql`` (offline) mode prints the DDL.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from smskit.errors import ConfigurationError
from smskit.store.sql.engine import create_store_engine, normalise_url
from smskit.store.sql.tables import VERSION_TABLE, metadata


def _run_with(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise ConfigurationError("alembic: set sqlalchemy.url to the smskit database URL")
    return url


def run() -> None:
    """Run the migrations the Alembic command asked for."""
    if context.is_offline_mode():
        url = normalise_url(_url()).render_as_string(hide_password=False)
        context.configure(url=url, target_metadata=metadata, version_table=VERSION_TABLE,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    engine = create_store_engine(normalise_url(_url()))
    try:
        with engine.connect() as conn:
            _run_with(conn)
            conn.commit()
    finally:
        engine.dispose()


run()
