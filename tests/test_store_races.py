"""Two processes writing the same rows at once, on PostgreSQL (READ COMMITTED): neither fails.

SQLite takes its write lock up front (``BEGIN IMMEDIATE``), so its writers never overlap; on
PostgreSQL two transactions may each find a row absent and insert it, and the second then
fails on the first's key unless the write is one upsert. Each test holds the first writer's
transaction open (its row inserted, not committed), starts the second writer, waits until
PostgreSQL shows it waiting for that row, then commits the first.
Run when ``SMSKIT_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
import time
from typing import Callable, Iterator, List

import psycopg
import pytest
import sqlalchemy as sa

from smskit.store.outreach import Contact
from smskit.store.sql import SqlStore
from smskit.store.sql.tables import contact_tags, contacts

PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="set SMSKIT_TEST_POSTGRES_URL to run on "
                                                    "PostgreSQL")


@pytest.fixture
def store() -> Iterator[SqlStore]:
    assert PG_URL is not None
    made = SqlStore(PG_URL)
    yield made
    made.close()


def while_first_holds(hold: Callable[[sa.Connection], None], second: Callable[[], None]
                       ) -> List[BaseException]:
    """Run ``second`` while ``hold``'s uncommitted writes hold their rows; what it raised."""
    assert PG_URL is not None
    errors: List[BaseException] = []

    def run() -> None:
        try:
            second()
        except BaseException as exc:  # the test's assertion shows it
            errors.append(exc)

    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as first, psycopg.connect(PG_URL, autocommit=True) as watch:
            transaction = first.begin()
            hold(first)
            thread = threading.Thread(target=run)
            thread.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'").fetchone()[0]:  # type: ignore[index]
                time.sleep(0.02)
            transaction.commit()
            thread.join(30)
    finally:
        engine.dispose()
    return errors


def test_two_imports_of_one_new_contact_at_once_both_succeed(store: SqlStore) -> None:
    phone = f"+55119{random.randint(10_000_000, 99_999_999)}"
    first_seen = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)

    def first_import(conn: sa.Connection) -> None:
        contact = Contact(phone=phone, name="Ana", tags=("vip",), created_at=first_seen,
                          updated_at=first_seen)
        conn.execute(sa.insert(contacts), {
            "phone": phone, "name": contact.name, "tags": list(contact.tags), "variables": {},
            "dnd_window": None, "dnd_days": [], "dnd_until": None,
            "created_at": first_seen, "updated_at": first_seen})
        conn.execute(sa.insert(contact_tags), {"tag": "vip", "phone": phone})

    errors = while_first_holds(first_import, lambda: store.save_contacts(
        [Contact(phone=phone, name="Ana Souza", tags=("clientes",))]))
    assert errors == []
    saved = store.get_contacts([phone])[phone]
    assert saved.name == "Ana Souza" and saved.tags == ("clientes",)  # the later import wins
    assert saved.created_at == first_seen  # a contact keeps the day it was first seen
    with store._engine.connect() as conn:  # the tag index the audiences read, replaced too
        tags = conn.execute(sa.select(contact_tags.c.tag).where(
            contact_tags.c.phone == phone)).scalars().all()
    assert tags == ["clientes"]
