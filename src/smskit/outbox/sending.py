"""A send from end to end, synchronously (:mod:`smskit.outbox`, steps 1 to 6).

For each chunk of recipients: check their phones; ask the store, in one query each, which
numbers are blacklisted and who has a do-not-disturb rule (:func:`look_up`); compose
(:mod:`smskit.outbox.compose`, no I/O); store the messages as ``outgoing``, with their short
links, in one call, before any network call; dispatch; report each recipient's outcome, its
dispatch included.
:class:`smskit.SmsKit` calls these with its store, plugin hooks and clock;
:class:`smskit.AsyncSmsKit` calls the same steps (:func:`store_one`, :func:`store_chunk`,
:class:`BulkDispatch`) in a worker thread and awaits its dispatching in between
(:mod:`smskit.outbox.aio`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from typing import (
    AbstractSet,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import attrs

from smskit.errors import ValidationError
from smskit.models import Message, State
from smskit.outbox import compose as c
from smskit.outbox.dispatching import DispatchReport
from smskit.outbox.links import add_messages_with_links, store_messages
from smskit.store.base import BatchInfo, InsertClaim, Store
from smskit.store.outreach import OutreachStore

__all__ = ["BulkDispatch", "BulkDispatcher", "Dispatch", "Finish", "Opened", "look_up",
           "send_many", "send_one", "store_chunk", "store_chunk_claimed", "store_one",
           "with_state"]

log = logging.getLogger(__name__)

#: Sends what is due; the report gives the outcome of each watched message id.
Dispatch = Callable[[AbstractSet[str]], DispatchReport]
#: A batch already claimed, with its messages as stored once claimed.
Opened = Tuple[BatchInfo, List[Message]]
#: The most messages of one call whose later outcome a bulk send keeps track of (memory
#: stays bounded however many there are; beyond it they are counted as queued).
MAX_TRACKED = 100_000


def look_up(store: Store, phones: Sequence[str], now: dt.datetime) -> c.Facts:
    """What the store knows about a chunk's valid numbers: one blacklist query and one
    do-not-disturb query (a store without contacts has no rules)."""
    if not phones:
        return c.Facts()
    blocked = store.blacklisted(phones)
    rules = store.dnd_contacts(phones, now) if isinstance(store, OutreachStore) else {}
    return c.Facts(blocked=blocked, dnd=rules)


def _look_up_one(store: Store, phone: str, now: dt.datetime) -> c.Facts:
    # One number: is_blacklisted, which a store may answer from a cache (the Odoo store does).
    blocked = {phone} if store.is_blacklisted(phone) else frozenset()
    rules = store.dnd_contacts([phone], now) if isinstance(store, OutreachStore) else {}
    return c.Facts(blocked=blocked, dnd=rules)


def store_one(
    store: Store,
    hooks: Any,
    composer: c.Composer,
    recipient: c.Parsed,
    spec: c.SendSpec,
    *,
    clock: Callable[[], dt.datetime],
) -> Tuple[c.Outcome, Optional[str]]:
    """Steps 1 to 5 for one recipient: its outcome, and the id of the message stored
    ``outgoing`` for dispatching (``None``: nothing to send, such as a policy veto or an
    idempotency key already used). Bad input raises and stores nothing."""
    if isinstance(recipient.phone, ValidationError):
        raise recipient.phone
    facts = _look_up_one(store, recipient.phone, clock())
    ((message, draft),) = c.compose_drafts([recipient], spec, composer, facts,
                                           c.ComposeHooks.of(hooks), clock=clock, strict=True)
    stored = add_messages_with_links(store, composer.links, [message])[0]
    queued = stored.created and stored.message.state is State.OUTGOING
    return c.settle(draft, stored), stored.message.id if queued else None


def with_state(outcome: c.Outcome, current: Optional[Message],
               batch: Optional[BatchInfo] = None) -> c.Outcome:
    """``outcome`` with the state (and error) of its message as stored now; held when it is
    still ``outgoing`` in ``batch`` (its batch, read with it) and that batch is ambiguous."""
    if current is None:
        return outcome
    held = current.state is State.OUTGOING and batch is not None and \
        batch.id == current.batch_id and batch.status == "ambiguous"
    return attrs.evolve(outcome, state=current.state, held=held,
                        reason=current.error_text or outcome.reason)


def send_one(
    store: Store,
    hooks: Any,
    composer: c.Composer,
    recipient: c.Parsed,
    spec: c.SendSpec,
    *,
    clock: Callable[[], dt.datetime],
    dispatch: Optional[Dispatch] = None,
) -> c.Outcome:
    """Compose, store and (with ``dispatch``) send one message to ``recipient``
    (:func:`~smskit.outbox.compose.parse_phone`). Bad input raises and stores nothing.

    ``hooks`` is the plugin hook relay; ``dispatch`` sends what is due, after which the outcome
    carries the message's state: ``sent``, ``rejected`` by the gateway, or ``outgoing`` with
    why (queued after a failed call, ``held`` when the request may have arrived).
    """
    outcome, queued = store_one(store, hooks, composer, recipient, spec, clock=clock)
    if dispatch is not None and queued is not None:
        report = dispatch(frozenset({queued}))
        outcome = outcome.after_dispatch(report.outcomes.get(queued))
    return outcome


def store_chunk(
    store: Store,
    hooks: Any,
    composer: c.Composer,
    chunk: Sequence[Tuple[int, c.Recipient]],
    spec: c.SendSpec,
    *,
    clock: Callable[[], dt.datetime],
) -> List[c.Outcome]:
    """Steps 1 to 5 for a chunk of numbered recipients: one look-up per kind, compose, one
    store call; each recipient's outcome, in order."""
    return store_chunk_claimed(store, hooks, composer, chunk, spec, clock=clock, claim=None)[0]


def store_chunk_claimed(
    store: Store,
    hooks: Any,
    composer: c.Composer,
    chunk: Sequence[Tuple[int, c.Recipient]],
    spec: c.SendSpec,
    *,
    clock: Callable[[], dt.datetime],
    claim: Optional[InsertClaim],
) -> Tuple[List[c.Outcome], Optional[Opened]]:
    """:func:`store_chunk`, opening the batch ``claim`` describes in the same store call when
    the store can (:class:`~smskit.store.base.ClaimingStore`); the outcomes and that batch
    with its messages (``None``: nothing claimed, the dispatch claims)."""
    parsed = c.parse_recipients(chunk, spec, composer)
    facts = look_up(store, c.phones_of(parsed), clock())
    drafts = c.compose_drafts(parsed, spec, composer, facts, c.ComposeHooks.of(hooks),
                              clock=clock)
    added = store_messages(store, composer.links, [m for m, _ in drafts], claim)
    outcomes = [c.settle(draft, answer) for (_, draft), answer in zip(drafts, added.outcomes)]
    return outcomes, added.claimed


#: The second half of a dispatch begun for a chunk: waits for it and gives its report.
Finish = Callable[[], DispatchReport]


def _nothing() -> None:
    return None


@attrs.frozen
class BulkDispatcher:
    """How :func:`send_many` dispatches each chunk once it is stored.

    ``begin(watch, first)`` starts sending what is due and returns the function that
    finishes it and gives its report on ``watch``. ``first`` is the batch the chunk opened
    as it was inserted: its request may go out in the background while the next chunk is
    composed and stored (:func:`~smskit.outbox.dispatching.begin_dispatch`); everything else
    (results, hooks, other batches) happens in the finishing function, on the calling
    thread. ``claim()`` describes the batch the next chunk may open as it is inserted, or
    gives ``None`` (no single provider, its circuit open): then the dispatch claims as
    usual. ``close()`` releases what ``begin`` used (its background thread). Opening the
    batch in the insert's transaction saves the claim's write: each message is written once
    before its request, not twice, with the same guarantees (a crash leaves a claimed batch,
    which reconciliation settles as it settles any other)."""

    begin: Callable[[AbstractSet[str], Optional[Opened]], Finish]
    claim: Callable[[], Optional[InsertClaim]] = attrs.field(default=lambda: None)
    close: Callable[[], None] = attrs.field(default=_nothing)

    @classmethod
    def serial(cls, dispatch: Dispatch) -> BulkDispatcher:
        """A dispatcher that sends what is due with ``dispatch`` as each chunk is stored."""
        def begin(watch: AbstractSet[str], first: Optional[Opened]) -> Finish:
            report = dispatch(watch)
            return lambda: report
        return cls(begin)


class BulkDispatch:
    """The summary of one bulk send, kept honest across its chunks' dispatches: each
    recipient is counted once, by where its message is at the end of the call (not by what
    the dispatch did to older messages), and a message a chunk's dispatch left due is
    followed until a later dispatch sends it (at most :data:`MAX_TRACKED` of them)."""

    def __init__(self, *, tracking: bool = True) -> None:
        self.summary = c.BulkSummary()
        self.tracking = tracking
        # This call's messages still outgoing after their chunk's dispatch, and their
        # outcome: a later chunk's dispatch may send them (one that stopped early left them
        # due).
        self.waiting: Dict[str, c.Outcome] = {}

    def watch(self, outcomes: Sequence[c.Outcome]) -> AbstractSet[str]:
        """The ids whose outcome the next dispatch should report: the chunk's queued
        messages and those still waiting from earlier chunks."""
        mine = {o.message_id for o in outcomes if o.message_id and o.queued}
        return frozenset(mine | set(self.waiting))

    def dispatched(self, outcomes: Sequence[c.Outcome],
                   report: DispatchReport) -> List[c.Outcome]:
        """``outcomes`` (the chunk's) once ``report``'s dispatch ran; the earlier chunks'
        messages it touched are counted again where they are now."""
        for message_id, found in report.outcomes.items():
            if message_id in self.waiting:
                old = self.waiting.pop(message_id)
                new = old.after_dispatch(found)
                self.summary.replace(old, new)
                if new.state is State.OUTGOING and not new.held:
                    self.waiting[message_id] = new
        return [o.after_dispatch(report.outcomes.get(o.message_id or "")) for o in outcomes]

    def add(self, outcome: c.Outcome) -> None:
        """Count ``outcome``; follow it when it is still due."""
        self.summary.add(outcome)
        if self.tracking and outcome.queued and outcome.message_id and \
                len(self.waiting) < MAX_TRACKED:
            self.waiting[outcome.message_id] = outcome


def send_many(
    store: Store,
    hooks: Any,
    composer: c.Composer,
    recipients: Iterable[c.Recipient],
    spec: c.SendSpec,
    *,
    clock: Callable[[], dt.datetime],
    chunk_size: int,
    on_outcome: Optional[Callable[[c.Outcome], None]] = None,
    dispatch: Union[Dispatch, BulkDispatcher, None] = None,
) -> c.BulkSummary:
    """Send to every recipient, ``chunk_size`` at a time (memory stays constant however
    many). One bad recipient never aborts the batch: it becomes a ``rejected`` record.

    ``hooks`` is the plugin hook relay; ``dispatch`` sends what is due after each chunk is
    stored (a :class:`BulkDispatcher` may have the chunk's batch opened as it is inserted);
    ``on_outcome`` then receives each recipient's outcome, its dispatch included.
    The summary counts this call's recipients only (not older messages the same dispatch
    sent), each by where its message is at the end of the call.
    """
    bulk = BulkDispatch(tracking=dispatch is not None)
    if dispatch is not None and not isinstance(dispatch, BulkDispatcher):
        dispatch = BulkDispatcher.serial(dispatch)

    troubled = False  # a dispatch of this call failed or stopped early

    def report(outcomes: Sequence[c.Outcome], finish: Optional[Finish]) -> None:
        nonlocal troubled
        if finish is not None:
            done = finish()
            troubled = troubled or bool(done.errors)
            outcomes = bulk.dispatched(outcomes, done)
        for outcome in outcomes:
            bulk.add(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

    numbered = enumerate(recipients)
    # The chunk whose request may still be out while the next one is stored.
    pending: Optional[Tuple[List[c.Outcome], Finish]] = None
    overlapped = False
    try:
        while True:
            chunk = list(itertools.islice(numbered, chunk_size))
            if not chunk:
                break
            claim = dispatch.claim() if dispatch is not None else None
            outcomes, opened = store_chunk_claimed(store, hooks, composer, chunk, spec,
                                                   clock=clock, claim=claim)
            if pending is not None:
                report(*pending)
                pending = None
            if dispatch is None:
                report(outcomes, None)
                continue
            finish = dispatch.begin(bulk.watch(outcomes), opened)
            if opened is None:
                report(outcomes, finish)
            else:
                pending = (outcomes, finish)
                overlapped = True
        if pending is not None:
            report(*pending)
        if overlapped and not troubled and dispatch is not None:
            # A begun batch settles only itself: what else is due (a chunk's messages past
            # the batch size, older ones) goes now, as each chunk's dispatch sends it; not
            # after a failure, after which a dispatch stops (the worker goes on later).
            report((), dispatch.begin(bulk.watch(()), None))
    except Exception:
        # The next chunk failed (a store error...) while a request was out: its answer is
        # still recorded, so that the batch needs no reconciliation (an interrupt leaves it
        # to reconciliation instead of waiting for the gateway).
        if pending is not None:
            try:
                pending[1]()
            except Exception:  # the first error is the one to raise; this one is logged
                log.exception("bulk send: the batch out when the send failed was not settled")
        raise
    finally:
        if dispatch is not None:
            dispatch.close()
    return bulk.summary
