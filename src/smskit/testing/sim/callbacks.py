"""Webhook delivery for a simulator: a queue of due callbacks, POSTed with httpx, with retries and
a doubling backoff, and the chaos switches a test turns on to see a receiver cope.

A provider's simulator subclasses :class:`CallbackSender` and says only how one callback goes on
the wire (:meth:`CallbackSender.prepare`: a JSON body, a signed form...). What it reads of the
settings is :class:`CallbackSettings`.
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
import threading
from collections import Counter
from typing import Any, Callable, Dict, Generic, List, Optional, Tuple, TypeVar

import attrs
import httpx
from typing_extensions import Protocol

from smskit.testing.sim.chance import Chance

__all__ = ["CALLBACK_COUNTS", "CallbackSender", "CallbackSettings", "PendingCallback",
           "public_url"]

#: The counters :meth:`CallbackSender.stats` reports, in this order.
CALLBACK_COUNTS = ("queued", "sent", "failed", "dropped", "duplicated", "retried", "attempts",
                   "pending")

_Data = TypeVar("_Data")


class CallbackSettings(Protocol):
    """The settings a :class:`CallbackSender` reads (each one read again at every delivery, so
    a change at run time applies to the callbacks already queued)."""

    @property
    def callback_timeout(self) -> float:
        """Seconds one POST may take."""

    @property
    def callback_max_attempts(self) -> int:
        """Attempts per callback on a non-2xx answer or a connection error."""

    @property
    def callback_backoff(self) -> float:
        """Seconds before the first retry; doubled for each later one."""

    @property
    def callback_drop_rate(self) -> float:
        """Probability that a callback is never sent."""

    @property
    def callback_duplicate_rate(self) -> float:
        """Probability that a delivered callback is sent a second time."""

    @property
    def callback_shuffle(self) -> bool:
        """Send the callbacks due together in random order."""


_Settings = TypeVar("_Settings", bound=CallbackSettings)


@attrs.define
class PendingCallback(Generic[_Data]):
    """One callback waiting to be POSTed: ``kind`` is the provider's word for it (``"status"``,
    ``"reply"``...), ``data`` what the provider sends (a JSON payload, form fields...)."""

    seq: int
    kind: str
    url: str
    data: _Data
    due: dt.datetime
    attempts: int = 0


def public_url(url: str) -> str:
    """The URL without its query string (which may carry the receiver's secret), for logs."""
    return url.split("?", 1)[0]


class CallbackSender(abc.ABC, Generic[_Data, _Settings]):
    """Queues callbacks and delivers the due ones; one delivery runs at a time.

    A callback answered with a non-2xx or not answered at all is tried again after
    ``callback_backoff`` seconds, doubling, up to ``callback_max_attempts`` attempts in all.
    ``callback_drop_rate`` loses a callback before its first attempt, ``callback_duplicate_rate``
    sends a delivered one again, ``callback_shuffle`` mixes the order of those due together;
    every draw comes from the simulator's :class:`~smskit.testing.sim.chance.Chance`.

    Every POST is appended to :attr:`log` (``seq``, ``kind``, ``url``, the fields of
    :meth:`prepare`, ``attempt``, ``duplicate``, ``status_code``, ``error``, ``ok``) and counted
    in :attr:`counts`. Subclasses implement :meth:`prepare`.
    """

    def __init__(self, chance: Chance, config: Callable[[], _Settings]) -> None:
        self._chance = chance
        self._config = config
        self._lock = threading.Lock()
        self._delivering = threading.Lock()
        self._pending: List[PendingCallback[_Data]] = []
        self._seq = 0
        self._client: Optional[httpx.Client] = None
        self._logger = logging.getLogger(type(self).__module__)
        #: Every POST made, oldest first.
        self.log: List[Dict[str, Any]] = []
        #: ``queued``, ``sent``, ``failed``, ``dropped``, ``duplicated``, ``retried``, ``attempts``.
        self.counts: Counter[str] = Counter()

    @abc.abstractmethod
    def prepare(self, callback: PendingCallback[_Data],
                config: _Settings) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """How ``callback`` goes on the wire: the fields its :attr:`log` entries carry (after
        ``url``) and the keyword arguments of :meth:`httpx.Client.post` besides the URL and the
        timeout (``json=...``, or ``content=...`` and ``headers=...``). Called for every POST,
        retries and duplicates included."""

    def enqueue(self, kind: str, url: str, data: _Data, now: dt.datetime) -> None:
        """Queue a callback, due at ``now``."""
        with self._lock:
            self._seq += 1
            self._pending.append(PendingCallback(self._seq, kind, url, data, now))
            self.counts["queued"] += 1

    def pending(self) -> int:
        """How many callbacks wait for delivery (including retries)."""
        with self._lock:
            return len(self._pending)

    def stats(self) -> Dict[str, int]:
        """Each of :data:`CALLBACK_COUNTS` (``pending``: :meth:`pending`)."""
        with self._lock:
            counts = dict(self.counts)
            counts["pending"] = len(self._pending)
        return {name: counts.get(name, 0) for name in CALLBACK_COUNTS}

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

    def _deliver_one(self, cb: PendingCallback[_Data], cfg: _Settings, now: dt.datetime) -> int:
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
                self._logger.warning("callback %s to %s failed after %s attempts",
                                     cb.seq, public_url(cb.url), cb.attempts)
        return 0

    def _post(self, cb: PendingCallback[_Data], cfg: _Settings, *, duplicate: bool) -> bool:
        fields, request = self.prepare(cb, cfg)
        status, error = self._send(cb.url, request, cfg.callback_timeout)
        ok = status is not None and 200 <= status < 300
        entry = {"seq": cb.seq, "kind": cb.kind, "url": cb.url, **fields, "attempt": cb.attempts,
                 "duplicate": duplicate, "status_code": status, "error": error, "ok": ok}
        with self._lock:
            self.log.append(entry)
            self.counts["attempts"] += 1
            if ok:
                self.counts["duplicated" if duplicate else "sent"] += 1
        return ok

    def _send(self, url: str, request: Dict[str, Any],
              timeout: float) -> Tuple[Optional[int], Optional[str]]:
        if self._client is None:
            self._client = httpx.Client()
        try:
            response = self._client.post(url, timeout=timeout, **request)
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
