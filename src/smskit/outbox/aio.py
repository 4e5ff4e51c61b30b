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
from typing import (
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

from smskit.ids import new_id
from smskit.models import Message, StatusEvent
from smskit.outbox import compose as c
from smskit.outbox import decisions as d
from smskit.outbox.dispatching import (
    DispatchPolicy,
    DispatchReport,
    OptedOut,
    ReconcileReport,
    _Reconciliation,
    _Run,
)
from smskit.outbox.sending import count_dispatch
from smskit.provider import Provider
from smskit.store.base import Store
from smskit.threads import in_thread

__all__ = ["Runner", "adispatch", "areconcile", "asend_many"]

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
) -> DispatchReport:
    """:func:`smskit.outbox.dispatching.dispatch`, awaiting the provider's
    :meth:`~smskit.provider.Provider.asend_batch`. The callbacks run in the worker thread.

    ``in_flight`` (batch id -> :class:`asyncio.Event`) holds the batches being sent, each
    event set once its batch is settled: a concurrent send whose message another dispatch
    claimed waits for that (:class:`smskit.AsyncSmsKit` does).
    """
    import asyncio

    batches = _Run(store, provider, now, policy, DispatchReport())
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
            outcome: d.SendOutcome
            try:
                outcome = (await provider.asend_batch(claimed.to_send,
                                                      batch_id=claimed.batch.id)
                           if claimed.to_send else [])
            except Exception as exc:  # decided on in settle(); re-raised there when unexpected
                outcome = exc
            go_on = await run(batches.settle, claimed, outcome, on_sent, on_opted_out)
        finally:
            settled.set()
            if in_flight is not None:
                in_flight.pop(batch_id, None)
        if not go_on:
            break
    return batches.report


async def areconcile(
    store: Store,
    provider: Provider,
    *,
    now: dt.datetime,
    stale_after: dt.timedelta = dt.timedelta(minutes=5),
    on_sent: Optional[Callable[[Message], None]] = None,
    on_status: Optional[Callable[[StatusEvent], object]] = None,
    on_opted_out: Optional[OptedOut] = None,
    run: Runner = in_thread,
) -> ReconcileReport:
    """:func:`smskit.outbox.dispatching.reconcile`, awaiting the provider's
    :meth:`~smskit.provider.Provider.areconcile`. The callbacks run in the worker thread."""
    steps = _Reconciliation(store, provider.name, now, on_sent, on_status, on_opted_out)
    for batch in await run(steps.batches, stale_after):
        messages = await run(steps.outgoing, batch)
        if not messages:
            continue
        outcome: d.ReconcileOutcome
        try:
            outcome = await provider.areconcile(batch.id, messages)
        except Exception as exc:  # decided on in settle(); re-raised there when unexpected
            outcome = exc
        await run(steps.settle, batch, messages, outcome)
    return steps.report


async def asend_many(
    recipients: Union[Iterable[c.Recipient], AsyncIterable[c.Recipient]],
    store_chunk: Callable[[Sequence[Tuple[int, c.Recipient]]], List[c.Outcome]],
    *,
    chunk_size: int,
    on_outcome: Optional[Callable[[c.Outcome], Any]] = None,
    dispatch: Optional[Callable[[], Awaitable[DispatchReport]]] = None,
    run: Runner = in_thread,
) -> c.BulkSummary:
    """:func:`smskit.outbox.sending.send_many`, a chunk at a time: ``store_chunk`` (steps 1 to
    5, :func:`smskit.outbox.sending.store_chunk` bound to a store) in a worker thread, then
    ``on_outcome`` for each recipient (awaited when it returns an awaitable), then
    ``dispatch``.

    ``recipients`` may be an async iterable; a plain one is read in the worker thread with
    its chunk, so a file being read never blocks the event loop.
    """
    summary = c.BulkSummary()
    offset = 0
    source = recipients.__aiter__() if isinstance(recipients, AsyncIterable) else None
    numbered = None if source is not None else enumerate(recipients)  # type: ignore[arg-type]
    while True:
        if source is not None:
            chunk = await _take(source, offset, chunk_size)
            outcomes = await run(store_chunk, chunk) if chunk else []
        else:
            outcomes = await run(_take_and_store, numbered, chunk_size, store_chunk)
        if not outcomes:
            break
        offset += len(outcomes)
        for outcome in outcomes:
            summary.add(outcome)
            if on_outcome is not None:
                answer = on_outcome(outcome)
                if inspect.isawaitable(answer):
                    await answer
        if dispatch is not None:
            count_dispatch(summary, await dispatch())
    return summary


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


def _take_and_store(numbered: Any, size: int,
                    store_chunk: Callable[[Sequence[Tuple[int, c.Recipient]]], List[c.Outcome]],
                    ) -> List[c.Outcome]:
    """Read the next chunk of a plain iterable and store it (one worker-thread hop)."""
    chunk = list(itertools.islice(numbered, size))
    return store_chunk(chunk) if chunk else []
