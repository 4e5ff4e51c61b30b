"""The send pipeline's asynchronous loops, for :class:`smskit.AsyncSmsKit`.

They are the loops of :mod:`smskit.outbox.dispatching` and :mod:`smskit.outbox.sending`
awaiting instead of blocking: the provider through its async twins
(:meth:`~smskit.provider.Provider.asend_batch`, :meth:`~smskit.provider.Provider.areconcile`),
the store, the routing policy and the plugin hooks (all synchronous) through a worker thread
(``run``, default :func:`smskit.threads.in_thread`). Everything else is shared: what a
provider's answer means (:mod:`smskit.outbox.decisions`), how a claimed batch is checked and a
decided one settled, how a chunk of recipients is composed and stored. Each batch costs two
thread hops (claim, settle) around the provider's request; each chunk one.
"""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import logging
from typing import (
    AbstractSet,
    Any,
    AsyncIterable,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from typing_extensions import Protocol

from smskit.errors import NotSupportedError
from smskit.ids import new_id
from smskit.models import Message, StatusEvent
from smskit.outbox import compose as c
from smskit.outbox import decisions as d
from smskit.outbox.dispatching import DispatchPolicy, DispatchReport, _Run
from smskit.outbox.proof import Lookups, Question
from smskit.outbox.reconciling import OnHeld, OptedOut, ReconcileReport, Reconciliation
from smskit.outbox.sending import BulkDispatch, Opened
from smskit.provider import Provider
from smskit.store.base import BatchInfo, InsertClaim, Store
from smskit.threads import in_thread

__all__ = ["Begin", "Runner", "StoreChunk", "abegin_dispatch", "adispatch", "areconcile",
           "asend_many"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A chunk of numbered recipients.
Chunk = List[Tuple[int, c.Recipient]]


class Runner(Protocol):
    """Runs a synchronous call off the event loop: ``await run(func, *args)``."""

    def __call__(self, func: Callable[..., T], *args: Any) -> Awaitable[T]:
        """``func(*args)`` in a worker thread."""
        ...


async def adispatch(
    store: Store,
    provider: Provider,
    *,
    now: dt.datetime,
    max_batches: Optional[int] = None,
    on_sent: Optional[Callable[[Message], None]] = None,
    on_opted_out: Optional[OptedOut] = None,
    policy: Optional[DispatchPolicy] = None,
    run: Runner = in_thread,
    in_flight: Optional[Dict[str, Any]] = None,
    watch: AbstractSet[str] = frozenset(),
    lookups: Optional[Lookups] = None,
) -> DispatchReport:
    """:func:`smskit.outbox.dispatching.dispatch`, awaiting the provider's
    :meth:`~smskit.provider.Provider.asend_batch`. The callbacks run in the worker thread.

    ``in_flight`` (batch id -> :class:`asyncio.Event`) holds the batches being sent, each
    event set once its batch is settled: a concurrent send whose message another dispatch
    claimed waits for that (:class:`smskit.AsyncSmsKit` does). ``watch`` and ``lookups`` as
    for :func:`~smskit.outbox.dispatching.dispatch`.
    """
    import asyncio

    lookups = lookups if lookups is not None else Lookups(lambda: store)
    batches = _Run(store, provider, now, policy, DispatchReport(), watch, lookups)
    size = batches.batch_size()
    while max_batches is None or batches.report.batches < max_batches:
        # The batch is known to be in flight before its claim can be seen by anyone.
        batch_id, settled = new_id(), asyncio.Event()
        if in_flight is not None:
            in_flight[batch_id] = settled
        try:
            claimed = await run(batches.next_batch, size, batch_id)
            if claimed is None:
                break
            go_on = await run(batches.settle, claimed, await _arequest(provider, claimed),
                              on_sent, on_opted_out)
        finally:
            settled.set()
            if in_flight is not None:
                in_flight.pop(batch_id, None)
        if not go_on:
            break
    return batches.report


async def abegin_dispatch(
    store: Store,
    provider: Provider,
    first: Tuple[BatchInfo, Sequence[Message]],
    *,
    now: dt.datetime,
    on_sent: Optional[Callable[[Message], None]] = None,
    on_opted_out: Optional[OptedOut] = None,
    policy: Optional[DispatchPolicy] = None,
    run: Runner = in_thread,
    watch: AbstractSet[str] = frozenset(),
    lookups: Optional[Lookups] = None,
) -> Callable[[], Awaitable[DispatchReport]]:
    """:func:`smskit.outbox.dispatching.begin_dispatch`, awaiting: ``first`` (a batch opened
    as its messages were inserted) is taken as a claim is (in the worker thread), its request
    started as a task of its own, and the coroutine function returned awaits it and settles
    the batch (in the worker thread); nothing else is claimed. A bulk send stores its next
    chunk meanwhile."""
    import asyncio

    lookups = lookups if lookups is not None else Lookups(lambda: store)
    batches = _Run(store, provider, now, policy, DispatchReport(), watch, lookups)
    claimed = await run(batches.adopt, *first)
    if claimed is None:  # the circuit is open: put back, and the rest moved on
        async def nothing() -> DispatchReport:
            return batches.report
        return nothing
    request = asyncio.ensure_future(_arequest(provider, claimed))

    async def finish() -> DispatchReport:
        await run(batches.settle, claimed, await request, on_sent, on_opted_out)
        return batches.report

    return finish


async def _arequest(provider: Provider, claimed: d.Claimed) -> d.SendOutcome:
    """The provider's answer to ``claimed``'s request, or what it raised."""
    try:
        return (await provider.asend_batch(claimed.to_send, batch_id=claimed.batch.id)
                if claimed.to_send else [])
    except Exception as exc:  # decided on in settle(); re-raised there when unexpected
        return exc


async def areconcile(
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
    run: Runner = in_thread,
) -> ReconcileReport:
    """:func:`smskit.outbox.reconciling.reconcile`, awaiting the provider's
    :meth:`~smskit.provider.Provider.areconcile` (and, before a "never received" is trusted,
    its answer about a known send that proves the lookup). The callbacks run in the worker
    thread."""
    steps = Reconciliation(store, provider.name, now, lookups=lookups, on_sent=on_sent,
                           on_status=on_status, on_opted_out=on_opted_out, on_held=on_held)
    for batch in await run(steps.batches, stale_after):
        messages = await run(steps.outgoing, batch)
        if not messages:
            continue
        outcome = (await _aask(provider, batch.id, messages) if provider.capabilities.reconcile
                   else NotSupportedError(provider.name, "reconcile"))
        step = await run(steps.question, messages, outcome)
        if isinstance(step, Question):
            step = await run(steps.answered, step,
                             await _aask(provider, step.batch_id, [step.message]))
        proven, why = step
        await run(steps.settle, batch, messages, outcome, proven, why)
    return steps.report


async def _aask(provider: Provider, batch_id: str,
                messages: Sequence[Message]) -> d.ReconcileOutcome:
    try:
        return await provider.areconcile(batch_id, messages)
    except Exception as exc:  # decided on in settle(); re-raised there when unexpected
        return exc


#: Stores a chunk (steps 1 to 5), opening the batch a claim describes when the store can: the
#: outcomes and that batch (:func:`smskit.outbox.sending.store_chunk_claimed`, bound).
StoreChunk = Callable[[Sequence[Tuple[int, c.Recipient]], Optional[InsertClaim]],
                      Tuple[List[c.Outcome], Optional[Opened]]]
#: Starts the request of a batch opened at insert (:func:`abegin_dispatch`, bound).
Begin = Callable[[AbstractSet[str], Opened], Awaitable[Callable[[], Awaitable[DispatchReport]]]]


async def asend_many(
    recipients: Union[Iterable[c.Recipient], AsyncIterable[c.Recipient]],
    store_chunk: StoreChunk,
    *,
    chunk_size: int,
    on_outcome: Optional[Callable[[c.Outcome], Any]] = None,
    dispatch: Optional[Callable[[AbstractSet[str]], Awaitable[DispatchReport]]] = None,
    run: Runner = in_thread,
    claim: Optional[Callable[[], Optional[InsertClaim]]] = None,
    begin: Optional[Begin] = None,
) -> c.BulkSummary:
    """:func:`smskit.outbox.sending.send_many`, a chunk at a time: ``store_chunk`` (steps 1 to
    5) in a worker thread, then ``dispatch`` (given the ids whose outcome its report should
    give), then ``on_outcome`` for each recipient, its dispatch included (awaited when it
    returns an awaitable). The summary counts as
    :class:`~smskit.outbox.sending.BulkDispatch` does.

    With ``claim`` and ``begin``, as the synchronous send: each chunk's batch is opened as it
    is inserted (``claim()`` describes it), its request started (``begin``) and the next
    chunk stored while it is out; the batch is settled once that chunk is stored, and what
    else is due is dispatched at the end (not after a failure).

    ``recipients`` may be an async iterable; a plain one is read in the worker thread with
    its chunk, so a file being read never blocks the event loop.
    """
    bulk = BulkDispatch(tracking=dispatch is not None)
    offset = 0
    source = recipients.__aiter__() if isinstance(recipients, AsyncIterable) else None
    numbered = None if source is not None else enumerate(recipients)  # type: ignore[arg-type]
    troubled = False

    async def report(outcomes: Sequence[c.Outcome],
                     done: Optional[DispatchReport]) -> None:
        nonlocal troubled
        if done is not None:
            troubled = troubled or bool(done.errors)
            outcomes = bulk.dispatched(outcomes, done)
        for outcome in outcomes:
            bulk.add(outcome)
            if on_outcome is not None:
                answer = on_outcome(outcome)
                if inspect.isawaitable(answer):
                    await answer

    pending: Optional[Tuple[List[c.Outcome], Callable[[], Awaitable[DispatchReport]]]] = None
    overlapped = False
    try:
        while True:
            spec = claim() if claim is not None and begin is not None and dispatch else None
            if source is not None:
                chunk = await _take(source, offset, chunk_size)
                outcomes, opened = await run(store_chunk, chunk, spec) if chunk else ([], None)
            else:
                outcomes, opened = await run(_take_and_store, numbered, chunk_size,
                                             store_chunk, spec)
            if not outcomes:
                break
            offset += len(outcomes)
            if pending is not None:
                await report(pending[0], await pending[1]())
                pending = None
            if dispatch is None:
                await report(outcomes, None)
            elif opened is not None and begin is not None:
                pending = (outcomes, await begin(bulk.watch(outcomes), opened))
                overlapped = True
            else:
                await report(outcomes, await dispatch(bulk.watch(outcomes)))
        if pending is not None:
            await report(pending[0], await pending[1]())
            pending = None
        if overlapped and not troubled and dispatch is not None:
            await report((), await dispatch(bulk.watch(())))
    except Exception:
        # As the synchronous send: the batch out when a chunk failed is still settled.
        if pending is not None:
            try:
                await pending[1]()
            except Exception:  # the first error is the one to raise; this one is logged
                log.exception("bulk send: the batch out when the send failed was not settled")
        raise
    return bulk.summary


async def _take(source: Any, offset: int, size: int) -> Chunk:
    """The next ``size`` recipients of an async iterator, numbered from ``offset``."""
    chunk: Chunk = []
    while len(chunk) < size:
        try:
            item = await source.__anext__()
        except StopAsyncIteration:
            break
        chunk.append((offset + len(chunk), item))
    return chunk


def _take_and_store(numbered: Any, size: int, store_chunk: StoreChunk,
                    claim: Optional[InsertClaim]) -> Tuple[List[c.Outcome], Optional[Opened]]:
    """Read the next chunk of a plain iterable and store it (one worker-thread hop)."""
    chunk = list(itertools.islice(numbered, size))
    return store_chunk(chunk, claim) if chunk else ([], None)
