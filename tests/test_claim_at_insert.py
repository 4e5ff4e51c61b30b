"""A bulk send opens each chunk's batch in the transaction that inserts it (``ClaimingStore``):
one write per message before its request instead of two, with every guarantee kept; and
the next chunk is composed and stored while a chunk's request is out.

Against the Kolmeya simulator under uvicorn: the send writes two transactions per chunk (the
insert that claims, the results), each message is accepted once; a crash between the insert
and the request leaves a claimed batch that reconciliation settles, sent exactly once; a
circuit that opens in between puts the chunk back in the queue, never attempted; with a slow
gateway, each chunk is stored while the previous one's request is out, and the plugins'
hooks still run on the calling thread.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest
import sqlalchemy as sa

from smskit import hookimpl, outbox
from smskit.errors import StoreError
from smskit.models import Message, SendResult, State, utcnow
from smskit.provider import Provider
from smskit.store.base import InsertClaim
from smskit.store.memory import MemoryStore
from smskit.store.sql import SqlStore
from test_kolmeya_e2e import TEXT, SimServer, assert_sent_once, make_kit, outbound, phones


@pytest.fixture
def sql_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    yield store
    store.close()


def _writes(store: SqlStore, into: List[List[str]]) -> None:
    """Collect the statements that change rows, per write transaction (SQLite: each starts
    with BEGIN IMMEDIATE); ``into`` then holds those transactions that changed something."""
    current: List[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal current
        if statement.startswith("BEGIN IMMEDIATE"):
            current = []
        elif statement.startswith(("INSERT", "UPDATE", "DELETE")):
            if not current:
                into.append(current)
            current.append(statement.split(" (")[0].split(" SET")[0])
    sa.event.listen(store._engine, "before_cursor_execute", seen)


def test_a_bulk_send_writes_each_chunk_twice_and_sends_each_message_once(
        kolmeya_sim: SimServer, sql_store: SqlStore) -> None:
    simulator, _ = kolmeya_sim
    with make_kit(kolmeya_sim, sql_store) as kit:
        writes: List[List[str]] = []
        _writes(sql_store, writes)
        summary = kit.send_many(phones(2500), TEXT)

        assert (summary.total, summary.sent, summary.queued) == (2500, 2500, 0)
        # per chunk: the insert that opens the batch, then the results (no claim between),
        # the next chunk stored while a request is out; once, the witness reconciliation's
        # proofs need (the key/value state)
        witness = [w for w in writes if w == ["INSERT INTO kv_state"]]
        assert len(witness) == 1
        inserted, settled = ["INSERT INTO batches", "INSERT INTO messages"], \
            ["UPDATE messages", "UPDATE batches"]
        assert [w for w in writes if w not in witness] == [
            inserted, inserted, settled, inserted, settled, settled]
        requests = sorted(simulator.requests.values(), key=lambda r: r.job)
        assert [len(r.message_ids) for r in requests] == [1000, 1000, 500]
        sent = outbound(kit)
        for request in requests:
            batch = kit.store.get_batch(request.reference)
            assert batch is not None and batch.status == "done"
            assert {simulator.messages[i].reference for i in request.message_ids} == \
                set(batch.message_ids)
        assert_sent_once(kit, simulator, sent)
        assert kit.dispatch().batches == 0


class Killed(BaseException):
    """Stands for the process dying between the insert's commit and the request."""


@pytest.mark.parametrize("kind", ["memory", "sql"])
def test_a_crash_between_the_insert_and_the_request_is_reconciled_and_sent_once(
        kolmeya_sim: SimServer, tmp_path: Path, kind: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    simulator, _ = kolmeya_sim
    store: Any = MemoryStore() if kind == "memory" else SqlStore(
        f"sqlite:///{tmp_path / 'smskit.db'}")
    with make_kit(kolmeya_sim, store) as kit:
        # reconciliation trusts Kolmeya's "not found" once its lookup found an accepted request
        assert kit.send(phones(1, start=50)[0], TEXT).state is State.SENT
        before = {m.id for m in outbound(kit)}

        def die(*_: Any, **__: Any) -> Any:
            raise Killed()

        with monkeypatch.context() as patched:
            patched.setattr(outbox, "begin_dispatch", die)
            with pytest.raises(Killed):
                kit.send_many(phones(3), TEXT)
        mine = [m for m in outbound(kit) if m.id not in before]
        assert len(mine) == 3 and {m.state for m in mine} == {State.OUTGOING}
        (batch_id,) = {m.batch_id for m in mine}
        assert batch_id is not None  # claimed by the insert itself
        assert kit.dispatch().batches == 0  # a claimed batch is never sent blindly
        assert simulator.accepted_references().keys() == before

        report = kit.reconcile(stale_after=dt.timedelta(0))
        assert (report.batches, report.resendable, report.confirmed) == (1, 3, 0)
        assert kit.dispatch().sent == 3
        assert_sent_once(kit, simulator, mine)


class _Shut:
    """A routing policy whose circuit is open: nothing may be sent now."""

    def __init__(self, reopens: dt.datetime) -> None:
        self.reopens = reopens

    def batch_size(self, provider: Provider) -> int:
        return provider.max_batch

    def allows(self, provider: str, now: dt.datetime) -> bool:
        return False

    def failed(self, provider: str, error: Exception, now: dt.datetime) -> bool:
        return True

    def succeeded(self, provider: str, now: dt.datetime) -> None:
        raise AssertionError("nothing was sent")

    def reopens_at(self, provider: str) -> Optional[dt.datetime]:
        return self.reopens

    def targets(self, messages: Any, failed: str, now: dt.datetime) -> List[Any]:
        return []  # no other provider

    def pace(self, provider: str, count: int) -> None:
        raise AssertionError("nothing was sent")


class _Refusing(Provider):
    name = "kolmeya"
    max_batch = 10

    def send_batch(self, messages: List[Message], *, batch_id: str) -> List[SendResult]:
        raise AssertionError("the circuit is open: nothing may be sent")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_circuit_open_before_the_request_puts_the_chunk_back_unattempted(
        kind: str, tmp_path: Path) -> None:
    store: Any = MemoryStore() if kind == "memory" else SqlStore(
        f"sqlite:///{tmp_path / 'smskit.db'}")
    now = utcnow()
    reopens = now + dt.timedelta(minutes=2)
    try:
        given = [Message.new(f"+55119876{n:05d}", f"Olá {n}", state=State.OUTGOING,
                             provider="kolmeya", created_at=now) for n in range(3)]
        added = store.add_messages_claimed(given, InsertClaim(
            batch_id="b1", provider="kolmeya", now=now, limit=10))
        assert added.claimed is not None
        report = outbox.dispatch(store, _Refusing(), now=now, policy=_Shut(reopens),
                                 first=added.claimed, watch=frozenset(m.id for m in given))
        assert report.sent == 0 and report.batches == 0
        back = store.get_many([m.id for m in given])
        assert [(m.state, m.batch_id, m.attempts, m.scheduled_at) for m in back] == \
            [(State.OUTGOING, None, 0, reopens)] * 3
        assert store.get_batch("b1").status == "released"
        assert {o.state for o in report.outcomes.values()} == {State.OUTGOING}
        assert store.claim_batch("kolmeya", 10, reopens, "b2") is not None
    finally:
        store.close()


class _Timeline:
    """When each chunk's insert began and each request ended, and on which thread each
    ``message_sent`` hook ran."""

    def __init__(self) -> None:
        self.events: List[str] = []
        self.hook_threads: set = set()

    @hookimpl
    def message_sent(self, message: Message) -> None:
        self.hook_threads.add(threading.get_ident())


def test_the_next_chunk_is_stored_while_a_request_is_out_and_hooks_stay_on_the_caller(
        kolmeya_sim: SimServer, sql_store: SqlStore) -> None:
    simulator, _ = kolmeya_sim
    simulator.configure(slow_seconds=1.0)  # a gateway that takes its time to answer
    timeline = _Timeline()
    with make_kit(kolmeya_sim, sql_store) as kit:
        kit.plugins.register(timeline, name="timeline")
        provider = kit.provider()
        add = sql_store.add_messages_claimed
        send_batch = provider.send_batch

        def adding(messages: Any, claim: InsertClaim) -> Any:
            timeline.events.append("insert")
            return add(messages, claim)

        def sending(messages: Any, *, batch_id: str) -> Any:
            results = send_batch(messages, batch_id=batch_id)
            timeline.events.append("answered")
            return results

        sql_store.add_messages_claimed = adding  # type: ignore[method-assign]
        provider.send_batch = sending  # type: ignore[method-assign]
        summary = kit.send_many(phones(600), TEXT, chunk_size=200)

        assert (summary.total, summary.sent) == (600, 600)
        # each chunk after the first is stored while the previous chunk's request is out
        assert timeline.events == ["insert", "insert", "answered", "insert", "answered",
                                   "answered"]
        assert timeline.hook_threads == {threading.get_ident()}
        assert_sent_once(kit, simulator, outbound(kit))


def test_a_chunk_that_fails_to_store_still_lets_the_batch_out_be_settled(
        kolmeya_sim: SimServer, sql_store: SqlStore) -> None:
    simulator, _ = kolmeya_sim
    simulator.configure(slow_seconds=0.3)
    with make_kit(kolmeya_sim, sql_store) as kit:
        add = sql_store.add_messages_claimed
        calls: List[int] = []

        def failing_second(messages: Any, claim: InsertClaim) -> Any:
            calls.append(1)
            if len(calls) == 2:
                raise StoreError("disk full")
            return add(messages, claim)

        sql_store.add_messages_claimed = failing_second  # type: ignore[method-assign]
        with pytest.raises(StoreError, match="disk full"):
            kit.send_many(phones(400), TEXT, chunk_size=200)

        stored = outbound(kit)
        assert len(stored) == 200  # the second chunk stored nothing
        assert {m.state for m in stored} == {State.SENT}  # the first was settled anyway
        assert kit.store.batches(status="claimed") == []
        assert_sent_once(kit, simulator, stored)
