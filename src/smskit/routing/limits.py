"""Per-provider pacing: at most ``<provider>_max_per_second`` messages a second, whatever
the number of processes sending.

Each ``count`` messages take ``count / rate`` seconds of the provider's time line, the first
request going at once; a sender waits for its slot, so no burst reaches the gateway and a 429
never comes from us. The dispatcher claims batches of at most one second's worth, so a wait
is short unless many processes send at once.

:class:`SharedRateLimiter` keeps that time line in the store
(:class:`~smskit.store.outreach.PacingStore`, key ``rate:<provider>``): each request reserves
its slot with one atomic write, so two workers, or a worker and a ``smskit send``, share one
rate instead of each sending at the full rate. Times are the hosts' wall clocks (processes
on several hosts need synchronised clocks, as NTP keeps them). A store without the time line,
or one that fails, falls back to :class:`RateLimiter`, which paces this process only.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from smskit.errors import ValidationError
from smskit.store.outreach import PacingStore

__all__ = ["KEY_PREFIX", "RateLimiter", "SharedRateLimiter"]

log = logging.getLogger(__name__)

#: The key prefix of the time lines in the store's key/value state.
KEY_PREFIX = "rate:"


class RateLimiter:
    """``rate`` messages a second; ``clock`` (monotonic seconds) and ``sleep`` are injectable
    for tests."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate > 0:
            raise ValidationError(f"a rate limit must be positive, got {rate!r}")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = float("-inf")

    @property
    def per_batch(self) -> int:
        """The most messages worth sending in one go: one second's worth (at least one)."""
        return max(1, int(self.rate))

    def acquire(self, count: int) -> float:
        """Wait until ``count`` more messages may go; the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + count / self.rate
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(0.0, wait)


class SharedRateLimiter:
    """``rate`` messages a second for every process sharing ``store`` (see the module docs);
    ``store`` returns the store (called when needed). ``clock`` (epoch seconds) and ``sleep``
    are injectable for tests."""

    def __init__(self, rate: float, store: Callable[[], object], key: str, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.local = RateLimiter(rate, clock=clock, sleep=sleep)
        self.rate = rate
        self.key = key
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._warned = False

    @property
    def per_batch(self) -> int:
        """The most messages worth sending in one go: one second's worth (at least one)."""
        return self.local.per_batch

    def _shared(self) -> Optional[PacingStore]:
        store = self._store()
        if isinstance(store, PacingStore):
            return store
        if not self._warned:
            self._warned = True
            log.warning("the store keeps no shared time line: %s is paced per process",
                        self.key)
        return None

    def acquire(self, count: int) -> float:
        """Wait until ``count`` more messages may go; the seconds waited."""
        store = self._shared()
        if store is None:
            return self.local.acquire(count)
        now = self._clock()
        try:
            start = store.reserve_slot(self.key, count / self.rate, now)
        except Exception:  # the store is down: pace this process, do not stop sending
            log.exception("could not reserve a slot of %s; pacing this process only",
                          self.key)
            return self.local.acquire(count)
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(0.0, wait)
