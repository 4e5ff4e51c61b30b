"""The store suite on the built-in stores, and what only the SQL store has.

The shipped suite (:mod:`smskit.testing.stores`: every guarantee of smskit.store.base and of the
optional outreach, link and stats protocols) runs on the memory store, on SQLite (a file per
test) and, when SMSKIT_TEST_POSTGRES_URL is set (``postgresql://user@127.0.0.1:5432/db``; the
tables are emptied before each test), on PostgreSQL. SQL-only tests at the end cover WAL,
migrations and several processes sharing one database file.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import sqlalchemy as sa

from smskit.errors import ConfigurationError, StoreError
from smskit.store import MemoryStore, Store
from smskit.store.sql import SqlStore, upgrade
from smskit.store.sql.checkpoint import WalCheckpointer
from smskit.testing.stores.samples import NOW, add, run_threads
from smskit.testing.stores.samples import outgoing as out
from smskit.testing.stores.suite import StoreSuite

PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")
_NO_PG = "set SMSKIT_TEST_POSTGRES_URL=postgresql://user@127.0.0.1:5432/db to run on PostgreSQL"
_TABLES = ("events", "messages", "batches", "blacklist", "schedules")
# Migration 0002: contacts, campaigns, the blacklist audit and sync queue, key/value state.
_TABLES += ("contacts", "contact_tags", "campaigns", "blacklist_audit", "blacklist_sync",
            "kv_state")
# Migration 0003: short links and their clicks (link tracking).
_TABLES += ("links", "link_clicks")


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, to copy: a copy opens in a few
    milliseconds where migrating a new file takes a tenth of a second."""
    path = tmp_path_factory.mktemp("template") / "smskit.db"
    SqlStore(f"sqlite:///{path}").close()
    return path


def fresh_sqlite_url(template: Path, directory: Path, name: str = "smskit.db") -> str:
    """The URL of a fresh copy of the migrated ``template`` in ``directory``."""
    target = directory / name
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def empty_postgresql_store(url: str) -> SqlStore:
    """A store on ``url`` with every smskit table emptied (the schema stays migrated)."""
    made = SqlStore(url)
    with made._engine.begin() as conn:  # the test owns this database
        conn.exec_driver_sql(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE")
    return made


class TestStoreSuite(StoreSuite):
    """Every check of the shipped suite on memory, SQLite and PostgreSQL."""

    #: The built-in stores implement every part: a missing one must fail, not skip.
    parts = ("outreach", "links", "stats", "claiming")

    @pytest.fixture(params=[
        "memory",
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=_NO_PG)),
    ])
    def store(self, request: pytest.FixtureRequest, tmp_path: Path,
              migrated_sqlite: Path) -> Iterator[Store]:
        """A fresh, empty store of each kind."""
        made: Store
        if request.param == "memory":
            made = MemoryStore()
        elif request.param == "sqlite":
            made = SqlStore(fresh_sqlite_url(migrated_sqlite, tmp_path))
        else:
            assert PG_URL is not None
            made = empty_postgresql_store(PG_URL)
        yield made
        made.close()


# -- SQL specifics ---------------------------------------------------------------------------
_CLAIM_WORKER = r"""
import datetime as dt, json, os, sys, time
from smskit.store.sql import SqlStore
url, go, name = sys.argv[1:4]
store = SqlStore(url)
deadline = time.monotonic() + 30
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.002)
mine = []
for n in range(10000):
    batch = store.claim_batch("kolmeya", 3, dt.datetime.now(dt.timezone.utc), f"{name}-{n}")
    if batch is None:
        break
    mine.extend(batch.message_ids)
store.close()
print(json.dumps(mine))
"""

_OPEN_WORKER = r"""
import os, sys, time
from smskit.models import Message
from smskit.store.sql import SqlStore
url, go, name = sys.argv[1:4]
deadline = time.monotonic() + 30
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.002)
store = SqlStore(url)
store.add_messages([Message.new("+5511987654321", name, idempotency_key=name)])
store.close()
print("ok")
"""


def run_processes(code: str, url: str, tmp_path: Path, count: int) -> List[str]:
    """Start ``count`` Python processes running ``code``, release them together, their stdout."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url, str(go), f"p{i}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(count)
    ]
    go.touch()
    outputs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        outputs.append(stdout.strip())
    return outputs


def test_processes_sharing_a_sqlite_file_never_claim_the_same_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    seeded = SqlStore(url)
    ids = {m.id for m in add(seeded, *[out(i % 90) for i in range(150)])}
    seeded.close()
    outputs = run_processes(_CLAIM_WORKER, url, tmp_path, 3)
    claimed = [json.loads(o) for o in outputs]
    flat = [i for part in claimed for i in part]
    assert len(flat) == len(set(flat))
    assert set(flat) == ids


def test_processes_opening_a_fresh_sqlite_file_together(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert run_processes(_OPEN_WORKER, url, tmp_path, 4) == ["ok"] * 4
    store = SqlStore(url)
    assert sorted(m.body for m in store.list_messages()) == ["p0", "p1", "p2", "p3"]
    store.close()


def test_migrations_build_the_schema_and_reopening_is_a_no_op(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from smskit.store.sql.engine import head_revision
    from smskit.store.sql.tables import VERSION_TABLE, metadata

    path = tmp_path / "ops.db"
    upgrade(f"sqlite:///{path}")
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            assert names == {*_TABLES, VERSION_TABLE}
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE,
                                                             "compare_type": True})
            assert context.get_current_revision() == head_revision()
            assert compare_metadata(context, metadata) == []
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("messages")}
            assert {"ix_messages_claim", "ix_messages_created_at", "ix_messages_campaign_id",
                    "ix_messages_phone"} <= indexes
        store = SqlStore(f"sqlite:///{path}")
        add(store, out(1))
        store.close()
        upgrade(f"sqlite:///{path}")
        reopened = SqlStore(f"sqlite:///{path}")
        assert len(reopened.list_messages()) == 1
        reopened.close()
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").all()
            assert rows == [(head_revision(),)]
    finally:
        engine.dispose()


def _pragmas(store: SqlStore) -> Dict[str, Any]:
    with store._engine.connect() as conn:
        return {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")}


def test_sqlite_connections_use_wal_full_sync_and_wait_for_writers(tmp_path: Path) -> None:
    # synchronous=FULL (2): a committed write, so a 2xx, survives an OS crash or power cut
    store = SqlStore(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        assert _pragmas(store) == {"journal_mode": "wal", "busy_timeout": 30000,
                                   "synchronous": 2, "foreign_keys": 1}
    finally:
        store.close()


def _checkpoint_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "smskit-wal-checkpoint"]


def test_sqlite_commits_leave_the_wal_checkpoints_to_a_background_thread(
        tmp_path: Path) -> None:
    """A bulk send's commits no longer copy the WAL into the database file themselves (with
    its fsync): a thread of the store does, between them, so the WAL stays small."""
    path = tmp_path / "bulk.db"
    others = set(_checkpoint_threads())  # of stores other tests left open
    store = SqlStore(f"sqlite:///{path}")
    try:
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        assert set(_checkpoint_threads()) == others  # nothing written yet: no thread
        for chunk in range(12):  # 12 transactions of 1,000 messages, as send_many makes
            add(store, *[out(chunk * 1000 + i) for i in range(1000)])
            time.sleep(0.25)  # the request to the gateway, meanwhile
        assert len(set(_checkpoint_threads()) - others) == 1
        wal = Path(f"{path}-wal").stat().st_size
        # without checkpoints the WAL would hold every page written (more than the database)
        assert wal < path.stat().st_size / 3, (wal, path.stat().st_size)
        assert len(store.list_messages(limit=20_000)) == 12_000
    finally:
        store.close()
    assert set(_checkpoint_threads()) <= others  # close() ends it
    reopened = SqlStore(f"sqlite:///{path}")  # and nothing was lost on the way
    try:
        assert len(reopened.list_messages(limit=20_000)) == 12_000
        assert set(_checkpoint_threads()) <= others  # a store only read starts none
    finally:
        reopened.close()


def test_a_store_dropped_without_close_ends_its_checkpoint_thread(tmp_path: Path) -> None:
    others = set(_checkpoint_threads())
    store = SqlStore(f"sqlite:///{tmp_path / 'dropped.db'}")
    add(store, out(1))
    [thread] = set(_checkpoint_threads()) - others
    del store  # never closed
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_failing_checkpoint_is_said_once_and_tried_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'flaky.db'}")
    engine, calls = store._engine, []

    class Flaky:  # the database refuses the checkpoint's connection three times
        def raw_connection(self) -> Any:
            calls.append(1)
            if len(calls) <= 3:
                raise sa.exc.OperationalError("PRAGMA wal_checkpoint", {},
                                              Exception("disk I/O error"))
            return engine.raw_connection()

    checkpointer = WalCheckpointer(Flaky(), interval=0.01)  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.DEBUG, logger="smskit.store.sql.checkpoint"):
            add(store, out(1))
            checkpointer.wrote()  # once: a failed round leaves the checkpoint due
            deadline = time.monotonic() + 10
            while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert checkpointer.checkpoints >= 1 and len(calls) == 4
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1 and "disk I/O error" in warned[0], warned
        assert "the WAL grows meanwhile" in warned[0]
    finally:
        checkpointer.close()
        store.close()


def test_sqlite_synchronous_mode_from_the_url(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'normal.db'}?synchronous=normal")
    try:
        assert _pragmas(store)["synchronous"] == 1
        stored = add(store, out(1))
        assert store.get(stored[0].id) is not None
    finally:
        store.close()
    with pytest.raises(ConfigurationError, match="synchronous='off'"):
        SqlStore(f"sqlite:///{tmp_path / 'off.db'}?synchronous=off")


def test_in_memory_sqlite_is_shared_by_threads() -> None:
    store = SqlStore("sqlite://")
    ids = {m.id for m in add(store, *[out(i) for i in range(40)])}

    def claim_all(worker: int) -> List[str]:
        mine: List[str] = []
        for n in range(100):
            batch = store.claim_batch("kolmeya", 3, NOW, f"t{worker}-{n}")
            if batch is None:
                break
            mine.extend(batch.message_ids)
        return mine

    try:
        flat = [m for part in run_threads(4, claim_all) for m in part]
        assert sorted(flat) == sorted(ids)
    finally:
        store.close()


def test_store_urls() -> None:
    from smskit.store.sql.engine import normalise_url

    assert normalise_url("postgresql://u:pw@127.0.0.1/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ConfigurationError, match="mysql") as info:
        normalise_url("mysql://root:hunter2@127.0.0.1/db")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError, match="invalid database URL"):
        normalise_url("not a url")


def test_unreachable_postgresql_is_a_store_error_without_the_password() -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed (smskit[postgres])")
    with pytest.raises(StoreError) as info:
        SqlStore("postgresql://smskit:s3cret@127.0.0.1:9/nowhere")
    assert "s3cret" not in str(info.value)
    assert "postgresql+psycopg://smskit:***@127.0.0.1:9/nowhere" in str(info.value)


def test_unreachable_database_is_a_store_error(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(StoreError, match="opening"):
        SqlStore(f"sqlite:///{missing_dir}")
