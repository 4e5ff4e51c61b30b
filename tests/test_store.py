"""The shared store suite: every guarantee of smskit.store.base, on every store.

Runs on the memory store, on SQLite (a file per test) and, when SMSKIT_TEST_POSTGRES_URL is
set (``postgresql://user@127.0.0.1:5432/db``; the tables are emptied before each test), on
PostgreSQL. SQLite-only tests at the end cover WAL, migrations and several processes sharing
one database file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
import sqlalchemy as sa

from smskit.errors import ConfigurationError, NotFoundError, StoreError, ValidationError
from smskit.models import Direction, InboundMessage, Message, SendResult, State, StatusEvent
from smskit.store import MemoryStore, Schedule, Store
from smskit.store.base import DayStats
from smskit.store.sql import SqlStore, upgrade
from smskit.timeutil import zone

UTC = dt.timezone.utc
SP = zone("America/Sao_Paulo")
NOW = dt.datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")
_NO_PG = "set SMSKIT_TEST_POSTGRES_URL=postgresql://user@127.0.0.1:5432/db to run on PostgreSQL"
_TABLES = ("events", "messages", "batches", "blacklist", "schedules")
# Migration 0002: contacts, campaigns, the blacklist audit and sync queue, key/value state.
_TABLES += ("contacts", "contact_tags", "campaigns", "blacklist_audit", "blacklist_sync",
            "kv_state")
# Migration 0003: short links and their clicks (link tracking).
_TABLES += ("links", "link_clicks")


@pytest.fixture(params=[
    "memory",
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=_NO_PG)),
])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store of each kind."""
    made: Store
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    else:
        assert PG_URL is not None
        made = SqlStore(PG_URL)
        with made._engine.begin() as conn:  # type: ignore[attr-defined]
            conn.exec_driver_sql(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE")
    assert isinstance(made, Store)
    yield made
    made.close()


def out(n: int = 0, **fields: Any) -> Message:
    """An outgoing kolmeya message created ``n`` minutes before NOW."""
    fields.setdefault("state", State.OUTGOING)
    fields.setdefault("provider", "kolmeya")
    fields.setdefault("created_at", NOW - dt.timedelta(minutes=100 - n))
    phone = fields.pop("phone", f"+55119876{n:05d}")
    return Message.new(phone, fields.pop("body", f"Olá {n}"), **fields)


def add(store: Store, *messages: Message) -> List[Message]:
    outcomes = store.add_messages(messages)
    assert all(o.created for o in outcomes)
    return [o.message for o in outcomes]


def run_threads(count: int, target: Callable[[int], Any]) -> List[Any]:
    """Run ``target(i)`` in ``count`` threads released together; their results, in order."""
    barrier = threading.Barrier(count)
    results: List[Any] = [None] * count
    errors: List[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = target(i)
        except BaseException as exc:  # re-raised below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


# -- messages ---------------------------------------------------------------------------------
def test_round_trip_keeps_every_field_exact_and_aware(store: Store) -> None:
    local = dt.datetime(2024, 5, 10, 21, 30, 15, 123456, tzinfo=SP)
    message = out(
        cost=Decimal("0.123456"), tags=("promo", "maio"), campaign_id="c1", schedule_id="s1",
        partner_ref="res.partner,7", idempotency_key="k-1", encoding="GSM-7", segments=2,
        scheduled_at=local, created_at=local, error_code=None, attempts=0,
    )
    add(store, message)
    got = store.get(message.id)
    assert got == message
    assert got is not None and got.cost == Decimal("0.123456")
    for value in (got.created_at, got.scheduled_at):
        assert value is not None and value.utcoffset() == dt.timedelta(0)
    assert got.created_at == dt.datetime(2024, 5, 11, 0, 30, 15, 123456, tzinfo=UTC)
    assert got.tags == ("promo", "maio")


def test_idempotency_key_returns_the_stored_message(store: Store) -> None:
    first = out(1, idempotency_key="order-42")
    add(store, first)
    again = out(2, idempotency_key="order-42", body="something else")
    [outcome] = store.add_messages([again])
    assert outcome.created is False
    assert outcome.message == first
    assert store.get(again.id) is None
    assert len(store.list_messages()) == 1


def test_idempotency_key_twice_in_one_call_stores_one(store: Store) -> None:
    a, b, c = out(1, idempotency_key="k"), out(2, idempotency_key="k"), out(3)
    outcomes = store.add_messages([a, b, c])
    assert [o.created for o in outcomes] == [True, False, True]
    assert outcomes[1].message.id == a.id
    assert {m.id for m in store.list_messages()} == {a.id, c.id}


def test_concurrent_adds_with_one_idempotency_key_store_one(store: Store) -> None:
    outcomes = run_threads(6, lambda i: store.add_messages(
        [out(i, idempotency_key="double-click")])[0])
    assert sum(o.created for o in outcomes) == 1
    assert len({o.message.id for o in outcomes}) == 1
    assert len(store.list_messages()) == 1


def test_thousands_of_messages_in_one_call(store: Store) -> None:
    batch = [out(i % 90, idempotency_key=f"bulk-{i}") for i in range(3000)]
    outcomes = store.add_messages(batch)
    assert all(o.created for o in outcomes)
    assert store.count_by_state() == {("kolmeya", State.OUTGOING): 3000}
    repeat = store.add_messages([*batch[:10], out(95)])
    assert [o.created for o in repeat] == [False] * 10 + [True]
    assert store.count_by_state() == {("kolmeya", State.OUTGOING): 3001}


def test_existing_id_is_refused_and_nothing_of_the_call_is_stored(store: Store) -> None:
    stored = add(store, out(1))[0]
    newcomer = out(2)
    with pytest.raises(StoreError, match=stored.id):
        store.add_messages([newcomer, stored])
    assert store.get(newcomer.id) is None
    assert len(store.list_messages()) == 1


def test_two_messages_never_share_a_provider_id(store: Store) -> None:
    add(store, out(1, provider_message_id="K-1", state=State.SENT))
    clash = out(2, provider_message_id="K-1", state=State.SENT)
    with pytest.raises(StoreError, match="K-1"):
        store.add_messages([clash])
    assert store.get(clash.id) is None
    # the same id at another provider is a different message
    add(store, out(3, provider="other", provider_message_id="K-1", state=State.SENT))


def test_cost_is_exact_and_over_precise_cost_is_refused(store: Store) -> None:
    day = NOW - dt.timedelta(hours=1)
    costs = ["0.1", "0.2", "0.000001", "1234567.89"]
    add(store, *[out(i, cost=Decimal(v), state=State.SENT, created_at=day)
                 for i, v in enumerate(costs)])
    [row] = store.stats_by_day()
    assert row.cost == Decimal("1234568.190001")
    assert {m.cost for m in store.list_messages()} == {Decimal(v) for v in costs}
    too_fine = out(9, cost=Decimal("0.0000001"))
    with pytest.raises(ValidationError, match="decimal places"):
        store.add_messages([too_fine])
    assert store.get(too_fine.id) is None


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValidationError, match="now"):
        store.claim_batch("kolmeya", 10, dt.datetime(2024, 1, 1), "b1")
    with pytest.raises(ValidationError, match="next_run_at"):
        store.add_schedule(Schedule(id="s", name="n", request={}, created_at=NOW,
                                    next_run_at=dt.datetime(2024, 1, 1)))


def test_get_many_find_and_list(store: Store) -> None:
    a, b, c = add(store, out(1, campaign_id="x", provider_message_id="P1", state=State.SENT),
                  out(2, campaign_id="x"), out(3, phone="+5511900000000"))
    assert [m.id for m in store.get_many([c.id, "nope", a.id])] == [c.id, a.id]
    assert store.find_by_provider_id("kolmeya", "P1") == a
    assert store.find_by_provider_id("other", "P1") is None
    assert [m.id for m in store.list_messages()] == [c.id, b.id, a.id]
    assert [m.id for m in store.list_messages(campaign_id="x")] == [b.id, a.id]
    assert [m.id for m in store.list_messages(state=State.SENT)] == [a.id]
    assert [m.id for m in store.list_messages(phone="+5511900000000")] == [c.id]
    assert [m.id for m in store.list_messages(limit=1, offset=1)] == [b.id]


def test_cancel_only_before_the_claim(store: Store) -> None:
    draft, claimed, waiting = add(store, out(1, state=State.DRAFT), out(2), out(3))
    batch = store.claim_batch("kolmeya", 1, NOW, "b1")
    assert batch is not None and batch.message_ids == (claimed.id,)
    canceled = store.cancel(draft.id, "customer asked")
    assert canceled is not None and canceled.state is State.CANCELED
    assert canceled.error_text == "customer asked"
    assert store.get(draft.id) == canceled
    assert store.cancel(claimed.id, "too late") is None
    assert store.get(claimed.id).state is State.OUTGOING  # type: ignore[union-attr]
    assert store.cancel(waiting.id, "in time") is not None
    assert store.cancel(waiting.id, "twice") is None
    assert store.claim_batch("kolmeya", 10, NOW, "b2") is None
    with pytest.raises(NotFoundError, match="missing"):
        store.cancel("missing", "x")


# -- dispatch --------------------------------------------------------------------------------
def test_claim_takes_due_outgoing_oldest_first(store: Store) -> None:
    old, mid, new = add(store, out(1), out(2), out(3))
    add(store, out(4, state=State.DRAFT), out(5, provider="other"),
        out(6, state=State.SENT), out(7, scheduled_at=NOW + dt.timedelta(minutes=1)))
    due_now = add(store, out(8, scheduled_at=NOW))[0]
    batch = store.claim_batch("kolmeya", 2, NOW, "b1")
    assert batch is not None
    assert batch.message_ids == (old.id, mid.id)
    assert (batch.status, batch.provider, batch.created_at) == ("claimed", "kolmeya", NOW)
    assert store.get_batch("b1") == batch
    rest = store.claim_batch("kolmeya", 10, NOW, "b2")
    assert rest is not None and rest.message_ids == (new.id, due_now.id)
    assert store.claim_batch("kolmeya", 10, NOW, "b3") is None
    assert store.get_batch("b3") is None
    later = store.claim_batch("kolmeya", 10, NOW + dt.timedelta(minutes=1), "b4")
    assert later is not None and len(later.message_ids) == 1


def test_claim_with_a_used_batch_id_is_refused(store: Store) -> None:
    add(store, out(1), out(2))
    store.claim_batch("kolmeya", 1, NOW, "b1")
    with pytest.raises(StoreError, match="b1"):
        store.claim_batch("kolmeya", 1, NOW, "b1")
    second = store.claim_batch("kolmeya", 1, NOW, "b2")
    assert second is not None and len(second.message_ids) == 1


def test_concurrent_claims_never_overlap(store: Store) -> None:
    ids = {m.id for m in add(store, *[out(i % 90) for i in range(120)])}

    def claim_all(worker: int) -> List[str]:
        mine: List[str] = []
        for n in range(1000):
            batch = store.claim_batch("kolmeya", 7, NOW, f"w{worker}-{n}")
            if batch is None:
                return mine
            mine.extend(batch.message_ids)
        raise AssertionError("claims never ran dry")

    claimed = run_threads(4, claim_all)
    flat = [i for part in claimed for i in part]
    assert len(flat) == len(set(flat)) == len(ids)
    assert set(flat) == ids


def test_release_puts_messages_back_with_one_more_attempt(store: Store) -> None:
    a, b = add(store, out(1), out(2))
    store.claim_batch("kolmeya", 10, NOW, "b1")
    store.apply_status(StatusEvent(provider="kolmeya", state=State.SENT, message_id=b.id))
    retry = NOW + dt.timedelta(minutes=5)
    store.release_batch("b1", "gateway down", retry_at=retry)
    batch = store.get_batch("b1")
    assert batch is not None and (batch.status, batch.error_text) == ("released", "gateway down")
    again = store.get(a.id)
    assert again is not None
    assert (again.batch_id, again.attempts, again.scheduled_at) == (None, 1, retry)
    assert store.get(b.id).batch_id == "b1"  # type: ignore[union-attr]  # already sent: stays
    assert store.claim_batch("kolmeya", 10, NOW, "b2") is None
    reclaimed = store.claim_batch("kolmeya", 10, retry, "b2")
    assert reclaimed is not None and reclaimed.message_ids == (a.id,)
    store.release_batch("b2", "again")
    assert store.get(a.id).attempts == 2  # type: ignore[union-attr]
    assert store.claim_batch("kolmeya", 10, retry, "b3") is not None


def test_results_are_written_forward_only(store: Store) -> None:
    early, ok, bad, silent, blocked = add(store, out(1), out(2), out(3), out(4), out(5))
    store.claim_batch("kolmeya", 10, NOW, "b1")
    # a delivery report outran the send results
    store.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                   message_id=early.id))
    later = NOW + dt.timedelta(seconds=3)
    store.record_results("b1", [
        SendResult(message_id=early.id, state=State.SENT, provider_message_id="K-1",
                   provider_request_id="R"),
        SendResult(message_id=ok.id, state=State.SENT, provider_message_id="K-2",
                   provider_request_id="R"),
        SendResult(message_id=bad.id, state=State.REJECTED, error_code="blacklist",
                   error_text="number is blacklisted"),
        SendResult(message_id="not-in-batch", state=State.SENT, provider_message_id="K-9"),
        SendResult(message_id=blocked.id, state=State.CANCELED, error_code="blacklisted",
                   error_text="number is on the blacklist"),
    ], later)
    e, o, b, s, x = store.get_many([early.id, ok.id, bad.id, silent.id, blocked.id])
    assert (e.state, e.provider_message_id) == (State.DELIVERED, "K-1")
    assert (o.state, o.sent_at, o.provider_message_id, o.provider_request_id) == (
        State.SENT, later, "K-2", "R")
    assert (b.state, b.error_code, b.error_text) == (
        State.REJECTED, "blacklist", "number is blacklisted")
    assert (s.state, s.batch_id) == (State.OUTGOING, "b1")
    assert (x.state, x.error_code, x.sent_at) == (State.CANCELED, "blacklisted", None)
    batch = store.get_batch("b1")
    assert batch is not None and batch.status == "done"
    assert store.find_by_provider_id("kolmeya", "K-9") is None
    # recording the same results again changes nothing
    store.record_results("b1", [SendResult(message_id=ok.id, state=State.SENT,
                                           provider_message_id="K-2")], later + later.resolution)
    assert store.get(ok.id) == o


def test_a_result_with_a_taken_provider_id_is_refused(store: Store) -> None:
    first, second = add(store, out(1), out(2))
    store.claim_batch("kolmeya", 1, NOW, "b1")
    store.record_results("b1", [SendResult(message_id=first.id, state=State.SENT,
                                           provider_message_id="K-1")], NOW)
    store.claim_batch("kolmeya", 1, NOW, "b2")
    store.record_results("b2", [SendResult(message_id=second.id, state=State.SENT,
                                           provider_message_id="K-1")], NOW)
    stored = store.get(second.id)
    assert stored is not None and stored.state is State.SENT
    assert stored.provider_message_id is None
    assert store.find_by_provider_id("kolmeya", "K-1") == store.get(first.id)
    [conflict] = store.history(second.id)
    assert conflict.kind == "conflict" and "K-1" in conflict.detail and first.id in conflict.detail


def test_ambiguous_batches_and_filters(store: Store) -> None:
    add(store, out(1), out(2), out(3))
    store.claim_batch("kolmeya", 1, NOW - dt.timedelta(hours=1), "old")
    store.claim_batch("kolmeya", 1, NOW, "new")
    store.claim_batch("kolmeya", 1, NOW, "done")
    store.record_results("done", [], NOW)
    store.mark_batch_ambiguous("old", "read timeout")
    [amb] = store.batches(status="ambiguous")
    assert (amb.id, amb.error_text, len(amb.message_ids)) == ("old", "read timeout", 1)
    assert [b.id for b in store.batches(status="claimed")] == ["new"]
    assert [b.id for b in store.batches(older_than=NOW)] == ["old"]
    assert [b.id for b in store.batches()] == ["old", "done", "new"]
    for call in (lambda: store.mark_batch_ambiguous("nope", "x"),
                 lambda: store.release_batch("nope", "x"),
                 lambda: store.record_results("nope", [], NOW)):
        with pytest.raises(NotFoundError, match="nope"):
            call()


# -- status events ---------------------------------------------------------------------------
def test_status_events_move_forward_only_and_are_all_kept(store: Store) -> None:
    m = add(store, out(1))[0]
    store.claim_batch("kolmeya", 1, NOW, "b1")
    store.record_results("b1", [SendResult(message_id=m.id, state=State.SENT,
                                           provider_message_id="K-1")], NOW)
    at = NOW + dt.timedelta(minutes=1)
    delivered = store.apply_status(StatusEvent(
        provider="kolmeya", state=State.DELIVERED, provider_message_id="K-1", occurred_at=at))
    assert (delivered.applied, delivered.old, delivered.new) == (True, State.SENT,
                                                                 State.DELIVERED)
    assert delivered.message is not None and delivered.message.delivered_at == at
    dup = store.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                         message_id=m.id))
    late = store.apply_status(StatusEvent(provider="kolmeya", state=State.ERROR,
                                          message_id=m.id, status_code=4))
    back = store.apply_status(StatusEvent(provider="kolmeya", state=State.SENT,
                                          provider_message_id="K-1"))
    assert [(o.applied, o.reason) for o in (dup, late, back)] == [
        (False, "duplicate"), (False, "already final (delivered)"),
        (False, "already final (delivered)")]
    assert store.get(m.id) == delivered.message
    history = store.history(m.id)
    assert [(h.kind, h.old_state, h.new_state, h.applied) for h in history] == [
        ("status", "sent", "delivered", True), ("status", "delivered", "delivered", False),
        ("status", "delivered", "error", False), ("status", "delivered", "sent", False)]
    assert history[0].detail == "applied" and history[1].detail == "duplicate"
    assert [h.id for h in history] == sorted(h.id for h in history)


def test_backwards_event_is_ignored_but_recorded(store: Store) -> None:
    m = add(store, out(1, state=State.SENT, provider_message_id="K-5"))[0]
    outcome = store.apply_status(StatusEvent(provider="kolmeya", state=State.OUTGOING,
                                             message_id=m.id))
    assert (outcome.applied, outcome.reason) == (False, "backwards (sent -> outgoing)")
    assert store.get(m.id) == m
    [h] = store.history(m.id)
    assert (h.applied, h.detail) == (False, "backwards (sent -> outgoing)")


def test_our_reference_wins_over_the_provider_id(store: Store) -> None:
    a, b = add(store, out(1, state=State.SENT, provider_message_id="K-A"),
               out(2, state=State.SENT, provider_message_id="K-B"))
    outcome = store.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                             message_id=b.id, provider_message_id="K-A"))
    assert outcome.message is not None and outcome.message.id == b.id
    assert store.get(a.id).state is State.SENT  # type: ignore[union-attr]
    # an unknown reference falls back to the provider id
    outcome = store.apply_status(StatusEvent(provider="kolmeya", state=State.EXPIRED,
                                             message_id="gone", provider_message_id="K-A"))
    assert outcome.message is not None and outcome.message.id == a.id
    assert outcome.message.state is State.EXPIRED


def test_a_status_event_adopting_a_taken_provider_id_does_not_store_it(store: Store) -> None:
    add(store, out(1, state=State.SENT, provider_message_id="K-1"))
    other = add(store, out(2))[0]
    outcome = store.apply_status(StatusEvent(provider="kolmeya", state=State.SENT,
                                             message_id=other.id, provider_message_id="K-1"))
    assert outcome.applied and outcome.message is not None
    assert outcome.message.provider_message_id is None
    assert store.get(other.id) == outcome.message
    assert [h.kind for h in store.history(other.id)] == ["status", "conflict"]


def test_unknown_ids_are_kept_as_orphan_events(store: Store) -> None:
    first = store.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                           message_id="nobody", provider_message_id="K-404"))
    assert (first.message, first.applied, first.old, first.new) == (None, False, None, None)
    store.apply_status(StatusEvent(provider="kolmeya", state=State.ERROR,
                                   provider_message_id="K-405"))
    store.record_event(None, "note", "not a status event")
    orphans = store.orphan_events()
    assert [o.provider_message_id for o in orphans] == ["K-405", "K-404"]
    assert orphans[1].message_id is None and orphans[1].new_state == "delivered"
    assert "nobody" in orphans[1].detail and orphans[1].applied is False
    assert len(store.orphan_events(limit=1)) == 1


def test_concurrent_status_events_stay_monotonic(store: Store) -> None:
    m = add(store, out(1))[0]
    states = [State.SENT, State.DELIVERED, State.SENT, State.ERROR, State.EXPIRED,
              State.SENT, State.DELIVERED, State.SENT]
    outcomes = run_threads(len(states), lambda i: store.apply_status(
        StatusEvent(provider="kolmeya", state=states[i], message_id=m.id)))
    history = store.history(m.id)
    assert len(history) == len(states)
    applied = [h for h in history if h.applied]
    ranks = [State(h.new_state).rank for h in applied]  # type: ignore[arg-type]
    assert ranks == sorted(set(ranks))
    final = store.get(m.id)
    assert final is not None and final.state.value == applied[-1].new_state
    assert final.state.is_final
    assert sum(o.applied for o in outcomes) == len(applied)


def test_record_event_appends_to_history(store: Store) -> None:
    m = add(store, out(1))[0]
    store.record_event(m.id, "hook_failed", "odoo note: timeout", provider="odoo")
    [h] = store.history(m.id)
    assert (h.kind, h.detail, h.provider, h.applied) == ("hook_failed", "odoo note: timeout",
                                                        "odoo", False)
    assert h.created_at.tzinfo is not None
    with pytest.raises(NotFoundError, match="missing"):
        store.record_event("missing", "x", "y")


# -- inbound ---------------------------------------------------------------------------------
def test_inbound_is_recorded_once_per_reply_id(store: Store) -> None:
    sent = add(store, out(1, state=State.SENT, provider_message_id="K-7"))[0]
    received = dt.datetime(2024, 5, 10, 9, 0, tzinfo=SP)
    reply = InboundMessage(provider="kolmeya", provider_reply_id="R-1", phone="+5511987650001",
                           body="SAIR", received_at=received, in_reply_to_provider_id="K-7")
    first = store.record_inbound(reply)
    assert first.created
    msg = first.message
    assert (msg.direction, msg.state, msg.body, msg.in_reply_to) == (
        Direction.INBOUND, State.DELIVERED, "SAIR", sent.id)
    assert msg.created_at == received
    again = store.record_inbound(reply)
    assert (again.created, again.message) == (False, msg)
    assert store.get(msg.id) == msg
    other = store.record_inbound(InboundMessage(provider="other", provider_reply_id="R-1",
                                                phone="+5511987650001", body="oi"))
    assert other.created and other.message.in_reply_to is None
    assert len([m for m in store.list_messages() if m.direction is Direction.INBOUND]) == 2
    assert store.claim_batch("kolmeya", 10, NOW, "b") is None


def test_concurrent_inbound_deliveries_store_one(store: Store) -> None:
    reply = InboundMessage(provider="kolmeya", provider_reply_id="R-9", phone="+5511987650001",
                           body="PARAR")
    outcomes = run_threads(6, lambda i: store.record_inbound(reply))
    assert sum(o.created for o in outcomes) == 1
    assert len({o.message.id for o in outcomes}) == 1
    assert len(store.list_messages()) == 1


# -- blacklist -------------------------------------------------------------------------------
def test_blacklist(store: Store) -> None:
    assert store.blacklist_add("+5511900000001", "SAIR reply", "inbound") is True
    assert store.blacklist_add("+5511900000001", "again", "api") is False
    assert store.blacklist_add("+5511900000002", "complaint", "api") is True
    assert store.is_blacklisted("+5511900000001")
    assert not store.is_blacklisted("+5511900000003")
    phones = [f"+55119{i:08d}" for i in range(1200)]
    assert store.blacklisted(phones) == {"+5511900000001", "+5511900000002"}
    entries = store.list_blacklist()
    assert [(e.phone, e.reason, e.source) for e in entries] == [
        ("+5511900000001", "SAIR reply", "inbound"), ("+5511900000002", "complaint", "api")]
    assert store.blacklist_remove("+5511900000001") is True
    assert store.blacklist_remove("+5511900000001") is False
    assert store.blacklisted(phones) == {"+5511900000002"}


# -- schedules -------------------------------------------------------------------------------
def schedule(sid: str, next_run: Any, **fields: Any) -> Schedule:
    return Schedule(id=sid, name=f"campaign {sid}", request={"phones": ["+5511987654321"],
                    "template": "Olá {{ nome }}", "context": {"nome": "Ana"}},
                    next_run_at=next_run, created_at=NOW, **fields)


def test_schedules_round_trip_and_listing(store: Store) -> None:
    weekly = schedule("s1", dt.datetime(2024, 5, 13, 9, 0, tzinfo=SP),
                      rrule="FREQ=WEEKLY;BYDAY=MO", dtstart=dt.datetime(2024, 5, 6, 9, tzinfo=SP))
    stored = store.add_schedule(weekly)
    assert stored == weekly
    got = store.get_schedule("s1")
    assert got == weekly and got is not None
    assert got.next_run_at is not None and got.next_run_at.utcoffset() == dt.timedelta(0)
    store.add_schedule(schedule("s0", NOW - dt.timedelta(days=1)))
    store.add_schedule(schedule("s2", None, active=False))
    with pytest.raises(StoreError, match="s1"):
        store.add_schedule(schedule("s1", NOW))
    assert [s.id for s in store.list_schedules()] == ["s0", "s1", "s2"]
    assert [s.id for s in store.list_schedules(active_only=True)] == ["s0", "s1"]
    assert [s.id for s in store.due_schedules(NOW)] == ["s0"]
    assert store.remove_schedule("s0") is True
    assert store.remove_schedule("s0") is False
    assert store.get_schedule("s0") is None


def test_advance_schedule_is_compare_and_set(store: Store) -> None:
    first = NOW - dt.timedelta(minutes=1)
    store.add_schedule(schedule("s1", first))
    nxt = first + dt.timedelta(days=7)
    assert store.advance_schedule("s1", first + dt.timedelta(seconds=1), nxt, NOW) is False
    assert store.advance_schedule("s1", first.astimezone(SP), nxt, NOW) is True
    assert store.advance_schedule("s1", first, nxt, NOW) is False
    s = store.get_schedule("s1")
    assert s is not None and (s.next_run_at, s.last_run_at, s.runs, s.active) == (
        nxt, NOW, 1, True)
    assert store.due_schedules(NOW) == []
    assert store.advance_schedule("s1", nxt, None, nxt) is True
    ended = store.get_schedule("s1")
    assert ended is not None and (ended.next_run_at, ended.active, ended.runs) == (None, False, 2)
    assert store.due_schedules(nxt + dt.timedelta(days=30)) == []
    assert store.advance_schedule("missing", nxt, None, nxt) is False


def test_concurrent_advance_has_exactly_one_winner(store: Store) -> None:
    due = NOW - dt.timedelta(seconds=5)
    store.add_schedule(schedule("s1", due))
    wins = run_threads(8, lambda i: store.advance_schedule(
        "s1", due, due + dt.timedelta(hours=1 + i), NOW))
    assert wins.count(True) == 1
    s = store.get_schedule("s1")
    assert s is not None and s.runs == 1
    assert s.next_run_at == due + dt.timedelta(hours=1 + wins.index(True))


# -- stats -----------------------------------------------------------------------------------
def test_stats_by_day_on_a_seeded_dataset(store: Store) -> None:
    d1 = dt.datetime(2024, 5, 10, 10, 0, tzinfo=UTC)
    d2 = dt.datetime(2024, 5, 11, 10, 0, tzinfo=UTC)
    late_evening = dt.datetime(2024, 5, 10, 23, 30, tzinfo=SP)  # 02:30 UTC on the 11th
    c08 = Decimal("0.08")
    seed = [
        out(1, state=State.SENT, cost=c08, created_at=d1),
        out(2, state=State.DELIVERED, cost=c08 * 2, created_at=d1),
        out(3, state=State.ERROR, cost=c08, created_at=d1),
        out(4, state=State.EXPIRED, cost=c08, created_at=d1),
        out(5, state=State.REJECTED, cost=c08, created_at=d1),
        out(6, state=State.CANCELED, cost=c08, created_at=d1),
        out(7, state=State.OUTGOING, cost=c08, created_at=d1),
        out(8, state=State.DELIVERED, cost=Decimal("0.1"), provider="loopback", created_at=d1),
        out(9, state=State.DELIVERED, cost=c08, created_at=late_evening),
        out(10, state=State.DELIVERED, cost=c08, created_at=d2),
        out(11, state=State.REJECTED, provider=None, created_at=d2),
    ]
    add(store, *seed)
    store.record_inbound(InboundMessage(provider="kolmeya", provider_reply_id="R1",
                                        phone="+5511987650001", body="oi", received_at=d1))
    expected = [
        DayStats(day=dt.date(2024, 5, 10), provider="kolmeya", sent=4, delivered=1, failed=2,
                 rejected=1, canceled=1, inbound=1, cost=Decimal("0.40")),
        DayStats(day=dt.date(2024, 5, 10), provider="loopback", sent=1, delivered=1, failed=0,
                 rejected=0, canceled=0, inbound=0, cost=Decimal("0.1")),
        DayStats(day=dt.date(2024, 5, 11), provider="", sent=0, delivered=0, failed=0,
                 rejected=1, canceled=0, inbound=0, cost=Decimal(0)),
        DayStats(day=dt.date(2024, 5, 11), provider="kolmeya", sent=2, delivered=2, failed=0,
                 rejected=0, canceled=0, inbound=0, cost=Decimal("0.16")),
    ]
    assert store.stats_by_day() == expected
    assert store.stats_by_day(start=dt.date(2024, 5, 11)) == expected[2:]
    assert store.stats_by_day(end=dt.date(2024, 5, 10)) == expected[:2]
    assert store.stats_by_day(dt.date(2024, 5, 12), dt.date(2024, 5, 20)) == []
    assert store.count_by_state("kolmeya") == {
        ("kolmeya", s): n for s, n in [(State.SENT, 1), (State.DELIVERED, 3), (State.ERROR, 1),
                                      (State.EXPIRED, 1), (State.REJECTED, 1),
                                      (State.CANCELED, 1), (State.OUTGOING, 1)]}
    assert store.count_by_state()[("", State.REJECTED)] == 1


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


def test_sqlite_connections_use_wal_and_wait_for_writers(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with store._engine.connect() as conn:
            pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                      for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")}
        assert pragma == {"journal_mode": "wal", "busy_timeout": 30000, "synchronous": 1,
                          "foreign_keys": 1}
    finally:
        store.close()


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


def test_batch_records_the_gateway_request_id(store: Store) -> None:
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
    (added,) = store.add_messages([Message(phone="+5511987654321", body="Oi",
                                           state=State.OUTGOING, provider="loopback")])
    batch = store.claim_batch("loopback", 10, now, "batch-req-id")
    assert batch is not None
    store.record_results(batch.id, [SendResult(message_id=added.message.id, state=State.SENT,
                                               provider_message_id="pm-1",
                                               provider_request_id="req-uuid")], now)
    stored = store.get_batch(batch.id)
    assert stored is not None and stored.provider_request_id == "req-uuid"
