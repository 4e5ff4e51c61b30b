"""Kits kept inside an Odoo process and lent to its requests, cron runs and RPC calls.

Building a kit costs: the sidecar's engines and its migration check, the schema detection
(four Odoo reads), the ChatRoom connector look-up. An addon must not pay that on every request.
:class:`KitPool` builds a kit once per database, Odoo registry and settings fingerprint, and
lends it to one caller at a time, its Odoo adapter bound to that caller's environment (its
cursor): a request served in one thread never shares a kit with another. A kit given back waits
for the next caller; when the registry is replaced (modules installed or upgraded) or the
settings change (another fingerprint), the kits built before are closed instead of lent.

::

    pool = KitPool(build=lambda settings, env: (kit, adapter))
    with pool.borrow(env, settings, fingerprint) as kit:
        kit.send(...)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import attrs

from smskit.config import Settings
from smskit.kit import SmsKit
from smskit_odoo.adapter import EnvAdapter

__all__ = ["KitPool", "fingerprint"]

log = logging.getLogger(__name__)

#: ``build(settings, env)`` -> the kit and the adapter to bind to each borrower's ``env``.
Builder = Callable[[Settings, Any], Tuple[SmsKit, EnvAdapter]]


def fingerprint(values: Mapping[str, Any]) -> str:
    """A digest of settings values: kits built from other values are not lent."""
    text = json.dumps({k: str(v) for k, v in values.items()}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@attrs.define
class _Entry:
    kit: SmsKit
    adapter: EnvAdapter


@attrs.define
class _Shelf:
    """The idle kits of one database, for one registry and one fingerprint."""

    registry: Any
    fingerprint: str
    idle: List[_Entry] = attrs.field(factory=list)


class KitPool:
    """Kits of every database this process serves (see the module docs).

    ``max_idle`` kits per database wait for reuse (one per thread that used one at once, up
    to it); more are closed when given back.
    """

    def __init__(self, build: Builder, *, max_idle: int = 8) -> None:
        self._build = build
        self.max_idle = max_idle
        self._shelves: Dict[str, _Shelf] = {}
        self._lock = threading.Lock()
        #: How many kits were built (for tests and the benchmark).
        self.built = 0

    def __repr__(self) -> str:
        return f"KitPool(databases={sorted(self._shelves)}, built={self.built})"

    @contextlib.contextmanager
    def borrow(self, env: Any, settings: Settings, digest: str) -> Iterator[SmsKit]:
        """A kit for ``env``'s database with these settings (``digest``: their
        :func:`fingerprint`), its adapter bound to ``env`` until the block ends."""
        dbname = str(env.cr.dbname)
        registry = getattr(env, "registry", None)
        entry = self._take(dbname, registry, digest)
        if entry is None:
            kit, adapter = self._build(settings, env)
            entry = _Entry(kit=kit, adapter=adapter)
            with self._lock:
                self.built += 1
        entry.adapter.env = env
        _forget_request_caches(entry.kit)
        try:
            yield entry.kit
        finally:
            self._give_back(dbname, registry, digest, entry)

    def _take(self, dbname: str, registry: Any, digest: str) -> Optional[_Entry]:
        stale: List[_Entry] = []
        with self._lock:
            shelf = self._shelves.get(dbname)
            if shelf is not None and (shelf.registry is not registry
                                      or shelf.fingerprint != digest):
                stale, shelf.idle = shelf.idle, []
                shelf.registry, shelf.fingerprint = registry, digest
            entry = shelf.idle.pop() if shelf is not None and shelf.idle else None
        _close(stale)
        return entry

    def _give_back(self, dbname: str, registry: Any, digest: str, entry: _Entry) -> None:
        entry.adapter.env = None  # no cursor kept past its request
        with self._lock:
            shelf = self._shelves.setdefault(dbname, _Shelf(registry=registry,
                                                             fingerprint=digest))
            if (shelf.registry is registry and shelf.fingerprint == digest
                    and len(shelf.idle) < self.max_idle):
                shelf.idle.append(entry)
                return
        _close([entry])

    def clear(self, dbname: Optional[str] = None) -> None:
        """Close the idle kits (of one database, or all)."""
        with self._lock:
            names = [dbname] if dbname is not None else list(self._shelves)
            closing = [e for n in names if n in self._shelves
                       for e in self._shelves.pop(n).idle]
        _close(closing)


def _forget_request_caches(kit: SmsKit) -> None:
    """Drop what a kit remembers about records (not about the schema) between borrowers:
    another request may have changed them."""
    from smskit_odoo.plugin import PLUGIN_NAME, OdooPlugin

    plugin = kit.plugins.get(PLUGIN_NAME)
    if isinstance(plugin, OdooPlugin):
        plugin.forget()
    chatroom = kit.plugins.get("smskit_acrux.kit")
    router = getattr(chatroom, "router", None)
    if router is not None:
        router.forget()
    store = kit.store if kit.has_store else None
    session = getattr(store, "session", None)
    if session is not None:
        session.forget_blacklist()


def _close(entries: List[_Entry]) -> None:
    for entry in entries:
        try:
            entry.kit.close()
        except Exception:  # closing a stale kit must not fail the caller
            log.warning("closing a stale smskit kit failed", exc_info=True)
