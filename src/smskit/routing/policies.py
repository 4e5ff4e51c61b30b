"""Per-provider settings: the price table, the rate limit, quiet-hours exceptions and the
balance threshold of each provider, read from ``SMSKIT_<PROVIDER>_*`` (or ``<provider>_*`` in
``smskit.toml``), with the installation-wide setting as the default of each.

* ``<provider>_prices``: its price per segment by destination
  (:class:`~smskit.routing.rules.PriceTable`); default: ``price_per_segment`` everywhere;
* ``<provider>_max_per_second``: at most that many messages a second to it; default: no limit;
* ``<provider>_quiet_hours``: its own quiet window (``HH:MM-HH:MM``), or ``off`` for none (a
  transactional gateway that may send at night); default: ``quiet_hours``;
* ``<provider>_quiet_days``: its own quiet days, or ``off``; default: ``quiet_days``;
* ``<provider>_holidays``: its own holidays (``YYYY-MM-DD`` dates, comma-separated), or ``off``
  for none; default: ``holidays``;
* ``<provider>_balance_low_threshold``: its balance alert threshold (each gateway's balance is
  in its own currency); default: ``balance_low_threshold`` (read by
  :class:`smskit.outreach.balance.BalanceMonitor`).

The three quiet keys are independent: a provider that must send at any time (one-time codes)
needs ``<provider>_quiet_hours``, ``_quiet_days`` and ``_holidays`` all ``off``; turning two
off leaves the third as the installation has it. The time zone stays installation-wide. Each
key is read once per provider and kept.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Dict, Optional, Tuple

from smskit.config import Settings
from smskit.errors import ConfigurationError
from smskit.policy import QuietHours
from smskit.routing.rules import PriceTable

__all__ = ["OFF", "ProviderPolicies"]

#: The value that turns a provider's quiet hours, days or holidays off.
OFF = ("off", "none", "no", "false")


class ProviderPolicies:
    """The per-provider settings of one installation (see the module docs)."""

    def __init__(self, settings: Settings, quiet_hours: Optional[QuietHours] = None) -> None:
        self.settings = settings
        self.default_quiet = quiet_hours if quiet_hours is not None else \
            QuietHours.from_settings(settings)
        self._lock = threading.Lock()
        self._prices: Dict[str, Optional[PriceTable]] = {}
        self._quiet: Dict[str, QuietHours] = {}

    def _raw(self, provider: str, key: str) -> Optional[str]:
        value = self.settings.get(f"{provider}_{key}")
        return value.strip() if value is not None else None

    def price_table(self, provider: str) -> Optional[PriceTable]:
        """``<provider>_prices`` parsed, ``None`` when unset."""
        if provider not in self._prices:
            raw = self._raw(provider, "prices")
            table = PriceTable.parse(raw, f"{provider}_prices") if raw else None
            with self._lock:
                self._prices[provider] = table
        return self._prices[provider]

    def price(self, provider: str, phone: str) -> Decimal:
        """The price of one segment to ``phone`` through ``provider``."""
        table = self.price_table(provider)
        found = table.price(phone) if table is not None else None
        return found if found is not None else self.settings.price_per_segment

    def quiet_hours(self, provider: str) -> QuietHours:
        """``provider``'s quiet hours: its own window, days and holidays where set, the
        installation's otherwise."""
        found = self._quiet.get(provider)
        if found is not None:
            return found
        window, days = self._raw(provider, "quiet_hours"), self._raw(provider, "quiet_days")
        holidays = self._raw(provider, "holidays")
        if window is None and days is None and holidays is None:
            found = self.default_quiet
        else:
            settings = self.settings
            own_window = settings.quiet_hours if window is None else (
                None if window.lower() in OFF or not window else window)
            own_days = settings.quiet_days if days is None else (
                () if days.lower() in OFF else tuple(d.strip() for d in days.split(",")
                                                    if d.strip()))
            own_holidays = settings.holidays if holidays is None else \
                self._holidays(provider, holidays)
            found = QuietHours.parse(own_window, days=own_days, holidays=own_holidays,
                                     tz=settings.timezone)
        with self._lock:
            self._quiet[provider] = found
        return found

    @staticmethod
    def _holidays(provider: str, raw: str) -> Tuple[dt.date, ...]:
        """``<provider>_holidays``: ``off`` (or empty) for none, else ``YYYY-MM-DD`` dates."""
        if not raw or raw.lower() in OFF:
            return ()
        try:
            return tuple(dt.date.fromisoformat(d.strip()) for d in raw.split(",") if d.strip())
        except ValueError as exc:
            raise ConfigurationError(f"{provider}_holidays: expected YYYY-MM-DD dates or "
                                     f"'off': {exc}") from exc

    def max_per_second(self, provider: str) -> Optional[float]:
        """``<provider>_max_per_second``, ``None`` when unset (no limit)."""
        raw = self._raw(provider, "max_per_second")
        if not raw:
            return None
        try:
            rate = float(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{provider}_max_per_second: not a number: {raw!r}") \
                from exc
        if not rate > 0 or rate == float("inf"):
            raise ConfigurationError(f"{provider}_max_per_second must be positive, got {raw!r}")
        return rate
