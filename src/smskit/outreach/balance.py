"""The periodic balance check: the ``balance_low`` hook once per crossing of a threshold.

Settings: ``balance_low_threshold`` (``SMSKIT_BALANCE_LOW_THRESHOLD``, in the account's
currency; unset: no check), per provider ``<provider>_balance_low_threshold`` (each gateway
counts in its own currency; it wins over the general one) and ``balance_check_interval``
(seconds, default 900). The worker
calls :meth:`BalanceMonitor.check` every cycle; it asks each provider that reports a balance at
most once per interval. When the balance falls below the threshold it logs a warning and calls
the ``balance_low(provider, balance, threshold)`` hook **once**; it calls it again only after
the balance has been back at or above the threshold. The last reading is kept in the store's
key/value state (``balance:<provider>``), so the Prometheus endpoint can show it
(``smskit_provider_balance``) and a restarted worker does not repeat the alert.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal, InvalidOperation
from typing import Dict, Mapping, Optional

import attrs

from smskit.config import Settings
from smskit.errors import ConfigurationError, SmsKitError
from smskit.kit import SmsKit
from smskit.store.base import Store
from smskit.store.outreach import OutreachStore

__all__ = ["BalanceMonitor", "BalanceReading", "STATE_PREFIX", "parse_balances",
           "read_balances"]

log = logging.getLogger(__name__)

#: Key prefix of the readings in the store's key/value state.
STATE_PREFIX = "balance:"
DEFAULT_INTERVAL = dt.timedelta(minutes=15)


@attrs.frozen(kw_only=True)
class BalanceReading:
    """One balance check: the value, when, whether it is below the threshold, and whether this
    reading crossed it (the hook fired)."""

    provider: str
    balance: Decimal
    checked_at: dt.datetime
    threshold: Optional[Decimal] = None
    low: bool = False
    alerted: bool = False

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({"balance": str(self.balance), "checked_at": self.checked_at.isoformat(),
                           "threshold": None if self.threshold is None else str(self.threshold),
                           "low": self.low})

    @classmethod
    def from_json(cls, provider: str, text: str) -> BalanceReading:
        """A reading from its stored form."""
        data = json.loads(text)
        threshold = data.get("threshold")
        return cls(provider=provider, balance=Decimal(data["balance"]),
                   checked_at=dt.datetime.fromisoformat(data["checked_at"]),
                   threshold=Decimal(threshold) if threshold is not None else None,
                   low=bool(data.get("low")))


def _decimal(settings: Settings, key: str) -> Optional[Decimal]:
    raw = settings.get(key)
    if raw is None or not raw.strip():
        return None
    try:
        return Decimal(raw.strip())
    except InvalidOperation as exc:
        raise ConfigurationError(f"{key}: not a number: {raw!r}") from exc


def read_balances(store: Store) -> Dict[str, BalanceReading]:
    """The last reading of each provider kept in the store (empty without key/value state)."""
    if not isinstance(store, OutreachStore):
        return {}
    return parse_balances(store.list_state(STATE_PREFIX))


def parse_balances(state: Mapping[str, str]) -> Dict[str, BalanceReading]:
    """The readings among key/value ``state`` entries (other keys are ignored)."""
    found: Dict[str, BalanceReading] = {}
    for key, text in state.items():
        if not key.startswith(STATE_PREFIX):
            continue
        provider = key[len(STATE_PREFIX):]
        try:
            found[provider] = BalanceReading.from_json(provider, text)
        except (ValueError, KeyError, InvalidOperation) as exc:
            log.warning("ignoring a malformed balance reading for %s: %s", provider, exc)
    return found


class BalanceMonitor:
    """Checks provider balances every ``interval`` against ``threshold`` (``None``: never).

    Build it from the settings with :meth:`from_settings`.
    """

    def __init__(self, kit: SmsKit, *, threshold: Optional[Decimal],
                 interval: dt.timedelta = DEFAULT_INTERVAL,
                 thresholds: Optional[Dict[str, Decimal]] = None) -> None:
        if interval <= dt.timedelta(0):
            raise ConfigurationError(f"balance check interval must be positive, got {interval}")
        self.kit = kit
        self.threshold = threshold
        #: Per-provider thresholds, winning over :attr:`threshold`.
        self.thresholds: Dict[str, Decimal] = dict(thresholds or {})
        self.interval = interval
        self._last_check: Dict[str, dt.datetime] = {}
        self._memory: Dict[str, BalanceReading] = {}

    @classmethod
    def from_settings(cls, kit: SmsKit) -> BalanceMonitor:
        """``balance_low_threshold`` and ``balance_check_interval`` from the kit's settings."""
        suffix = "_balance_low_threshold"
        own = {key[: -len(suffix)]: _decimal(kit.settings, key)
               for key in kit.settings.values if key.endswith(suffix) and key != suffix[1:]}
        return cls(kit, threshold=_decimal(kit.settings, "balance_low_threshold"),
                   interval=dt.timedelta(seconds=kit.settings.number(
                       "balance_check_interval", DEFAULT_INTERVAL.total_seconds(),
                       exclusive=True)),
                   thresholds={k: v for k, v in own.items() if v is not None})

    @property
    def enabled(self) -> bool:
        """Whether a threshold is set (for any provider)."""
        return self.threshold is not None or bool(self.thresholds)

    def threshold_for(self, provider: str) -> Optional[Decimal]:
        """``provider``'s own threshold, else the general one."""
        return self.thresholds.get(provider, self.threshold)

    def _previous(self, name: str) -> Optional[BalanceReading]:
        if name in self._memory:
            return self._memory[name]
        store = self.kit.store
        if isinstance(store, OutreachStore):
            text = store.get_state(STATE_PREFIX + name)
            if text:
                try:
                    return BalanceReading.from_json(name, text)
                except (ValueError, KeyError, InvalidOperation):
                    return None
        return None

    def check(self, provider: Optional[str] = None, now: Optional[dt.datetime] = None, *,
              force: bool = False) -> Optional[BalanceReading]:
        """Read the balance if the interval has passed (or ``force``); ``None`` when skipped
        (no threshold, not due, no balance capability, or the gateway did not answer)."""
        moment = (now or self.kit.clock()).astimezone(dt.timezone.utc)
        instance = self.kit.provider(provider)
        name = instance.name
        threshold = self.threshold_for(name)
        if threshold is None and not force:
            return None
        last = self._last_check.get(name)
        if not force and last is not None and moment - last < self.interval:
            return None
        if not instance.capabilities.balance:
            return None
        self._last_check[name] = moment
        try:
            balance = Decimal(instance.balance())
        except SmsKitError as exc:
            log.warning("balance check of %s failed: %s", name, exc)
            return None
        previous = self._previous(name)
        low = threshold is not None and balance < threshold
        alerted = low and not (previous is not None and previous.low)
        reading = BalanceReading(provider=name, balance=balance, checked_at=moment,
                                 threshold=threshold, low=low, alerted=alerted)
        self._memory[name] = reading
        store = self.kit.store
        if isinstance(store, OutreachStore):
            store.set_state(STATE_PREFIX + name, reading.to_json())
        if alerted:
            log.warning("balance of %s is %s, below the threshold %s", name, balance,
                        threshold)
            try:
                self.kit.hooks.balance_low(provider=name, balance=balance,
                                                  threshold=threshold)
            except Exception:  # a failing alert must not stop the worker; logged
                log.exception("balance_low hook failed for %s", name)
        return reading
