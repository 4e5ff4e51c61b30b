"""Step 6 of the send pipeline (:mod:`smskit.outbox`), and why it cannot send twice.

6. :func:`dispatch`: claim due messages in provider-sized batches, check the blacklist once
   more, send, record each result forward only. A failure where the request may have
   arrived (timeout, reset, 5xx), or a message the gateway returned no result for, leaves the
   batch ``ambiguous`` for :func:`smskit.outbox.reconciling.reconcile` (step 7), which sends
   again only what a proven lookup says the gateway never received.

Each batch goes through three steps: claim it (and check the blacklist once more), ask the
provider, settle it. What the provider's answer means is decided without I/O in
:mod:`smskit.outbox.decisions`; the claiming and settling (store, routing policy, hooks) are
the methods of one run here, shared with the asynchronous loop of :mod:`smskit.outbox.aio`,
which differs from :func:`dispatch` only in how it waits.

Each successful batch may leave a witness for those proofs (:mod:`smskit.outbox.proof`). A
caller that wants to know what became of some messages passes their ids as ``watch``: the
report's :attr:`DispatchReport.outcomes` then says, for each one the call touched, its state
afterwards and why.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from concurrent.futures import Future
from typing import (
    AbstractSet,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
)

import attrs
from typing_extensions import Protocol

from smskit.errors import PartialSendError, ProviderError, RateLimitedError
from smskit.ids import new_id
from smskit.models import Message, SendResult, State
from smskit.outbox import decisions as d
from smskit.outbox.proof import Lookups
from smskit.outbox.reconciling import OptedOut, _notify_opted_out, _notify_sent
from smskit.policy import DndRule
from smskit.provider import Provider
from smskit.store.base import BatchInfo, Requeue, Store
from smskit.store.outreach import OutreachStore

__all__ = ["DispatchPolicy", "DispatchReport", "Dispatched", "Submit", "begin_dispatch",
           "dispatch"]

log = logging.getLogger(__name__)

#: Runs a call in the background: ``submit(fn)`` gives the future of ``fn()``
#: (``ThreadPoolExecutor.submit``).
Submit = Callable[[Callable[[], "d.SendOutcome"]], "Future[d.SendOutcome]"]

# Default wait before a batch that sent nothing is tried again (the gateway's Retry-After wins).
RETRY_DELAY = dt.timedelta(seconds=30)


class DispatchPolicy(Protocol):
    """What :func:`dispatch` asks about a provider besides sending: circuits, failover and
    pacing (:class:`smskit.routing.Router` is the one smskit builds from the settings)."""

    def batch_size(self, provider: Provider) -> int:
        """How many messages to claim at a time for ``provider`` (at most its ``max_batch``)."""
        ...

    def allows(self, provider: str, now: dt.datetime) -> bool:
        """Whether ``provider`` may be sent to now (its circuit is not open)."""
        ...

    def failed(self, provider: str, error: ProviderError, now: dt.datetime) -> bool:
        """``provider`` failed with ``error`` having sent nothing; whether its circuit is open
        (then its queued messages move to the next provider of their routes)."""
        ...

    def succeeded(self, provider: str, now: dt.datetime) -> None:
        """``provider`` took a batch (a half-open circuit closes)."""
        ...

    def reopens_at(self, provider: str) -> Optional[dt.datetime]:
        """When the open circuit of ``provider`` lets a batch through again."""
        ...

    def targets(self, messages: Sequence[Message], failed: str,
                now: dt.datetime) -> List[Requeue]:
        """Where each of ``messages`` (queued for ``failed``) goes instead: the next provider
        of its route whose circuit is closed, with the cost there; those with nowhere to go
        are left out."""
        ...

    def pace(self, provider: str, count: int) -> None:
        """Wait until ``count`` more messages may go to ``provider`` (its rate limit)."""
        ...

    def not_yet(self, provider: str, messages: Sequence[Message],
                rules: Mapping[str, DndRule], now: dt.datetime
                ) -> Dict[str, Optional[dt.datetime]]:
        """Those of ``messages`` (claimed for ``provider``) that may not go out at ``now``,
        each with the next moment allowed (``None``: never): quiet hours, and the
        do-not-disturb ``rules`` of their recipients (by phone)."""
        ...


@attrs.frozen
class Dispatched:
    """What one :func:`dispatch` call made of a watched message: its ``state`` afterwards
    (``outgoing`` while it waits), why (the gateway's refusal, why it waits), and whether it
    is ``held`` in a batch whose outcome is unknown (reconciliation settles it)."""

    state: State
    reason: Optional[str] = None
    held: bool = False


@attrs.define
class DispatchReport:
    """What one :func:`dispatch` call did. ``moved``: messages moved to another provider
    while this one's circuit was open, by the provider they went to. ``outcomes``: for each
    watched message the call touched, what became of it (:class:`Dispatched`)."""

    batches: int = 0
    sent: int = 0
    rejected: int = 0
    canceled: int = 0
    released: int = 0
    ambiguous: int = 0
    deferred: int = 0
    retry_at: Optional[dt.datetime] = None
    errors: List[str] = attrs.field(factory=list)
    moved: Dict[str, int] = attrs.field(factory=dict)
    outcomes: Dict[str, Dispatched] = attrs.field(factory=dict)

    @classmethod
    def merge(cls, reports: Sequence[DispatchReport]) -> DispatchReport:
        """The sum of several calls (one per provider): counts added, the earliest
        ``retry_at``, the outcomes of all (a later call's outcome for a message wins)."""
        total = cls()
        for report in reports:
            total.batches += report.batches
            total.sent += report.sent
            total.rejected += report.rejected
            total.canceled += report.canceled
            total.released += report.released
            total.ambiguous += report.ambiguous
            total.deferred += report.deferred
            total.errors.extend(report.errors)
            total.outcomes.update(report.outcomes)
            for name, count in report.moved.items():
                total.moved[name] = total.moved.get(name, 0) + count
            if report.retry_at is not None and (total.retry_at is None
                                                or report.retry_at < total.retry_at):
                total.retry_at = report.retry_at
        return total


class _Run:
    """One :func:`dispatch` call: the store, the provider, the policy and the report."""

    def __init__(self, store: Store, provider: Provider, now: dt.datetime,
                 policy: Optional[DispatchPolicy], report: DispatchReport,
                 watch: AbstractSet[str] = frozenset(),
                 lookups: Optional[Lookups] = None) -> None:
        self.store = store
        self.provider = provider
        self.name = provider.name
        self.now = now
        self.policy = policy
        self.report = report
        self.watch = watch
        self.lookups = lookups if provider.capabilities.reconcile else None

    def note(self, ids: Iterable[str], state: State, reason: Optional[str],
             held: bool = False) -> None:
        """What became of the watched ones among ``ids``."""
        for message_id in ids:
            if message_id in self.watch:
                self.report.outcomes[message_id] = Dispatched(state, reason, held)

    def note_results(self, results: Iterable[SendResult]) -> None:
        """Each result of a watched message."""
        for result in results:
            if result.message_id in self.watch:
                self.report.outcomes[result.message_id] = Dispatched(
                    result.state, result.error_text if result.state is not State.SENT
                    else None)

    def record(self, batch: BatchInfo, sent: Sequence[Message],
               results: Sequence[SendResult], settled: Sequence[SendResult] = (),
               why: Optional[str] = None) -> None:
        """Record ``results`` (and ``settled``: canceled, rejected...) of ``batch``; any of
        ``sent`` without a result may have gone out (``why``): the store leaves the batch
        ``ambiguous`` for reconciliation in the same write."""
        ours = {m.id for m in sent}
        mine = [r for r in results if r.message_id in ours]
        self.store.record_results(batch.id, [*settled, *mine], self.now)
        self.report.sent += sum(1 for r in mine if r.state is State.SENT)
        self.report.rejected += sum(1 for r in mine if r.state is State.REJECTED)
        self.note_results([*settled, *mine])
        if self.lookups is not None:
            self.lookups.saw_accepted(self.name, batch.id, mine, self.now)
        missing = ours - {r.message_id for r in mine}
        if missing:
            why = why or f"{self.name} returned no result for {len(missing)} message(s) of " \
                         "the batch"
            self.store.mark_batch_ambiguous(batch.id, why)  # the reason, over the store's
            self.held(batch, missing, why)

    def held(self, batch: BatchInfo, ids: Iterable[str], why: str) -> None:
        """Messages of ``batch`` (ambiguous now) that may have gone out: counted, noted."""
        found = set(ids)
        if found:
            self.report.ambiguous += len(found)
            self.note(found, State.OUTGOING, why, held=True)
            log.warning("batch %s: %d message(s) left for reconciliation: %s", batch.id,
                        len(found), why)

    def tripped(self, error: ProviderError) -> bool:
        """Tell the policy about a "sent nothing" error; whether the circuit is now open."""
        return self.policy is not None and self.policy.failed(self.name, error, self.now)

    def retry_at(self, error: Optional[BaseException], tripped: bool) -> dt.datetime:
        delay = _retry_delay(error) if isinstance(error, ProviderError) else RETRY_DELAY
        retry_at = self.now + delay
        reopens = self.policy.reopens_at(self.name) if tripped and self.policy else None
        return max(retry_at, reopens) if reopens is not None else retry_at

    def move_out(self, batch: BatchInfo, messages: Sequence[Message], why: str) -> Set[str]:
        """Move ``messages`` (still in ``batch``, certainly never sent) to the next provider
        of their routes; the ids moved."""
        if self.policy is None or not messages:
            return set()
        items = self.policy.targets(messages, self.name, self.now)
        if not items:
            return set()
        moved = self.store.requeue_messages(batch.id, items, reason=why, now=self.now)
        to = {i.message_id: i.provider or self.name for i in items}
        for message_id in moved:
            self.report.moved[to[message_id]] = self.report.moved.get(to[message_id], 0) + 1
            self.note([message_id], State.OUTGOING, f"moved to {to[message_id]}: {why}")
        if moved:
            log.warning("%d message(s) moved from %s to %s: %s", len(moved), self.name,
                        ", ".join(sorted({to[i] for i in moved})), why)
        return set(moved)

    def put_back(self, batch: BatchInfo, messages: Sequence[Message], why: str,
                 retry_at: dt.datetime) -> int:
        """Put ``messages`` of ``batch`` (never attempted: no attempt is counted) back in the
        queue at ``retry_at``, and release the batch; how many went back."""
        if not messages:
            self.store.release_batch(batch.id, why, retry_at=retry_at)
            return 0
        back = self.store.requeue_messages(batch.id, [Requeue(message_id=m.id) for m in
                                                      messages], reason=why, now=self.now,
                                           retry_at=retry_at)
        if len(back) < len(messages):
            log.debug("batch %s: %d message(s) go back with the batch", batch.id,
                      len(messages) - len(back))
        # What requeue did not take (a store without it) goes back with the batch, one
        # attempt more each.
        self.store.release_batch(batch.id, why, retry_at=retry_at)
        self.note([m.id for m in messages], State.OUTGOING, f"{why}; sent from {retry_at}")
        return len(messages)

    def batch_size(self) -> int:
        """How many messages to claim at a time (the policy's rate limit, or max_batch)."""
        if self.policy is not None:
            return self.policy.batch_size(self.provider)
        return self.provider.max_batch

    def next_batch(self, size: int, batch_id: Optional[str] = None) -> Optional[d.Claimed]:
        """Claim the next due batch of at most ``size`` messages (as ``batch_id``, default a
        new id), checked against the blacklist and paced; ``None`` when nothing is due (or
        the circuit is open: then the due messages move on, see :meth:`drain`)."""
        policy = self.policy
        if policy is not None and not policy.allows(self.name, self.now):
            self.drain()
            return None
        found = self.store.claim_batch_messages(self.name, size, self.now,
                                                batch_id or new_id())
        if found is None:
            return None
        return self.checked(*found)

    def adopt(self, batch: BatchInfo, messages: Sequence[Message]) -> Optional[d.Claimed]:
        """A batch claimed elsewhere (opened as its messages were inserted,
        :class:`~smskit.store.base.ClaimingStore`), taken as :meth:`next_batch` takes one;
        ``None`` when the circuit is open: then it goes back to the queue, never attempted,
        and the due messages move on (:meth:`drain`)."""
        policy = self.policy
        if policy is not None and not policy.allows(self.name, self.now):
            why = "circuit open"
            reopens = policy.reopens_at(self.name) or self.now + RETRY_DELAY
            self.put_back(batch, messages, why, reopens)
            self.drain()
            return None
        return self.checked(batch, messages)

    def checked(self, batch: BatchInfo, messages: Sequence[Message]) -> Optional[d.Claimed]:
        """A claimed batch counted, checked against the blacklist and the hours, and paced;
        ``None`` when it had to go back whole (see :meth:`in_hours`)."""
        policy = self.policy
        self.report.batches += 1
        # The blacklist is checked again at the last moment: an opt-out that arrived after the
        # message was queued (a scheduled send, a deferred one) still wins.
        found = d.Claimed.check(batch, messages,
                                self.store.blacklisted([m.phone for m in messages]))
        claimed = self.in_hours(found)
        if claimed is None:
            return None
        self.report.canceled += len(claimed.canceled)
        if policy is not None and claimed.to_send:
            policy.pace(self.name, len(claimed.to_send))
        return claimed

    def in_hours(self, claimed: d.Claimed) -> Optional[d.Claimed]:
        """``claimed`` without the messages that may not go out now: the hours are checked
        again at the last moment too. A message was deferred when it was composed, but it
        may be claimed later than that (a campaign resumed at night, a batch retried after
        an outage, a backlog still draining when the quiet hours begin, a do-not-disturb
        rule set since): each such message goes back to the queue, due when it may be sent,
        no attempt counted; one whose recipient's rule now leaves no time is canceled.
        ``None`` when the store cannot take messages out of a batch
        (:meth:`~smskit.store.base.Store.requeue_messages` took fewer): then the whole batch
        goes back, due at the earliest of those moments."""
        store, batch = self.store, claimed.batch
        # A policy written before not_yet was part of the protocol has no opinion.
        not_yet = getattr(self.policy, "not_yet", None)
        if not_yet is None or not claimed.to_send:
            return claimed
        rules = (store.dnd_contacts([m.phone for m in claimed.to_send], self.now)
                 if isinstance(store, OutreachStore) else {})
        later: Dict[str, Optional[dt.datetime]] = not_yet(self.name, claimed.to_send, rules,
                                                          self.now)
        if not later:
            return claimed
        waiting: Dict[dt.datetime, List[Message]] = {}
        never: List[Message] = []
        for message in claimed.to_send:
            if message.id in later:
                when = later[message.id]
                if when is None:
                    never.append(message)
                else:
                    waiting.setdefault(when, []).append(message)
        why = "quiet hours or do-not-disturb"
        back: Set[str] = set()
        for when, group in sorted(waiting.items()):
            done = store.requeue_messages(batch.id, [Requeue(message_id=m.id) for m in group],
                                          reason=why, now=self.now, retry_at=when)
            back.update(done)
            self.note(done, State.OUTGOING, f"{why}: sent from {when.isoformat()}")
        self.report.deferred += len(back)
        if back:
            log.info("batch %s: %d message(s) wait for the hours they may be sent in",
                     batch.id, len(back))
        canceled = claimed.canceled + tuple(
            SendResult(message_id=m.id, state=State.CANCELED, error_code="dnd",
                       error_text="do-not-disturb leaves no time to send") for m in never)
        stuck = [when for when, group in waiting.items() if any(m.id not in back for m in group)]
        if stuck:
            if canceled:
                store.record_results(batch.id, canceled, self.now)
                self.note_results(canceled)
                self.report.canceled += len(canceled)
            retry_at = min(stuck)
            store.release_batch(batch.id, why, retry_at=retry_at)
            self.note([m.id for m in claimed.to_send if m.id not in back],
                      State.OUTGOING, f"{why}: sent from {retry_at.isoformat()}")
            return None
        keep = tuple(m for m in claimed.to_send if m.id not in later)
        return d.Claimed(batch, claimed.messages, canceled, keep)

    def settle(self, claimed: d.Claimed, outcome: d.SendOutcome,
               on_sent: Optional[Callable[[Message], None]] = None,
               on_opted_out: Optional[OptedOut] = None) -> bool:
        """Record what became of ``claimed`` given the provider's ``outcome`` (see
        :func:`smskit.outbox.decisions.decide`); whether to go on with the next batch. An
        unexpected exception of the provider marks the batch ambiguous and is raised again."""
        decision = d.decide(claimed, outcome)
        batch, to_send, canceled = claimed.batch, claimed.to_send, claimed.canceled
        store, report, now, verdict = self.store, self.report, self.now, decision.verdict
        error = decision.error
        if verdict == d.SENT:
            if self.policy is not None and to_send:
                self.policy.succeeded(self.name, now)
            self.record(batch, to_send, decision.results, canceled)
        elif verdict == d.REFUSED:
            # The gateway refused the request as a whole: nothing went out, and sending the
            # same request again would be refused again.
            store.record_results(batch.id, [*canceled, *decision.results], now)
            self.note_results([*canceled, *decision.results])
            report.rejected += len(decision.results)
            report.errors.append(decision.reason)
            return True
        elif verdict == d.PARTIAL and isinstance(error, PartialSendError):
            report.errors.append(decision.reason)
            _partial(self, batch, to_send, canceled, error)
            log.warning("dispatch of batch %s stopped part-way: %s", batch.id, error)
        elif verdict == d.RELEASED and isinstance(error, ProviderError):
            report.errors.append(decision.reason)
            self.release(batch, decision.unsent, canceled, error)
            return False
        elif verdict == d.AMBIGUOUS:
            report.errors.append(decision.reason)
            _unknown(self, batch, to_send, canceled, decision.reason)
            log.warning("dispatch of batch %s stopped: %s", batch.id, error)
            return False
        else:  # the provider crashed: the request may have gone out
            _unknown(self, batch, to_send, canceled, decision.reason)
            if error is not None:
                raise error
        _notify_sent(on_sent, store, decision.results)
        _notify_opted_out(on_opted_out, to_send, decision.results)
        return decision.go_on

    def release(self, batch: BatchInfo, unsent: Sequence[Message],
                canceled: Sequence[SendResult], error: ProviderError) -> None:
        """The provider sent nothing: the batch goes back to the queue (or, when the failure
        opens the circuit, its messages move to the next provider of their routes)."""
        if canceled:
            self.store.record_results(batch.id, canceled, self.now)
            self.note_results(canceled)
        tripped = self.tripped(error)
        retry_at = self.retry_at(error, tripped)
        moved = self.move_out(batch, unsent, f"circuit open: {error}") if tripped else set()
        # The rest was attempted: it goes back with the batch, one attempt more each.
        self.store.release_batch(batch.id, str(error), retry_at=retry_at)
        rest = [m.id for m in unsent if m.id not in moved]
        self.note(rest, State.OUTGOING, f"not sent yet: {error}; tried again from {retry_at}")
        self.report.released += len(rest)
        self.report.retry_at = retry_at
        if tripped:  # every due message of this provider moves too
            self.drain()
        log.warning("dispatch of batch %s stopped: %s", batch.id, error)

    def drain(self) -> None:
        """The circuit is open: move every due message of this provider to the next provider
        of its route; those with nowhere to go wait for the circuit to let them through."""
        if self.policy is None:
            return
        why = "circuit open"
        reopens = self.policy.reopens_at(self.name) or self.now + RETRY_DELAY
        while True:
            claimed = self.store.claim_batch_messages(self.name, self.provider.max_batch,
                                                      self.now, new_id())
            if claimed is None:
                return
            batch, messages = claimed
            moved = self.move_out(batch, messages, why)
            self.put_back(batch, [m for m in messages if m.id not in moved], why, reopens)


def dispatch(
    store: Store,
    provider: Provider,
    *,
    now: dt.datetime,
    max_batches: Optional[int] = None,
    on_sent: Optional[Callable[[Message], None]] = None,
    on_opted_out: Optional[OptedOut] = None,
    policy: Optional[DispatchPolicy] = None,
    watch: AbstractSet[str] = frozenset(),
    lookups: Optional[Lookups] = None,
    first: Optional[Tuple[BatchInfo, Sequence[Message]]] = None,
) -> DispatchReport:
    """Send due ``outgoing`` messages in batches of ``provider.max_batch`` until none is due.

    Stops early when the gateway is unavailable (the batch goes back to the queue, due at
    ``report.retry_at``) or the outcome of a request is unknown (the batch is left for
    reconciliation). Messages of a batch without a result are left for reconciliation
    too; of a batch that stopped part-way (:class:`~smskit.errors.PartialSendError`), the
    results are recorded, the messages never sent go back to the queue and only the
    ambiguous ones wait for reconciliation. ``on_opted_out`` hears of each message the
    gateway refused because its recipient opted out (:attr:`SendResult.opted_out`).

    With a ``policy`` (routing): a "sent nothing" failure may open the provider's circuit;
    then the batch and every due message of this provider move to the next provider of
    their routes (:class:`DispatchPolicy`), and nothing is sent here until the circuit lets
    a batch through again. Batches are claimed and paced by the policy's rate limit.

    ``watch``: message ids whose outcome the caller wants (:attr:`DispatchReport.outcomes`).
    ``lookups``: where accepted batches leave witnesses for reconciliation's proofs (default:
    the store's key/value state). ``first``: a batch of ``provider`` already claimed (a bulk
    send's chunk, opened as it was inserted), sent before anything else is claimed.
    """
    return begin_dispatch(store, provider, now=now, max_batches=max_batches, on_sent=on_sent,
                          on_opted_out=on_opted_out, policy=policy, watch=watch,
                          lookups=lookups, first=first)()


def begin_dispatch(
    store: Store,
    provider: Provider,
    *,
    now: dt.datetime,
    max_batches: Optional[int] = None,
    on_sent: Optional[Callable[[Message], None]] = None,
    on_opted_out: Optional[OptedOut] = None,
    policy: Optional[DispatchPolicy] = None,
    watch: AbstractSet[str] = frozenset(),
    lookups: Optional[Lookups] = None,
    first: Optional[Tuple[BatchInfo, Sequence[Message]]] = None,
    submit: Optional[Submit] = None,
) -> Callable[[], DispatchReport]:
    """:func:`dispatch`, in two halves. With ``first`` and ``submit``: ``first``'s request is
    handed to ``submit`` (which runs it in the background, such as a one-thread executor's
    ``submit``) before this returns, and the function returned waits for it and settles it
    on the calling thread (the store's writes, the policy, the hooks); nothing else is
    claimed (the caller dispatches what else is due when it is done). Without ``submit``,
    the returned function is :func:`dispatch`.

    A bulk send stores its next chunk meanwhile, so that the gateway's time to answer is
    not added to the time to compose and store. Nothing else changes: ``first`` is already
    claimed and durable before its request, and until it is settled it is a claimed batch
    like any other (a crash leaves it to reconciliation).
    """
    lookups = lookups if lookups is not None else Lookups(lambda: store)
    run = _Run(store, provider, now, policy, DispatchReport(), watch, lookups)
    started: Optional[Tuple[d.Claimed, Future[d.SendOutcome]]] = None
    if first is not None and submit is not None:
        claimed = run.adopt(*first)
        first = None
        if claimed is None:  # the circuit is open: put back, and the rest moved on
            return lambda: run.report
        started = (claimed, submit(functools.partial(_request, provider, claimed)))

    def finish() -> DispatchReport:
        nonlocal first
        if started is not None:
            run.settle(started[0], started[1].result(), on_sent, on_opted_out)
            return run.report
        size = run.batch_size()
        while max_batches is None or run.report.batches < max_batches:
            if first is not None:
                claimed = run.adopt(*first)
                first = None
            else:
                claimed = run.next_batch(size)
            if claimed is None:
                break
            if not run.settle(claimed, _request(provider, claimed), on_sent, on_opted_out):
                break
        return run.report

    return finish


def _request(provider: Provider, claimed: d.Claimed) -> d.SendOutcome:
    """The provider's answer to ``claimed``'s request, or what it raised (decided on by
    :meth:`_Run.settle`, which raises it again when unexpected)."""
    try:
        return (provider.send_batch(claimed.to_send, batch_id=claimed.batch.id)
                if claimed.to_send else [])
    except Exception as exc:
        return exc


def _unknown(run: _Run, batch: BatchInfo, to_send: Sequence[Message],
             canceled: Sequence[SendResult], why: str) -> None:
    """The request may have arrived: record the canceled ones (the store then leaves the
    batch ambiguous), say why, and leave the rest for reconciliation."""
    if canceled:
        run.store.record_results(batch.id, canceled, run.now)
        run.note_results(canceled)
    run.store.mark_batch_ambiguous(batch.id, why)
    run.held(batch, [m.id for m in to_send], why)


def _partial(run: _Run, batch: BatchInfo, to_send: Sequence[Message],
             canceled: Sequence[SendResult], exc: PartialSendError) -> None:
    """A batch stopped part-way: record what was sent or refused, put back what certainly
    was not (elsewhere when the stop opened the circuit), reconcile the rest."""
    cause = exc.__cause__
    stopped_clean = not exc.ambiguous  # the stop itself sent nothing
    tripped = stopped_clean and isinstance(cause, ProviderError) and run.tripped(cause)
    unsent = [m for m in to_send if m.id in set(exc.unsent)]
    # Requeued first, so that recording the results cannot leave them in a finished batch.
    moved = run.move_out(batch, unsent, f"circuit open: {cause or exc}") if tripped else set()
    rest = [m for m in unsent if m.id not in moved]
    back: List[str] = []
    if rest:
        retry_at = run.retry_at(cause, tripped) if stopped_clean else None
        back = run.store.requeue_messages(batch.id, [Requeue(message_id=m.id) for m in rest],
                                          reason=str(exc), now=run.now, retry_at=retry_at)
        if retry_at is not None:
            run.report.retry_at = retry_at
        run.note(back, State.OUTGOING, f"not sent yet: {cause or exc}")
    run.report.released += len(back)
    gone = moved | set(back)
    run.record(batch, [m for m in to_send if m.id not in gone], exc.results, canceled,
               why=str(exc))


def _retry_delay(exc: ProviderError) -> dt.timedelta:
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        return dt.timedelta(seconds=max(0.0, exc.retry_after))
    return RETRY_DELAY
