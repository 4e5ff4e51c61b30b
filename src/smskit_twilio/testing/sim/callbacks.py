"""Webhook delivery of the Twilio simulator: a queue of due callbacks, each POSTed as
``application/x-www-form-urlencoded`` and signed with ``X-Twilio-Signature`` (HMAC-SHA1 of the
URL and the sorted fields, keyed with the account's auth token), as Twilio does.

Retries, and the chaos switches ``callback_drop_rate``, ``callback_duplicate_rate`` and
``callback_shuffle``, are settings.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlencode

import attrs
import httpx

from smskit_twilio.signature import SIGNATURE_HEADER, compute_signature
from smskit_twilio.testing.sim.config import SimulatorConfig

__all__ = ["CallbackDispatcher", "Chance", "PendingCallback"]

logger = logging.getLogger(__name__)


class Chance:
    """The simulator's one seeded RNG, shared by threads (outcomes, faults, callback chaos)."""

    def __init__(self, seed: Optional[int]) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not security
        self._lock = threading.Lock()

    def reseed(self, seed: Optional[int]) -> None:
        """Start the sequence again from ``seed``."""
        with self._lock:
            self._rng.seed(seed)

    def roll(self, rate: float) -> bool:
        """True with probability ``rate``; draws nothing when ``rate`` is 0 (so a switched-off
        fault does not disturb the other draws)."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def pick(self, weights: Dict[str, float]) -> str:
        """One key of ``weights``, drawn in proportion to its weight."""
        keys = sorted(weights)
        with self._lock:
            return self._rng.choices(keys, weights=[weights[k] for k in keys])[0]

    def shuffle(self, items: List[Any]) -> None:
        """Shuffle ``items`` in place."""
        with self._lock:
            self._rng.shuffle(items)


@attrs.define
class PendingCallback:
    """One callback waiting to be POSTed (``kind``: ``"status"`` or ``"inbound"``)."""

    seq: int
    kind: str
    url: str
    params: List[Tuple[str, str]]
    due: dt.datetime
    attempts: int = 0


def _public_url(url: str) -> str:
    """The URL without its query string (which may carry the receiver's secret)."""
    return url.split("?", 1)[0]


class CallbackDispatcher:
    """Queues callbacks and delivers the due ones; one delivery runs at a time."""

    def __init__(self, chance: Chance, config: Callable[[], SimulatorConfig]) -> None:
        self._chance = chance
        self._config = config
        self._lock = threading.Lock()
        self._delivering = threading.Lock()
        self._pending: List[PendingCallback] = []
        self._seq = 0
        self._client: Optional[httpx.Client] = None
        self.log: List[Dict[str, Any]] = []
        self.counts: Counter[str] = Counter()

    def enqueue(self, kind: str, url: str, params: List[Tuple[str, str]],
                now: dt.datetime) -> None:
        """Queue a callback, due at ``now``."""
        with self._lock:
            self._seq += 1
            self._pending.append(PendingCallback(self._seq, kind, url, params, now))
            self.counts["queued"] += 1

    def pending(self) -> int:
        """How many callbacks wait for delivery (including retries)."""
        with self._lock:
            return len(self._pending)

    def deliver_due(self, now: dt.datetime) -> int:
        """POST every callback due at ``now``; the number answered with a 2xx."""
        with self._delivering:
            with self._lock:
                due = [cb for cb in self._pending if cb.due <= now]
                self._pending = [cb for cb in self._pending if cb.due > now]
            cfg = self._config()
            if cfg.callback_shuffle and len(due) > 1:
                self._chance.shuffle(due)
            return sum(self._deliver_one(cb, cfg, now) for cb in due)

    def _deliver_one(self, cb: PendingCallback, cfg: SimulatorConfig, now: dt.datetime) -> int:
        if cb.attempts == 0 and self._chance.roll(cfg.callback_drop_rate):
            with self._lock:
                self.counts["dropped"] += 1
            return 0
        cb.attempts += 1
        if self._post(cb, cfg, duplicate=False):
            if cb.attempts == 1 and self._chance.roll(cfg.callback_duplicate_rate):
                return 1 + self._post(cb, cfg, duplicate=True)
            return 1
        with self._lock:
            if cb.attempts < cfg.callback_max_attempts:
                cb.due = now + dt.timedelta(seconds=cfg.callback_backoff * 2 ** (cb.attempts - 1))
                self._pending.append(cb)
                self.counts["retried"] += 1
            else:
                self.counts["failed"] += 1
                logger.warning("callback %s to %s failed after %s attempts",
                               cb.seq, _public_url(cb.url), cb.attempts)
        return 0

    def _post(self, cb: PendingCallback, cfg: SimulatorConfig, *, duplicate: bool) -> bool:
        signature = compute_signature(cfg.auth_token, cb.url, cb.params)
        status, error = self._send(cb.url, cb.params, signature, cfg.callback_timeout)
        ok = status is not None and 200 <= status < 300
        entry = {"seq": cb.seq, "kind": cb.kind, "url": cb.url, "params": dict(cb.params),
                 "signature": signature, "attempt": cb.attempts, "duplicate": duplicate,
                 "status_code": status, "error": error, "ok": ok}
        with self._lock:
            self.log.append(entry)
            self.counts["attempts"] += 1
            if ok:
                self.counts["duplicated" if duplicate else "sent"] += 1
        return ok

    def _send(self, url: str, params: List[Tuple[str, str]], signature: str,
              timeout: float) -> Tuple[Optional[int], Optional[str]]:
        if self._client is None:
            self._client = httpx.Client()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   SIGNATURE_HEADER: signature, "User-Agent": "TwilioProxy/1.1 (smskit simulator)"}
        try:
            response = self._client.post(url, content=urlencode(params).encode("ascii"),
                                         headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        return response.status_code, None

    def reset(self) -> None:
        """Forget pending callbacks, the log and the counts."""
        with self._delivering, self._lock:
            self._pending = []
            self.log = []
            self.counts = Counter()

    def close(self) -> None:
        """Close the HTTP client (pending callbacks stay queued but are never sent)."""
        with self._delivering:
            if self._client is not None:
                self._client.close()
                self._client = None
