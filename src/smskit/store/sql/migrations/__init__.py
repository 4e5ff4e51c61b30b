"""Alembic migrations of the SQL store (run by :func:`smskit.store.sql.store.upgrade`)."""
