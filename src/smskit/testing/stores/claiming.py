"""Store checks of :class:`~smskit.store.base.ClaimingStore`: a batch opened in the
transaction that inserts its messages (what a bulk send does with each chunk it dispatches
at once). These are the ``claiming`` part: a store without ``add_messages_claimed`` has them
skipped, not failed (the bulk send then inserts and claims in two steps).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, List

from smskit.errors import StoreError
from smskit.models import SendResult, State
from smskit.store.base import ClaimingStore, InsertClaim
from smskit.testing.stores.outreach import campaign
from smskit.testing.stores.runner import check, expect, expect_equal, expect_raises
from smskit.testing.stores.samples import NOW, outgoing, run_threads

__all__: List[str] = []


def _claim(batch_id: str, limit: int = 10, now: dt.datetime = NOW) -> InsertClaim:
    return InsertClaim(batch_id=batch_id, provider="kolmeya", now=now, limit=limit)


@check("claiming")
def inserting_claimed_opens_the_batch_a_claim_would(store: Any) -> None:
    """add_messages_claimed stores every message and opens a batch of the first ``limit`` a
    claim at that moment would take, stamped as a claim stamps them."""
    claiming: ClaimingStore = store
    later = outgoing(2, scheduled_at=NOW + dt.timedelta(hours=1))
    elsewhere = outgoing(3, provider="twilio")
    draft = outgoing(4, state=State.DRAFT)
    due = [outgoing(1), outgoing(5), outgoing(6), outgoing(7)]
    given = [due[0], later, elsewhere, draft, *due[1:]]
    added = claiming.add_messages_claimed(given, _claim("b1", limit=3))

    expect_equal([o.created for o in added.outcomes], [True] * len(given),
                 "every message is inserted")
    expect(added.claimed is not None, "claimable messages open a batch")
    if added.claimed is None:
        return
    batch, messages = added.claimed
    expect_equal(batch.message_ids, tuple(m.id for m in due[:3]),
                 "the first three claimable ones, in the call's order")
    expect_equal((batch.id, batch.provider, batch.status, batch.created_at),
                 ("b1", "kolmeya", "claimed", NOW), "the batch")
    expect_equal(messages, store.get_many(batch.message_ids),
                 "the claimed messages as stored")
    expect(all(m.batch_id == "b1" and m.updated_at == NOW for m in messages),
           "stamped as a claim stamps them")
    stored = store.get_batch("b1")
    expect(stored is not None and set(stored.message_ids) == set(batch.message_ids),
           "the batch is stored with its messages")
    for left in (later, elsewhere, draft, due[3]):
        current = store.get(left.id)
        expect(current is not None and current.batch_id is None,
               f"{left.id} is not claimable here or past the limit: left unclaimed")
    rest = store.claim_batch("kolmeya", 10, NOW, "b2")
    expect(rest is not None and rest.message_ids == (due[3].id,),
           "a later claim takes the one past the limit, and nothing claimed already")
    store.record_results("b1", [SendResult(message_id=m.id, state=State.SENT,
                                           provider_message_id=f"k-{m.id}") for m in messages],
                         NOW)
    done = store.get_batch("b1")
    expect(done is not None and done.status == "done", "results settle the opened batch")
    expect(all(m.state is State.SENT for m in store.get_many(batch.message_ids)),
           "and its messages")


@check("claiming")
def inserting_claimed_again_opens_no_batch(store: Any) -> None:
    """A repeated call (the same idempotency keys) inserts nothing and opens no batch; a
    batch id already used is refused and nothing of the call is stored."""
    claiming: ClaimingStore = store
    first = [outgoing(i, idempotency_key=f"k{i}") for i in range(3)]
    opened = claiming.add_messages_claimed(first, _claim("b1"))
    expect(opened.claimed is not None, "the first call opens its batch")
    again = claiming.add_messages_claimed(
        [outgoing(i, idempotency_key=f"k{i}") for i in range(3)], _claim("b2"))
    expect_equal([o.created for o in again.outcomes], [False] * 3, "nothing inserted twice")
    expect_equal([o.message.id for o in again.outcomes], [m.id for m in first],
                 "the stored messages are returned")
    expect(again.claimed is None and store.get_batch("b2") is None, "no (empty) batch opened")
    fresh = outgoing(9)
    with expect_raises(StoreError, "a used batch id"):
        claiming.add_messages_claimed([fresh], _claim("b1"))
    expect(store.get(fresh.id) is None, "nothing of a refused call is stored")


@check("claiming", "outreach")
def inserting_claimed_leaves_held_campaigns_alone(store: Any) -> None:
    """A message of a paused campaign is inserted but not claimed."""
    claiming: ClaimingStore = store
    store.add_campaign(campaign("c1", status="paused"))
    held, free = outgoing(1, campaign_id="c1"), outgoing(2, campaign_id="c2")
    added = claiming.add_messages_claimed([held, free], _claim("b1"))
    expect(added.claimed is not None and added.claimed[0].message_ids == (free.id,),
           "only the message of a campaign that is not held is claimed")


@check("claiming")
def concurrent_claimed_inserts_claim_each_message_once(store: Any) -> None:
    """Four calls inserting the same keyed messages at once: each message is stored once and
    belongs to at most one batch, and no batch is left without messages."""
    claiming: ClaimingStore = store

    def insert(i: int) -> Any:
        messages = [outgoing(n, idempotency_key=f"same-{n}") for n in range(20)]
        return claiming.add_messages_claimed(messages, _claim(f"b{i}", limit=20))

    results = run_threads(4, insert)
    ids = [m.id for r in results if r.claimed is not None for m in r.claimed[1]]
    expect_equal(len(ids), 20, "every message is claimed by one call")
    expect_equal(len(set(ids)), 20, "and by one only")
    for i in range(4):
        batch = store.get_batch(f"b{i}")
        expect(batch is None or batch.message_ids, f"batch b{i} is not left empty")
