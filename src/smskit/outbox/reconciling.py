"""Step 7 of the send pipeline (:mod:`smskit.outbox`): settle batches whose outcome is unknown.

A batch is ``ambiguous`` when its request may have reached the gateway (a timeout, a reset,
a 5xx, messages the gateway returned no result for), or still ``claimed`` long after a worker
died mid-send. :func:`reconcile` asks the gateway about each such batch
(:meth:`~smskit.provider.Provider.reconcile`) and acts on the answer; :func:`judge` is the
decision, with no I/O:

* messages the gateway lists become ``sent`` (or ``rejected``), and the statuses it reports
  are applied like webhooks;
* a request it says it never received (or messages of a known request it has no trace of)
  go back to the queue **only when that lookup is proven** (:mod:`smskit.outbox.proof`): it
  found a request smskit knows the gateway accepted;
* anything else (an unproven "never received", an error, a provider that cannot reconcile)
  **holds** the batch: it stays ``ambiguous`` with ``held: <why>`` as its error text, is never
  sent again by itself, is asked about again later (at most every
  :data:`~smskit.outbox.proof.HOLD_RETRY`), is
  listed by :func:`held` (``smskit messages --held``, the dashboard, a metric), and
  ``on_held`` hears of it once (the ``batch_ambiguous`` hook). A person settles it with
  :func:`resolve` (``smskit resolve``), or the next proof does.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import attrs

from smskit.errors import NotFoundError, NotSupportedError, ProviderError, ValidationError
from smskit.models import Message, SendResult, State, StatusEvent
from smskit.outbox.proof import Lookups, definite, form_label
from smskit.provider import Provider, ReconcileResult
from smskit.store.base import BatchInfo, Requeue, Store

__all__ = [
    "HELD_PREFIX",
    "KIND_RESOLVED",
    "HeldBatch",
    "ReconcileReport",
    "Verdict",
    "held",
    "held_counts",
    "judge",
    "reconcile",
    "resolve",
]

log = logging.getLogger(__name__)

#: The start of the error text of a held batch.
HELD_PREFIX = "held: "
#: The history kind of a person's decision about a held message (:func:`resolve`).
KIND_RESOLVED = "resolved"

OptedOut = Callable[[Message, SendResult], None]
OnHeld = Callable[[BatchInfo, List[Message], str], None]


@attrs.define
class ReconcileReport:
    """What one :func:`reconcile` call did: batches asked about, messages confirmed, sent
    back to the queue (``resendable``) and ``held``."""

    batches: int = 0
    confirmed: int = 0
    resendable: int = 0
    held: int = 0

    @property
    def still_unknown(self) -> int:
        """The messages whose outcome is still unknown (held); the former name of
        :attr:`held`."""
        return self.held


@attrs.frozen(kw_only=True)
class Verdict:
    """What to do with one batch's outgoing messages (:func:`judge`): record ``confirm``,
    apply ``statuses``, put ``resend`` back in the queue, hold ``hold`` because of
    ``reason`` (``passing``: the gateway could not be asked this time, ask again next
    cycle; the batch is not held yet)."""

    confirm: Tuple[SendResult, ...] = ()
    statuses: Tuple[StatusEvent, ...] = ()
    resend: Tuple[str, ...] = ()
    hold: Tuple[str, ...] = ()
    reason: str = ""
    passing: bool = False


def says_never(answer: ReconcileResult, messages: Sequence[Message]) -> bool:
    """Whether ``answer`` says the gateway never received some of ``messages``."""
    if not answer.known:
        return True
    found = {r.message_id for r in answer.results}
    return any(m.id not in found for m in messages)


def judge(provider: str, messages: Sequence[Message], answer: Optional[ReconcileResult],
          error: Optional[ProviderError], proven: bool, why: str = "") -> Verdict:
    """The decision for ``messages`` (a batch's outgoing ones) given the gateway's ``answer``
    or the ``error`` asking raised, and whether the answer's lookup form is ``proven``
    (``why``: the proof's story). No I/O."""
    ids = tuple(m.id for m in messages)
    if error is not None or answer is None:
        if isinstance(error, NotSupportedError):
            reason = f"{provider} cannot be asked what became of a request; settle it by hand"
        elif error is not None and definite(error):
            reason = f"{provider} refused to say what became of the request: {error}"
        else:
            return Verdict(hold=ids, passing=True,
                           reason=f"{provider} could not be asked this time: {error}")
        return Verdict(hold=ids, reason=reason)
    label = form_label(provider, answer.form)
    if not answer.known:
        if proven:
            return Verdict(resend=ids)
        return Verdict(hold=ids, reason=f"{label} says the request never arrived, but that "
                                        f"lookup is not proven: {why}")
    wanted = set(ids)
    confirm = tuple(r for r in answer.results if r.message_id in wanted)
    statuses = tuple(answer.statuses)
    missing = tuple(i for i in ids if i not in {r.message_id for r in confirm})
    if not missing:
        return Verdict(confirm=confirm, statuses=statuses)
    if proven:
        return Verdict(confirm=confirm, statuses=statuses, resend=missing)
    return Verdict(confirm=confirm, statuses=statuses, hold=missing,
                   reason=f"{label} knows the request but has no trace of {len(missing)} "
                          f"message(s) of it, and that lookup is not proven: {why}")


def _notify_sent(on_sent: Optional[Callable[[Message], None]], store: Store,
                 results: Sequence[SendResult]) -> None:
    if on_sent is None:
        return
    sent_ids = [r.message_id for r in results if r.state is State.SENT]
    for message in store.get_many(sent_ids):
        on_sent(message)


def _notify_opted_out(on_opted_out: Optional[OptedOut], messages: Sequence[Message],
                      results: Sequence[SendResult]) -> None:
    if on_opted_out is None:
        return
    by_id = {m.id: m for m in messages}
    for result in results:
        if result.opted_out and result.message_id in by_id:
            on_opted_out(by_id[result.message_id], result)


def _outgoing(store: Store, batch: BatchInfo) -> List[Message]:
    """The messages of ``batch`` still waiting for its outcome."""
    return [m for m in store.get_many(list(batch.message_ids))
            if m.state is State.OUTGOING and m.batch_id == batch.id]


def _ask(provider: Provider, batch: BatchInfo, messages: Sequence[Message],
         ) -> Tuple[Optional[ReconcileResult], Optional[ProviderError]]:
    if not provider.capabilities.reconcile:
        return None, NotSupportedError(provider.name, "reconcile")
    try:
        return provider.reconcile(batch.id, messages), None
    except ProviderError as exc:
        return None, exc


def reconcile(
    store: Store,
    provider: Provider,
    *,
    now: dt.datetime,
    stale_after: dt.timedelta = dt.timedelta(minutes=5),
    lookups: Optional[Lookups] = None,
    on_sent: Optional[Callable[[Message], None]] = None,
    on_status: Optional[Callable[[StatusEvent], object]] = None,
    on_opted_out: Optional[OptedOut] = None,
    on_held: Optional[OnHeld] = None,
) -> ReconcileReport:
    """Settle ``provider``'s batches whose outcome is unknown: ``ambiguous`` ones, and
    ``claimed`` ones older than ``stale_after`` (a worker died mid-send); see the module docs.

    ``lookups`` keeps the witnesses and proofs (default: a fresh :class:`Lookups` over
    ``store``, which reads them from its key/value state). Status events the gateway reports
    on the way go to ``on_status``, refusals because the recipient opted out to
    ``on_opted_out``, and each batch held for the first time to ``on_held`` (the batch, its
    held messages, why).
    """
    lookups = lookups if lookups is not None else Lookups(lambda: store)
    report = ReconcileReport()
    stale = store.batches(status="claimed", older_than=now - stale_after)
    # Only this provider's batches: another gateway does not know them, and its "never
    # seen" would send them again.
    for batch in [b for b in store.batches(status="ambiguous") + stale
                  if b.provider == provider.name]:
        messages = _outgoing(store, batch)
        if not messages:
            store.record_results(batch.id, [], now)
            lookups.settled(batch.id)
            continue
        if batch.status == "ambiguous" and (batch.error_text or "").startswith(HELD_PREFIX) \
                and not lookups.may_ask(batch.id, now):
            report.held += len(messages)
            continue
        report.batches += 1
        answer, error = _ask(provider, batch, messages)
        proven, why = False, ""
        if answer is not None and says_never(answer, messages):
            proven = lookups.trusted(provider.name, answer.form, now)
            if not proven:
                proven, why = lookups.probe(store, provider, answer.form, now)
        verdict = judge(provider.name, messages, answer, error, proven, why)
        _carry_out(store, batch, messages, verdict, now, lookups, report, on_held)
        _notify_sent(on_sent, store, verdict.confirm)
        _notify_opted_out(on_opted_out, messages, verdict.confirm)
        if on_status is not None:
            for event in verdict.statuses:
                on_status(event)
    return report


def _carry_out(store: Store, batch: BatchInfo, messages: Sequence[Message], verdict: Verdict,
               now: dt.datetime, lookups: Lookups, report: ReconcileReport,
               on_held: Optional[OnHeld]) -> None:
    """Write what ``verdict`` decided for ``batch``."""
    if verdict.confirm or not (verdict.resend or verdict.hold):
        # Leaves the batch ambiguous while some message is still without a result.
        store.record_results(batch.id, list(verdict.confirm), now)
        report.confirmed += len(verdict.confirm)
    if verdict.resend:
        store.release_batch(batch.id, "the gateway never received these messages (its "
                                      "lookup is proven)")
        report.resendable += len(verdict.resend)
        log.info("batch %s: %d message(s) never reached %s; sending them again", batch.id,
                 len(verdict.resend), batch.provider)
    if not verdict.hold:
        lookups.settled(batch.id)
        return
    report.held += len(verdict.hold)
    if verdict.passing:  # not held: asked again next cycle
        store.mark_batch_ambiguous(batch.id, verdict.reason)
        log.warning("batch %s: %s", batch.id, verdict.reason)
        return
    lookups.held(batch.provider, batch.id, now)
    first = not (batch.error_text or "").startswith(HELD_PREFIX)
    store.mark_batch_ambiguous(batch.id, HELD_PREFIX + verdict.reason)
    if first:
        log.warning("batch %s: %d message(s) held, never sent again by themselves: %s",
                    batch.id, len(verdict.hold), verdict.reason)
        if on_held is not None:
            held_ids = set(verdict.hold)
            on_held(batch, [m for m in messages if m.id in held_ids], verdict.reason)


# -- what people see and decide ------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class HeldBatch:
    """A batch whose outcome is unknown and the messages of it still waiting: ``reason`` says
    why (``held`` once reconciliation could not settle it, else it waits for its first
    question)."""

    id: str
    provider: str
    status: str
    since: dt.datetime
    reason: str
    held: bool
    message_ids: Tuple[str, ...]


def held(store: Store, provider: Optional[str] = None) -> List[HeldBatch]:
    """Every ``ambiguous`` batch (of ``provider``) with messages still waiting, oldest first."""
    out: List[HeldBatch] = []
    for batch in store.batches(status="ambiguous"):
        if provider is not None and batch.provider != provider:
            continue
        waiting = _outgoing(store, batch)
        if not waiting:
            continue
        text = batch.error_text or ""
        out.append(HeldBatch(
            id=batch.id, provider=batch.provider, status=batch.status, since=batch.created_at,
            reason=text[len(HELD_PREFIX):] if text.startswith(HELD_PREFIX) else text,
            held=text.startswith(HELD_PREFIX), message_ids=tuple(m.id for m in waiting)))
    return out


def held_counts(store: Store) -> Dict[str, int]:
    """How many messages wait in ``ambiguous`` batches, by provider (what the dashboard and
    the metrics show): one read of the ambiguous batches, one of their messages."""
    batches = store.batches(status="ambiguous")
    if not batches:
        return {}
    waiting = {m.id for m in store.get_many([i for b in batches for i in b.message_ids])
               if m.state is State.OUTGOING}
    counts: Dict[str, int] = {}
    for batch in batches:
        count = sum(1 for i in batch.message_ids if i in waiting)
        if count:
            counts[batch.provider] = counts.get(batch.provider, 0) + count
    return counts


def resolve(store: Store, target: str, *, sent: bool, now: dt.datetime,
            who: str = "by hand") -> List[str]:
    """A person settles a held batch, or one message of it (``target``: a batch id or a
    message id): ``sent=True`` confirms the gateway has them (they become ``sent``),
    ``sent=False`` puts them back in the queue to be sent again. Returns the message ids
    settled; each gets a ``resolved`` history event.

    Only a batch whose outcome is unknown (``ambiguous``) can be resolved: a batch still
    being sent (``claimed``) raises :class:`~smskit.errors.ValidationError`, an unknown id
    :class:`~smskit.errors.NotFoundError`.
    """
    batch = store.get_batch(target)
    only: Optional[str] = None
    if batch is None:
        message = store.get(target)
        if message is None:
            raise NotFoundError(f"no batch or message with id {target!r}")
        if message.state is not State.OUTGOING or message.batch_id is None:
            raise ValidationError(f"message {target} is {message.state.value} and not held: "
                                  "there is nothing to resolve")
        batch, only = store.get_batch(message.batch_id), message.id
        if batch is None:  # pragma: no cover - a message names an existing batch
            raise NotFoundError(f"no batch {message.batch_id!r}")
    if batch.status != "ambiguous":
        raise ValidationError(f"batch {batch.id} is {batch.status}, not held: only a batch "
                              "whose outcome is unknown can be resolved")
    waiting = [m for m in _outgoing(store, batch) if only is None or m.id == only]
    if not waiting:
        raise ValidationError(f"{target} has no message waiting: there is nothing to resolve")
    ids = [m.id for m in waiting]
    if sent:
        store.record_results(batch.id, [SendResult(message_id=i, state=State.SENT)
                                        for i in ids], now)
        detail = f"confirmed sent {who} (batch {batch.id})"
    elif only is None:
        store.release_batch(batch.id, f"sent again {who}")
        detail = f"put back in the queue {who} (batch {batch.id})"
    else:
        back = store.requeue_messages(batch.id, [Requeue(message_id=only)],
                                      reason=f"sent again {who}", now=now)
        if not back:
            raise ValidationError(f"this store cannot take one message out of batch "
                                  f"{batch.id}: resolve the whole batch")
        detail = f"put back in the queue {who} (batch {batch.id})"
    for message_id in ids:
        store.record_event(message_id, KIND_RESOLVED, detail, provider=batch.provider)
    log.info("%d message(s) of batch %s %s", len(ids), batch.id, detail)
    return ids
