"""The built-in plugin: the loopback provider and the memory/SQLite/PostgreSQL stores.

Registered through the same hooks as any third-party plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from smskit.hookspecs import hookimpl

if TYPE_CHECKING:
    from smskit.config import Settings
    from smskit.plugins import StoreFactory
    from smskit.provider import Provider, ProviderFactory
    from smskit.store.base import Store


def _loopback(settings: Settings) -> Provider:
    from smskit.providers.loopback import LoopbackProvider

    return LoopbackProvider()


def _memory_store(url: str, settings: Settings) -> Store:
    from smskit.store.memory import MemoryStore

    return MemoryStore()


def _sql_store(url: str, settings: Settings) -> Store:
    from smskit.store.sql import SqlStore

    return SqlStore(url)


@hookimpl
def register_providers(register: Callable[[str, ProviderFactory], None]) -> None:
    """Register the loopback provider (it names itself ``loopback``)."""
    register("loopback", _loopback)


@hookimpl
def register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    """Register the memory, SQLite and PostgreSQL stores."""
    register("memory", _memory_store)
    register("sqlite", _sql_store)
    register("postgresql", _sql_store)
