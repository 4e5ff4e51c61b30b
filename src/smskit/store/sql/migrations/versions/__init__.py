"""Alembic revision scripts of the SQL store, applied in order."""
