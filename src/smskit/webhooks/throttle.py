"""Warnings that a caller can trigger at will, rate-limited so that they cannot flood the log.

A refused webhook token, signature or dashboard credential is worth one WARNING: someone has a
wrong secret, or is guessing. A client sending thousands of them must not fill the disk or
bury the other lines, so :class:`LogThrottle` writes at most one line per client address and
kind of refusal per interval (60 s by default) and counts the others; the next line written for
that address and kind says how many were left out::

    webhook refused: wrong token from 203.0.113.7 (412 more like it from this address in the
    last 60 s, not logged)

It remembers at most ``max_keys`` addresses (the oldest are forgotten first once their interval
is over); beyond that, new addresses share one line per interval, so a caller rotating through
addresses cannot flood the log either. One throttle, :data:`REFUSALS`, serves the whole process
(the webhook gate and the server's dashboard and metrics credentials).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

__all__ = ["DEFAULT_INTERVAL", "REFUSALS", "LogThrottle"]

#: Seconds between two lines for the same client address and kind.
DEFAULT_INTERVAL = 60.0
_OVERFLOW = "*"


class LogThrottle:
    """At most one WARNING per ``(kind, address)`` per ``interval`` seconds (see the module)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, *, max_keys: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.max_keys = max(1, max_keys)
        self._clock = clock
        self._lock = threading.Lock()
        # (kind, address) -> [when its last line was written, lines left out since]
        self._seen: collections.OrderedDict[Tuple[str, str], List[float]] = (
            collections.OrderedDict())

    def reset(self) -> None:
        """Forget every address (tests; a new log file)."""
        with self._lock:
            self._seen.clear()

    def _forget_expired(self, now: float) -> None:
        while self._seen:
            key, (when, _count) = next(iter(self._seen.items()))
            if now - when < self.interval:
                return
            del self._seen[key]

    def _admit(self, kind: str, address: str) -> Optional[Tuple[int, float]]:
        """``None`` to leave the line out, else (lines left out before it, over how long)."""
        now = self._clock()
        with self._lock:
            key = (kind, address)
            if key not in self._seen and len(self._seen) >= self.max_keys:
                self._forget_expired(now)
                if len(self._seen) >= self.max_keys:
                    key = (kind, _OVERFLOW)
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += 1
                return None
            left_out, since = (int(entry[1]), now - entry[0]) if entry is not None else (0, 0.0)
            self._seen[key] = [now, 0.0]
            self._seen.move_to_end(key)
            return left_out, since

    def warning(self, logger: logging.Logger, kind: str, address: Optional[str], message: str,
                *args: Any) -> bool:
        """Log ``message % args`` at WARNING unless a line of this ``kind`` for this client
        ``address`` was written less than ``interval`` seconds ago (then only count it).
        Whether the line was written."""
        admitted = self._admit(kind, address or "-")
        if admitted is None:
            return False
        left_out, since = admitted
        if left_out:
            logger.warning(message + " (%d more like it from this address in the last %.0f s, "
                           "not logged)", *args, left_out, since)
        else:
            logger.warning(message, *args)
        return True


#: The process's throttle for refused credentials (webhook gate, dashboard, metrics).
REFUSALS = LogThrottle()
