"""The retry policy an HTTP provider client hands to tenacity (Kolmeya's and Twilio's share it).

Retried: a :class:`~smskit.errors.RateLimitedError` whose delay (``retry_after``) is at most
``max_retry_wait`` seconds, after that delay (a longer one is raised at once: the dispatcher
reschedules), and a :class:`~smskit.errors.TransientProviderError` caused by a connection that
never opened (:data:`NOTHING_SENT`), after 0.5 s doubling per attempt plus up to 0.5 s of
jitter, capped at ``max_retry_wait``. Nothing that may have reached the gateway is retried
here: that is an ambiguous send, which only reconciliation may settle.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Dict, Tuple, Type

import httpx
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt

from smskit.errors import RateLimitedError, TransientProviderError

#: httpx errors raised before any byte of the request left: retrying them cannot send twice.
NOTHING_SENT: Tuple[Type[httpx.HTTPError], ...] = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class RetryPolicy:
    """When and how long to wait before trying a provider request again (see the module)."""

    def __init__(self, max_attempts: int, max_retry_wait: float, log: logging.Logger) -> None:
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self._log = log
        self._jitter = random.Random()  # noqa: S311 - backoff jitter, not cryptography

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt (nothing sent, or a short rate limit)."""
        if isinstance(exc, RateLimitedError):
            return exc.retry_after is None or exc.retry_after <= self.max_retry_wait
        return isinstance(exc, TransientProviderError) and isinstance(exc.__cause__, NOTHING_SENT)

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the gateway's ``retry_after``, else the backoff."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return exc.retry_after
        backoff = 0.5 * (1 << min(state.attempt_number - 1, 16))
        return min(self.max_retry_wait, backoff + self._jitter.uniform(0, 0.5))

    def log_retry(self, state: RetryCallState) -> None:
        """One WARNING per retry: the error (already redacted by the client), the attempt."""
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        self._log.warning("%s; attempt %d of %d, retrying in %.1f s", exc, state.attempt_number,
                          self.max_attempts, delay)

    def options(self) -> Dict[str, Any]:
        """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``."""
        return {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": self.wait,
            "retry": retry_if_exception(self.should_retry),
            "before_sleep": self.log_retry,
            "reraise": True,
        }
