"""Persistence: the :class:`Store` protocol and its implementations.

* :class:`MemoryStore` (``memory://``): in the process, for tests.
* :class:`~smskit.store.sql.SqlStore` (``sqlite:///smskit.db``, ``postgresql://...``):
  SQLAlchemy Core with Alembic migrations; imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smskit.store.base import (
    AddOutcome,
    ApplyOutcome,
    BatchInfo,
    BlacklistEntry,
    DayStats,
    EventRecord,
    InboundOutcome,
    Schedule,
    Store,
)
from smskit.store.memory import MemoryStore

if TYPE_CHECKING:
    from smskit.store.sql import SqlStore

__all__ = [
    "AddOutcome",
    "ApplyOutcome",
    "BatchInfo",
    "BlacklistEntry",
    "DayStats",
    "EventRecord",
    "InboundOutcome",
    "MemoryStore",
    "Schedule",
    "SqlStore",
    "Store",
]


def __getattr__(name: str) -> Any:
    """``SqlStore`` on first use, so importing smskit.store does not import SQLAlchemy."""
    if name == "SqlStore":
        from smskit.store.sql import SqlStore

        return SqlStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
