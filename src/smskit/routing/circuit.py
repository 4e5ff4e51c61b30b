"""Circuit breakers: a provider that fails with "sent nothing" errors is left alone for a
cool-down.

Each provider has a circuit. It is **closed** while sends work. ``circuit_failures``
"sent nothing" failures in a row (default 1: the provider clients already retry before they
give up) **open** it for ``circuit_cooldown`` seconds (default 60): nothing is sent to the
provider then, and its messages move to the next provider of their routes. Once the cool-down
has passed the circuit is **half-open**: the next batch is tried; success closes it, another
failure opens it again for a new cool-down.

Circuits live in memory, and each change is written to the store's key/value state
(``circuit:<provider>``, when the store has it) so the dashboard, the metrics and other
processes see it; a process adopts a newer state written by another one when it next looks
(at most every few seconds).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Callable, Dict, Mapping, Optional

import attrs

from smskit.config import Settings
from smskit.errors import ConfigurationError
from smskit.store.base import Store
from smskit.store.outreach import OutreachStore

__all__ = ["STATE_PREFIX", "CircuitState", "Circuits", "parse_circuits", "read_circuits"]

log = logging.getLogger(__name__)

#: Key prefix of the circuits in the store's key/value state.
STATE_PREFIX = "circuit:"
DEFAULT_COOLDOWN = dt.timedelta(seconds=60)
#: How often a process reads the circuits other processes wrote.
REFRESH = dt.timedelta(seconds=5)


@attrs.frozen(kw_only=True)
class CircuitState:
    """One provider's circuit: ``until`` is set while it is open (or half-open, once passed);
    ``failures`` counts "sent nothing" failures in a row; ``trips`` how often it opened."""

    provider: str
    failures: int = 0
    until: Optional[dt.datetime] = None
    opened_at: Optional[dt.datetime] = None
    reason: Optional[str] = None
    trips: int = 0
    changed_at: Optional[dt.datetime] = None

    def is_open(self, now: dt.datetime) -> bool:
        """Open (nothing goes) until the cool-down has passed."""
        return self.until is not None and now < self.until

    def status(self, now: dt.datetime) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.until is None:
            return "closed"
        return "open" if now < self.until else "half-open"

    def to_json(self) -> str:
        """The stored form."""
        def iso(value: Optional[dt.datetime]) -> Optional[str]:
            return value.isoformat() if value is not None else None
        return json.dumps({"failures": self.failures, "until": iso(self.until),
                           "opened_at": iso(self.opened_at), "reason": self.reason,
                           "trips": self.trips, "changed_at": iso(self.changed_at)})

    @classmethod
    def from_json(cls, provider: str, text: str) -> CircuitState:
        """A state from its stored form."""
        data = json.loads(text)

        def moment(key: str) -> Optional[dt.datetime]:
            value = data.get(key)
            return dt.datetime.fromisoformat(value) if value else None
        return cls(provider=provider, failures=int(data.get("failures") or 0),
                   until=moment("until"), opened_at=moment("opened_at"),
                   reason=data.get("reason"), trips=int(data.get("trips") or 0),
                   changed_at=moment("changed_at"))


def read_circuits(store: object) -> Dict[str, CircuitState]:
    """The circuits kept in the store (empty without key/value state)."""
    if not isinstance(store, OutreachStore):
        return {}
    return parse_circuits(store.list_state(STATE_PREFIX))


def parse_circuits(state: Mapping[str, str]) -> Dict[str, CircuitState]:
    """The circuits among key/value ``state`` entries (other keys are ignored)."""
    found: Dict[str, CircuitState] = {}
    for key, text in state.items():
        if not key.startswith(STATE_PREFIX):
            continue
        name = key[len(STATE_PREFIX):]
        try:
            found[name] = CircuitState.from_json(name, text)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring a malformed circuit state for %s: %s", name, exc)
    return found


class Circuits:
    """Every provider's circuit (see the module docs). ``store`` gives the store to share the
    states through (called when needed, so building this touches nothing)."""

    def __init__(self, *, failures: int = 1, cooldown: dt.timedelta = DEFAULT_COOLDOWN,
                 store: Optional[Callable[[], Store]] = None) -> None:
        if failures < 1 or cooldown <= dt.timedelta(0):
            raise ConfigurationError("a circuit needs failures >= 1 and a positive cool-down")
        self.failures = failures
        self.cooldown = cooldown
        self._store = store
        self._lock = threading.Lock()
        self._states: Dict[str, CircuitState] = {}
        self._read_at: Optional[dt.datetime] = None

    @classmethod
    def from_settings(cls, settings: Settings,
                      store: Optional[Callable[[], Store]] = None) -> Circuits:
        """``circuit_failures`` and ``circuit_cooldown`` (seconds) from the settings."""
        return cls(failures=settings.count("circuit_failures", 1),
                   cooldown=dt.timedelta(seconds=settings.number(
                       "circuit_cooldown", DEFAULT_COOLDOWN.total_seconds(), exclusive=True)),
                   store=store)

    def state(self, provider: str, now: Optional[dt.datetime] = None) -> CircuitState:
        """The circuit of ``provider`` (closed when never seen); with ``now``, a newer state
        another process stored is adopted first."""
        if now is not None:
            self._refresh(now)
        return self._states.get(provider) or CircuitState(provider=provider)

    def states(self, now: dt.datetime) -> Dict[str, CircuitState]:
        """Every circuit seen, by provider."""
        self._refresh(now)
        return dict(self._states)

    def allows(self, provider: str, now: dt.datetime) -> bool:
        """Whether a batch may go to ``provider`` (closed or half-open)."""
        return not self.state(provider, now).is_open(now)

    def reopens_at(self, provider: str) -> Optional[dt.datetime]:
        """When an open circuit lets a batch through again."""
        return self.state(provider).until

    def failed(self, provider: str, reason: str, now: dt.datetime) -> bool:
        """A "sent nothing" failure; whether the circuit is open now."""
        with self._lock:
            old = self._states.get(provider) or CircuitState(provider=provider)
            failures = old.failures + 1
            half_open = old.until is not None and now >= old.until
            if old.is_open(now):
                return True
            if not half_open and failures < self.failures:
                self._states[provider] = attrs.evolve(old, failures=failures, changed_at=now)
                return False
            new = attrs.evolve(old, failures=failures, until=now + self.cooldown,
                               opened_at=now, reason=reason, trips=old.trips + 1,
                               changed_at=now)
            self._states[provider] = new
        log.warning("circuit of %s open until %s: %s", provider, new.until, reason)
        self._save(new)
        return True

    def succeeded(self, provider: str, now: dt.datetime) -> None:
        """A batch went through: the circuit closes."""
        with self._lock:
            old = self._states.get(provider)
            if old is None or (old.failures == 0 and old.until is None):
                return
            new = attrs.evolve(old, failures=0, until=None, changed_at=now)
            self._states[provider] = new
        if old.until is not None:
            log.info("circuit of %s closed", provider)
        self._save(new)

    # -- sharing through the store -------------------------------------------------------------
    def _outreach(self) -> Optional[OutreachStore]:
        store = self._store() if self._store is not None else None
        return store if isinstance(store, OutreachStore) else None

    def _save(self, state: CircuitState) -> None:
        store = self._outreach()
        if store is None:
            return
        try:
            store.set_state(STATE_PREFIX + state.provider, state.to_json())
        except Exception:  # the circuit works in memory; sharing it is best effort
            log.exception("could not store the circuit of %s", state.provider)

    def _refresh(self, now: dt.datetime) -> None:
        if self._store is None or (self._read_at is not None and now - self._read_at < REFRESH
                                   and now >= self._read_at):
            return
        self._read_at = now
        store = self._outreach()
        if store is None:
            return
        try:
            stored = read_circuits(store)
        except Exception:  # a store that cannot answer leaves this process's view as it is
            log.exception("could not read the stored circuits")
            return
        with self._lock:
            for name, theirs in stored.items():
                ours = self._states.get(name)
                if ours is None or (theirs.changed_at is not None and (
                        ours.changed_at is None or theirs.changed_at > ours.changed_at)):
                    self._states[name] = theirs
