"""The in-memory store (``memory://``): for tests and trying smskit out."""

from __future__ import annotations

from smskit.store.memory.store import MemoryStore

__all__ = ["MemoryStore"]
