"""Store checks of the ``outreach`` part (:class:`~smskit.store.outreach.OutreachStore`):
contacts, campaigns and their compare-and-sets, the audited blacklist with its gateway sync
queue, and key/value state."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, List

from smskit.errors import NotFoundError, StoreError, ValidationError
from smskit.models import InboundMessage, SendResult, State, StatusEvent
from smskit.store.outreach import Campaign, Contact
from smskit.testing.stores.runner import check, expect, expect_equal, expect_raises
from smskit.testing.stores.samples import NOW, add, outgoing, run_threads

__all__: List[str] = []

DAY = dt.timedelta(days=1)
P1, P2, P3, P4 = "+5511910000001", "+5511910000002", "+5511910000003", "+5511910000004"


def contact(phone: str, **fields: Any) -> Contact:
    """A contact created a day before :data:`NOW`."""
    fields.setdefault("created_at", NOW - DAY)
    fields.setdefault("updated_at", NOW - DAY)
    return Contact(phone=phone, **fields)


def campaign(cid: str, status: str = "draft", **fields: Any) -> Campaign:
    """A campaign ``cid`` sending "Oi {{ name }}" to the ``vip`` tag."""
    fields.setdefault("created_at", NOW - DAY)
    fields.setdefault("updated_at", NOW - DAY)
    return Campaign(id=cid, name=f"campanha {cid}", template="Oi {{ name }}",
                    audience={"type": "tags", "tags": ["vip"]}, status=status, **fields)


# -- contacts ---------------------------------------------------------------------------------
@check("outreach")
def contacts_are_saved_replaced_and_listed(store: Any) -> None:
    """save_contacts inserts or replaces by phone (keeping created_at); contacts list by
    phone, by tag, in pages."""
    ana = contact(P2, name="Ana", tags=("vip", "sp"), variables={"plano": "ouro", "n": 1})
    bia = contact(P1, name="Bia", tags=("sp",), dnd_window="20:00-09:00", dnd_days=("sun",))
    expect_equal(store.save_contacts([ana, bia]), (2, 0), "(created, updated) of new contacts")
    expect_equal(store.get_contacts([P1, P2, P3]), {P1: bia, P2: ana},
                 "get_contacts: the stored ones, as saved")
    renamed = contact(P2, name="Ana Maria", tags=("novo",), created_at=NOW, updated_at=NOW)
    expect_equal(store.save_contacts([renamed, contact(P3)]), (1, 1),
                 "(created, updated) of a replace and a new contact")
    stored = store.get_contacts([P2])[P2]
    expect_equal((stored.name, stored.tags, stored.variables, stored.created_at,
                  stored.updated_at), ("Ana Maria", ("novo",), {}, ana.created_at, NOW),
                 "a replaced contact takes the new fields but keeps its created_at")
    expect_equal([x.phone for x in store.list_contacts()], [P1, P2, P3],
                 "list_contacts(): by phone")
    expect_equal([x.phone for x in store.list_contacts(tag="sp")], [P1],
                 "list_contacts(tag=...): a replaced contact lost its old tags")
    expect_equal([x.phone for x in store.list_contacts(limit=1, offset=1)], [P2],
                 "list_contacts(limit, offset)")
    expect_equal(store.save_contacts([]), (0, 0), "saving nothing")


@check("outreach")
def contacts_by_tags_pages_by_phone(store: Any) -> None:
    """contacts_by_tags takes any or all of the tags, by phone, in keyset pages."""
    store.save_contacts([contact(P1, tags=("a",)), contact(P2, tags=("a", "b")),
                         contact(P3, tags=("b",)), contact(P4, tags=("b", "a"))])
    expect_equal([x.phone for x in store.contacts_by_tags(["a", "b"])], [P1, P2, P3, P4],
                 "match='any'")
    expect_equal([x.phone for x in store.contacts_by_tags(["a", "b"], match="all")], [P2, P4],
                 "match='all'")
    page = store.contacts_by_tags(["a", "b"], limit=2)
    expect_equal([x.phone for x in page], [P1, P2], "the first page")
    expect_equal([x.phone for x in store.contacts_by_tags(["a", "b"], after=page[-1].phone)],
                 [P3, P4], "the next page starts after the last phone")
    expect_equal(store.contacts_by_tags([]), [], "no tags, no contacts")
    expect_equal(store.contacts_by_tags(["zzz"]), [], "an unknown tag")
    with expect_raises(ValidationError, "an unknown match", match="match"):
        store.contacts_by_tags(["a"], match="some")


@check("outreach")
def dnd_contacts_only_where_a_rule_can_apply(store: Any) -> None:
    """dnd_contacts gives the contacts among the phones whose do-not-disturb can still apply."""
    store.save_contacts([contact(P1, dnd_window="20:00-09:00"),
                         contact(P2, dnd_days=("sat", "sun")),
                         contact(P3, dnd_until=NOW + DAY),
                         contact(P4, dnd_until=NOW - DAY),
                         contact("+5511910000005", name="sem regra")])
    found = store.dnd_contacts([P1, P2, P3, P4, "+5511910000005", "+5511910000009"], NOW)
    expect_equal(sorted(found), [P1, P2, P3],
                 "a window, days or a future dnd_until apply; a past one or none do not")
    expect_equal(found[P3].dnd_until, NOW + DAY, "the contact comes back whole")
    expect_equal(store.dnd_contacts([P1], NOW + 2 * DAY), {P1: found[P1]},
                 "a window applies at any time")
    with expect_raises(ValidationError, "a naive now", match="now"):
        store.dnd_contacts([P1], dt.datetime(2024, 5, 10))


# -- campaigns --------------------------------------------------------------------------------
@check("outreach")
def campaigns_round_trip_and_listing(store: Any) -> None:
    """Campaigns come back equal, ids are unique, and they list oldest first by status."""
    first = campaign("c1", variables={"loja": "Recife"}, provider="kolmeya",
                     scheduled_at=NOW + DAY, job_ids=(7, 8))
    expect_equal(store.add_campaign(first), first, "add_campaign returns the campaign")
    expect_equal(store.get_campaign("c1"), first, "get_campaign")
    expect(store.get_campaign("nope") is None, "an unknown campaign")
    store.add_campaign(campaign("c0", status="running", created_at=NOW - 2 * DAY))
    store.add_campaign(campaign("c2", status="paused", created_at=NOW))
    with expect_raises(StoreError, "adding a campaign whose id is taken", match="c1"):
        store.add_campaign(campaign("c1"))
    expect_equal([x.id for x in store.list_campaigns()], ["c0", "c1", "c2"],
                 "list_campaigns(): oldest first")
    expect_equal([x.id for x in store.list_campaigns(statuses=["running", "paused"])],
                 ["c0", "c2"], "list_campaigns(statuses=...)")


@check("outreach")
def set_campaign_status_is_compare_and_set(store: Any) -> None:
    """set_campaign_status moves only from an expected status; running sets started_at once,
    done sets finished_at; an unknown id raises NotFoundError."""
    store.add_campaign(campaign("c1"))
    later = NOW + dt.timedelta(hours=1)
    running = store.set_campaign_status("c1", "running", expected=["draft"], now=NOW)
    expect(running is not None and (running.status, running.started_at) == ("running", NOW),
           f"draft -> running, started now, got {running!r}")
    expect(store.set_campaign_status("c1", "running", expected=["draft"], now=later) is None,
           "a status not in expected: None")
    paused = store.set_campaign_status("c1", "paused", expected=["running"], now=later,
                                       error="gateway down")
    expect(paused is not None and (paused.status, paused.last_error) == ("paused", "gateway down"),
           f"running -> paused with an error, got {paused!r}")
    again = store.set_campaign_status("c1", "running", expected=["paused"], now=later)
    expect(again is not None and again.started_at == NOW, "started_at is set only once")
    done = store.set_campaign_status("c1", "done", expected=["running"], now=later)
    expect(done is not None and done.finished_at == later, "done sets finished_at")
    expect_equal(store.get_campaign("c1"), done, "the change is stored")
    with expect_raises(NotFoundError, "an unknown campaign", match="nope"):
        store.set_campaign_status("nope", "running", expected=["draft"], now=NOW)
    with expect_raises(ValidationError, "an unknown status", match="flying"):
        store.set_campaign_status("c1", "flying", expected=["done"], now=NOW)


@check("outreach")
def advance_campaign_is_compare_and_set_while_running(store: Any) -> None:
    """advance_campaign moves the cursor only from the expected one, only while running,
    and adds up skipped rows."""
    store.add_campaign(campaign("c1"))
    expect(not store.advance_campaign("c1", expected_cursor=None, new_cursor="10",
                                      materialised=False, skipped=0, now=NOW),
           "a draft campaign does not advance")
    store.set_campaign_status("c1", "running", expected=["draft"], now=NOW)
    expect(store.advance_campaign("c1", expected_cursor=None, new_cursor="10",
                                  materialised=False, skipped=2, now=NOW),
           "the expected cursor wins")
    expect(not store.advance_campaign("c1", expected_cursor=None, new_cursor="20",
                                      materialised=False, skipped=5, now=NOW),
           "the same chunk twice loses")
    expect(store.advance_campaign("c1", expected_cursor="10", new_cursor="20",
                                  materialised=True, skipped=1, now=NOW), "the next chunk wins")
    got = store.get_campaign("c1")
    expect(got is not None and (got.cursor, got.materialised, got.skipped) == ("20", True, 3),
           f"cursor, materialised and skipped are stored, got {got!r}")
    store.set_campaign_status("c1", "paused", expected=["running"], now=NOW)
    expect(not store.advance_campaign("c1", expected_cursor="20", new_cursor="30",
                                      materialised=True, skipped=0, now=NOW),
           "a paused campaign does not advance")


@check("outreach")
def concurrent_campaign_advances_have_one_winner(store: Any) -> None:
    """Six workers advancing the same chunk at once: exactly one wins."""
    store.add_campaign(campaign("c1", status="running"))
    wins = run_threads(6, lambda i: store.advance_campaign(
        "c1", expected_cursor=None, new_cursor=f"w{i}", materialised=False, skipped=1, now=NOW))
    expect_equal(wins.count(True), 1, "winners")
    got = store.get_campaign("c1")
    expect(got is not None and True in wins and got.cursor == f"w{wins.index(True)}"
           and got.skipped == 1, f"the winner's cursor, counted once, got {got!r}")


@check("outreach")
def update_campaign_records_jobs_and_errors(store: Any) -> None:
    """update_campaign replaces job ids and sets or clears the error note."""
    store.add_campaign(campaign("c1", job_ids=(1,)))
    later = NOW + dt.timedelta(minutes=5)
    changed = store.update_campaign("c1", job_ids=[42, 43], last_error="job 1 finished", now=later)
    expect_equal((changed.job_ids, changed.last_error, changed.updated_at),
                 ((42, 43), "job 1 finished", later), "job ids replaced and the error noted")
    expect_equal(store.get_campaign("c1"), changed, "the change is stored")
    kept = store.update_campaign("c1", now=later)
    expect_equal((kept.job_ids, kept.last_error), ((42, 43), "job 1 finished"),
                 "nothing given, nothing changed")
    cleared = store.update_campaign("c1", clear_error=True, now=later)
    expect(cleared.last_error is None, "clear_error removes the note")
    with expect_raises(NotFoundError, "an unknown campaign", match="nope"):
        store.update_campaign("nope", job_ids=[1], now=NOW)


@check("outreach")
def claim_leaves_held_campaigns_alone(store: Any) -> None:
    """claim_batch never takes messages of a paused or canceled campaign; resuming
    releases them."""
    for cid, status in (("run", "running"), ("pause", "paused"), ("cancel", "canceled")):
        store.add_campaign(campaign(cid, status=status))
    running, paused, held, free = add(store, outgoing(1, campaign_id="run"),
                                      outgoing(2, campaign_id="pause"),
                                      outgoing(3, campaign_id="cancel"), outgoing(4))
    batch = store.claim_batch("kolmeya", 10, NOW, "b1")
    expect(batch is not None and set(batch.message_ids) == {running.id, free.id},
           f"only messages of running or no campaigns are claimed, got {batch!r}")
    store.set_campaign_status("pause", "running", expected=["paused"], now=NOW)
    resumed = store.claim_batch("kolmeya", 10, NOW, "b2")
    expect(resumed is not None and resumed.message_ids == (paused.id,),
           "a resumed campaign's messages are claimed")
    expect(store.claim_batch("kolmeya", 10, NOW, "b3") is None,
           "a canceled campaign's messages are never claimed")
    waiting = store.get(held.id)
    expect(waiting is not None and waiting.state is State.OUTGOING,
           "holding a campaign leaves its messages as they were")


@check("outreach")
def cancel_campaign_messages_spares_claimed_ones(store: Any) -> None:
    """cancel_campaign_messages cancels the campaign's unclaimed messages only."""
    store.add_campaign(campaign("c1", status="running"))
    claimed, waiting, draft, other = add(
        store, outgoing(1, campaign_id="c1"), outgoing(2, campaign_id="c1"),
        outgoing(3, campaign_id="c1", state=State.DRAFT), outgoing(4, campaign_id="c2"))
    store.claim_batch("kolmeya", 1, NOW, "b1")
    expect_equal(store.cancel_campaign_messages("c1", "campaign canceled", NOW), 2,
                 "messages canceled")
    states = {m.id: m.state for m in store.get_many([claimed.id, waiting.id, draft.id,
                                                     other.id])}
    expect_equal(states, {claimed.id: State.OUTGOING, waiting.id: State.CANCELED,
                          draft.id: State.CANCELED, other.id: State.OUTGOING},
                 "claimed and other campaigns' messages are spared")
    canceled = store.get(waiting.id)
    expect(canceled is not None and canceled.error_text == "campaign canceled",
           "the reason is kept")
    expect_equal(store.cancel_campaign_messages("c1", "again", NOW), 0, "nothing left to cancel")


@check("outreach")
def campaign_totals_count_states_replies_optouts_and_cost(store: Any) -> None:
    """campaign_totals counts a campaign's messages by state, its replies and opt-outs, and
    sums the cost of the accepted ones exactly."""
    store.add_campaign(campaign("c1", status="running"))
    c08 = Decimal("0.08")
    sent, delivered, error, rejected = add(
        store, *[outgoing(i, campaign_id="c1", cost=c08) for i in range(1, 5)])
    add(store, outgoing(5, campaign_id="c1", cost=c08, scheduled_at=NOW + DAY),
        outgoing(6, campaign_id="c1", state=State.CANCELED, cost=c08),
        outgoing(7, campaign_id="other", state=State.SENT, cost=c08))
    store.claim_batch("kolmeya", 4, NOW, "b1")
    store.record_results("b1", [
        SendResult(message_id=m.id, state=State.SENT, provider_message_id=f"K{i}")
        for i, m in enumerate((sent, delivered, error))
    ] + [SendResult(message_id=rejected.id, state=State.REJECTED, error_code="invalid")], NOW)
    for m, state in ((delivered, State.DELIVERED), (error, State.ERROR)):
        store.apply_status(StatusEvent(provider="kolmeya", state=state, message_id=m.id))
    for i, m in enumerate((sent, delivered, sent)):
        store.record_inbound(InboundMessage(provider="kolmeya", provider_reply_id=f"r{i}",
                                            phone=m.phone, body="SAIR",
                                            in_reply_to_message_id=m.id))
    store.blacklist_change(sent.phone, "add", reason="SAIR", source="inbound:kolmeya",
                           campaign_id="c1", now=NOW)
    totals = store.campaign_totals(["c1", "unknown"])
    t = totals["c1"]
    expect_equal((t.total, t.queued, t.sent, t.delivered, t.failed, t.rejected, t.canceled),
                 (6, 1, 3, 1, 1, 1, 1),
                 "(total, queued, sent, delivered, failed, rejected, canceled)")
    expect_equal((t.replies, t.optouts), (3, 1), "(replies, optouts)")
    expect_equal(t.cost, Decimal("0.24"), "the cost of the three accepted messages")
    expect_equal(totals["unknown"].total, 0, "an unknown campaign has empty totals")


@check("outreach")
def campaign_totals_sum_the_cost_of_accepted_messages(store: Any) -> None:
    """campaign_totals sums the cost of accepted messages only, exactly."""
    store.add_campaign(campaign("c1"))
    costs = {State.SENT: "0.1", State.DELIVERED: "0.2", State.ERROR: "0.000001",
             State.EXPIRED: "0.3", State.REJECTED: "5", State.CANCELED: "7",
             State.OUTGOING: "9"}
    add(store, *[outgoing(i, campaign_id="c1", state=state, cost=Decimal(cost))
                 for i, (state, cost) in enumerate(costs.items())])
    totals = store.campaign_totals(["c1"])["c1"]
    expect_equal(totals.cost, Decimal("0.600001"),
                 "the exact sum over sent, delivered, error and expired")
    expect_equal((totals.sent, totals.failed), (4, 2), "(sent, failed)")


# -- the audited blacklist and its sync queue ---------------------------------------------------
@check("outreach")
def blacklist_change_audits_and_queues_at_once(store: Any) -> None:
    """blacklist_change changes the list, audits it and queues one sync item per provider;
    a change that changes nothing writes nothing and returns False."""
    expect(store.blacklist_change(P1, "add", reason="pediu", source="cli:ana",
                                  sync_to=["kolmeya", "outro", "kolmeya"], now=NOW),
           "adding a new number")
    expect(store.is_blacklisted(P1), "the number is on the list")
    expect(not store.blacklist_change(P1, "add", reason="de novo", source="api",
                                      sync_to=["kolmeya"], now=NOW),
           "adding a listed number changes nothing")
    later = NOW + dt.timedelta(minutes=1)
    expect(store.blacklist_change(P1, "remove", reason="engano", source="api",
                                  sync_to=["kolmeya"], campaign_id="c9", now=later),
           "removing a listed number")
    expect(not store.blacklist_change(P1, "remove", reason="x", source="api",
                                      sync_to=["kolmeya"], now=later),
           "removing an unlisted number changes nothing")
    expect(not store.is_blacklisted(P1), "the number is off the list")
    audit = store.blacklist_audit()
    expect_equal([(a.phone, a.action, a.source, a.reason, a.campaign_id, a.created_at)
                  for a in audit],
                 [(P1, "add", "cli:ana", "pediu", None, NOW),
                  (P1, "remove", "api", "engano", "c9", later)],
                 "one audit line per change, oldest first")
    expect_equal(store.blacklist_audit(P2), [], "blacklist_audit of another number")
    expect_equal([a.action for a in store.blacklist_audit(P1, limit=1)], ["remove"],
                 "blacklist_audit(limit=1): the last line")
    expect_equal(store.blacklist_sync_backlog(), {"kolmeya": 2, "outro": 1},
                 "one pending item per provider named, once each")
    items = store.pending_blacklist_sync("kolmeya", later)
    expect_equal([(i.phone, i.action, i.status, i.attempts) for i in items],
                 [(P1, "add", "pending", 0), (P1, "remove", "pending", 0)],
                 "pending items in queue order")
    with expect_raises(ValidationError, "an unknown action", match="block"):
        store.blacklist_change(P1, "block", reason="", source="api", now=NOW)


@check("outreach")
def blacklist_sync_items_finish_or_retry(store: Any) -> None:
    """Sync items end acknowledged, refused or skipped, or wait for a retry, counting
    attempts; finished ones are not pending again."""
    for phone in (P1, P2, P3):
        store.blacklist_change(phone, "add", reason="", source="api", sync_to=["kolmeya"],
                               now=NOW)
    a, b, c = store.pending_blacklist_sync("kolmeya", NOW)
    retry_at = NOW + dt.timedelta(seconds=30)
    store.retry_blacklist_sync([a.id], "503 unavailable", retry_at)
    expect_equal([i.id for i in store.pending_blacklist_sync("kolmeya", NOW)], [b.id, c.id],
                 "an item waiting for a retry is not due before retry_at")
    due = store.pending_blacklist_sync("kolmeya", retry_at)
    expect_equal([(i.id, i.attempts, i.last_error, i.next_attempt_at) for i in due[:1]],
                 [(a.id, 1, "503 unavailable", retry_at)], "the retried item at retry_at")
    store.finish_blacklist_sync([a.id, b.id], "acknowledged", retry_at)
    store.finish_blacklist_sync([c.id], "refused", retry_at, error="not a Brazilian number")
    store.finish_blacklist_sync([a.id], "refused", retry_at)
    expect_equal(store.pending_blacklist_sync("kolmeya", retry_at), [], "nothing pending")
    expect_equal(store.blacklist_sync_backlog(), {}, "no backlog")
    by_id = {i.id: i for i in store.blacklist_sync_items()}
    expect_equal((by_id[a.id].status, by_id[a.id].attempts, by_id[a.id].acknowledged_at),
                 ("acknowledged", 2, retry_at), "a finished item is not finished again")
    expect_equal((by_id[c.id].status, by_id[c.id].last_error),
                 ("refused", "not a Brazilian number"), "a refused item keeps the reason")
    expect_equal([i.id for i in store.blacklist_sync_items()], [c.id, b.id, a.id],
                 "blacklist_sync_items(): newest first")
    expect_equal([i.id for i in store.blacklist_sync_items(status="refused")], [c.id],
                 "blacklist_sync_items(status=...)")
    with expect_raises(ValidationError, "finishing as pending", match="pending"):
        store.finish_blacklist_sync([b.id], "pending", retry_at)


# -- key/value state -------------------------------------------------------------------------
@check("outreach")
def key_value_state_is_shared(store: Any) -> None:
    """set_state writes or replaces a value; list_state finds keys by prefix."""
    expect(store.get_state("balance:kolmeya") is None, "an unset key is None")
    store.set_state("balance:kolmeya", '{"balance": "10.5"}')
    store.set_state("balance:kolmeya", '{"balance": "9.5"}')
    store.set_state("balance:outro", "1")
    store.set_state("other", "x")
    expect_equal(store.get_state("balance:kolmeya"), '{"balance": "9.5"}',
                 "the last value written")
    expect_equal(store.list_state("balance:"),
                 {"balance:kolmeya": '{"balance": "9.5"}', "balance:outro": "1"},
                 "list_state(prefix)")

