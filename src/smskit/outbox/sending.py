"""A send from end to end, synchronously (:mod:`smskit.outbox`, steps 1 to 6).

For each chunk of recipients: check their phones; ask the store, in one query each, which
numbers are blacklisted and who has a do-not-disturb rule (:func:`look_up`); compose
(:mod:`smskit.outbox.compose`, no I/O); store the messages as ``outgoing``, with their short
links, in one call, before any network call; report each recipient's outcome; dispatch.
:class:`smskit.SmsKit` calls these with its store, plugin hooks and clock;
:class:`smskit.AsyncSmsKit` calls the same steps (:func:`store_one`, :func:`store_chunk`,
:func:`after_dispatch`) in a worker thread and awaits its dispatching in between
(:mod:`smskit.outbox.aio`).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import attrs

from smskit.errors import ValidationError
from smskit.models import Message, State
from smskit.outbox import compose as c
from smskit.outbox.dispatching import DispatchReport
from smskit.outbox.links import add_messages_with_links
from smskit.store.base import Store
from smskit.store.outreach import OutreachStore

__all__ = ["after_dispatch", "count_dispatch", "look_up", "send_many", "send_one", "store_chunk",
           "store_one", "with_state"]


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


def after_dispatch(store: Store, outcome: c.Outcome, message_id: str) -> c.Outcome:
    """``outcome`` with the state of message ``message_id`` once it was dispatched."""
    return with_state(outcome, store.get(message_id))


def with_state(outcome: c.Outcome, current: Optional[Message]) -> c.Outcome:
    """``outcome`` with the state (and error) of its message as stored now."""
    if current is None:
        return outcome
    return attrs.evolve(outcome, state=current.state, reason=current.error_text or outcome.reason)


def send_one(
    store: Store,
    hooks: Any,
    composer: c.Composer,
    recipient: c.Parsed,
    spec: c.SendSpec,
    *,
    clock: Callable[[], dt.datetime],
    dispatch: Optional[Callable[[], object]] = None,
) -> c.Outcome:
    """Compose, store and (with ``dispatch``) send one message to ``recipient``
    (:func:`~smskit.outbox.compose.parse_phone`). Bad input raises and stores nothing.

    ``hooks`` is the plugin hook relay; ``dispatch`` sends what is due, after which the outcome
    carries the message's state.
    """
    outcome, queued = store_one(store, hooks, composer, recipient, spec, clock=clock)
    if dispatch is not None and queued is not None:
        dispatch()
        outcome = after_dispatch(store, outcome, queued)
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
    parsed = c.parse_recipients(chunk, spec, composer)
    facts = look_up(store, c.phones_of(parsed), clock())
    drafts = c.compose_drafts(parsed, spec, composer, facts, c.ComposeHooks.of(hooks),
                              clock=clock)
    stored = add_messages_with_links(store, composer.links, [m for m, _ in drafts])
    return [c.settle(draft, answer) for (_, draft), answer in zip(drafts, stored)]


def count_dispatch(summary: c.BulkSummary, report: DispatchReport) -> None:
    """Add what dispatching a chunk did to ``summary``."""
    summary.sent += report.sent
    summary.failed_dispatch += report.released + report.ambiguous


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
    dispatch: Optional[Callable[[], DispatchReport]] = None,
) -> c.BulkSummary:
    """Send to every recipient, ``chunk_size`` at a time (memory stays constant however
    many). One bad recipient never aborts the batch: it becomes a ``rejected`` record.

    ``hooks`` is the plugin hook relay; ``on_outcome`` receives each recipient's outcome once
    its chunk is stored; ``dispatch`` sends what is due after each chunk.
    """
    summary = c.BulkSummary()
    numbered = enumerate(recipients)
    while True:
        chunk = list(itertools.islice(numbered, chunk_size))
        if not chunk:
            break
        for outcome in store_chunk(store, hooks, composer, chunk, spec, clock=clock):
            summary.add(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        if dispatch is not None:
            count_dispatch(summary, dispatch())
    return summary
