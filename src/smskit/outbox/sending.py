"""A send from end to end, synchronously (:mod:`smskit.outbox`, steps 1 to 6).

For each chunk of recipients: check their phones; ask the store, in one query each, which
numbers are blacklisted and who has a do-not-disturb rule (:func:`look_up`); compose
(:mod:`smskit.outbox.compose`, no I/O); store the messages as ``outgoing``, with their short
links, in one call, before any network call; dispatch; report each recipient's outcome, its
dispatch included.
:class:`smskit.SmsKit` calls these with its store, plugin hooks and clock.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import AbstractSet, Any, Callable, Dict, Iterable, Optional, Sequence

from smskit.errors import ValidationError
from smskit.models import State
from smskit.outbox import compose as c
from smskit.outbox.dispatching import DispatchReport
from smskit.outbox.links import add_messages_with_links
from smskit.store.base import Store
from smskit.store.outreach import OutreachStore

__all__ = ["Dispatch", "look_up", "send_many", "send_one"]

#: Sends what is due; the report gives the outcome of each watched message id.
Dispatch = Callable[[AbstractSet[str]], DispatchReport]
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
    if isinstance(recipient.phone, ValidationError):
        raise recipient.phone
    facts = _look_up_one(store, recipient.phone, clock())
    ((message, draft),) = c.compose_drafts([recipient], spec, composer, facts,
                                           c.ComposeHooks.of(hooks), clock=clock, strict=True)
    stored = add_messages_with_links(store, composer.links, [message])[0]
    outcome = c.settle(draft, stored)
    if dispatch is not None and stored.created and stored.message.state is State.OUTGOING:
        report = dispatch(frozenset({stored.message.id}))
        outcome = outcome.after_dispatch(report.outcomes.get(stored.message.id))
    return outcome


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
    dispatch: Optional[Dispatch] = None,
) -> c.BulkSummary:
    """Send to every recipient, ``chunk_size`` at a time (memory stays constant however
    many). One bad recipient never aborts the batch: it becomes a ``rejected`` record.

    ``hooks`` is the plugin hook relay; ``dispatch`` sends what is due after each chunk is
    stored; ``on_outcome`` then receives each recipient's outcome, its dispatch included.
    The summary counts this call's recipients only (not older messages the same dispatch
    sent), each by where its message is at the end of the call.
    """
    summary = c.BulkSummary()
    numbered = enumerate(recipients)
    # This call's messages still outgoing after their chunk's dispatch, and their outcome:
    # a later chunk's dispatch may send them (one that stopped early left them due).
    waiting: Dict[str, c.Outcome] = {}
    while True:
        chunk = list(itertools.islice(numbered, chunk_size))
        if not chunk:
            break
        parsed = c.parse_recipients(chunk, spec, composer)
        facts = look_up(store, c.phones_of(parsed), clock())
        drafts = c.compose_drafts(parsed, spec, composer, facts, c.ComposeHooks.of(hooks),
                                  clock=clock)
        stored = add_messages_with_links(store, composer.links, [m for m, _ in drafts])
        outcomes = [c.settle(draft, answer) for (_, draft), answer in zip(drafts, stored)]
        if dispatch is not None:
            mine = {o.message_id for o in outcomes if o.message_id and o.queued}
            report = dispatch(frozenset(mine | set(waiting)))
            for message_id, found in report.outcomes.items():
                if message_id in waiting:
                    old = waiting.pop(message_id)
                    new = old.after_dispatch(found)
                    summary.replace(old, new)
                    if new.state is State.OUTGOING and not new.held:
                        waiting[message_id] = new
            outcomes = [o.after_dispatch(report.outcomes.get(o.message_id or ""))
                        for o in outcomes]
        for outcome in outcomes:
            summary.add(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
            if dispatch is not None and outcome.queued and outcome.message_id and \
                    len(waiting) < MAX_TRACKED:
                waiting[outcome.message_id] = outcome
    return summary
