"""Webhook delivery of the simulator: a queue of due callbacks, POSTed with httpx.

Kolmeya's retry policy, timeout and ordering are unknown (docs/kolmeya.md, "What is not
confirmed"), so they are settings: retries with a doubling backoff on a non-2xx answer or a
connection error, and the chaos switches ``callback_drop_rate``, ``callback_duplicate_rate`` and
``callback_shuffle``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

import attrs
import httpx

from smskit_kolmeya.testing.sim.config import SimulatorConfig
from smskit_kolmeya.testing.sim.rules import Chance

__all__ = ["CallbackDispatcher", "PendingCallback"]

logger = logging.getLogger(__name__)


@attrs.define
class PendingCallback:
    """One callback waiting to be POSTed (``kind`` is ``"status"`` or ``"reply"``)."""

    seq: int
    kind: str
    url: str
    payload: Dict[str, Any]
    due: dt.datetime
    attempts: int = 0


def _public_url(url: str) -> str:
    """The URL without its query string (which carries the receiver's secret)."""
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

    def enqueue(self, kind: str, url: str, payload: Dict[str, Any], now: dt.datetime) -> None:
        """Queue a callback, due at ``now``."""
        with self._lock:
            self._seq += 1
            self._pending.append(PendingCallback(self._seq, kind, url, payload, now))
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
            delivered = 0
            for cb in due:
                delivered += self._deliver_one(cb, cfg, now)
            return delivered

    def _deliver_one(self, cb: PendingCallback, cfg: SimulatorConfig, now: dt.datetime) -> int:
        if cb.attempts == 0 and self._chance.roll(cfg.callback_drop_rate):
            with self._lock:
                self.counts["dropped"] += 1
            return 0
        cb.attempts += 1
        ok = self._post(cb, cfg, duplicate=False)
        if ok:
            delivered = 1
            if cb.attempts == 1 and self._chance.roll(cfg.callback_duplicate_rate):
                delivered += self._post(cb, cfg, duplicate=True)
            return delivered
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
        status, error = self._send(cb.url, cb.payload, cfg.callback_timeout)
        ok = status is not None and 200 <= status < 300
        entry = {
            "seq": cb.seq,
            "kind": cb.kind,
            "url": cb.url,
            "payload": cb.payload,
            "attempt": cb.attempts,
            "duplicate": duplicate,
            "status_code": status,
            "error": error,
            "ok": ok,
        }
        with self._lock:
            self.log.append(entry)
            self.counts["attempts"] += 1
            if ok:
                self.counts["duplicated" if duplicate else "sent"] += 1
        return ok

    def _send(self, url: str, payload: Dict[str, Any],
              timeout: float) -> Tuple[Optional[int], Optional[str]]:
        if self._client is None:
            self._client = httpx.Client()
        try:
            response = self._client.post(url, json=payload, timeout=timeout)
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
