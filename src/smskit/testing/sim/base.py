"""The simulator base class: settings, clock, lock, seeded RNG, the background progress thread,
and the configure / advance / reset / close lifecycle every simulated gateway shares.

A provider's simulator subclasses :class:`SimulatorBase` and brings what is its own: its state
(:meth:`~SimulatorBase.new_state`), how messages move on (:meth:`~SimulatorBase.progress`), its
callback wire shape (:meth:`~SimulatorBase.new_callback_sender`), its statistics and its app.
Nothing here knows HTTP frameworks; the serving helpers are in :mod:`smskit.testing.sim.serving`.
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
import threading
from typing import Any, Callable, ClassVar, Dict, FrozenSet, Generic, List, Optional, TypeVar

from typing_extensions import Protocol

from smskit.testing.sim.callbacks import CallbackSender, CallbackSettings
from smskit.testing.sim.chance import Chance

__all__ = ["BaseSettings", "SimulatorBase", "utcnow"]

_Self = TypeVar("_Self", bound="BaseSettings")


class BaseSettings(CallbackSettings, Protocol):
    """What :class:`SimulatorBase` reads of its settings (besides :class:`CallbackSettings`).

    An ``attrs.frozen`` class deriving from :class:`smskit.testing.sim.settings.SimulatorSettings`
    with these fields has them all.
    """

    @property
    def seed(self) -> Optional[int]:
        """Seed of the one RNG (``None``: not reproducible)."""

    @property
    def auto_progress(self) -> bool:
        """Run :meth:`SimulatorBase.advance` in a background thread."""

    @property
    def tick(self) -> float:
        """Seconds between two runs of the background thread."""

    def changed(self: _Self, **changes: Any) -> _Self:
        """A validated copy with ``changes``."""

    def as_json(self) -> Dict[str, Any]:
        """The settings as JSON-friendly values, secrets masked (``GET /_sim/config``)."""


_Config = TypeVar("_Config", bound=BaseSettings)


def utcnow() -> dt.datetime:
    """Now, aware UTC: a simulator's clock unless it is given another."""
    return dt.datetime.now(dt.timezone.utc)


class SimulatorBase(abc.ABC, Generic[_Config]):
    """A local gateway: a subclass fills in the provider's state, rules and wire shapes.

    Reusable by any provider's simulator (smskit's own ones are built on it). What it gives:

    - :attr:`config` and :meth:`configure` (validated by the settings' ``changed``; the RNG is
      reseeded when ``seed`` changes, the rest is :meth:`settings_changed`);
    - :meth:`now` from the ``clock`` given (default :func:`utcnow`), for tests that move time;
    - :attr:`lock`, one re-entrant lock: HTTP handlers, the background thread and test code
      call the simulator from any thread, so every method that reads or changes the state
      holds it;
    - :attr:`chance`, the one seeded RNG (:meth:`roll` for fault switches);
    - :attr:`callbacks`, the webhook queue (:meth:`new_callback_sender`), delivered by
      :meth:`advance` and :meth:`deliver_callbacks` and logged in :attr:`callbacks_sent`;
    - with ``auto_progress``, a daemon thread that calls :meth:`advance` every ``tick``
      seconds (started or stopped by :meth:`configure`);
    - :meth:`reset` and :meth:`close`; :attr:`app`, built once by :meth:`build_app`.

    A subclass implements :meth:`new_state`, :meth:`progress`, :meth:`new_callback_sender`,
    :meth:`stats` and :meth:`build_app`, may override :meth:`settings_changed`, and sets
    :attr:`label`. Its own attributes should not start with the names used here
    (``_config``, ``_clock``, ``_stop``, ``_worker``, ``_worker_lock``, ``_app``).
    """

    #: Names the background thread (``"<label>-sim"``) and its log line when a tick fails.
    label: ClassVar[str] = "gateway"

    def __init__(self, config: _Config, *,
                 clock: Optional[Callable[[], dt.datetime]] = None) -> None:
        self._config = config
        self._clock = clock or utcnow
        #: Held by every method that reads or changes the state (re-entrant).
        self.lock = threading.RLock()
        #: The one seeded RNG behind outcomes, faults and callback chaos.
        self.chance = Chance(config.seed)
        #: The webhook queue.
        self.callbacks: CallbackSender[Any, Any] = self.new_callback_sender()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._worker_lock = threading.Lock()
        self._app: Any = None
        #: True once :meth:`close` was called.
        self.closed = False
        self.new_state()
        self._ensure_worker()

    # -- what a subclass provides ---------------------------------------------------------------

    @abc.abstractmethod
    def new_state(self) -> None:
        """Start the provider's state afresh from :attr:`config` (at construction, and under
        :attr:`lock` on :meth:`reset`)."""

    @abc.abstractmethod
    def progress(self, now: dt.datetime) -> int:
        """Move every message due at ``now`` on and queue its callbacks on :attr:`callbacks`;
        the number :meth:`advance` returns. Called by :meth:`advance` with :attr:`lock` held."""

    @abc.abstractmethod
    def new_callback_sender(self) -> CallbackSender[Any, Any]:
        """The :class:`~smskit.testing.sim.callbacks.CallbackSender` of this provider, built
        once from :attr:`chance` and a getter of :attr:`config`."""

    @abc.abstractmethod
    def stats(self) -> Dict[str, Any]:
        """Counts for dashboards and benchmarks (JSON-friendly); ``callbacks.stats()`` gives
        the callback counters."""

    @abc.abstractmethod
    def build_app(self) -> Any:
        """The ASGI app serving this simulator (see :attr:`app`)."""

    def settings_changed(self, names: FrozenSet[str]) -> None:
        """Carry the settings ``names`` (those given to :meth:`configure`) over to the state
        (a balance, a list, delays...): called with :attr:`lock` held, once :attr:`config`
        holds their new values and the RNG is reseeded. Nothing by default."""

    # -- settings and lifecycle -----------------------------------------------------------------

    @property
    def config(self) -> _Config:
        """The current settings (replace them with :meth:`configure`)."""
        return self._config

    @property
    def app(self) -> Any:
        """The ASGI app (with the ``/_sim/`` control endpoints), built on first use."""
        if self._app is None:
            self._app = self.build_app()
        return self._app

    def configure(self, **changes: Any) -> _Config:
        """Change settings at run time (validated; ConfigurationError names a bad one)."""
        with self.lock:
            self._config = self._config.changed(**changes)
            if "seed" in changes:
                self.chance.reseed(self._config.seed)
            self.settings_changed(frozenset(changes))
        self._ensure_worker()
        return self._config

    def now(self) -> dt.datetime:
        """The simulator's clock (aware UTC)."""
        return self._clock()

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (the seeded RNG); used by the fault switches."""
        return self.chance.roll(rate)

    def reset(self) -> None:
        """Forget everything: the state starts again from the settings (:meth:`new_state`),
        the RNG restarts from ``seed``, pending callbacks, their log and counts are dropped."""
        with self.lock:
            self.new_state()
            self.chance.reseed(self._config.seed)
            self.callbacks.reset()

    def close(self) -> None:
        """Stop the background thread and close the callback HTTP client. Idempotent."""
        self.closed = True
        self._stop.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(self._config.callback_timeout + 5)
        self.callbacks.close()

    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if self._config.auto_progress and not self.closed and self._worker is None:
                self._worker = threading.Thread(target=self._run, name=f"{self.label}-sim",
                                                daemon=True)
                self._worker.start()

    def _run(self) -> None:
        logger = logging.getLogger(type(self).__module__)
        while not self._stop.is_set():
            with self._worker_lock:
                if not self._config.auto_progress:
                    self._worker = None
                    return
            try:
                self.advance()
            except Exception:
                logger.exception("%s simulator: progress tick failed", self.label)
            self._stop.wait(self._config.tick)

    # -- progress and callbacks -----------------------------------------------------------------

    def advance(self, now: Optional[dt.datetime] = None) -> int:
        """Move every due message forward and queue its callbacks (:meth:`progress`), then
        deliver every due callback; the number of changes :meth:`progress` counted."""
        now = now or self.now()
        with self.lock:
            changed = self.progress(now)
        self.callbacks.deliver_due(now)
        return changed

    def deliver_callbacks(self, now: Optional[dt.datetime] = None) -> int:
        """Deliver the due callbacks only; the number answered with a 2xx."""
        return self.callbacks.deliver_due(now or self.now())

    @property
    def callbacks_sent(self) -> List[Dict[str, Any]]:
        """Every callback POST made (see :class:`~smskit.testing.sim.callbacks.CallbackSender`)."""
        return list(self.callbacks.log)
