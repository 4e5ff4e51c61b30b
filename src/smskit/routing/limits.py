"""Per-provider pacing: at most ``<provider>_max_per_second`` messages a second.

:class:`RateLimiter` spaces requests out (each ``count`` messages take ``count / rate``
seconds of the provider's time, the first request going at once), so a worker never sends a
burst the gateway would answer with 429. The dispatcher claims batches of at most one second's
worth, so a wait is never longer than about a second.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from smskit.errors import ValidationError

__all__ = ["RateLimiter"]


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
