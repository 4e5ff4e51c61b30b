"""The plugin manager: pluggy over the ``smskit`` entry-point group, loaded lazily, once.

``SMSKIT_PLUGINS`` (an allow list of entry-point names) and ``SMSKIT_DISABLE_PLUGINS`` (a block
list) choose which plugins load. A plugin whose extra is not installed does not break anything:
it is reported by :meth:`Plugins.report` (and ``smskit plugins``) with the ``pip install`` line
that fixes it, and so is one that raises anything else on import (with how to disable it): the
other plugins and the built-in commands keep working.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import attrs
import pluggy

from smskit import hookspecs
from smskit.errors import ConfigurationError, DuplicateProviderError, PluginError

if TYPE_CHECKING:
    from smskit.config import Settings
    from smskit.provider import Provider, ProviderFactory
    from smskit.store.base import Store

if sys.version_info >= (3, 10):
    from importlib import metadata as importlib_metadata
else:  # pragma: no cover - exercised on 3.8/3.9
    import importlib.metadata as importlib_metadata

__all__ = ["ENTRY_POINT_GROUP", "PluginStatus", "Plugins", "store_scheme"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "smskit"
StoreFactory = Callable[[str, "Settings"], "Store"]


def store_scheme(url: str) -> str:
    """The scheme that chooses the store for ``url``: ``"postgresql"`` for
    ``postgresql+psycopg://...``, ``"odoo"`` for ``odoo://...`` (nothing is imported or built)."""
    return url.split(":", 1)[0].split("+", 1)[0]


@attrs.frozen(kw_only=True)
class PluginStatus:
    """How loading one plugin went: ``loaded``, ``disabled`` or ``failed`` (with the fix)."""

    name: str
    module: str
    distribution: Optional[str]
    status: str
    detail: str = ""
    fix: Optional[str] = None


class Plugins:
    """One plugin manager per :class:`smskit.SmsKit` (never a global singleton)."""

    def __init__(self, settings: Settings, *, entry_points: bool = True) -> None:
        self.settings = settings
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._use_entry_points = entry_points
        self._loaded = False
        self._report: List[PluginStatus] = []
        self._providers: Optional[Dict[str, ProviderFactory]] = None
        self._stores: Optional[Dict[str, StoreFactory]] = None

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (loads the plugins first)."""
        self.load()
        return self.pm.hook

    def register(self, plugin: object, name: Optional[str] = None) -> None:
        """Register an in-process plugin object or module (tests, Odoo addons)."""
        self.pm.register(plugin, name=name)
        self._providers = None
        self._stores = None

    def get(self, name: str) -> Optional[object]:
        """The plugin object registered under ``name`` (an entry-point name, or the name given
        to :meth:`register`), or ``None``. Loads the plugins first."""
        self.load()
        plugin: Optional[object] = self.pm.get_plugin(name)
        return plugin

    def load(self) -> None:
        """Register the built-ins and the entry-point plugins, once."""
        if self._loaded:
            return
        self._loaded = True
        from smskit import _builtin

        self.pm.register(_builtin, name="smskit.builtin")
        if self._use_entry_points:
            for name, module, dist in _entry_points():
                self._load_one(name, module, dist)

    def _load_one(self, name: str, module: str, dist: Optional[str]) -> None:
        allow, block = self.settings.plugins, self.settings.disable_plugins
        if name in block or (allow is not None and name not in allow):
            why = "SMSKIT_DISABLE_PLUGINS" if name in block else "not in SMSKIT_PLUGINS"
            self._report.append(PluginStatus(name=name, module=module, distribution=dist,
                                             status="disabled", detail=why))
            return
        if self.pm.has_plugin(name):
            return
        try:
            plugin = importlib.import_module(module)
        except ImportError as exc:
            fix = _missing_extra_fix(dist, name)
            log.warning("smskit plugin %s could not be imported: %s", name, exc)
            self._report.append(PluginStatus(name=name, module=module, distribution=dist,
                                             status="failed", detail=str(exc), fix=fix))
            return
        except Exception as exc:  # a plugin that crashes on import must not take smskit down
            log.warning("smskit plugin %s failed on import: %s: %s", name, type(exc).__name__,
                        exc, exc_info=log.isEnabledFor(logging.DEBUG))
            fix = (f"upgrade or fix {dist!r}, or set SMSKIT_DISABLE_PLUGINS={name}" if dist
                   else f"set SMSKIT_DISABLE_PLUGINS={name}")
            self._report.append(PluginStatus(
                name=name, module=module, distribution=dist, status="failed",
                detail=f"importing {module} raised {type(exc).__name__}: {exc}", fix=fix))
            return
        self.pm.register(plugin, name=name)
        self._report.append(PluginStatus(name=name, module=module, distribution=dist,
                                         status="loaded"))

    def report(self) -> List[PluginStatus]:
        """What loaded, what was disabled and what failed (with the install line that fixes it)."""
        self.load()
        return list(self._report)

    # -- registries built by the register_* hooks -------------------------------------------
    def providers(self) -> Dict[str, ProviderFactory]:
        """Provider factories by name."""
        if self._providers is None:
            self._providers = self._collect("register_providers", "provider")
        return self._providers

    def stores(self) -> Dict[str, StoreFactory]:
        """Store factories by URL scheme."""
        if self._stores is None:
            self._stores = self._collect("register_stores", "store scheme")
        return self._stores

    def _collect(self, hook_name: str, what: str) -> Dict[str, Any]:
        found: Dict[str, Any] = {}

        def register(name: str, factory: Any) -> None:
            if name in found:
                raise DuplicateProviderError(f"{what} {name!r} is registered by two plugins")
            found[name] = factory

        getattr(self.hook, hook_name)(register=register)
        return found

    def create_provider(self, name: Optional[str] = None) -> Provider:
        """Build the provider ``name`` (default: ``settings.provider``).

        The factory must return a :class:`~smskit.provider.Provider` keeping the contract
        (:class:`~smskit.errors.PluginError` otherwise) whose ``name`` is ``name``
        (:class:`~smskit.errors.ConfigurationError` otherwise: its messages would be queued
        under one name and claimed under the other, and never sent).
        """
        from smskit.provider import contract_problems

        name = name or self.settings.provider
        factories = self.providers()
        if name not in factories:
            hint = self._hint_for(name)
            known = ", ".join(sorted(factories)) or "none"
            raise ConfigurationError(f"unknown provider {name!r} (known: {known}){hint}")
        provider = factories[name](self.settings)
        problems = contract_problems(provider)
        if problems:
            raise PluginError(f"the provider registered as {name!r} breaks the provider "
                              f"contract: {'; '.join(problems)}")
        if provider.name != name:
            raise ConfigurationError(
                f"the provider registered as {name!r} names itself {provider.name!r}; "
                "register it under its own name (messages are queued under it)")
        return provider

    def create_store(self, url: Optional[str] = None) -> Store:
        """Build the store for ``url`` (default: ``settings.database_url``), chosen by scheme.

        The factory must return an object with every method of
        :class:`~smskit.store.base.Store` (subclass it to inherit the optional ones);
        :class:`~smskit.errors.PluginError` otherwise.
        """
        from smskit.store.base import Store

        url = url or self.settings.database_url
        scheme = store_scheme(url)
        factories = self.stores()
        if "://" not in url:  # a bare path in SMSKIT_DATABASE_URL or smskit.toml
            raise ConfigurationError(
                f"database URL {url!r} is not a URL: write sqlite:///{url} for a SQLite file "
                "(only --database takes a bare path)")
        if scheme not in factories:
            hint = self._hint_for(scheme)
            known = ", ".join(sorted(factories))
            raise ConfigurationError(
                f"no store for URL scheme {scheme!r} (known: {known}){hint}"
            )
        store: object = factories[scheme](url, self.settings)  # a plugin's: checked
        if not isinstance(store, Store):
            has = set(dir(store))
            missing = sorted(n for n in vars(Store) if not n.startswith("_") and n not in has)
            raise PluginError(
                f"the store for URL scheme {scheme!r} ({type(store).__qualname__}) does not "
                f"implement smskit.store.base.Store (missing: {', '.join(missing) or '?'}); "
                "subclass it to inherit the optional methods")
        return store

    def _hint_for(self, name: str) -> str:
        for status in self.report():
            if status.name == name and status.status == "failed" and status.fix:
                return f"; the {name} plugin did not load: {status.detail}. Fix: {status.fix}"
            if status.name == name and status.status == "disabled":
                return f"; the {name} plugin is disabled ({status.detail})"
        return ""


def _entry_points() -> List[Tuple[str, str, Optional[str]]]:
    """``(name, module, distribution)`` of every ``smskit`` entry point, first one per name."""
    seen: Dict[str, Tuple[str, str, Optional[str]]] = {}
    for dist in importlib_metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP and ep.name not in seen:
                seen[ep.name] = (ep.name, ep.value.split(":", 1)[0], dist.metadata["Name"])
    return sorted(seen.values())


def _missing_extra_fix(dist: Optional[str], name: str) -> Optional[str]:
    if dist is None:
        return None
    try:
        extras = importlib_metadata.metadata(dist).get_all("Provides-Extra") or []
    except importlib_metadata.PackageNotFoundError:
        return None
    if name in extras:
        return f"pip install '{dist}[{name}]'"
    return f"pip install --upgrade '{dist}'"

