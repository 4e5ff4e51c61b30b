"""Group commit of webhook status events: callbacks arriving together share one transaction.

Each webhook request hands its status events to :meth:`StatusBatcher.submit` and waits.
A single writer (one task on the event loop, its work in the thread pool) takes every request
waiting at that moment (up to ``max_events`` events), applies all their events in order in ONE
store transaction (:meth:`smskit.kit.SmsKit.apply_statuses`), and only then resolves each
request. So no request is answered before its own events are committed, and while one commit is
running the next requests queue up and go together into the next one: under load each SQLite
commit serves many callbacks; alone, a callback is applied at once (no waiting for company).

Errors stay with the request that caused them: when a group fails, each request of the group is
applied again on its own (its events in one transaction), so a bad event fails only its own
request; the others are stored and answered as if they had been alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple, Union

from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from smskit.models import StatusEvent
    from smskit.store.base import ApplyOutcome

__all__ = ["DEFAULT_MAX_EVENTS", "StatusBatcher"]

log = logging.getLogger(__name__)

#: Most events applied in one transaction.
DEFAULT_MAX_EVENTS = 256

_Job = Tuple[List["StatusEvent"], "asyncio.Future[List[ApplyOutcome]]"]
_Result = Union[List["ApplyOutcome"], Exception]


class StatusBatcher:
    """Applies the status events of concurrent requests in shared transactions (see module).

    ``apply`` applies a list of events in one transaction, all or nothing, and returns one
    outcome per event in order (``SmsKit.apply_statuses``). It is only ever called from one
    thread at a time.
    """

    def __init__(self, apply: Callable[[Sequence[StatusEvent]], List[ApplyOutcome]], *,
                 max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self._apply = apply
        self.max_events = max(1, max_events)
        self._pending: List[_Job] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._writer: Optional[asyncio.Future[None]] = None
        #: Transactions run (groups, plus each request applied again after a failed group).
        self.transactions = 0

    @property
    def waiting(self) -> int:
        """Requests queued for the next transaction (not counting the one being written)."""
        return len(self._pending)

    async def submit(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        """Apply ``events`` (in order, with whatever else is waiting); return once committed."""
        if not events:
            return []
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (a restarted server): start afresh
            self._loop, self._pending, self._writer = loop, [], None
        future: asyncio.Future[List[ApplyOutcome]] = loop.create_future()
        self._pending.append((list(events), future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            jobs = self._take()
            try:
                results = await run_in_threadpool(self._run, jobs)
            except BaseException as exc:  # cancelled with the loop: fail what was taken
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception)
                                             else RuntimeError("webhook writer stopped"))
                raise
            for (_, future), result in zip(jobs, results):
                if future.done():  # the request went away; its events are stored anyway
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _take(self) -> List[_Job]:
        taken, count = 0, 0
        for events, _ in self._pending:
            if taken and count + len(events) > self.max_events:
                break
            taken += 1
            count += len(events)
        jobs, self._pending = self._pending[:taken], self._pending[taken:]
        return jobs

    def _run(self, jobs: List[_Job]) -> List[_Result]:
        """In the thread pool: the whole group in one transaction, else each job alone."""
        if len(jobs) > 1:
            events = [event for job_events, _ in jobs for event in job_events]
            try:
                self.transactions += 1
                outcomes = self._apply(events)
            except Exception as exc:  # isolate: each request again, in its own transaction
                log.info("webhook group of %d requests failed (%s); applying them one by one",
                         len(jobs), type(exc).__name__)
            else:
                results: List[_Result] = []
                start = 0
                for job_events, _ in jobs:
                    results.append(list(outcomes[start:start + len(job_events)]))
                    start += len(job_events)
                return results
        return [self._alone(job_events) for job_events, _ in jobs]

    def _alone(self, events: List[StatusEvent]) -> _Result:
        try:
            self.transactions += 1
            return list(self._apply(events))
        except Exception as exc:  # handed to that request, which answers 4xx/5xx
            return exc
