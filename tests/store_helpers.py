"""The stores a behaviour is tested on: the memory store, a SQLite file and, with
``SMSKIT_TEST_POSTGRES_URL``, PostgreSQL (emptied first: the test owns that database)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from smskit.store.base import Store
from smskit.store.memory import MemoryStore
from smskit.store.sql import SqlStore

PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")
_TABLES = ("events, messages, batches, blacklist, schedules, contacts, contact_tags, campaigns, "
           "blacklist_audit, blacklist_sync, kv_state, links, link_clicks")

#: ``params`` of a ``store`` fixture that runs its tests on each store.
STORE_KINDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="set SMSKIT_TEST_POSTGRES_URL to run on PostgreSQL"))]


def open_store(kind: str, tmp_path: Path) -> Iterator[Store]:
    """The store ``kind`` names (one of :data:`STORE_KINDS`), closed after the test."""
    made: Any
    if kind == "memory":
        made = MemoryStore()
    elif kind == "sqlite":
        made = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    else:
        made = SqlStore(str(PG_URL))
        with made._engine.begin() as conn:  # the test owns this database
            conn.exec_driver_sql(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
    yield made
    made.close()
