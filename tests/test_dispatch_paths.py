"""The bulk send's fast paths give what the plain ones give.

* ``claim_batch_messages`` (SQL and Odoo stores, and ``Store``'s default in the memory store):
  the claim of ``claim_batch`` plus the claimed messages, equal to ``get_many`` of the batch's
  ids right after.
* The SQL store's driver-level bulk INSERT and status UPDATE, and ``apply_statuses``'
  UPDATE and history lines, store exactly the rows SQLAlchemy's own ``executemany`` stores
  (the PostgreSQL path); ``apply_statuses``' driver-level read of its messages builds
  exactly what ``row_message`` builds from SQLAlchemy's rows, and its outcomes are the same.
* ``dispatch`` works the same on a store with the default ``claim_batch_messages`` (memory).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, List

import attrs
import pytest
import sqlalchemy as sa

from odoo_fake import fake_odoo, make_store, odoo_server  # noqa: F401 - fixtures
from smskit import outbox
from smskit.errors import StoreError
from smskit.models import Direction, InboundMessage, Message, SendResult, State, StatusEvent
from smskit.provider import Provider
from smskit.store.base import Requeue, Store
from smskit.store.memory import MemoryStore
from smskit.store.sql import SqlStore
from smskit.store.sql.tables import messages as messages_table
from smskit.store.sql.tables import row_message

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


def out(n: int, **fields: Any) -> Message:
    """An outgoing kolmeya message created ``n`` minutes after a fixed moment."""
    fields.setdefault("state", State.OUTGOING)
    fields.setdefault("provider", "kolmeya")
    fields.setdefault("created_at", NOW - dt.timedelta(minutes=100 - n))
    return Message.new(f"+55119876{n:05d}", f"Olá {n}", **fields)


@pytest.fixture(params=["memory", "sqlite", "odoo"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A memory store (Store's default claim_batch_messages), a SQLite file store, or an Odoo
    store (fake Odoo) on a SQLite sidecar."""
    if request.param == "memory":
        made: Any = MemoryStore()
    elif request.param == "sqlite":
        made = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    else:
        server = request.getfixturevalue("odoo_server")
        request.getfixturevalue("fake_odoo")
        made = make_store(server, tmp_path)
    yield made
    made.close()


def test_claim_batch_messages_is_the_claim_and_its_messages(store: Any) -> None:
    added = [o.message for o in store.add_messages([out(i) for i in range(5)])]
    add_later = out(9, scheduled_at=NOW + dt.timedelta(hours=1))
    store.add_messages([add_later])

    claimed = store.claim_batch_messages("kolmeya", 3, NOW, "b1")
    assert claimed is not None
    batch, messages = claimed
    assert batch.message_ids == tuple(m.id for m in added[:3])
    assert (batch.id, batch.status, batch.created_at) == ("b1", "claimed", NOW)
    assert messages == store.get_many(batch.message_ids)
    assert all(m.batch_id == "b1" and m.updated_at == NOW for m in messages)
    assert [m.body for m in messages] == [m.body for m in added[:3]]

    rest = store.claim_batch_messages("kolmeya", 10, NOW, "b2")
    assert rest is not None and [m.id for m in rest[1]] == [m.id for m in added[3:]]
    assert store.claim_batch_messages("kolmeya", 10, NOW, "b3") is None
    assert store.get_batch("b3") is None
    # nothing was claimed twice, and the scheduled one is still waiting
    assert store.get(add_later.id).batch_id is None


def test_a_claim_of_messages_it_wrote_gives_the_rows_as_another_process_left_them(
        tmp_path: Path) -> None:
    # The SQL store builds the messages it inserted itself from what it wrote plus the columns
    # another writer may change; another store object on the same file is another process.
    url = f"sqlite:///{tmp_path / 'smskit.db'}"
    writer, other = SqlStore(url), SqlStore(url)
    try:
        added = [o.message for o in writer.add_messages(
            [out(i, cost=Decimal("0.16"), tags=("a",), campaign_id="c") for i in range(4)])]
        # the other process claims two, moves one to twilio at another price (and back), and
        # releases the other (one attempt more, due again a minute later)
        other.claim_batch("kolmeya", 2, NOW, "x1")
        other.requeue_messages("x1", [Requeue(message_id=added[1].id, provider="twilio",
                                              cost=Decimal("0.3"))], reason="test", now=NOW)
        retry = NOW + dt.timedelta(minutes=1)
        other.release_batch("x1", "test", retry_at=retry)
        other.claim_batch("twilio", 1, NOW, "x2")
        other.requeue_messages("x2", [Requeue(message_id=added[1].id, provider="kolmeya")],
                               reason="test", now=NOW)
        later = NOW + dt.timedelta(minutes=5)
        claimed = writer.claim_batch_messages("kolmeya", 10, later, "b1")
        assert claimed is not None
        batch, messages = claimed
        assert messages == writer.get_many(batch.message_ids)
        assert {m.id for m in messages} == {m.id for m in added}
        by_id = {m.id: m for m in messages}
        assert (by_id[added[0].id].attempts, by_id[added[0].id].scheduled_at) == (1, retry)
        assert by_id[added[1].id].cost == Decimal("0.3")
        assert all(m.batch_id == "b1" and m.updated_at == later for m in messages)
        # nothing remembered is left behind, and a second claim reads rows as before
        assert writer._written == {}
    finally:
        writer.close()
        other.close()


def test_a_claim_reads_back_what_another_process_wrote(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'smskit.db'}"
    writer, other = SqlStore(url), SqlStore(url)
    try:
        mine = [o.message for o in writer.add_messages([out(1), out(3)])]
        theirs = [o.message for o in other.add_messages([out(2, tags=("x",))])]
        claimed = writer.claim_batch_messages("kolmeya", 10, NOW, "b1")
        assert claimed is not None
        assert [m.id for m in claimed[1]] == [mine[0].id, theirs[0].id, mine[1].id]
        assert claimed[1] == writer.get_many(claimed[0].message_ids)
        assert claimed[1][1].tags == ("x",)
    finally:
        writer.close()
        other.close()


@pytest.mark.parametrize("remembered", [True, False])
def test_results_after_another_process_changed_the_batch(tmp_path: Path,
                                                         remembered: bool) -> None:
    # record_results skips reading the batch back when it is as this object's claim left it;
    # a status applied, or a message taken out of the batch, meanwhile must still count.
    url = f"sqlite:///{tmp_path / 'smskit.db'}"
    writer, other = SqlStore(url), SqlStore(url)
    try:
        ids = [o.message.id for o in writer.add_messages([out(i) for i in range(4)])]
        assert writer.claim_batch_messages("kolmeya", 10, NOW, "b1") is not None
        if not remembered:
            writer._claims.clear()
        early = NOW + dt.timedelta(minutes=1)
        other.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                       message_id=ids[0], provider_message_id="p-0",
                                       occurred_at=early))
        other.requeue_messages("b1", [Requeue(message_id=ids[3])], reason="test", now=NOW)
        later = NOW + dt.timedelta(minutes=2)
        writer.record_results("b1", [
            SendResult(message_id=i, state=State.SENT, provider_message_id=f"p-{n}",
                       provider_request_id="r") for n, i in enumerate(ids)], later)
        got = writer.get_many(ids)
        assert [(m.state, m.sent_at, m.batch_id) for m in got] == [
            (State.DELIVERED, early, "b1"), (State.SENT, later, "b1"),
            (State.SENT, later, "b1"), (State.OUTGOING, None, None)]
        batch = writer.get_batch("b1")
        assert batch is not None and batch.status == "done"
    finally:
        writer.close()
        other.close()


def test_results_of_a_batch_as_claimed_leave_the_missing_ones_waiting(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    try:
        ids = [o.message.id for o in store.add_messages([out(i) for i in range(3)])]
        assert store.claim_batch_messages("kolmeya", 10, NOW, "b1") is not None
        assert "b1" in store._claims
        store.record_results("b1", [SendResult(message_id=ids[0], state=State.SENT,
                                               provider_message_id="p-0")], NOW)
        assert store._claims == {}
        batch = store.get_batch("b1")
        assert batch is not None and batch.status == "ambiguous"
        assert "no result for 2 message(s)" in (batch.error_text or "")
        assert [m.state for m in store.get_many(ids)] == [State.SENT, State.OUTGOING,
                                                          State.OUTGOING]
    finally:
        store.close()


def test_an_insert_without_look_ups_falls_back_to_them_on_any_conflict(tmp_path: Path) -> None:
    # add_messages first inserts without looking anything up (a savepoint); a stored key, id
    # or provider id makes it roll that back and take the checked way, whose answers stand.
    store = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    try:
        first = store.add_messages([out(1, idempotency_key="k1"), out(2)])
        assert [o.created for o in first] == [True, True]
        # a re-run: the stored key answers, the new message goes in
        again = store.add_messages([out(3, idempotency_key="k1"), out(4, idempotency_key="k4")])
        assert [(o.created, o.message.id) for o in again] == [
            (False, first[0].message.id), (True, again[1].message.id)]
        # an id already stored: refused, and nothing of the call is stored
        taken = attrs.evolve(out(5), id=first[1].message.id)
        fresh = out(6, idempotency_key="k6")
        with pytest.raises(StoreError, match="exists"):
            store.add_messages([fresh, taken])
        assert store.get(fresh.id) is None
        # an id twice in the call, once under a stored key: the checked way decides (the
        # stored key answers for it, nothing is refused)
        twice = out(7, idempotency_key="k7")
        outcomes = store.add_messages([twice, attrs.evolve(out(8, idempotency_key="k4"),
                                                           id=twice.id)])
        assert [o.created for o in outcomes] == [True, False]
        assert outcomes[1].message.id == again[1].message.id
        assert len(store.list_messages(limit=100)) == 4
    finally:
        store.close()


def _raw_rows(path: Path) -> List[Any]:
    db = sqlite3.connect(str(path))
    try:
        return [row[1:] for row in db.execute("SELECT * FROM messages ORDER BY created_at")]
    finally:
        db.close()


def test_driver_level_writes_store_what_sqlalchemy_stores(tmp_path: Path) -> None:
    sp = dt.timezone(dt.timedelta(hours=-3))
    given = [
        out(1, cost=Decimal("0.123456"), tags=("promo", "maio"), campaign_id="c1",
            schedule_id="s1", partner_ref="res.partner,7", idempotency_key="k-1",
            encoding="UCS-2", segments=2,
            scheduled_at=dt.datetime(2024, 5, 10, 8, 59, 59, 999999, tzinfo=sp),
            updated_at=NOW),
        out(2),
        out(3, idempotency_key="k-3", cost=Decimal("0")),
        # equal values written differently: each is converted on its own
        out(5, cost=Decimal("0.16"), tags=("a",), created_at=NOW.astimezone(sp)),
        out(6, cost=Decimal("0.160"), tags=("a",), created_at=NOW),
        out(7, cost=Decimal("0.16"), tags=("a", "b"), created_at=NOW),
    ]
    results = [
        SendResult(message_id=given[0].id, state=State.SENT, provider_message_id="p-1",
                   provider_request_id="r-1"),
        SendResult(message_id=given[1].id, state=State.REJECTED, error_code="invalid",
                   error_text="número inválido"),
    ]
    stores = {}
    for name in ("driver", "sqlalchemy"):
        stores[name] = SqlStore(f"sqlite:///{tmp_path / name}.db")
        if name == "sqlalchemy":
            stores[name]._insert_many = None
            stores[name]._set_status_many = None
    try:
        for store in stores.values():
            outcomes = store.add_messages(given)
            assert [o.created for o in outcomes] == [True] * 6
            batch = store.claim_batch("kolmeya", 10, NOW, "b1")
            assert batch is not None and len(batch.message_ids) == 6
            store.record_results("b1", results, NOW)
            again = store.add_messages([out(4, idempotency_key="k-3")])
            assert [o.created for o in again] == [False]
            assert again[0].message.id == given[2].id
        fast = stores["driver"].get_many([m.id for m in given])
        plain = stores["sqlalchemy"].get_many([m.id for m in given])
        assert fast == plain
        assert fast[0].scheduled_at == dt.datetime(2024, 5, 10, 11, 59, 59, 999999, tzinfo=UTC)
        assert fast[0].cost == Decimal("0.123456") and fast[0].tags == ("promo", "maio")
        assert (fast[0].state, fast[0].provider_message_id, fast[0].sent_at) == (
            State.SENT, "p-1", NOW)
        assert (fast[1].state, fast[1].error_text) == (State.REJECTED, "número inválido")
        assert fast[2].state is State.OUTGOING
    finally:
        for store in stores.values():
            store.close()
    assert _raw_rows(tmp_path / "driver.db") == _raw_rows(tmp_path / "sqlalchemy.db")



def _raw_events(path: Path) -> List[Any]:
    """Every history line without its creation time (the moment each store wrote it)."""
    db = sqlite3.connect(str(path))
    try:
        return [row[:-1] for row in db.execute(
            "SELECT id, message_id, provider, kind, old_state, new_state, applied, detail,"
            " provider_message_id, created_at FROM events ORDER BY id")]
    finally:
        db.close()


def test_driver_level_status_writes_store_what_sqlalchemy_stores(tmp_path: Path) -> None:
    sp = dt.timezone(dt.timedelta(hours=-3))
    later = NOW + dt.timedelta(seconds=5)
    given = [out(i, state=State.SENT, provider_message_id=f"p-{i}", sent_at=NOW)
             for i in range(1, 5)]
    given.append(out(5, state=State.SENT, sent_at=NOW))  # no provider id yet
    # every column filled: a cost, tags, a NUL replaced, a schedule in another zone...
    given[0] = attrs.evolve(
        given[0], cost=Decimal("0.160"), tags=("promo", "maio"), campaign_id="c1",
        schedule_id="s1", partner_ref="res.partner,7", idempotency_key="k-1",
        encoding="UCS-2", segments=2, body="Olá\x00mundo", provider_request_id="r-1",
        scheduled_at=dt.datetime(2024, 5, 10, 8, 59, 59, 999999, tzinfo=sp),
        updated_at=NOW, error_code="retry", error_text="once", attempts=2)
    given[1] = attrs.evolve(given[1], cost=Decimal("0.16"), tags=("promo", "maio"))
    ids = [m.id for m in given]

    def event(n: int, state: State, **fields: Any) -> StatusEvent:
        fields.setdefault("occurred_at", later)
        return StatusEvent(provider="kolmeya", state=state, message_id=ids[n], **fields)

    events = [
        event(0, State.DELIVERED, provider_message_id="p-1"),
        event(0, State.DELIVERED),  # a duplicate: history only
        event(1, State.DELIVERED, occurred_at=later.astimezone(sp)),  # the same instant
        event(2, State.ERROR, error_code="30", error_text="número\x00inválido",
              occurred_at=dt.datetime(2024, 5, 10, 9, 0, 7, 123456, tzinfo=sp)),
        event(2, State.SENT),  # backwards: history only
        event(3, State.DELIVERED, occurred_at=NOW.astimezone(sp)),  # another's send time
        StatusEvent(provider="kolmeya", state=State.DELIVERED, message_id="nobody",
                    provider_message_id="p-4"),  # matched by the provider's id
        event(4, State.DELIVERED, provider_message_id="p-new"),  # a new provider id
        StatusEvent(provider="kolmeya", state=State.DELIVERED, message_id="nobody-at-all"),
    ]
    stores = {}
    for name in ("driver", "sqlalchemy"):
        stores[name] = SqlStore(f"sqlite:///{tmp_path / name}.db")
        if name == "sqlalchemy":
            stores[name]._set_status_from_many = None
            stores[name]._events_many = None
            stores[name]._messages_by_id = None
            stores[name]._pid_owners_in = None
    assert stores["driver"]._messages_by_id is not None
    try:
        outcomes = {}
        for name, store in stores.items():
            store.add_messages(given)
            outcomes[name] = store.apply_statuses(events[:4]) + store.apply_statuses(events[4:])
        assert outcomes["driver"] == outcomes["sqlalchemy"]
        # to the type and the time zone of every value (== would take 0.16 for 0.160)
        assert [repr(o) for o in outcomes["driver"]] == \
            [repr(o) for o in outcomes["sqlalchemy"]]
        assert [o.applied for o in outcomes["driver"]] == [
            True, False, True, True, False, True, False, True, False]
        fast = stores["driver"].get_many(ids)
        assert fast == stores["sqlalchemy"].get_many(ids)
        assert [m.state for m in fast] == [State.DELIVERED, State.DELIVERED, State.ERROR,
                                           State.DELIVERED, State.DELIVERED]
        assert (fast[1].delivered_at, fast[2].error_text) == (later, "número\ufffdinválido")
        assert fast[4].provider_message_id == "p-new"
        assert (fast[3].delivered_at, fast[3].delivered_at.tzinfo) == (NOW, UTC)
        first = outcomes["driver"][0].message
        assert first is not None and (first.body, first.cost, first.tags) == (
            "Olá\ufffdmundo", Decimal("0.16"), ("promo", "maio"))
    finally:
        for store in stores.values():
            store.close()
    assert _raw_rows(tmp_path / "driver.db") == _raw_rows(tmp_path / "sqlalchemy.db")
    lines = _raw_events(tmp_path / "driver.db")
    assert lines == _raw_events(tmp_path / "sqlalchemy.db")
    assert len(lines) == 9 and [line[6] for line in lines] == [1, 0, 1, 1, 0, 1, 0, 1, 0]


def _fields(m: Message) -> List[Any]:
    """Every field of ``m`` with its type (and a datetime's zone): equal values of other types
    or zones compare equal, and must not pass for one another here."""
    return [(f.name, getattr(m, f.name), type(getattr(m, f.name)),
             getattr(getattr(m, f.name), "tzinfo", None)) for f in attrs.fields(Message)]


def test_driver_level_message_reads_give_what_row_message_gives(tmp_path: Path) -> None:
    # apply_statuses reads its messages at driver level on SQLite (DriverMessages); each must
    # be what row_message builds from SQLAlchemy's row of it, value, type and zone alike.
    sp = dt.timezone(dt.timedelta(hours=-3))
    path = tmp_path / "smskit.db"
    store = SqlStore(f"sqlite:///{path}")
    try:
        given = [
            out(1, state=State.DELIVERED, cost=Decimal("0.123456"), tags=("promo", "maio"),
                campaign_id="c1", schedule_id="s1", partner_ref="res.partner,7",
                idempotency_key="k-1", encoding="UCS-2", segments=2, provider_message_id="p-1",
                provider_request_id="r-1", attempts=3,
                error_code="E\x00", error_text="número\x00inválido",
                scheduled_at=dt.datetime(2024, 5, 10, 8, 59, 59, 999999, tzinfo=sp),
                sent_at=NOW, delivered_at=NOW + dt.timedelta(seconds=1),
                updated_at=NOW + dt.timedelta(seconds=1)),
            out(2),  # every optional field empty
            out(3, cost=Decimal("0.10"), tags=("a",), created_at=NOW.astimezone(sp)),
            out(4, cost=Decimal("0"), tags=("a",), state=State.ERROR),
            out(5, cost=Decimal("0.1"), tags=("a", "b"), state=State.SENT, sent_at=NOW),
        ]
        given[0] = attrs.evolve(given[0], body="Olá\x00mundo")
        given += [out(6 + i % 90, tags=(f"t{i % 3}",)) for i in range(600)]
        ids = [o.message.id for o in store.add_messages(given)]
        reply = store.record_inbound(InboundMessage(
            provider="kolmeya", provider_reply_id="r-9", phone="+5511987600001", body="Sim",
            received_at=NOW, in_reply_to_message_id=ids[0]))
        ids.append(reply.message.id)
        # what another program may have written: a time with its zone or without fractions,
        # tags as other JSON texts
        db = sqlite3.connect(str(path))
        try:
            db.execute("UPDATE messages SET sent_at = '2024-05-10 09:00:00.500000-03:00',"
                       " updated_at = '2024-05-10 12:00:00', tags = '[ \"x\" ]'"
                       " WHERE id = ?", (ids[1],))
            db.execute("UPDATE messages SET tags = 'null' WHERE id = ?", (ids[3],))
            db.commit()
        finally:
            db.close()
        reader = store._messages_by_id
        assert reader is not None
        by_ids = sa.select(messages_table).where(
            messages_table.c.id.in_(sa.bindparam("m_ids", expanding=True)))
        with store._tx("test") as conn:
            for wanted in ([ids[0]], ids[:3], [*ids[1:6], "missing"], ids[:17], [*ids, "x"]):
                fast = reader.by_ids(conn, wanted)
                plain = {row["id"]: row_message(row) for row in conn.execute(
                    by_ids, {"m_ids": wanted}).mappings()}
                assert fast == plain
                assert {k: _fields(m) for k, m in fast.items()} == \
                    {k: _fields(m) for k, m in plain.items()}
            assert reader.by_ids(conn, []) == {}
        assert len(fast) == len(ids)
        first, second = fast[ids[0]], fast[ids[1]]
        assert (first.body, first.error_text, first.cost, first.tags) == (
            "Olá\ufffdmundo", "número\ufffdinválido", Decimal("0.123456"), ("promo", "maio"))
        assert first.scheduled_at == dt.datetime(2024, 5, 10, 11, 59, 59, 999999, tzinfo=UTC)
        assert (second.sent_at, second.updated_at, second.tags) == (
            dt.datetime(2024, 5, 10, 12, 0, 0, 500000, tzinfo=UTC), NOW, ("x",))
        assert fast[ids[3]].tags == () and fast[ids[2]].cost == Decimal("0.1")
        assert fast[reply.message.id].direction is Direction.INBOUND
        assert fast[reply.message.id].in_reply_to == ids[0]
    finally:
        store.close()


def test_a_message_changed_after_the_driver_level_read_fails_the_whole_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The guarded UPDATE notices a message whose state is no longer the one read; on SQLite
    # nothing else writes during the transaction, so the change is made by the read itself.
    store = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    try:
        ids = [o.message.id for o in store.add_messages(
            [out(i, state=State.SENT, sent_at=NOW) for i in (1, 2)])]
        reader = store._messages_by_id
        assert reader is not None
        read = reader.by_ids

        def then_changed(conn: Any, wanted: Any) -> Any:
            found = read(conn, wanted)
            conn.exec_driver_sql("UPDATE messages SET state = 'error' WHERE id = ?", (ids[1],))
            return found

        monkeypatch.setattr(reader, "by_ids", then_changed)
        with pytest.raises(StoreError, match="changed meanwhile"):
            store.apply_statuses([StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                              message_id=mid) for mid in ids])
        # all or nothing: the first message's change and the read's own were rolled back
        assert [m.state for m in store.get_many(ids)] == [State.SENT, State.SENT]
        assert store.history(ids[0]) == []
    finally:
        store.close()

class _Accepting(Provider):
    """A provider that accepts everything; it records what it was given."""

    name = "kolmeya"
    max_batch = 2

    def __init__(self) -> None:
        self.sent: List[str] = []

    def send_batch(self, messages: List[Message], *, batch_id: str) -> List[SendResult]:
        self.sent.extend(m.id for m in messages)
        return [SendResult(message_id=m.id, state=State.SENT, provider_message_id=f"p-{m.id}")
                for m in messages]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_dispatch_sends_each_message_once_with_or_without_the_fast_claim(
        kind: str, tmp_path: Path) -> None:
    store: Any = MemoryStore() if kind == "memory" else SqlStore(
        f"sqlite:///{tmp_path / 'smskit.db'}")
    # memory keeps Store's default (claim, then read); SQL claims and reads in one transaction
    overridden = type(store).claim_batch_messages is not Store.claim_batch_messages
    assert overridden is (kind == "sqlite")
    try:
        ids = [o.message.id for o in store.add_messages([out(i) for i in range(5)])]
        provider = _Accepting()
        report = outbox.dispatch(store, provider, now=NOW)
        assert (report.batches, report.sent) == (3, 5)
        assert provider.sent == ids
        assert {m.state for m in store.get_many(ids)} == {State.SENT}
        assert outbox.dispatch(store, provider, now=NOW).batches == 0
    finally:
        store.close()



def test_an_outcome_after_its_dispatch_keeps_every_other_field() -> None:
    from smskit.outbox.compose import Outcome
    from smskit.outbox.dispatching import Dispatched

    before = Outcome(index=3, recipient="(11) 98765-4321", message_id="m1",
                     state=State.OUTGOING, reason="queued", deferred_until=NOW, created=True,
                     held=False)
    for found in (Dispatched(State.SENT), Dispatched(State.OUTGOING, "timeout", held=True)):
        after = before.after_dispatch(found)
        reason = found.reason or (None if found.state is State.SENT else before.reason)
        assert after == attrs.evolve(before, state=found.state, held=found.held, reason=reason)


def test_driver_level_look_ups_find_what_sqlalchemy_finds(tmp_path: Path) -> None:
    # blacklisted and the provider-id owners go through IN lists of at most 500 at driver
    # level on SQLite (a power of two of places, the unused ones bound to NULL); more than
    # one list, the last one short, and a list of one.
    store = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    try:
        phones = [f"+55119{i:08d}" for i in range(1234)]
        listed = {phones[0], phones[499], phones[500], phones[1233]}
        for phone in listed:
            store.blacklist_add(phone, "test", "test")
        added = [o.message for o in store.add_messages([
            out(i % 100, provider_message_id=f"p-{i}") for i in range(0, 1200, 7)])]
        pairs = [("kolmeya", f"p-{i}") for i in range(1200)] + [("twilio", "p-7")]
        with store._tx("test") as conn:
            fast = (store.blacklisted([*phones, "+5511900000000"]),
                    store._pid_owners(conn, pairs))
        store._blacklisted_in = store._pid_owners_in = None
        with store._tx("test") as conn:
            plain = (store.blacklisted([*phones, "+5511900000000"]),
                     store._pid_owners(conn, pairs))
        assert fast == plain
        assert fast[0] == listed
        assert fast[1] == {("kolmeya", m.provider_message_id): m.id for m in added}
    finally:
        store.close()
