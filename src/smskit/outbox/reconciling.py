"""Step 7 of the send pipeline (:mod:`smskit.outbox`): settle batches whose outcome is unknown.

A batch is ``ambiguous`` when its request may have reached the gateway (a timeout, a reset,
a 5xx, messages the gateway returned no result for), or still ``claimed`` long after a worker
died mid-send. :func:`reconcile` asks the gateway about each such batch
(:meth:`~smskit.provider.Provider.reconcile`) and acts on the answer;
:func:`smskit.outbox.decisions.decide_reconcile` is the decision, with no I/O, and
:class:`Reconciliation` the store steps around it, which the asynchronous loop of
:mod:`smskit.outbox.aio` shares:

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
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import attrs

from smskit.errors import NotFoundError, NotSupportedError, ValidationError
from smskit.models import Message, SendResult, State, StatusEvent
from smskit.outbox import decisions as d
from smskit.outbox.decisions import ReconcileOutcome
from smskit.outbox.proof import Lookups, Question
from smskit.provider import Provider
from smskit.store.base import BatchInfo, Requeue, Store

__all__ = [
    "HELD_PREFIX",
    "KIND_RESOLVED",
    "HeldBatch",
    "ReconcileReport",
    "Reconciliation",
    "held",
    "held_counts",
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


class Reconciliation:
    """One :func:`reconcile` call: its store steps around the provider's answers, shared with
    the asynchronous loop of :mod:`smskit.outbox.aio` (which only waits differently)."""

    def __init__(self, store: Store, provider: str, now: dt.datetime, *,
                 lookups: Optional[Lookups] = None,
                 on_sent: Optional[Callable[[Message], None]] = None,
                 on_status: Optional[Callable[[StatusEvent], object]] = None,
                 on_opted_out: Optional[OptedOut] = None,
                 on_held: Optional[OnHeld] = None) -> None:
        self.store = store
        self.provider = provider
        self.now = now
        self.lookups = lookups if lookups is not None else Lookups(lambda: store)
        self.on_sent = on_sent
        self.on_status = on_status
        self.on_opted_out = on_opted_out
        self.on_held = on_held
        self.report = ReconcileReport()

    def batches(self, stale_after: dt.timedelta) -> List[BatchInfo]:
        """The provider's ``ambiguous`` batches and its ``claimed`` ones older than
        ``stale_after`` (a held one only when it may be asked about again)."""
        stale = self.store.batches(status="claimed", older_than=self.now - stale_after)
        # Only this provider's batches: another gateway does not know them, and its "never
        # seen" would send them again.
        return [b for b in self.store.batches(status="ambiguous") + stale
                if b.provider == self.provider]

    def outgoing(self, batch: BatchInfo) -> List[Message]:
        """The messages of ``batch`` to ask about: still ``outgoing`` in it (none: the batch is
        closed), unless it is held and was asked about less than
        :data:`~smskit.outbox.proof.HOLD_RETRY` ago."""
        messages = [m for m in self.store.get_many(list(batch.message_ids))
                    if m.state is State.OUTGOING and m.batch_id == batch.id]
        if not messages:
            self.store.record_results(batch.id, [], self.now)
            self.lookups.settled(batch.id)
            return []
        if batch.status == "ambiguous" and (batch.error_text or "").startswith(HELD_PREFIX) \
                and not self.lookups.may_ask(batch.id, self.now):
            self.report.held += len(messages)
            return []
        self.report.batches += 1
        return messages

    def question(self, messages: Sequence[Message],
                 outcome: ReconcileOutcome) -> Union[Question, Tuple[bool, str]]:
        """Whether ``outcome`` may be acted on as it is: ``(proven, why)``; or the
        :class:`~smskit.outbox.proof.Question` to ask first, to prove its lookup (its "never
        received" counts only from a proven one)."""
        if not d.says_never(messages, outcome) or isinstance(outcome, BaseException):
            return False, ""
        if self.lookups.trusted(self.provider, outcome.form, self.now):
            return True, ""
        return self.lookups.question(self.store, self.provider, outcome.form, self.now)

    def answered(self, question: Question, outcome: ReconcileOutcome) -> Tuple[bool, str]:
        """What the answer to a probe proves (see :meth:`question`)."""
        return self.lookups.answer(question, outcome, self.now)

    def settle(self, batch: BatchInfo, messages: Sequence[Message], outcome: ReconcileOutcome,
               proven: bool = False, why: str = "") -> None:
        """Record what the gateway said about ``batch`` (see
        :func:`smskit.outbox.decisions.decide_reconcile`); an unexpected exception of the
        provider is raised again."""
        decision = d.decide_reconcile(messages, outcome, proven=proven, why=why,
                                      provider=self.provider)
        if decision.verdict == d.CRASHED and decision.error is not None:
            raise decision.error
        store, report, now = self.store, self.report, self.now
        if decision.verdict == d.CONFIRMED:
            # Leaves the batch ambiguous while a message is still without a result.
            store.record_results(batch.id, list(decision.results), now)
            report.confirmed += len(decision.results)
        resend = decision.resend
        if resend:
            store.release_batch(batch.id, "the gateway never received these messages (its "
                                          "lookup is proven)")
            report.resendable += len(resend)
            log.info("batch %s: %d message(s) never reached %s; sending them again", batch.id,
                     len(resend), batch.provider)
        held = decision.hold
        if held:
            self._hold(batch, messages, held, decision)
        else:
            self.lookups.settled(batch.id)
        _notify_sent(self.on_sent, store, decision.results)
        _notify_opted_out(self.on_opted_out, messages, decision.results)
        if self.on_status is not None:
            for event in decision.statuses:
                self.on_status(event)

    def _hold(self, batch: BatchInfo, messages: Sequence[Message], ids: Sequence[str],
              decision: d.ReconcileDecision) -> None:
        self.report.held += len(ids)
        if decision.verdict == d.UNKNOWN:  # passing: not held, asked again next cycle
            self.store.mark_batch_ambiguous(batch.id, decision.reason)
            log.warning("batch %s: %s", batch.id, decision.reason)
            return
        self.lookups.held(batch.provider, batch.id, self.now)
        first = not (batch.error_text or "").startswith(HELD_PREFIX)
        self.store.mark_batch_ambiguous(batch.id, HELD_PREFIX + decision.reason)
        if first:
            log.warning("batch %s: %d message(s) held, never sent again by themselves: %s",
                        batch.id, len(ids), decision.reason)
            if self.on_held is not None:
                wanted = set(ids)
                self.on_held(batch, [m for m in messages if m.id in wanted], decision.reason)


def _ask(provider: Provider, batch_id: str,
         messages: Sequence[Message]) -> ReconcileOutcome:
    try:
        return provider.reconcile(batch_id, messages)
    except Exception as exc:  # decided on in settle(); re-raised there when unexpected
        return exc


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
    held messages, why). A provider without ``capabilities.reconcile`` is not asked: its
    batches are held for a person.
    """
    run = Reconciliation(store, provider.name, now, lookups=lookups, on_sent=on_sent,
                         on_status=on_status, on_opted_out=on_opted_out, on_held=on_held)
    for batch in run.batches(stale_after):
        messages = run.outgoing(batch)
        if not messages:
            continue
        outcome: ReconcileOutcome = (_ask(provider, batch.id, messages)
                                     if provider.capabilities.reconcile
                                     else NotSupportedError(provider.name, "reconcile"))
        step = run.question(messages, outcome)
        if isinstance(step, Question):
            step = run.answered(step, _ask(provider, step.batch_id, [step.message]))
        proven, why = step
        run.settle(batch, messages, outcome, proven, why)
    return run.report


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


def _outgoing(store: Store, batch: BatchInfo) -> List[Message]:
    """The messages of ``batch`` still waiting for its outcome."""
    return [m for m in store.get_many(list(batch.message_ids))
            if m.state is State.OUTGOING and m.batch_id == batch.id]


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
