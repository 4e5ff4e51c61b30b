"""Group commit of webhook status events: callbacks arriving together share one transaction.

Each webhook request hands its status events to :meth:`StatusBatcher.submit` and waits.
A single writer thread takes every request waiting at that moment (up to ``max_events``
events), applies all their events in order in ONE store transaction
(:meth:`smskit.kit.SmsKit.apply_statuses`), and only then resolves each request. So no request
is answered before its own events are committed, and while one commit is running the next
requests queue up and go together into the next one: under load each SQLite commit serves many
callbacks; alone, a callback is applied at once (no waiting for company).

The writer is a thread of the batcher's own, not the event loop's thread pool: the loop wakes
it at most once per loop iteration (every request submitted in that iteration goes in the same
group), a busy writer takes the next group as soon as its commit is done without a round trip
through the loop, and each group's requests are resolved with one call back into the loop. The
thread starts with the first request and ends after :data:`IDLE_SECONDS` without any.

Errors stay with the request that caused them: when a group fails, each request of the group is
applied again on its own (its events in one transaction), so a bad event fails only its own
request; the others are stored and answered as if they had been alone.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import (
    TYPE_CHECKING,
    Callable,
    Deque,
    Dict,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

if TYPE_CHECKING:
    from smskit.models import StatusEvent
    from smskit.store.base import ApplyOutcome

__all__ = ["DEFAULT_MAX_EVENTS", "IDLE_SECONDS", "StatusBatcher"]

log = logging.getLogger(__name__)

#: Most events applied in one transaction.
DEFAULT_MAX_EVENTS = 256
#: Seconds the writer thread waits for work before it ends (the next request starts another).
IDLE_SECONDS = 5.0

_Result = Union[List["ApplyOutcome"], Exception]


class _Job(NamedTuple):
    events: List[StatusEvent]
    future: asyncio.Future[List[ApplyOutcome]]
    loop: asyncio.AbstractEventLoop


def _resolve(done: List[Tuple[_Job, _Result]]) -> None:
    """On the event loop: hand each request its outcomes (or its error)."""
    for job, result in done:
        if job.future.done():  # the request went away; its events are stored anyway
            continue
        if isinstance(result, Exception):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)


class StatusBatcher:
    """Applies the status events of concurrent requests in shared transactions (see module).

    ``apply`` applies a list of events in one transaction, all or nothing, and returns one
    outcome per event in order (``SmsKit.apply_statuses``). It is only ever called from the
    writer thread.
    """

    def __init__(self, apply: Callable[[Sequence[StatusEvent]], List[ApplyOutcome]], *,
                 max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self._apply = apply
        self.max_events = max(1, max_events)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._pending: Deque[_Job] = collections.deque()
        self._writer: Optional[threading.Thread] = None
        self._writer_idle = False
        #: The loop a wake-up is scheduled on (each loop schedules its own: a loop closed
        #: before its wake-up ran must not keep another loop's requests waiting).
        self._wake_on: Optional[asyncio.AbstractEventLoop] = None
        #: Transactions run (groups, plus each request applied again after a failed group).
        self.transactions = 0

    @property
    def waiting(self) -> int:
        """Requests queued for the next transaction (not counting the ones being written)."""
        return len(self._pending)

    async def submit(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        """Apply ``events`` (in order, with whatever else is waiting); return once committed."""
        if not events:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[List[ApplyOutcome]] = loop.create_future()
        with self._lock:
            self._pending.append(_Job(list(events), future, loop))
            wake = self._wake_on is not loop
            self._wake_on = loop
        if wake:  # after the other requests of this loop iteration: they join the group
            loop.call_soon(self._wake)
        return await future

    def _wake(self) -> None:
        """On the event loop: start the writer, or wake it if it waits for work."""
        with self._lock:
            self._wake_on = None
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, daemon=True,
                                                name="smskit-webhook-writer")
                self._writer.start()
            elif self._writer_idle:
                self._work.notify()

    def _write(self) -> None:
        """The writer thread: group, commit and resolve until idle for IDLE_SECONDS."""
        while True:
            with self._lock:
                if not self._pending:
                    self._writer_idle = True
                    self._work.wait(IDLE_SECONDS)
                    self._writer_idle = False
                    if not self._pending:
                        self._writer = None
                        return
                jobs = self._take()
            try:
                results = self._run(jobs)
            except BaseException:  # not an error of the store: fail the group, end the thread
                with self._lock:
                    self._writer = None
                self._hand_back(jobs, [RuntimeError("webhook writer stopped")] * len(jobs))
                raise
            self._hand_back(jobs, results)

    @staticmethod
    def _hand_back(jobs: List[_Job], results: Sequence[_Result]) -> None:
        """Resolve each job on its own loop: one call into each loop for the whole group."""
        by_loop: Dict[asyncio.AbstractEventLoop, List[Tuple[_Job, _Result]]] = {}
        for job, result in zip(jobs, results):
            by_loop.setdefault(job.loop, []).append((job, result))
        for loop, done in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, done)
            except RuntimeError:  # the loop closed meanwhile: nobody waits for these
                log.debug("webhook writer: %d answers for a closed event loop", len(done))

    def _take(self) -> List[_Job]:
        """The next group (the lock held): the requests waiting, up to ``max_events``."""
        jobs = [self._pending.popleft()]
        count = len(jobs[0].events)
        while self._pending and count + len(self._pending[0].events) <= self.max_events:
            job = self._pending.popleft()
            jobs.append(job)
            count += len(job.events)
        return jobs

    def _run(self, jobs: List[_Job]) -> List[_Result]:
        """In the writer thread: the whole group in one transaction, else each job alone."""
        if len(jobs) > 1:
            events = [event for job in jobs for event in job.events]
            try:
                self.transactions += 1
                outcomes = self._apply(events)
            except Exception as exc:  # isolate: each request again, in its own transaction
                log.info("webhook group of %d requests failed (%s); applying them one by one",
                         len(jobs), type(exc).__name__)
            else:
                results: List[_Result] = []
                start = 0
                for job in jobs:
                    results.append(list(outcomes[start:start + len(job.events)]))
                    start += len(job.events)
                return results
        return [self._alone(job.events) for job in jobs]

    def _alone(self, events: List[StatusEvent]) -> _Result:
        try:
            self.transactions += 1
            return list(self._apply(events))
        except Exception as exc:  # handed to that request, which answers 4xx/5xx
            return exc
