"""Every hook smskit calls. The docstrings are the plugin contract.

A plugin is a module (or object) with functions marked ``@smskit.hookimpl``, registered through
the ``smskit`` entry-point group::

    [project.entry-points.smskit]
    myprovider = "myprovider.plugin"

Hooks are synchronous; the async server calls them in a thread pool. A failing notification hook
(``message_sent``, ``message_status_changed``, ``message_received``, ``batch_ambiguous``) is
logged and recorded in the message's history; it never loses or re-sends a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Sequence, Union

import pluggy

if TYPE_CHECKING:
    import click

    from smskit.config import Settings
    from smskit.kitbase import BaseKit
    from smskit.models import Message, State
    from smskit.outreach.audience import AudienceSource
    from smskit.provider import ProviderFactory
    from smskit.store.base import BatchInfo, Store

    StoreFactory = Callable[[str, Settings], Store]

PROJECT = "smskit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_providers(register: Callable[[str, ProviderFactory], None]) -> None:
    """Register provider factories: ``register("kolmeya", factory)``.

    ``factory(settings)`` returns a :class:`smskit.provider.Provider` whose ``name`` is the
    registered name (messages are queued under it; a mismatch raises
    :class:`smskit.errors.ConfigurationError` when the provider is built). Registering a name
    that another plugin already registered raises :class:`smskit.errors.DuplicateProviderError`.
    Import heavy dependencies inside the factory, not at module import.
    """


@hookspec
def register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    """Register store factories by URL scheme: ``register("odoo", factory)``.

    ``factory(url, settings)`` returns a :class:`smskit.store.base.Store`. Built-in schemes:
    ``memory``, ``sqlite``, ``postgresql``.
    """


@hookspec
def kit_ready(kit: BaseKit) -> None:
    """A :class:`smskit.SmsKit` (or :class:`smskit.AsyncSmsKit`) is about to use its plugins
    for the first time.

    Plugins that need per-kit state (an Odoo connection, a ChatRoom connector) register
    their per-kit hook objects here with ``kit.plugins.register(obj, name=...)``. Called once
    per kit (an async kit calls it in a worker thread); must not send anything. What a plugin
    may use of either kit is :class:`smskit.kitbase.BaseKit`'s: ``settings``, ``plugins``,
    ``store``, ``has_store``, ``provider(name)``.
    """


@hookspec
def register_audience_sources(register: Callable[[str, AudienceSource[Any]], None]) -> None:
    """Register campaign audience sources by type: ``register("csv", CsvSource())``.

    A campaign stores its audience as JSON data whose ``"type"`` names the source; the source
    (:class:`smskit.outreach.audience.AudienceSource`) validates that data and reads pages of
    recipients after a cursor, given the kit. Built-in types: ``csv``, ``tags``. A type
    registered twice raises :class:`smskit.errors.ConfigurationError`.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``smskit`` command (``smskit kolmeya simulate``)."""


@hookspec
def prepare_message(
    message: Message, context: Mapping[str, Any]
) -> Optional[Dict[str, Any]]:
    """Return extra template variables for ``message`` (e.g. an Odoo partner's fields).

    Called before rendering, once per recipient; results are merged into the context (the
    caller's own variables win). Return ``None`` to add nothing.
    """


@hookspec
def check_message(message: Message) -> Optional[str]:
    """Veto a message before it is stored as ``outgoing``: return a reason string to cancel it.

    Every implementation is asked; the first reason found cancels the message. Return ``None``
    to let it through.
    """


@hookspec(firstresult=True)
def route_inbound(message: Message) -> Optional[str]:
    """Route an inbound SMS somewhere (a ChatRoom conversation...). Return where it went.

    ``firstresult``: the first plugin to return a non-None destination wins; it is recorded
    as the reply's ``routed`` event. Until a ``routed`` event exists (a router raised, or the
    process died between storing the reply and routing it), a later delivery of the same
    reply calls this hook again: a router must recognise a reply it already wrote (by its
    id or the gateway's reply id) rather than write it twice.
    """


@hookspec(firstresult=True)
def route_outbound(message: Message) -> Optional[Union[str, Sequence[str]]]:
    """Choose the provider(s) for an outbound ``message``: a provider name, or a list of them
    (the route: the preferred one first, then where the message goes when that one's circuit
    is open). ``None``: no opinion (the ``SMSKIT_ROUTES`` table decides, else the default
    provider).

    ``firstresult``: the first plugin to answer wins. Called when a message is composed (its
    ``provider`` is the default one then, its segments counted) and again when its provider
    fails over, so it must be cheap, do no I/O and give the same route for the same message.
    A message sent with an explicit ``provider=`` is not routed. The worker serves the
    providers of the ``SMSKIT_ROUTES`` table and of ``SMSKIT_ROUTE_PROVIDERS``: name there any
    other provider the hook returns.
    """


@hookspec
def message_sent(message: Message) -> None:
    """The provider accepted ``message`` (state ``sent``)."""


@hookspec
def message_status_changed(message: Message, old: State, new: State) -> None:
    """A status event moved ``message`` from ``old`` to ``new`` (forward only)."""


@hookspec
def message_received(message: Message) -> None:
    """A new inbound message was stored (once per provider reply id; a later delivery of
    the same reply does not call it again)."""


@hookspec
def batch_ambiguous(batch: BatchInfo, messages: Sequence[Message], reason: str) -> None:
    """Reconciliation could not settle ``batch`` and holds ``messages`` (still ``outgoing``):
    their request may have reached the gateway, and smskit will not send them again by
    itself. ``reason`` says why (the gateway could not be asked, or its "never received"
    comes from a lookup not yet proven). Called once per batch, when it is first held; a
    person settles it with ``smskit resolve`` (:meth:`smskit.SmsKit.resolve`), or a later
    proof does.
    """


@hookspec
def balance_low(provider: str, balance: Any, threshold: Any) -> None:
    """A periodic balance check found ``balance`` below ``threshold``."""
