"""Store checks of routing: :meth:`~smskit.store.base.Store.requeue_messages` (messages taken
out of a claimed batch, released or moved to another provider, by compare-and-set) and, in the
``stats`` part, :meth:`~smskit.store.analytics.StatsStore.reroute_counts`.

A store that keeps the protocol's default ``requeue_messages`` (it requeues nothing, which is
safe: failover then waits for the provider) has these checks skipped, not failed.
"""

from __future__ import annotations

import datetime as dt
import inspect
from decimal import Decimal
from typing import Any, List

from smskit.errors import NotFoundError
from smskit.models import State, StatusEvent
from smskit.store.base import KIND_REROUTED, Requeue, Store
from smskit.testing.stores.runner import (
    CheckSkipped,
    check,
    expect,
    expect_equal,
    expect_raises,
)
from smskit.testing.stores.samples import NOW, add, outgoing, run_threads

__all__: List[str] = []

LATER = NOW + dt.timedelta(minutes=5)


def _needs_requeue(store: Any) -> None:
    if inspect.getattr_static(type(store), "requeue_messages", None) is \
            inspect.getattr_static(Store, "requeue_messages"):
        raise CheckSkipped("the store keeps the default requeue_messages (it moves nothing)")


@check()
def requeue_releases_and_moves_only_what_is_still_in_the_batch(store: Any) -> None:
    """requeue_messages takes outgoing messages of the batch back to the queue (under another
    provider for a move, with its cost and a ``rerouted`` event) and leaves the rest alone."""
    _needs_requeue(store)
    a, b, c, d = add(store, outgoing(1), outgoing(2), outgoing(3), outgoing(4, cost=Decimal(
        "0.08")))
    outsider, = add(store, outgoing(5))
    store.claim_batch("kolmeya", 4, NOW, "b1")
    store.apply_status(StatusEvent(provider="kolmeya", state=State.SENT, message_id=c.id))
    done = store.requeue_messages("b1", [
        Requeue(message_id=a.id),                                       # plain release
        Requeue(message_id=c.id, provider="twilio"),                    # sent meanwhile
        Requeue(message_id=outsider.id, provider="twilio"),             # not in the batch
        Requeue(message_id=d.id, provider="twilio", cost=Decimal("0.0505")),
    ], reason="circuit open", now=NOW, retry_at=LATER)
    expect_equal(done, [a.id, d.id], "only the outgoing members of the batch are requeued")
    released, sent, moved, left = store.get_many([a.id, c.id, d.id, outsider.id])
    expect_equal((released.provider, released.batch_id, released.attempts,
                  released.scheduled_at), ("kolmeya", None, 0, LATER),
                 "a plain release: same provider, out of the batch, due at retry_at, no attempt")
    expect_equal((moved.provider, moved.batch_id, moved.cost, moved.state),
                 ("twilio", None, Decimal("0.0505"), State.OUTGOING), "a move")
    expect_equal((sent.provider, sent.batch_id), ("kolmeya", "b1"),
                 "a message sent meanwhile stays in its batch, with its provider")
    expect_equal((left.provider, left.batch_id), ("kolmeya", None), "an outsider is untouched")
    batch = store.get_batch("b1")
    expect(batch is not None and batch.status == "claimed" and set(batch.message_ids) == {
        b.id, c.id}, f"the batch keeps its status and the rest, got {batch!r}")
    moves = [e for e in store.history(d.id) if e.kind == KIND_REROUTED]
    expect(len(moves) == 1 and moves[0].provider == "twilio" and moves[0].created_at == NOW
           and moves[0].detail == "from kolmeya to twilio: circuit open",
           f"a move is in the message's history, got {moves!r}")
    expect(not [e for e in store.history(a.id) if e.kind == KIND_REROUTED],
           "a plain release writes no history")
    again = store.claim_batch("kolmeya", 10, NOW, "b2")
    expect(again is not None and again.message_ids == (outsider.id,),
           "the released message waits for retry_at")
    claimed = store.claim_batch("twilio", 10, LATER, "b3")
    expect(claimed is not None and claimed.message_ids == (d.id,),
           "the moved message is claimed under its new provider")
    with expect_raises(NotFoundError, "an unknown batch"):
        store.requeue_messages("nope", [Requeue(message_id=b.id)], reason="x", now=NOW)


@check()
def concurrent_requeues_move_a_message_once(store: Any) -> None:
    """Two callers requeueing the same messages (two workers) move each one once."""
    _needs_requeue(store)
    added = add(store, *[outgoing(i) for i in range(20)])
    store.claim_batch("kolmeya", 20, NOW, "b1")
    items = [Requeue(message_id=m.id, provider="twilio") for m in added]

    def move(i: int) -> List[str]:
        moved: List[str] = store.requeue_messages("b1", items, reason=f"worker {i}", now=NOW)
        return moved

    results = run_threads(4, move)
    flat = [i for part in results for i in part]
    expect_equal(sorted(flat), sorted(m.id for m in added), "each message is moved once")
    events = [e for m in added for e in store.history(m.id) if e.kind == KIND_REROUTED]
    expect_equal(len(events), len(added), "one rerouted event per message")


@check("stats")
def reroute_counts_by_pair_and_range(store: Any) -> None:
    """reroute_counts counts the moves per (from, to) pair, in a date range or all time."""
    _needs_requeue(store)
    added = add(store, *[outgoing(i) for i in range(5)])
    store.claim_batch("kolmeya", 5, NOW, "b1")
    store.requeue_messages("b1", [Requeue(message_id=m.id, provider="twilio")
                                  for m in added[:3]], reason="circuit open", now=NOW)
    store.claim_batch("twilio", 5, NOW + dt.timedelta(hours=1), "b2")
    store.requeue_messages("b2", [Requeue(message_id=added[0].id, provider="kolmeya")],
                           reason="circuit open", now=NOW)
    expect_equal(store.reroute_counts(), {("kolmeya", "twilio"): 3, ("twilio", "kolmeya"): 1},
                 "all time")
    expect_equal(store.reroute_counts(NOW + dt.timedelta(seconds=1)), {}, "moves are at now")
    expect_equal(store.reroute_counts(NOW, NOW + dt.timedelta(seconds=1)),
                 {("kolmeya", "twilio"): 3, ("twilio", "kolmeya"): 1}, "in [start, end)")
    expect_equal(store.reroute_counts(None, NOW), {}, "end is excluded")
