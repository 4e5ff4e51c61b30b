"""The Odoo bridge when other transactions and processes get in the way (issue 12), on the fake
Odoo: journal ops leased so two processes never write one at once, a change queued while an op
is being written is written too, a transient error retried in a fresh transaction and never
given up, a configuration problem kept pending, ``load`` reporting a concurrent update, the
kit pool of an addon, and Odoo's blacklist asked afresh."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest
import sqlalchemy as sa

from odoo_fake import OdooServer, fake_odoo, make_store, odoo_server  # noqa: F401
from smskit.config import Settings
from smskit.errors import ConfigurationError
from smskit.ids import new_id
from smskit.kit import SmsKit
from smskit.models import State
from smskit.providers.loopback import LoopbackProvider
from smskit_odoo.adapter import EnvAdapter
from smskit_odoo.embedded import KitPool, fingerprint
from smskit_odoo.errors import OdooTransientError
from smskit_odoo.journal import Journal, Link, Op
from smskit_odoo.session import HandlerResult, OdooSession
from smskit_odoo.store import OdooStore
from smskit_odoo.testing import FakeOdoo
from smskit_odoo.testing.env import FakeEnv, fake_call_kw
from test_store_races import while_first_holds

PHONE = "+5511987654321"


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    j = Journal(f"sqlite:///{tmp_path / 'side.db'}")
    yield j
    j.close()


# -- the journal ------------------------------------------------------------------------------


def test_two_processes_never_lease_the_same_op(journal: Journal, tmp_path: Path) -> None:
    other = Journal(f"sqlite:///{tmp_path / 'side.db'}")  # another process on the sidecar
    journal.enqueue_many([("acrux", {"n": n}, f"acrux:{n}", None) for n in range(5)])
    mine = journal.lease(["acrux"], "worker-1")
    assert len(mine) == 5
    assert other.lease(["acrux"], "worker-2") == []
    journal.finish([mine[0].id], keep=[mine[1].id])
    journal.attempt([mine[2].id], "Odoo is down")  # released, still pending
    theirs = other.lease(["acrux"], "worker-2")
    assert [op.id for op in theirs] == [mine[2].id]
    assert theirs[0].attempts == 1 and theirs[0].last_error == "Odoo is down"
    other.close()


PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")


@pytest.mark.skipif(not PG_URL, reason="set SMSKIT_TEST_POSTGRES_URL to run on PostgreSQL")
def test_two_deliveries_linking_one_reply_at_once_both_succeed_on_postgresql() -> None:
    """The two deliveries of one reply (a gateway's retry racing its first try): both find
    the reply stored without its link and both link it. The second used to fail on the key
    the first inserted meanwhile (a 503 for a reply that was stored)."""
    assert PG_URL is not None
    journal = Journal(PG_URL)
    message_id = new_id()
    errors = while_first_holds(
        lambda first: first.execute(  # the first delivery, not committed yet
            sa.text("INSERT INTO smskit_odoo_links (message_id, reply_ref) VALUES (:m, :r)"),
            {"m": message_id, "r": "kolmeya:R-2"}),
        lambda: journal.put_links([Link(message_id=message_id, reply_ref="kolmeya:R-2")]))
    try:
        assert errors == []
        assert journal.links([message_id])[message_id].reply_ref == "kolmeya:R-2"
    finally:
        journal.close()


def test_links_are_replaced_whole_and_the_last_of_a_message_wins(journal: Journal) -> None:
    journal.put_links([Link(message_id="m1", odoo_id=7, reply_ref="kolmeya:R-1"),
                       Link(message_id="m2", odoo_id=8)])
    journal.put_links([Link(message_id="m1", odoo_id=9), Link(message_id="m1", odoo_id=10),
                       Link(message_id="m3", partner_id=4)])
    found = journal.links(["m1", "m2", "m3"])
    assert found["m1"] == Link(message_id="m1", odoo_id=10)  # reply_ref replaced too
    assert found["m2"] == Link(message_id="m2", odoo_id=8)
    assert found["m3"] == Link(message_id="m3", partner_id=4)


def test_a_dead_processs_lease_expires(journal: Journal) -> None:
    journal.enqueue("mirror", {}, key="mirror:m1", message_id="m1")
    assert len(journal.lease(["mirror"], "dead", seconds=0.05)) == 1
    assert journal.lease(["mirror"], "alive") == []
    time.sleep(0.1)
    assert len(journal.lease(["mirror"], "alive")) == 1


def test_a_change_queued_while_its_op_is_written_is_written_too(journal: Journal) -> None:
    journal.enqueue_many([("mirror", {}, "mirror:m1", "m1")], touch=True)
    [leased] = journal.lease(["mirror"], "worker-1")
    # while worker 1 writes the state it read, the message changes and is queued again
    journal.enqueue_many([("mirror", {}, "mirror:m1", "m1")], touch=True)
    journal.finish([leased.id], versions={leased.id: leased.version})
    [again] = journal.lease(["mirror"], "worker-1")
    assert again.id == leased.id and again.version == leased.version + 1
    journal.finish([again.id], versions={again.id: again.version})
    assert journal.count() == 0
    # without touch (a note: one per message and event, ever) a key already used is refused
    assert journal.enqueue("note", {}, key="note:m1:sent")
    assert not journal.enqueue("note", {}, key="note:m1:sent")


def test_failed_ops_are_retried_one_by_one_or_all(journal: Journal) -> None:
    journal.enqueue_many([("mirror", {}, f"mirror:m{n}", f"m{n}") for n in range(3)])
    ops = journal.lease(["mirror"], "worker-1")
    journal.attempt([op.id for op in ops], "Odoo refused it", give_up=True)
    assert sorted(op.id for op in journal.failed()) == sorted(op.id for op in ops)
    assert journal.retry([ops[0].id]) == 1  # what a person picked in Odoo
    assert [op.id for op in journal.pending()] == [ops[0].id]
    assert journal.pending()[0].attempts == 0  # its attempts start again
    assert journal.retry() == 2  # the rest
    assert journal.failed() == []


def test_an_older_sidecar_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the journal table as the first release made it
        db.execute("CREATE TABLE smskit_odoo_ops (id INTEGER PRIMARY KEY, kind VARCHAR(20) "
                   "NOT NULL, key VARCHAR(255) UNIQUE, message_id VARCHAR(40), payload TEXT "
                   "NOT NULL, status VARCHAR(10) NOT NULL, attempts INTEGER NOT NULL, "
                   "last_error TEXT, created_at FLOAT NOT NULL)")
        db.execute("INSERT INTO smskit_odoo_ops (kind, key, payload, status, attempts, "
                   "created_at) VALUES ('note', 'note:x:sent', '{}', 'pending', 0, 0)")
    journal = Journal(f"sqlite:///{path}")
    [op] = journal.lease(["note"], "me")
    assert (op.key, op.version) == ("note:x:sent", 0)
    journal.close()


# -- the session's replay ----------------------------------------------------------------------


class Refreshing:
    """An adapter that may start fresh transactions (counted)."""

    uid = 2
    round_trips = 0

    def __init__(self) -> None:
        self.refreshed = 0

    def refresh(self) -> bool:
        self.refreshed += 1
        return True

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not called")

    def lock(self, key: str) -> Any:
        raise AssertionError("not called")

    def close(self) -> None:
        """Nothing to release."""


def _session(journal: Journal, failures: int) -> Tuple[OdooSession, Refreshing, List[int]]:
    adapter = Refreshing()
    session = OdooSession(adapter, journal)  # type: ignore[arg-type]
    calls: List[int] = []

    def handler(ops: List[Op]) -> HandlerResult:
        calls.append(len(ops))
        if len(calls) <= failures:
            raise OdooTransientError("could not serialize access due to concurrent update")
        return HandlerResult(keep=[op.id for op in ops])

    session.register("acrux", handler)
    return session, adapter, calls


def test_a_transient_error_is_retried_in_a_fresh_transaction(journal: Journal) -> None:
    session, adapter, calls = _session(journal, failures=2)
    journal.enqueue("acrux", {"msgid": "kolmeya:1"}, key="acrux:kolmeya:1")
    report = session.flush(kinds=["acrux"])
    assert (report.written, report.failed, report.error) == (1, 0, None)
    assert calls == [1, 1, 1] and adapter.refreshed == 2


def test_a_transient_error_that_persists_is_kept_not_given_up(journal: Journal) -> None:
    session, _, calls = _session(journal, failures=99)
    journal.enqueue("acrux", {"msgid": "kolmeya:2"}, key="acrux:kolmeya:2")
    report = session.flush(kinds=["acrux"])
    assert report.failed == 0 and "serialize" in (report.error or "")
    assert len(calls) == session.transient_retries
    assert journal.failed() == []
    [pending] = journal.pending(["acrux"])
    assert pending.attempts == 1 and "serialize" in (pending.last_error or "")
    session, _, _ = _session(journal, failures=0)  # the next run writes it
    assert session.flush(kinds=["acrux"]).written == 1


def test_a_configuration_problem_keeps_the_op_and_spares_other_kinds(
        journal: Journal) -> None:
    session, _, _ = _session(journal, failures=0)

    def no_connector(ops: List[Op]) -> HandlerResult:
        raise ConfigurationError("no ChatRoom connector of type 'sms': set acrux_connector_id")

    session.register("acrux", no_connector)
    notes: List[int] = []
    session.register("note", lambda ops: notes.append(len(ops)) or HandlerResult(
        keep=[op.id for op in ops]))
    journal.enqueue("acrux", {}, key="acrux:kolmeya:3")
    journal.enqueue("zz-later", {}, key="later")
    session.register("zz-later", lambda ops: HandlerResult(done=[op.id for op in ops]))
    report = session.flush()
    assert "acrux_connector_id" in (report.error or "")
    [kept] = journal.pending(["acrux"])
    assert "acrux_connector_id" in (kept.last_error or "") and journal.failed() == []
    assert journal.pending(["zz-later"]) == [], "the kinds after it were written"


# -- writes against the fake Odoo ----------------------------------------------------------------


def test_load_reporting_a_concurrent_update_is_transient_not_a_refusal(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(odoo_server, tmp_path)
    kit = SmsKit(Settings.load(environ={}), store=store, provider=LoopbackProvider())
    outcome = kit.send(PHONE, "Oi")
    adapter = store.session.adapter
    real = adapter.execute
    busy = {"left": 2}

    def execute(model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "load" and busy["left"]:
            busy["left"] -= 1
            return {"ids": False, "messages": [{"type": "error", "record": 0, "message":
                    "could not serialize access due to concurrent update\n"}]}
        return real(model, method, *args, **kwargs)

    monkeypatch.setattr(adapter, "execute", execute)
    kit.apply_status(kit.provider().status_event(outcome.message_id or "", State.DELIVERED))
    [row] = fake_odoo.records("sms.message")
    assert row["state"] == "delivered" and busy["left"] == 0
    assert store.journal.failed() == []
    kit.close()


def test_a_blacklist_row_archived_in_odoo_no_longer_blocks(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    store = make_store(odoo_server, tmp_path)
    row = fake_odoo.add("phone.blacklist", {"number": PHONE, "active": True})
    assert store.is_blacklisted(PHONE)
    fake_odoo.execute_kw(1, "phone.blacklist", "write", [[row], {"active": False}], {})
    assert not store.is_blacklisted(PHONE), "asked afresh, not from a cache"
    assert store.blacklist_from_odoo(PHONE, "add", reason="added in Odoo")
    assert store.sidecar.is_blacklisted(PHONE)
    assert [r["active"] for r in fake_odoo.records("phone.blacklist")] == [False], \
        "a change that came from Odoo is not written back to it"
    assert store.blacklist_from_odoo(PHONE, "remove")
    assert not store.is_blacklisted(PHONE)
    store.close()


# -- the kit pool of an addon ------------------------------------------------------------------


class Registry:
    """Stands for an Odoo registry (a new one after modules are installed)."""


class PooledEnv(FakeEnv):
    registry: Any = None


def _pool() -> KitPool:
    def build(settings: Settings, env: Any) -> Tuple[SmsKit, EnvAdapter]:
        from smskit_odoo.store import open_store

        adapter = EnvAdapter(env, autocommit=True, call_kw=fake_call_kw)
        store = open_store("odoo://admin:admin@localhost:8069/smskit", settings,
                           adapter=adapter)
        return SmsKit(settings, store=store, provider=LoopbackProvider()), adapter

    return KitPool(build, max_idle=2)


def test_the_pool_lends_one_kit_per_borrower_and_rebuilds_on_change(
        fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    pool = _pool()
    settings = Settings.load(environ={}, odoo_sidecar_url=f"sqlite:///{tmp_path / 's.db'}")
    digest = fingerprint(settings.values)
    registry = Registry()
    env = PooledEnv(fake_odoo)
    env.registry = registry
    with pool.borrow(env, settings, digest) as first:
        assert isinstance(first.store, OdooStore)
        assert first.store.session.adapter.env is env  # bound to the borrower's cursor
        with pool.borrow(env, settings, digest) as second:  # another thread, meanwhile
            assert second is not first
    assert first.store.session.adapter.env is None  # no cursor kept past its request
    for _ in range(3):
        with pool.borrow(env, settings, digest) as again:
            assert again in (first, second)
    assert pool.built == 2
    other = Settings.load(environ={}, odoo_sidecar_url=f"sqlite:///{tmp_path / 's.db'}",
                          default_region="PT")
    with pool.borrow(env, other, fingerprint(other.values)) as changed:
        assert changed not in (first, second)
    env.registry = Registry()  # modules installed: a new registry
    with pool.borrow(env, other, fingerprint(other.values)) as reloaded:
        assert reloaded is not changed
    assert pool.built == 4
    pool.clear()


def test_a_lent_kit_forgets_what_it_knew_about_records(
        fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    pool = _pool()
    settings = Settings.load(environ={}, odoo_sidecar_url=f"sqlite:///{tmp_path / 's.db'}")
    digest = fingerprint(settings.values)
    env = PooledEnv(fake_odoo)
    with pool.borrow(env, settings, digest) as kit:
        kit.send(PHONE, "Olá {{ partner.name | default('cliente') }}", dispatch=False)
    fake_odoo.add("res.partner", {"name": "Dora", "mobile": PHONE})
    with pool.borrow(env, settings, digest) as kit:
        outcome = kit.send(PHONE, "Olá {{ partner.name }}")
        message = kit.get(outcome.message_id or "")
        assert message is not None and message.body == "Olá Dora"
    pool.clear()



def test_many_ops_are_queued_at_once_and_touched_at_once(journal: Journal) -> None:
    items = [("mirror", {}, f"mirror:m{n}", f"m{n}") for n in range(3)]
    assert journal.enqueue_many(items[:2], touch=True) == 2
    assert journal.enqueue_many(items, touch=True) == 1  # m0 and m1 are there: touched
    versions = {op.key: op.version for op in journal.lease(["mirror"], "me")}
    assert versions == {"mirror:m0": 1, "mirror:m1": 1, "mirror:m2": 0}
