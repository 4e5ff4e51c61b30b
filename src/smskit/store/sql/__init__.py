"""The SQL store on SQLAlchemy Core (SQLite, PostgreSQL) with its Alembic migrations."""

from __future__ import annotations

from smskit.store.sql.store import SqlStore, schema_revision, upgrade

__all__ = ["SqlStore", "schema_revision", "upgrade"]
