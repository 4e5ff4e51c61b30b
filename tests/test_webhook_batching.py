"""Group commit of webhook status events: concurrent callbacks share one store transaction."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Iterator, List, Sequence

import httpx
import pytest
import sqlalchemy as sa

from smskit.config import Settings
from smskit.errors import StoreError
from smskit.kit import SmsKit
from smskit.models import Message, State, StatusEvent, utcnow
from smskit.providers.loopback import LoopbackProvider
from smskit.server import create_app
from smskit.server.batcher import StatusBatcher
from smskit.store.base import ApplyOutcome, Store
from smskit.store.memory import MemoryStore
from smskit.store.sql import SqlStore
from smskit.testing.servers import serve_in_thread

SECRET = "batch-s3cret"
STATUS = "/webhooks/loopback/status"


def sent(i: int) -> Message:
    now = utcnow()
    return Message(id=f"MSG{i:04d}", phone="+5511987654321", body="Olá", state=State.SENT,
                   provider="loopback", provider_message_id=f"lb-{i}", created_at=now,
                   sent_at=now, segments=1)


def event(message_id: str, state: State, **extra: Any) -> StatusEvent:
    return StatusEvent(provider="loopback", state=state, message_id=message_id, **extra)


@pytest.fixture
def sql_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    yield store
    store.close()


def count_writes(store: SqlStore) -> List[int]:
    """A list growing by one for each BEGIN IMMEDIATE the store runs."""
    begun: List[int] = []

    def on_begin(conn: Any) -> None:
        begun.append(1)

    sa.event.listen(store._engine, "begin", on_begin)  # the test counts them
    return begun


@pytest.mark.parametrize("kind", ["memory", "sql"])
def test_apply_statuses_equals_applying_one_by_one(kind: str, tmp_path: Path) -> None:
    """Same outcomes and history as apply_status in turn, with an order that matters."""

    def make(name: str) -> Any:
        return MemoryStore() if kind == "memory" else SqlStore(
            f"sqlite:///{tmp_path / name}")

    events = [
        event("MSG0000", State.DELIVERED),
        event("MSG0000", State.SENT),                      # backwards after the first
        event("MSG0001", State.SENT),                      # duplicate
        event("MSG0001", State.ERROR, error_code="E1"),    # then final
        event("MSG0001", State.DELIVERED),                 # already final
        event("NOPE", State.DELIVERED),                    # orphan
        StatusEvent(provider="loopback", state=State.DELIVERED, provider_message_id="lb-2"),
        event("MSG0003", State.DELIVERED, provider_message_id="lb-new-3"),
    ]
    one, many = make("one.db"), make("many.db")
    messages = [sent(i) for i in range(3)]
    messages.append(Message(id="MSG0003", phone="+5511987654321", body="Olá", state=State.SENT,
                            provider="loopback", created_at=utcnow(), segments=1))
    for store in (one, many):
        store.add_messages(messages)
    singly = [one.apply_status(e) for e in events]
    grouped = many.apply_statuses(events)
    assert [(o.applied, o.old, o.new, o.reason) for o in grouped] == \
        [(o.applied, o.old, o.new, o.reason) for o in singly]
    assert [o.message.state if o.message else None for o in grouped] == \
        [State.DELIVERED, State.DELIVERED, State.SENT, State.ERROR, State.ERROR, None,
         State.DELIVERED, State.DELIVERED]
    for i in range(4):
        mid = f"MSG{i:04d}"
        assert many.get(mid) == one.get(mid)
        assert [(h.kind, h.old_state, h.new_state, h.applied, h.detail)
                for h in many.history(mid)] == \
            [(h.kind, h.old_state, h.new_state, h.applied, h.detail) for h in one.history(mid)]
    assert many.get("MSG0003").provider_message_id == "lb-new-3"
    assert len(many.orphan_events()) == len(one.orphan_events()) == 1


def test_apply_statuses_is_one_transaction_and_all_or_nothing(
        sql_store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    sql_store.add_messages(sent(i) for i in range(3))
    begun = count_writes(sql_store)
    outcomes = sql_store.apply_statuses([event(f"MSG{i:04d}", State.DELIVERED)
                                         for i in range(3)])
    assert [o.applied for o in outcomes] == [True, True, True]
    assert len(begun) == 1

    from smskit.models import apply_status as real

    def failing(message: Message, ev: StatusEvent) -> Any:
        if message.id == "MSG0002":
            raise StoreError("MSG0002: simulated failure")
        return real(message, ev)

    monkeypatch.setattr("smskit.store.sql.statuses.apply_status", failing)
    sql_store.add_messages([sent(i) for i in range(3, 5)])
    with pytest.raises(StoreError, match="MSG0002: simulated failure"):
        sql_store.apply_statuses([event("MSG0003", State.ERROR), event("MSG0002", State.ERROR),
                                  event("MSG0004", State.ERROR)])
    # nothing of the call is stored: the event before the failure was rolled back too
    assert sql_store.get("MSG0003").state is State.SENT  # type: ignore[union-attr]
    assert sql_store.history("MSG0003") == []
    assert len(sql_store.history("MSG0002")) == 1


def run_batcher(batcher: StatusBatcher, jobs: Sequence[Sequence[StatusEvent]]) -> List[Any]:
    async def main() -> List[Any]:
        return await asyncio.gather(*(batcher.submit(job) for job in jobs),
                                    return_exceptions=True)
    return asyncio.run(main())


def test_concurrent_submissions_share_a_transaction(sql_store: SqlStore) -> None:
    sql_store.add_messages(sent(i) for i in range(10))
    kit = SmsKit(Settings.load(environ={}), store=sql_store, provider=LoopbackProvider())
    begun = count_writes(sql_store)
    calls: List[int] = []

    def apply(events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        calls.append(len(events))
        return kit.apply_statuses(events)

    batcher = StatusBatcher(apply)
    results = run_batcher(batcher, [[event(f"MSG{i:04d}", State.DELIVERED)] for i in range(10)])
    assert [len(r) for r in results] == [1] * 10
    assert all(r[0].applied and r[0].message.id == f"MSG{i:04d}" for i, r in enumerate(results))
    assert sum(calls) == 10 and len(calls) < 10  # the first goes alone, the rest together
    assert len(begun) == batcher.transactions == len(calls)
    assert all(sql_store.get(f"MSG{i:04d}").state is State.DELIVERED  # type: ignore[union-attr]
               for i in range(10))


def test_the_writer_thread_ends_when_idle_and_another_loop_gets_a_new_one(
        sql_store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer thread ends after IDLE_SECONDS without work; requests from a later event
    loop (a restarted server) start another, even when the first loop closed with a wake-up
    still scheduled."""
    monkeypatch.setattr("smskit.server.batcher.IDLE_SECONDS", 0.05)
    sql_store.add_messages(sent(i) for i in range(4))
    kit = SmsKit(Settings.load(environ={}), store=sql_store, provider=LoopbackProvider())
    batcher = StatusBatcher(kit.apply_statuses)

    def writers() -> List[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "smskit-webhook-writer"]

    assert run_batcher(batcher, [[event("MSG0000", State.DELIVERED)]])[0][0].applied
    for _ in range(500):
        if not writers():
            break
        threading.Event().wait(0.01)
    assert not writers()

    abandoned = asyncio.new_event_loop()  # stops after the request queued, before its wake-up
    task = abandoned.create_task(batcher.submit([event("MSG0001", State.DELIVERED)]))
    abandoned.call_soon(abandoned.stop)
    abandoned.run_forever()
    task.cancel()
    abandoned.close()

    async def later() -> List[Any]:
        return await asyncio.wait_for(asyncio.gather(
            batcher.submit([event("MSG0002", State.DELIVERED)]),
            batcher.submit([event("MSG0003", State.DELIVERED)])), 30)

    results = asyncio.run(later())
    assert [r[0].applied for r in results] == [True, True]
    assert sql_store.get("MSG0003").state is State.DELIVERED  # type: ignore[union-attr]


def test_a_failing_request_does_not_fail_the_others(sql_store: SqlStore) -> None:
    sql_store.add_messages(sent(i) for i in range(6))
    kit = SmsKit(Settings.load(environ={}), store=sql_store, provider=LoopbackProvider())
    calls: List[List[str]] = []

    def apply(events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        calls.append([e.message_id or "" for e in events])
        if any(e.message_id == "MSG0003" for e in events):
            raise StoreError("MSG0003: disk full")
        return kit.apply_statuses(events)

    jobs = [[event(f"MSG{i:04d}", State.DELIVERED)] for i in range(6)]
    results = run_batcher(StatusBatcher(apply), jobs)
    assert isinstance(results[3], StoreError)
    assert "disk full" in str(results[3])
    for i in (0, 1, 2, 4, 5):
        assert results[i][0].applied
        assert sql_store.get(f"MSG{i:04d}").state is State.DELIVERED  # type: ignore[union-attr]
    assert sql_store.get("MSG0003").state is State.SENT  # type: ignore[union-attr]
    assert sql_store.history("MSG0003") == []
    # each request's event was stored once: a failed group leaves nothing behind
    assert all(len(sql_store.history(f"MSG{i:04d}")) == 1 for i in (0, 1, 2, 4, 5))
    assert any(len(c) > 1 for c in calls)  # a group was tried, then split


class GatedStore:
    """A SqlStore whose group writes wait for ``release`` (the first one signals ``entered``)."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sizes: List[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply_statuses(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        self.sizes.append(len(events))
        self.entered.set()
        if not self.release.wait(30):
            raise StoreError("test gate never opened")
        return self.inner.apply_statuses(events)


def test_server_answers_each_callback_only_after_its_group_is_committed(
        sql_store: SqlStore) -> None:
    total = 12
    sql_store.add_messages(sent(i) for i in range(total))
    gated = GatedStore(sql_store)
    kit = SmsKit(Settings.load(environ={}, webhook_secret=SECRET), store=gated,
                 provider=LoopbackProvider())
    app = create_app(kit)
    batcher: StatusBatcher = app.state.server.batcher
    responses: List[httpx.Response] = []
    with serve_in_thread(app) as base:
        def call(i: int) -> None:
            responses.append(httpx.post(f"{base}{STATUS}", params={"token": SECRET}, timeout=30,
                                        json={"message_id": f"MSG{i:04d}", "state": "delivered"}))

        first = threading.Thread(target=call, args=(0,))
        first.start()
        assert gated.entered.wait(30)
        others = [threading.Thread(target=call, args=(i,)) for i in range(1, total)]
        for thread in others:
            thread.start()
        for _ in range(3000):
            if batcher.waiting == total - 1:
                break
            threading.Event().wait(0.01)
        assert batcher.waiting == total - 1
        # held before the commit: nobody answered, nothing stored
        assert responses == []
        assert sql_store.get("MSG0000").state is State.SENT  # type: ignore[union-attr]
        gated.release.set()
        for thread in [first, *others]:
            thread.join(30)
    assert len(responses) == total
    assert all(r.status_code == 200 and r.json()["applied"] == 1 for r in responses)
    assert gated.sizes == [1, total - 1]  # 12 callbacks, 2 transactions
    assert all(sql_store.get(f"MSG{i:04d}").state is State.DELIVERED  # type: ignore[union-attr]
               for i in range(total))


class ForwardingStore(Store):
    """Like the Odoo store: its own apply_status and no apply_statuses (it inherits Store's
    default); for brevity every other name is forwarded to an inner store."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.applied: List[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply_status(self, event: StatusEvent) -> ApplyOutcome:
        self.applied.append(event.message_id or "")
        return self.inner.apply_status(event)


def test_kit_applies_one_by_one_through_a_store_with_the_default_apply_statuses() -> None:
    inner = MemoryStore()
    inner.add_messages(sent(i) for i in range(2))
    store = ForwardingStore(inner)
    kit = SmsKit(Settings.load(environ={}), store=store,
                 provider=LoopbackProvider())
    outcomes = kit.apply_statuses([event("MSG0000", State.DELIVERED),
                                   event("MSG0001", State.ERROR)])
    assert [o.new for o in outcomes] == [State.DELIVERED, State.ERROR]
    assert store.applied == ["MSG0000", "MSG0001"]  # its own apply_status was not bypassed
