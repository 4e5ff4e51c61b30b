"""Clicks on short links, buffered and written in batches.

Each ``GET /l/{code}`` used to be a write transaction of its own, even for a code that does not
exist. Now the handler looks the code up (a read: an unknown code writes nothing) and hands a
known one's click to :class:`ClickBuffer`, which writes the clicks gathered over
``every`` seconds (default 2) in one transaction
(:meth:`~smskit.store.analytics.ClickBatchStore.record_clicks`), sooner when ``max_pending``
are waiting, and whatever is left when the app stops. A store without ``record_clicks`` gets
one ``record_click`` per click, still off the request's path.

What this gives up: a click is counted a few seconds late, and the clicks of the last seconds
before a crash (not a clean stop) are lost: a click count is a statistic, not a record anyone
relies on, and the redirect itself never waits for the database to write. While the store
fails, clicks are kept (at most ``max_kept``, the oldest dropped first) and written later.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import List, Optional

from starlette.concurrency import run_in_threadpool

from smskit.store.analytics import Click, ClickBatchStore, LinkStore

__all__ = ["ClickBuffer"]

log = logging.getLogger(__name__)


class ClickBuffer:
    """Clicks waiting to be written to ``store`` (see the module)."""

    def __init__(self, store: LinkStore, *, every: float = 2.0, max_pending: int = 500,
                 max_kept: int = 10_000) -> None:
        self._store = store
        self.every = every
        self.max_pending = max(1, max_pending)
        self.max_kept = max(self.max_pending, max_kept)
        self._pending: List[Click] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._flusher: Optional[asyncio.Future[None]] = None
        self._wake: Optional[asyncio.Event] = None
        self._stopping = False
        #: Clicks written, and transactions used to write them (tests and benchmarks).
        self.written = 0
        self.writes = 0

    @property
    def pending(self) -> int:
        """Clicks not written yet."""
        return len(self._pending)

    def add(self, code: str, at: dt.datetime, user_agent: Optional[str] = None) -> None:
        """Queue a click on a known ``code`` (from the event loop); it is written within
        ``every`` seconds."""
        self._pending.append(Click(code=code, at=at, user_agent=user_agent))
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._flusher is None or self._flusher.done():
            self._loop, self._wake, self._stopping = loop, asyncio.Event(), False
            self._flusher = asyncio.ensure_future(self._run())
        if len(self._pending) >= self.max_pending and self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        wake = self._wake
        while not self._stopping and wake is not None:
            with contextlib.suppress(asyncio.TimeoutError):  # the interval is over
                await asyncio.wait_for(wake.wait(), self.every)
            wake.clear()
            await self.flush()
            if not self._pending:
                return  # started again by the next click

    async def flush(self) -> None:
        """Write every waiting click now (in the thread pool)."""
        if not self._pending:
            return
        taken, self._pending = self._pending, []
        try:
            written = await run_in_threadpool(self._write, taken)
        except Exception:  # the store failed: keep the clicks for the next flush
            kept = (taken + self._pending)[-self.max_kept:]
            dropped = len(taken) + len(self._pending) - len(kept)
            self._pending = kept
            log.exception("short links: %d clicks could not be written; kept for later%s",
                          len(taken), f" ({dropped} oldest dropped)" if dropped else "")
            return
        self.written += written

    def _write(self, clicks: List[Click]) -> int:
        self.writes += 1
        if isinstance(self._store, ClickBatchStore):
            return self._store.record_clicks(clicks)
        return sum(1 for k in clicks
                   if self._store.record_click(k.code, k.at, k.user_agent) is not None)

    async def close(self) -> None:
        """Stop the background flushes and write what is left (the app's shutdown)."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            try:
                await flusher
            except Exception:  # logged by flush(); shutting down anyway
                log.debug("short links: the click flusher ended with an error", exc_info=True)
        await self.flush()
