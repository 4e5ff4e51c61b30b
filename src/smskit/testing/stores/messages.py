"""Store checks: adding, reading and canceling messages; claiming, releasing and recording
batches (the ``store`` part, plus ``claim_batch_messages`` where a store has it)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Dict, List

from smskit.errors import NotFoundError, StoreError, ValidationError
from smskit.models import Message, SendResult, State, StatusEvent
from smskit.store.base import Store
from smskit.testing.stores.runner import check, expect, expect_equal, expect_raises, missing_methods
from smskit.testing.stores.samples import NOW, SP, UTC, add, outgoing, run_threads, schedule

__all__: List[str] = []


@check()
def implements_the_store_protocol(store: Store) -> None:
    """The store has every method of smskit.store.base.Store."""
    missing = missing_methods(store, "store")
    expect(not missing, f"the store lacks Store methods: {', '.join(missing)}")
    expect(isinstance(store, Store), "isinstance(store, smskit.store.base.Store) is False")


# -- messages ---------------------------------------------------------------------------------
@check()
def round_trip_keeps_every_field_exact_and_aware(store: Store) -> None:
    """A stored message comes back equal: exact cost, tags, datetimes aware in UTC."""
    local = dt.datetime(2024, 5, 10, 21, 30, 15, 123456, tzinfo=SP)
    message = outgoing(
        cost=Decimal("0.123456"), tags=("promo", "maio"), campaign_id="c1", schedule_id="s1",
        partner_ref="res.partner,7", idempotency_key="k-1", encoding="GSM-7", segments=2,
        scheduled_at=local, created_at=local, error_code=None, attempts=0,
    )
    add(store, message)
    got = store.get(message.id)
    expect_equal(got, message, "get() must return the message as it was added")
    if got is None:
        return
    expect_equal(got.cost, Decimal("0.123456"), "the cost must be exact")
    for value in (got.created_at, got.scheduled_at):
        expect(value is not None and value.utcoffset() == dt.timedelta(0),
               f"datetimes must come back aware in UTC, got {value!r}")
    expect_equal(got.created_at, dt.datetime(2024, 5, 11, 0, 30, 15, 123456, tzinfo=UTC),
                 "created_at must be the same instant, in UTC, to the microsecond")
    expect_equal(got.tags, ("promo", "maio"), "tags must keep their order")


@check()
def idempotency_key_returns_the_stored_message(store: Store) -> None:
    """A second message with a stored idempotency key is not stored; the first comes back."""
    first = outgoing(1, idempotency_key="order-42")
    add(store, first)
    again = outgoing(2, idempotency_key="order-42", body="something else")
    outcomes = store.add_messages([again])
    expect_equal(len(outcomes), 1, "add_messages must give one outcome per message")
    expect(outcomes[0].created is False, "a repeated idempotency key must give created=False")
    expect_equal(outcomes[0].message, first, "the stored message must come back")
    expect(store.get(again.id) is None, "the repeated message must not be stored")
    expect_equal(len(store.list_messages()), 1, "one message must be stored")


@check()
def idempotency_key_twice_in_one_call_stores_one(store: Store) -> None:
    """Two messages with one idempotency key in the same call store the first only."""
    a, b, c = outgoing(1, idempotency_key="k"), outgoing(2, idempotency_key="k"), outgoing(3)
    outcomes = store.add_messages([a, b, c])
    expect_equal([o.created for o in outcomes], [True, False, True], "created flags")
    expect_equal(outcomes[1].message.id, a.id, "the repeat must answer with the first message")
    expect_equal({m.id for m in store.list_messages()}, {a.id, c.id}, "stored messages")


@check()
def concurrent_adds_with_one_idempotency_key_store_one(store: Store) -> None:
    """Six threads adding with one idempotency key at once store exactly one message."""
    outcomes = run_threads(6, lambda i: store.add_messages(
        [outgoing(i, idempotency_key="double-click")])[0])
    expect_equal(sum(o.created for o in outcomes), 1, "calls that created the message")
    expect_equal(len({o.message.id for o in outcomes}), 1,
                 "every call must answer with the same message")
    expect_equal(len(store.list_messages()), 1, "stored messages")


@check()
def thousands_of_messages_in_one_call(store: Store) -> None:
    """3000 messages go in one call; repeating some of them adds only the new one."""
    batch = [outgoing(i % 90, idempotency_key=f"bulk-{i}") for i in range(3000)]
    outcomes = store.add_messages(batch)
    expect(all(o.created for o in outcomes), "every new message must be created")
    expect_equal(store.count_by_state(), {("kolmeya", State.OUTGOING): 3000}, "count_by_state")
    repeat = store.add_messages([*batch[:10], outgoing(95)])
    expect_equal([o.created for o in repeat], [False] * 10 + [True], "created flags of a rerun")
    expect_equal(store.count_by_state(), {("kolmeya", State.OUTGOING): 3001},
                 "count_by_state after the rerun")


@check()
def existing_id_is_refused_and_nothing_of_the_call_is_stored(store: Store) -> None:
    """A message whose id is taken raises StoreError, and nothing of that call is stored."""
    stored = add(store, outgoing(1))[0]
    newcomer = outgoing(2)
    with expect_raises(StoreError, "adding a message whose id is taken", match=stored.id):
        store.add_messages([newcomer, stored])
    expect(store.get(newcomer.id) is None, "nothing of a refused call may be stored")
    expect_equal(len(store.list_messages()), 1, "stored messages")


@check()
def two_messages_never_share_a_provider_id(store: Store) -> None:
    """A second message with a stored (provider, provider id) is refused with StoreError."""
    add(store, outgoing(1, provider_message_id="K-1", state=State.SENT))
    clash = outgoing(2, provider_message_id="K-1", state=State.SENT)
    with expect_raises(StoreError, "adding a message whose provider id is taken", match="K-1"):
        store.add_messages([clash])
    expect(store.get(clash.id) is None, "the clashing message must not be stored")
    # the same id at another provider is a different message
    add(store, outgoing(3, provider="other", provider_message_id="K-1", state=State.SENT))


@check()
def cost_is_exact_and_over_precise_cost_is_refused(store: Store) -> None:
    """Costs are kept and summed exactly; more than 6 decimal places raise ValidationError."""
    day = NOW - dt.timedelta(hours=1)
    costs = ["0.1", "0.2", "0.000001", "1234567.89"]
    add(store, *[outgoing(i, cost=Decimal(v), state=State.SENT, created_at=day)
                 for i, v in enumerate(costs)])
    rows = store.stats_by_day()
    expect_equal([r.cost for r in rows], [Decimal("1234568.190001")], "the exact sum of costs")
    expect_equal({m.cost for m in store.list_messages()}, {Decimal(v) for v in costs},
                 "stored costs")
    too_fine = outgoing(9, cost=Decimal("0.0000001"))
    with expect_raises(ValidationError, "a cost with 7 decimal places", match="decimal places"):
        store.add_messages([too_fine])
    expect(store.get(too_fine.id) is None, "a refused message must not be stored")


@check()
def naive_datetimes_are_refused(store: Store) -> None:
    """A naive datetime given to the store raises ValidationError naming the argument."""
    with expect_raises(ValidationError, "claim_batch with a naive now", match="now"):
        store.claim_batch("kolmeya", 10, dt.datetime(2024, 1, 1), "b1")
    with expect_raises(ValidationError, "a schedule with a naive next_run_at",
                       match="next_run_at"):
        store.add_schedule(schedule("s", dt.datetime(2024, 1, 1)))


@check()
def get_many_find_and_list(store: Store) -> None:
    """get_many keeps the given order; find_by_provider_id and list_messages filter right."""
    a, b, c = add(store, outgoing(1, campaign_id="x", provider_message_id="P1", state=State.SENT),
                  outgoing(2, campaign_id="x"), outgoing(3, phone="+5511900000000"))
    expect_equal([m.id for m in store.get_many([c.id, "nope", a.id])], [c.id, a.id],
                 "get_many: the existing ones, in the given order")
    expect_equal(store.find_by_provider_id("kolmeya", "P1"), a, "find_by_provider_id")
    expect(store.find_by_provider_id("other", "P1") is None,
           "a provider id belongs to one provider")
    expect_equal([m.id for m in store.list_messages()], [c.id, b.id, a.id],
                 "list_messages: newest first")
    expect_equal([m.id for m in store.list_messages(campaign_id="x")], [b.id, a.id],
                 "list_messages(campaign_id=...)")
    expect_equal([m.id for m in store.list_messages(state=State.SENT)], [a.id],
                 "list_messages(state=...)")
    expect_equal([m.id for m in store.list_messages(phone="+5511900000000")], [c.id],
                 "list_messages(phone=...)")
    expect_equal([m.id for m in store.list_messages(limit=1, offset=1)], [b.id],
                 "list_messages(limit, offset)")


@check()
def cancel_only_before_the_claim(store: Store) -> None:
    """cancel() works on a draft or an unclaimed outgoing message, never after the claim."""
    draft, claimed, waiting = add(store, outgoing(1, state=State.DRAFT), outgoing(2),
                                  outgoing(3))
    batch = store.claim_batch("kolmeya", 1, NOW, "b1")
    expect(batch is not None and batch.message_ids == (claimed.id,),
           f"the oldest outgoing message must be claimed, got {batch!r}")
    canceled = store.cancel(draft.id, "customer asked")
    expect(canceled is not None and canceled.state is State.CANCELED,
           f"a draft must be canceled, got {canceled!r}")
    if canceled is None:
        return
    expect_equal(canceled.error_text, "customer asked", "the reason becomes error_text")
    expect_equal(store.get(draft.id), canceled, "cancel() returns the message as stored")
    expect(store.cancel(claimed.id, "too late") is None, "a claimed message cannot be canceled")
    expect_equal(_state(store, claimed.id), State.OUTGOING, "the claimed message's state")
    expect(store.cancel(waiting.id, "in time") is not None,
           "an unclaimed outgoing message can be canceled")
    expect(store.cancel(waiting.id, "twice") is None, "a canceled message cannot be canceled")
    expect(store.claim_batch("kolmeya", 10, NOW, "b2") is None,
           "a canceled message must never be claimed")
    with expect_raises(NotFoundError, "canceling an unknown id", match="missing"):
        store.cancel("missing", "x")


def _state(store: Store, message_id: str) -> Any:
    message = store.get(message_id)
    return None if message is None else message.state


# -- dispatch --------------------------------------------------------------------------------
@check()
def claim_takes_due_outgoing_oldest_first(store: Store) -> None:
    """claim_batch takes due outgoing messages of the provider, oldest first, up to the limit."""
    old, mid, new = add(store, outgoing(1), outgoing(2), outgoing(3))
    add(store, outgoing(4, state=State.DRAFT), outgoing(5, provider="other"),
        outgoing(6, state=State.SENT), outgoing(7, scheduled_at=NOW + dt.timedelta(minutes=1)))
    due_now = add(store, outgoing(8, scheduled_at=NOW))[0]
    batch = store.claim_batch("kolmeya", 2, NOW, "b1")
    expect(batch is not None, "due outgoing messages must be claimed")
    if batch is None:
        return
    expect_equal(batch.message_ids, (old.id, mid.id), "the two oldest due messages")
    expect_equal((batch.status, batch.provider, batch.created_at), ("claimed", "kolmeya", NOW),
                 "the new batch")
    expect_equal(store.get_batch("b1"), batch, "get_batch gives the batch claim_batch returned")
    rest = store.claim_batch("kolmeya", 10, NOW, "b2")
    expect(rest is not None and rest.message_ids == (new.id, due_now.id),
           f"the rest of the due messages (scheduled_at == now is due), got {rest!r}")
    expect(store.claim_batch("kolmeya", 10, NOW, "b3") is None,
           "nothing due: claim_batch returns None")
    expect(store.get_batch("b3") is None, "an empty claim creates no batch")
    later = store.claim_batch("kolmeya", 10, NOW + dt.timedelta(minutes=1), "b4")
    expect(later is not None and len(later.message_ids) == 1,
           "a scheduled message is claimed once due")


@check()
def claim_with_a_used_batch_id_is_refused(store: Store) -> None:
    """A claim with a batch id already used raises StoreError and claims nothing."""
    add(store, outgoing(1), outgoing(2))
    store.claim_batch("kolmeya", 1, NOW, "b1")
    with expect_raises(StoreError, "claiming with a used batch id", match="b1"):
        store.claim_batch("kolmeya", 1, NOW, "b1")
    second = store.claim_batch("kolmeya", 1, NOW, "b2")
    expect(second is not None and len(second.message_ids) == 1,
           "the refused claim must have left the message in the queue")


@check()
def concurrent_claims_never_overlap(store: Store) -> None:
    """Four threads claiming at once never get the same message, and together get them all."""
    ids = {m.id for m in add(store, *[outgoing(i % 90) for i in range(120)])}

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
    expect_equal(len(flat), len(set(flat)), "claims must never overlap")
    expect_equal(set(flat), ids, "every message must be claimed")


@check()
def claim_batch_messages_is_the_claim_and_its_messages(store: Any) -> None:
    """claim_batch_messages claims as claim_batch does and returns the claimed messages."""
    added = [o.message for o in store.add_messages([outgoing(i) for i in range(5)])]
    later = outgoing(9, scheduled_at=NOW + dt.timedelta(hours=1))
    store.add_messages([later])
    claimed = store.claim_batch_messages("kolmeya", 3, NOW, "b1")
    expect(claimed is not None, "due messages must be claimed")
    if claimed is None:
        return
    batch, messages = claimed
    expect_equal(batch.message_ids, tuple(m.id for m in added[:3]), "the three oldest")
    expect_equal((batch.id, batch.status, batch.created_at), ("b1", "claimed", NOW), "the batch")
    expect_equal(messages, store.get_many(batch.message_ids),
                 "the messages as get_many gives them right after the claim")
    rest = store.claim_batch_messages("kolmeya", 10, NOW, "b2")
    expect(rest is not None and [m.id for m in rest[1]] == [m.id for m in added[3:]],
           "the second claim takes the rest")
    expect(store.claim_batch_messages("kolmeya", 10, NOW, "b3") is None,
           "nothing due: None")
    expect(store.get_batch("b3") is None, "an empty claim creates no batch")
    waiting = store.get(later.id)
    expect(waiting is not None and waiting.batch_id is None, "a message not due stays unclaimed")


@check()
def release_puts_messages_back_with_one_more_attempt(store: Store) -> None:
    """release_batch puts unsent messages back (due at retry_at) with attempts + 1."""
    a, b = add(store, outgoing(1), outgoing(2))
    store.claim_batch("kolmeya", 10, NOW, "b1")
    store.apply_status(StatusEvent(provider="kolmeya", state=State.SENT, message_id=b.id))
    retry = NOW + dt.timedelta(minutes=5)
    store.release_batch("b1", "gateway down", retry_at=retry)
    batch = store.get_batch("b1")
    expect(batch is not None and (batch.status, batch.error_text) == ("released", "gateway down"),
           f"the batch must be released with the error, got {batch!r}")
    again = store.get(a.id)
    expect(again is not None and (again.batch_id, again.attempts, again.scheduled_at) == (
        None, 1, retry), f"the unsent message goes back with one more attempt, got {again!r}")
    sent = store.get(b.id)
    expect(sent is not None and sent.batch_id == "b1", "a message already sent stays in its batch")
    expect(store.claim_batch("kolmeya", 10, NOW, "b2") is None,
           "a released message waits for retry_at")
    reclaimed = store.claim_batch("kolmeya", 10, retry, "b2")
    expect(reclaimed is not None and reclaimed.message_ids == (a.id,),
           "the released message is claimed again at retry_at")
    store.release_batch("b2", "again")
    again = store.get(a.id)
    expect(again is not None and again.attempts == 2, "each release counts an attempt")
    expect(store.claim_batch("kolmeya", 10, retry, "b3") is not None,
           "released without retry_at: due at once")


@check()
def results_are_written_forward_only(store: Store) -> None:
    """record_results never moves a message back, fills in provider ids and marks the batch."""
    early, ok, bad, silent, blocked = add(store, outgoing(1), outgoing(2), outgoing(3),
                                          outgoing(4), outgoing(5))
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
    expect_equal((e.state, e.provider_message_id), (State.DELIVERED, "K-1"),
                 "a delivered message stays delivered but gains its provider id")
    expect_equal((o.state, o.sent_at, o.provider_message_id, o.provider_request_id),
                 (State.SENT, later, "K-2", "R"), "an accepted message")
    expect_equal((b.state, b.error_code, b.error_text),
                 (State.REJECTED, "blacklist", "number is blacklisted"), "a rejected message")
    expect_equal((s.state, s.batch_id), (State.OUTGOING, "b1"),
                 "a message without a result stays outgoing and claimed")
    expect_equal((x.state, x.error_code, x.sent_at), (State.CANCELED, "blacklisted", None),
                 "a canceled result")
    batch = store.get_batch("b1")
    expect(batch is not None and batch.status == "ambiguous",
           "a batch with a claimed message still without a result must be ambiguous")
    expect(store.find_by_provider_id("kolmeya", "K-9") is None,
           "a result for a message outside the batch is ignored")
    # recording the same results again changes nothing
    store.record_results("b1", [SendResult(message_id=ok.id, state=State.SENT,
                                           provider_message_id="K-2")], later + later.resolution)
    expect_equal(store.get(ok.id), o, "recording the same result again changes nothing")


@check()
def a_message_without_a_result_leaves_the_batch_ambiguous(store: Store) -> None:
    """record_results marks the batch ``ambiguous`` (not ``done``) while a claimed message is
    still ``outgoing`` without a result, in the same call; settling the rest marks it
    ``done``."""
    first, second, third = add(store, outgoing(1), outgoing(2), outgoing(3))
    store.claim_batch("kolmeya", 10, NOW, "b1")
    store.record_results("b1", [SendResult(message_id=first.id, state=State.SENT,
                                           provider_message_id="K-1"),
                                SendResult(message_id=third.id, state=State.CANCELED,
                                           error_code="blacklisted")], NOW)
    batch = store.get_batch("b1")
    expect(batch is not None and batch.status == "ambiguous",
           f"a message without a result leaves the batch ambiguous, got {batch!r}")
    expect(batch is not None and bool(batch.error_text) and "1" in (batch.error_text or ""),
           f"the batch's error text says how many got no result, got {batch!r}")
    expect_equal([b.id for b in store.batches(status="ambiguous")], ["b1"],
                 "the batch is listed for reconciliation")
    store.record_results("b1", [SendResult(message_id=second.id, state=State.SENT,
                                           provider_message_id="K-2")], NOW)
    batch = store.get_batch("b1")
    expect(batch is not None and batch.status == "done",
           f"once every claimed message has a result the batch is done, got {batch!r}")
    expect(store.claim_batch("kolmeya", 10, NOW, "b2") is None,
           "a message of an ambiguous batch is never claimed again")


@check()
def messages_awaiting_a_status_come_in_pages(store: Store) -> None:
    """awaiting_status lists a provider's messages still ``sent`` since a moment, oldest sent
    first, a keyset page at a time; final, outgoing and other providers' messages are not
    listed."""
    first, second, third, delivered, other, waiting = add(
        store, outgoing(1), outgoing(2), outgoing(3), outgoing(4),
        outgoing(5, provider="twilio"), outgoing(6))
    moments: Dict[str, dt.datetime] = {}
    for n, message in enumerate((first, second, third, delivered, other), start=1):
        at = NOW + dt.timedelta(minutes=n)
        store.claim_batch(message.provider or "", 1, at, f"b{n}")
        store.record_results(f"b{n}", [SendResult(message_id=message.id, state=State.SENT,
                                                  provider_message_id=f"K-{n}")], at)
        moments[message.id] = at
    store.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                   message_id=delivered.id))
    until = NOW + dt.timedelta(minutes=10)
    expect_equal([m.id for m in store.awaiting_status("kolmeya", until)],
                 [first.id, second.id, third.id], "the provider's sent messages, oldest first")
    expect_equal([m.id for m in store.awaiting_status("kolmeya", moments[second.id])],
                 [first.id, second.id], "only those sent at or before the moment")
    page = store.awaiting_status("kolmeya", until, limit=2)
    expect_equal([m.id for m in page], [first.id, second.id], "at most limit")
    last = page[-1]
    expect(last.sent_at is not None, "a listed message has its sent_at")
    rest = store.awaiting_status("kolmeya", until, after=(last.sent_at or NOW, last.id))
    expect_equal([m.id for m in rest], [third.id], "the next page, after the keyset")
    expect_equal([m.id for m in store.awaiting_status("twilio", until)], [other.id],
                 "per provider")
    expect(waiting.id not in {m.id for m in store.awaiting_status("kolmeya", until)},
           "an outgoing message is not listed")


@check()
def a_result_with_a_taken_provider_id_is_refused(store: Store) -> None:
    """A result carrying another message's provider id moves the state, not the id, and
    leaves a conflict event."""
    first, second = add(store, outgoing(1), outgoing(2))
    store.claim_batch("kolmeya", 1, NOW, "b1")
    store.record_results("b1", [SendResult(message_id=first.id, state=State.SENT,
                                           provider_message_id="K-1")], NOW)
    store.claim_batch("kolmeya", 1, NOW, "b2")
    store.record_results("b2", [SendResult(message_id=second.id, state=State.SENT,
                                           provider_message_id="K-1")], NOW)
    stored = store.get(second.id)
    expect(stored is not None and stored.state is State.SENT, "the state must still move")
    expect(stored is not None and stored.provider_message_id is None,
           "a taken provider id must not be stored")
    expect_equal(store.find_by_provider_id("kolmeya", "K-1"), store.get(first.id),
                 "the provider id stays with its owner")
    history = store.history(second.id)
    expect(len(history) == 1 and history[0].kind == "conflict" and "K-1" in history[0].detail
           and first.id in history[0].detail,
           f"one conflict event naming the id and its owner, got {history!r}")


@check()
def ambiguous_batches_and_filters(store: Store) -> None:
    """Batches are listed by status and age, oldest first; unknown batch ids raise
    NotFoundError."""
    *_, last = add(store, outgoing(1), outgoing(2), outgoing(3))
    store.claim_batch("kolmeya", 1, NOW - dt.timedelta(hours=1), "old")
    store.claim_batch("kolmeya", 1, NOW, "new")
    store.claim_batch("kolmeya", 1, NOW, "done")
    store.record_results("done", [SendResult(message_id=last.id, state=State.SENT)], NOW)
    store.mark_batch_ambiguous("old", "read timeout")
    ambiguous = store.batches(status="ambiguous")
    expect_equal([(b.id, b.error_text, len(b.message_ids)) for b in ambiguous],
                 [("old", "read timeout", 1)], "batches(status='ambiguous')")
    expect_equal([b.id for b in store.batches(status="claimed")], ["new"],
                 "batches(status='claimed')")
    expect_equal([b.id for b in store.batches(older_than=NOW)], ["old"],
                 "batches(older_than=...)")
    expect_equal([b.id for b in store.batches()], ["old", "done", "new"],
                 "batches(): oldest first")
    with expect_raises(NotFoundError, "mark_batch_ambiguous of an unknown batch", match="nope"):
        store.mark_batch_ambiguous("nope", "x")
    with expect_raises(NotFoundError, "release_batch of an unknown batch", match="nope"):
        store.release_batch("nope", "x")
    with expect_raises(NotFoundError, "record_results of an unknown batch", match="nope"):
        store.record_results("nope", [], NOW)


@check()
def batch_records_the_gateway_request_id(store: Store) -> None:
    """record_results keeps the gateway's request id on the batch."""
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    (added,) = store.add_messages([Message(phone="+5511987654321", body="Oi",
                                           state=State.OUTGOING, provider="loopback")])
    batch = store.claim_batch("loopback", 10, now, "batch-req-id")
    expect(batch is not None, "the message must be claimed")
    if batch is None:
        return
    store.record_results(batch.id, [SendResult(message_id=added.message.id, state=State.SENT,
                                               provider_message_id="pm-1",
                                               provider_request_id="req-uuid")], now)
    stored = store.get_batch(batch.id)
    expect(stored is not None and stored.provider_request_id == "req-uuid",
           f"the batch must keep the request id, got {stored!r}")
