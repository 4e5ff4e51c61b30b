"""Time-zone helpers: one place that knows about the ``backports.zoneinfo`` fallback."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Union

from smskit.errors import ConfigurationError

if sys.version_info >= (3, 9):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
else:  # pragma: no cover - exercised on the 3.8 CI run
    from backports.zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DEFAULT_TZ", "ZoneInfo", "ensure_aware", "zone"]

DEFAULT_TZ = "America/Sao_Paulo"


def zone(name: Union[str, dt.tzinfo] = DEFAULT_TZ) -> dt.tzinfo:
    """The tzinfo for an IANA name (``"America/Sao_Paulo"``); a clear error for an unknown one."""
    if isinstance(name, dt.tzinfo):
        return name
    try:
        return ZoneInfo(name)  # type: ignore[abstract,unused-ignore]  # 3.8 backport stubs
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {name!r}") from exc


def ensure_aware(value: dt.datetime, tz: Union[str, dt.tzinfo] = DEFAULT_TZ) -> dt.datetime:
    """``value`` as an aware datetime in UTC; a naive one is read as local time in ``tz``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz))
    return value.astimezone(dt.timezone.utc)
