"""Store checks: status events and history, replies, the blacklist, schedules and the per-day
stats (the ``store`` part, plus ``apply_statuses`` and ``ping`` where a store has them)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, List

from smskit.errors import NotFoundError, StoreError
from smskit.models import Direction, InboundMessage, Message, SendResult, State, StatusEvent
from smskit.store.base import DayStats, Store
from smskit.testing.stores.runner import check, expect, expect_equal, expect_raises
from smskit.testing.stores.samples import NOW, SP, UTC, add, outgoing, run_threads, schedule

__all__: List[str] = []


# -- status events ---------------------------------------------------------------------------
@check()
def status_events_move_forward_only_and_are_all_kept(store: Store) -> None:
    """Status events move a message forward only, never out of a final state, and every one
    of them is kept in the history with its reason."""
    m = add(store, outgoing(1))[0]
    store.claim_batch("kolmeya", 1, NOW, "b1")
    store.record_results("b1", [SendResult(message_id=m.id, state=State.SENT,
                                           provider_message_id="K-1")], NOW)
    at = NOW + dt.timedelta(minutes=1)
    delivered = store.apply_status(StatusEvent(
        provider="kolmeya", state=State.DELIVERED, provider_message_id="K-1", occurred_at=at))
    expect_equal((delivered.applied, delivered.old, delivered.new),
                 (True, State.SENT, State.DELIVERED), "sent -> delivered is applied")
    expect(delivered.message is not None and delivered.message.delivered_at == at,
           "delivered_at is the event's time")
    dup = store.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                         message_id=m.id))
    late = store.apply_status(StatusEvent(provider="kolmeya", state=State.ERROR,
                                          message_id=m.id, status_code=4))
    back = store.apply_status(StatusEvent(provider="kolmeya", state=State.SENT,
                                          provider_message_id="K-1"))
    expect_equal([(o.applied, o.reason) for o in (dup, late, back)],
                 [(False, "duplicate"), (False, "already final (delivered)"),
                  (False, "already final (delivered)")],
                 "a repeated, late or backwards event is not applied")
    expect_equal(store.get(m.id), delivered.message, "the message stays delivered")
    history = store.history(m.id)
    expect_equal([(h.kind, h.old_state, h.new_state, h.applied) for h in history],
                 [("status", "sent", "delivered", True),
                  ("status", "delivered", "delivered", False),
                  ("status", "delivered", "error", False),
                  ("status", "delivered", "sent", False)],
                 "every status event is kept in the history")
    expect_equal([h.detail for h in history[:2]], ["applied", "duplicate"], "history details")
    expect_equal([h.id for h in history], sorted(h.id for h in history),
                 "history comes oldest first")


@check()
def backwards_event_is_ignored_but_recorded(store: Store) -> None:
    """An event that would move a message backwards changes nothing and is recorded."""
    m = add(store, outgoing(1, state=State.SENT, provider_message_id="K-5"))[0]
    outcome = store.apply_status(StatusEvent(provider="kolmeya", state=State.OUTGOING,
                                             message_id=m.id))
    expect_equal((outcome.applied, outcome.reason), (False, "backwards (sent -> outgoing)"),
                 "a backwards event is not applied")
    expect_equal(store.get(m.id), m, "the message must not move backwards")
    history = store.history(m.id)
    expect_equal([(h.applied, h.detail) for h in history],
                 [(False, "backwards (sent -> outgoing)")], "the ignored event is in the history")


@check()
def our_reference_wins_over_the_provider_id(store: Store) -> None:
    """An event is matched by our id first, then by the provider's id."""
    a, b = add(store, outgoing(1, state=State.SENT, provider_message_id="K-A"),
               outgoing(2, state=State.SENT, provider_message_id="K-B"))
    outcome = store.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                             message_id=b.id, provider_message_id="K-A"))
    expect(outcome.message is not None and outcome.message.id == b.id,
           "the event must apply to the message our id names")
    untouched = store.get(a.id)
    expect(untouched is not None and untouched.state is State.SENT,
           "the provider id's owner must be left alone")
    # an unknown reference falls back to the provider id
    outcome = store.apply_status(StatusEvent(provider="kolmeya", state=State.EXPIRED,
                                             message_id="gone", provider_message_id="K-A"))
    expect(outcome.message is not None and outcome.message.id == a.id
           and outcome.message.state is State.EXPIRED,
           "an unknown id of ours falls back to the provider id")


@check()
def a_status_event_adopting_a_taken_provider_id_does_not_store_it(store: Store) -> None:
    """An event giving a message another message's provider id moves the state only, and
    a conflict event records it."""
    add(store, outgoing(1, state=State.SENT, provider_message_id="K-1"))
    other = add(store, outgoing(2))[0]
    outcome = store.apply_status(StatusEvent(provider="kolmeya", state=State.SENT,
                                             message_id=other.id, provider_message_id="K-1"))
    expect(outcome.applied and outcome.message is not None, "the state change is applied")
    expect(outcome.message is not None and outcome.message.provider_message_id is None,
           "the taken provider id must not be adopted")
    expect_equal(store.get(other.id), outcome.message, "the outcome is what was stored")
    expect_equal([h.kind for h in store.history(other.id)], ["status", "conflict"],
                 "history kinds")


@check()
def unknown_ids_are_kept_as_orphan_events(store: Store) -> None:
    """Events matching no message are kept as orphan events, newest first."""
    first = store.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                           message_id="nobody", provider_message_id="K-404"))
    expect_equal((first.message, first.applied, first.old, first.new), (None, False, None, None),
                 "an event matching nothing")
    store.apply_status(StatusEvent(provider="kolmeya", state=State.ERROR,
                                   provider_message_id="K-405"))
    store.record_event(None, "note", "not a status event")
    orphans = store.orphan_events()
    expect_equal([o.provider_message_id for o in orphans], ["K-405", "K-404"],
                 "orphan events, newest first (a general note is not one)")
    expect(orphans[1].message_id is None and orphans[1].new_state == "delivered",
           "an orphan keeps the event's state")
    expect("nobody" in orphans[1].detail and orphans[1].applied is False,
           "an orphan's detail names the id it looked for")
    expect_equal(len(store.orphan_events(limit=1)), 1, "orphan_events(limit=1)")


@check()
def concurrent_status_events_stay_monotonic(store: Store) -> None:
    """Eight status events for one message at once: every one recorded, the state forward
    only, ending final."""
    m = add(store, outgoing(1))[0]
    states = [State.SENT, State.DELIVERED, State.SENT, State.ERROR, State.EXPIRED,
              State.SENT, State.DELIVERED, State.SENT]
    outcomes = run_threads(len(states), lambda i: store.apply_status(
        StatusEvent(provider="kolmeya", state=states[i], message_id=m.id)))
    history = store.history(m.id)
    expect_equal(len(history), len(states), "every event must be in the history")
    applied = [h for h in history if h.applied]
    ranks = [State(h.new_state).rank for h in applied if h.new_state]
    expect_equal(ranks, sorted(set(ranks)), "applied states must strictly move forward")
    final = store.get(m.id)
    expect(final is not None and applied and final.state.value == applied[-1].new_state,
           "the message's state is the last applied one")
    expect(final is not None and final.state.is_final, "the message ends in a final state")
    expect_equal(sum(o.applied for o in outcomes), len(applied),
                 "outcomes and history agree on what was applied")


@check()
def apply_statuses_equals_applying_one_by_one(store: Any) -> None:
    """apply_statuses gives the outcomes, messages and history of apply_status in turn."""

    def family(tag: str, base: int) -> List[Message]:
        made = [outgoing(base + i, state=State.SENT, provider_message_id=f"{tag}-{i}")
                for i in range(3)]
        return [*made, outgoing(base + 3, state=State.SENT)]

    def events(ids: List[str], tag: str) -> List[StatusEvent]:
        def on(i: int, state: State, **extra: Any) -> StatusEvent:
            return StatusEvent(provider="kolmeya", state=state, message_id=ids[i], **extra)

        return [on(0, State.DELIVERED), on(0, State.SENT),        # backwards after the first
                on(1, State.SENT), on(1, State.ERROR, error_code="E1"),  # duplicate, final
                on(1, State.DELIVERED),                           # already final
                StatusEvent(provider="kolmeya", state=State.DELIVERED, message_id="NOPE"),
                StatusEvent(provider="kolmeya", state=State.DELIVERED,
                            provider_message_id=f"{tag}-2"),
                on(3, State.DELIVERED, provider_message_id=f"{tag}-new-3")]

    one = [m.id for m in add(store, *family("one", 0))]
    many = [m.id for m in add(store, *family("many", 10))]
    singly = [store.apply_status(e) for e in events(one, "one")]
    grouped = store.apply_statuses(events(many, "many"))
    expect_equal([(o.applied, o.old, o.new, o.reason) for o in grouped],
                 [(o.applied, o.old, o.new, o.reason) for o in singly],
                 "one outcome per event, in order, as apply_status gives them")
    expect_equal([o.message.state if o.message else None for o in grouped],
                 [State.DELIVERED, State.DELIVERED, State.SENT, State.ERROR, State.ERROR, None,
                  State.DELIVERED, State.DELIVERED], "each event sees the ones before it")
    for a, b in zip(one, many):
        got, want = store.get(b), store.get(a)
        expect(got is not None and want is not None
               and (got.state, got.error_code, got.delivered_at is None)
               == (want.state, want.error_code, want.delivered_at is None),
               f"a message changed by apply_statuses must match apply_status's: {got!r}")
        expect_equal([(h.kind, h.old_state, h.new_state, h.applied, h.detail)
                      for h in store.history(b)],
                     [(h.kind, h.old_state, h.new_state, h.applied, h.detail)
                      for h in store.history(a)], "the history of a message")
    adopted = store.get(many[3])
    expect(adopted is not None and adopted.provider_message_id == "many-new-3",
           "an event fills in a missing provider id")
    expect_equal(len(store.orphan_events()), 2, "the unmatched event is an orphan each time")
    expect_equal(store.apply_statuses([]), [], "no events, no outcomes")


@check()
def record_event_appends_to_history(store: Store) -> None:
    """record_event appends a free-form line; an unknown message id raises NotFoundError."""
    m = add(store, outgoing(1))[0]
    store.record_event(m.id, "hook_failed", "odoo note: timeout", provider="odoo")
    history = store.history(m.id)
    expect_equal([(h.kind, h.detail, h.provider, h.applied) for h in history],
                 [("hook_failed", "odoo note: timeout", "odoo", False)], "the recorded event")
    expect(history[0].created_at.tzinfo is not None, "an event's created_at is aware")
    with expect_raises(NotFoundError, "record_event on an unknown message", match="missing"):
        store.record_event("missing", "x", "y")


# -- inbound ---------------------------------------------------------------------------------
@check()
def inbound_is_recorded_once_per_reply_id(store: Store) -> None:
    """A reply is stored once per (provider, reply id), inbound and delivered, linked to the
    message it answers."""
    sent = add(store, outgoing(1, state=State.SENT, provider_message_id="K-7"))[0]
    received = dt.datetime(2024, 5, 10, 9, 0, tzinfo=SP)
    reply = InboundMessage(provider="kolmeya", provider_reply_id="R-1", phone="+5511987650001",
                           body="SAIR", received_at=received, in_reply_to_provider_id="K-7")
    first = store.record_inbound(reply)
    expect(first.created, "a new reply is created")
    msg = first.message
    expect_equal((msg.direction, msg.state, msg.body, msg.in_reply_to),
                 (Direction.INBOUND, State.DELIVERED, "SAIR", sent.id),
                 "a reply is an inbound, delivered message answering ours")
    expect_equal(msg.created_at, received, "a reply's created_at is when it was received")
    again = store.record_inbound(reply)
    expect_equal((again.created, again.message), (False, msg), "a repeated delivery")
    expect_equal(store.get(msg.id), msg, "the reply is stored as returned")
    other = store.record_inbound(InboundMessage(provider="other", provider_reply_id="R-1",
                                                phone="+5511987650001", body="oi"))
    expect(other.created and other.message.in_reply_to is None,
           "the same reply id at another provider is another reply")
    expect_equal(len([m for m in store.list_messages() if m.direction is Direction.INBOUND]), 2,
                 "inbound messages")
    expect(store.claim_batch("kolmeya", 10, NOW, "b") is None, "a reply is never claimed")


@check()
def concurrent_inbound_deliveries_store_one(store: Store) -> None:
    """Six deliveries of one reply at once store it once."""
    reply = InboundMessage(provider="kolmeya", provider_reply_id="R-9", phone="+5511987650001",
                           body="PARAR")
    outcomes = run_threads(6, lambda i: store.record_inbound(reply))
    expect_equal(sum(o.created for o in outcomes), 1, "deliveries that created the reply")
    expect_equal(len({o.message.id for o in outcomes}), 1, "every delivery gets the same reply")
    expect_equal(len(store.list_messages()), 1, "stored messages")


@check()
def text_with_nul_is_stored_with_the_replacement_character(store: Store) -> None:
    """The NUL rule: U+0000 (PostgreSQL cannot store it; GSM-7's ``@`` arrives as it from some
    gateways) in a reply's text and reply id, a message's body, provider id and tags, or a
    status event's provider id is stored as U+FFFD, the same on every store; the reply is
    stored once and the event finds its message."""
    nul, fffd = "\x00", "\ufffd"
    reply = InboundMessage(provider="kolmeya", provider_reply_id=f"R{nul}1",
                           phone="+5511987650001", body=f"me{nul}exemplo.com")
    first = store.record_inbound(reply)
    expect(first.created, "a reply carrying U+0000 is stored")
    expect_equal(first.message.body, f"me{fffd}exemplo.com", "what the reply holds")
    again = store.record_inbound(reply)
    expect_equal((again.created, again.message.id), (False, first.message.id),
                 "the same reply delivered again")
    expect_equal(store.get(first.message.id), first.message, "the reply is stored as returned")
    m = add(store, outgoing(1, body=f"a{nul}b", tags=(f"t{nul}",), state=State.SENT,
                            provider_message_id=f"K{nul}1"))[0]
    expect_equal((m.body, m.tags, m.provider_message_id), (f"a{fffd}b", (f"t{fffd}",),
                                                           f"K{fffd}1"), "the message stored")
    expect_equal(store.get(m.id), m, "the message read back")
    done = store.apply_status(StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                          provider_message_id=f"K{nul}1"))
    expect(done.applied and done.message is not None and done.message.id == m.id,
           "a status event naming the provider id with U+0000 finds the message")


# -- blacklist -------------------------------------------------------------------------------
@check()
def blacklist(store: Store) -> None:
    """Numbers are added and removed once; blacklisted() answers for 1200 numbers at once."""
    expect(store.blacklist_add("+5511900000001", "SAIR reply", "inbound") is True, "a new number")
    expect(store.blacklist_add("+5511900000001", "again", "api") is False, "a listed number")
    expect(store.blacklist_add("+5511900000002", "complaint", "api") is True, "a new number")
    expect(store.is_blacklisted("+5511900000001"), "is_blacklisted of a listed number")
    expect(not store.is_blacklisted("+5511900000003"), "is_blacklisted of another number")
    phones = [f"+55119{i:08d}" for i in range(1200)]
    expect_equal(store.blacklisted(phones), {"+5511900000001", "+5511900000002"},
                 "blacklisted() of 1200 numbers")
    expect_equal([(e.phone, e.reason, e.source) for e in store.list_blacklist()],
                 [("+5511900000001", "SAIR reply", "inbound"),
                  ("+5511900000002", "complaint", "api")], "list_blacklist(), oldest first")
    expect(store.blacklist_remove("+5511900000001") is True, "removing a listed number")
    expect(store.blacklist_remove("+5511900000001") is False, "removing it again")
    expect_equal(store.blacklisted(phones), {"+5511900000002"}, "blacklisted() after removal")


# -- schedules -------------------------------------------------------------------------------
@check()
def schedules_round_trip_and_listing(store: Store) -> None:
    """Schedules come back equal, ids are unique, and listing orders by next run."""
    weekly = schedule("s1", dt.datetime(2024, 5, 13, 9, 0, tzinfo=SP),
                      rrule="FREQ=WEEKLY;BYDAY=MO", dtstart=dt.datetime(2024, 5, 6, 9, tzinfo=SP))
    expect_equal(store.add_schedule(weekly), weekly, "add_schedule returns the schedule")
    got = store.get_schedule("s1")
    expect_equal(got, weekly, "get_schedule")
    expect(got is not None and got.next_run_at is not None
           and got.next_run_at.utcoffset() == dt.timedelta(0), "next_run_at comes back in UTC")
    store.add_schedule(schedule("s0", NOW - dt.timedelta(days=1)))
    store.add_schedule(schedule("s2", None, active=False))
    with expect_raises(StoreError, "adding a schedule whose id is taken", match="s1"):
        store.add_schedule(schedule("s1", NOW))
    expect_equal([s.id for s in store.list_schedules()], ["s0", "s1", "s2"],
                 "list_schedules(): by next run, ended ones last")
    expect_equal([s.id for s in store.list_schedules(active_only=True)], ["s0", "s1"],
                 "list_schedules(active_only=True)")
    expect_equal([s.id for s in store.due_schedules(NOW)], ["s0"], "due_schedules")
    expect(store.remove_schedule("s0") is True, "removing a schedule")
    expect(store.remove_schedule("s0") is False, "removing it again")
    expect(store.get_schedule("s0") is None, "a removed schedule is gone")


@check()
def advance_schedule_is_compare_and_set(store: Store) -> None:
    """advance_schedule moves next_run_at only from the expected value; None ends it."""
    first = NOW - dt.timedelta(minutes=1)
    store.add_schedule(schedule("s1", first))
    nxt = first + dt.timedelta(days=7)
    expect(store.advance_schedule("s1", first + dt.timedelta(seconds=1), nxt, NOW) is False,
           "a wrong expected value loses")
    expect(store.advance_schedule("s1", first.astimezone(SP), nxt, NOW) is True,
           "the expected value (in any zone) wins")
    expect(store.advance_schedule("s1", first, nxt, NOW) is False, "the same occurrence twice")
    s = store.get_schedule("s1")
    expect(s is not None and (s.next_run_at, s.last_run_at, s.runs, s.active) == (
        nxt, NOW, 1, True), f"the advanced schedule, got {s!r}")
    expect_equal(store.due_schedules(NOW), [], "nothing due after advancing")
    expect(store.advance_schedule("s1", nxt, None, nxt) is True, "ending the schedule")
    ended = store.get_schedule("s1")
    expect(ended is not None and (ended.next_run_at, ended.active, ended.runs) == (
        None, False, 2), f"an ended schedule is inactive, got {ended!r}")
    expect_equal(store.due_schedules(nxt + dt.timedelta(days=30)), [],
                 "an ended schedule is never due")
    expect(store.advance_schedule("missing", nxt, None, nxt) is False, "an unknown schedule")


@check()
def concurrent_advance_has_exactly_one_winner(store: Store) -> None:
    """Eight workers advancing one due schedule at once: exactly one wins."""
    due = NOW - dt.timedelta(seconds=5)
    store.add_schedule(schedule("s1", due))
    wins = run_threads(8, lambda i: store.advance_schedule(
        "s1", due, due + dt.timedelta(hours=1 + i), NOW))
    expect_equal(wins.count(True), 1, "winners")
    s = store.get_schedule("s1")
    expect(s is not None and s.runs == 1, "one run counted")
    expect(s is not None and True in wins
           and s.next_run_at == due + dt.timedelta(hours=1 + wins.index(True)),
           "the winner's next run is stored")


# -- stats -----------------------------------------------------------------------------------
@check()
def stats_by_day_on_a_seeded_dataset(store: Store) -> None:
    """stats_by_day groups by UTC day and provider: sent or later, failed, exact cost."""
    d1 = dt.datetime(2024, 5, 10, 10, 0, tzinfo=UTC)
    d2 = dt.datetime(2024, 5, 11, 10, 0, tzinfo=UTC)
    late_evening = dt.datetime(2024, 5, 10, 23, 30, tzinfo=SP)  # 02:30 UTC on the 11th
    c08 = Decimal("0.08")
    add(store,
        outgoing(1, state=State.SENT, cost=c08, created_at=d1),
        outgoing(2, state=State.DELIVERED, cost=c08 * 2, created_at=d1),
        outgoing(3, state=State.ERROR, cost=c08, created_at=d1),
        outgoing(4, state=State.EXPIRED, cost=c08, created_at=d1),
        outgoing(5, state=State.REJECTED, cost=c08, created_at=d1),
        outgoing(6, state=State.CANCELED, cost=c08, created_at=d1),
        outgoing(7, state=State.OUTGOING, cost=c08, created_at=d1),
        outgoing(8, state=State.DELIVERED, cost=Decimal("0.1"), provider="loopback",
                 created_at=d1),
        outgoing(9, state=State.DELIVERED, cost=c08, created_at=late_evening),
        outgoing(10, state=State.DELIVERED, cost=c08, created_at=d2),
        outgoing(11, state=State.REJECTED, provider=None, created_at=d2))
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
    expect_equal(store.stats_by_day(), expected, "stats_by_day()")
    expect_equal(store.stats_by_day(start=dt.date(2024, 5, 11)), expected[2:],
                 "stats_by_day(start=...)")
    expect_equal(store.stats_by_day(end=dt.date(2024, 5, 10)), expected[:2],
                 "stats_by_day(end=...)")
    expect_equal(store.stats_by_day(dt.date(2024, 5, 12), dt.date(2024, 5, 20)), [],
                 "stats_by_day of days without messages")
    expect_equal(store.count_by_state("kolmeya"), {
        ("kolmeya", s): n for s, n in [(State.SENT, 1), (State.DELIVERED, 3), (State.ERROR, 1),
                                      (State.EXPIRED, 1), (State.REJECTED, 1),
                                      (State.CANCELED, 1), (State.OUTGOING, 1)]},
        "count_by_state('kolmeya')")
    expect_equal(store.count_by_state().get(("", State.REJECTED)), 1,
                 "count_by_state(): a message without a provider counts under ''")


@check()
def stats_by_day_uses_local_days_across_midnight_and_dst(store: Store) -> None:
    """stats_by_day(tz=...) groups by the local calendar day, also across a DST change."""
    late = dt.datetime(2024, 5, 9, 23, 30, tzinfo=SP)  # 02:30 UTC on the 10th
    add(store, outgoing(1, state=State.DELIVERED, cost=Decimal("0.08"), created_at=late))
    expect_equal([(d.day, d.sent) for d in store.stats_by_day()],
                 [(dt.date(2024, 5, 10), 1)], "without a zone, days are UTC days")
    expect_equal([(d.day, d.sent) for d in store.stats_by_day(tz="America/Sao_Paulo")],
                 [(dt.date(2024, 5, 9), 1)], "in São Paulo it is still the 9th")
    # 2018: São Paulo moved to -02 on Nov 4th (00:00 -> 01:00)
    edge = [dt.datetime(2018, 11, 4, 2, 59, tzinfo=UTC),   # 23:59 on the 3rd (-03)
            dt.datetime(2018, 11, 4, 3, 0, tzinfo=UTC),    # 01:00 on the 4th (-02)
            dt.datetime(2018, 11, 5, 1, 59, tzinfo=UTC),   # 23:59 on the 4th (-02)
            dt.datetime(2018, 11, 5, 2, 0, tzinfo=UTC)]    # 00:00 on the 5th
    add(store, *[outgoing(50 + i, state=State.SENT, cost=Decimal("0.01"), created_at=at)
                 for i, at in enumerate(edge)])
    rows = store.stats_by_day(dt.date(2018, 11, 1), dt.date(2018, 11, 30),
                              tz="America/Sao_Paulo")
    expect_equal([(d.day.isoformat(), d.sent) for d in rows],
                 [("2018-11-03", 1), ("2018-11-04", 2), ("2018-11-05", 1)],
                 "local days across the DST change")


@check()
def ping_answers(store: Any) -> None:
    """ping() returns without error on a working store."""
    store.ping()
    add(store, outgoing(1))
    store.ping()
