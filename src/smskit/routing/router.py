"""The router: which provider sends each message, and where it goes when that one is down.

A message's **route** is the list of providers that may send it, the preferred one first. It
comes from the first of:

1. the ``route_outbound`` hook (``firstresult``): a plugin returns a provider name or a list
   of them for the message (``None``: no opinion);
2. the route table of ``SMSKIT_ROUTES`` (:mod:`smskit.routing.rules`): the first rule the
   message meets;
3. the default provider alone.

The provider is decided when the message is composed (:attr:`Message.provider`, under which
it is queued and claimed): the first provider of its route whose circuit is not open. When a
provider fails with a "sent nothing" error its circuit opens (:mod:`smskit.routing.circuit`)
and the dispatcher moves its due messages to the next provider of their routes whose circuit
is closed (:meth:`Router.targets`), each move recorded in the message's history. A message
whose route does not name the failed provider (one sent with an explicit ``provider=``) stays
where it is. A batch whose outcome is unknown is never moved: it is reconciled with its own
provider first.

The router is also the dispatcher's :class:`~smskit.outbox.dispatching.DispatchPolicy`: it
paces each provider (``<provider>_max_per_second``, :mod:`smskit.routing.limits`), across
every process that shares the store, and says which claimed messages must wait because the
provider's quiet hours or their recipient's do-not-disturb forbid sending now
(:meth:`Router.not_yet`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from smskit.config import Settings
from smskit.errors import (
    ConfigurationError,
    ProviderError,
    TransientProviderError,
    ValidationError,
)
from smskit.models import Message
from smskit.policy import DndRule, dnd_next_allowed
from smskit.provider import Provider
from smskit.routing.circuit import Circuits
from smskit.routing.limits import KEY_PREFIX, SharedRateLimiter
from smskit.routing.policies import ProviderPolicies
from smskit.routing.rules import RouteTable, order_by_price
from smskit.store.base import Requeue, Store

__all__ = ["Router"]

log = logging.getLogger(__name__)


def _no_store() -> None:
    return None


class Router:
    """Routes, circuits and pacing of one kit (see the module docs).

    ``hooks`` returns the plugin hook relay (asked only when a plugin implements
    ``route_outbound``); ``store`` returns the store circuits are shared through.
    """

    def __init__(self, settings: Settings, default: str, *,
                 policies: Optional[ProviderPolicies] = None,
                 hooks: Optional[Callable[[], Any]] = None,
                 store: Optional[Callable[[], Store]] = None,
                 clock: Optional[Callable[[], float]] = None,
                 sleep: Optional[Callable[[float], None]] = None) -> None:
        self.default = default
        self.table = RouteTable.parse(settings.get("routes"))
        self.extra = tuple(n.strip() for n in (settings.get("route_providers") or "").split(",")
                           if n.strip())
        self.policies = policies or ProviderPolicies(settings)
        self.circuits = Circuits.from_settings(settings, store)
        self._hooks = hooks
        self._limiter_options: Dict[str, Any] = {}
        if clock is not None:
            self._limiter_options["clock"] = clock
        if sleep is not None:
            self._limiter_options["sleep"] = sleep
        self._store = store
        self._limiters: Dict[str, Optional[SharedRateLimiter]] = {}
        self._lock = threading.Lock()

    # -- routes ---------------------------------------------------------------------------------
    def _hook(self) -> Any:
        if self._hooks is None:
            return None
        relay = self._hooks()
        return relay.route_outbound if relay.route_outbound.get_hookimpls() else None

    @property
    def active(self) -> bool:
        """Whether routing is configured (a route table, or a plugin's ``route_outbound``):
        without it every message goes to the default provider and nothing fails over."""
        return bool(self.table.rules) or self._hook() is not None

    def providers(self) -> Tuple[str, ...]:
        """The default provider, those ``route_providers`` names (the ones only a
        ``route_outbound`` plugin chooses), then every provider the route table names."""
        return tuple(dict.fromkeys((self.default, *self.extra, *self.table.providers())))

    def route(self, message: Message) -> Tuple[str, ...]:
        """The providers that may send ``message``, the preferred one first."""
        hook = self._hook()
        answer = hook(message=message) if hook is not None else None
        if answer is not None:
            names = (answer,) if isinstance(answer, str) else tuple(answer)
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ConfigurationError(f"route_outbound returned {answer!r}: a provider "
                                         "name or a list of them")
            return tuple(dict.fromkeys(names))
        rule = self.table.match(message)
        if rule is None:
            return (self.default,)
        if rule.by_cost:
            prices = {p: self.policies.price(p, message.phone) for p in rule.providers}
            return order_by_price(rule.providers, prices)
        return rule.providers

    def choose(self, message: Message, now: dt.datetime) -> str:
        """The provider to queue ``message`` under: the first of its route whose circuit is
        not open (the first of all when every one is)."""
        route = self.route(message)
        for name in route:
            if self.circuits.allows(name, now):
                return name
        return route[0]

    def targets(self, messages: Sequence[Message], failed: str,
                now: dt.datetime) -> List[Requeue]:
        """Where each of ``messages`` (queued for ``failed``, whose circuit is open) goes: the
        next provider of its route, after ``failed`` and then from the start, whose circuit
        is closed, with the cost there. Messages with nowhere to go are left out."""
        out: List[Requeue] = []
        for message in messages:
            route = self.route(message)
            if failed not in route:
                continue
            at = route.index(failed)
            for name in route[at + 1:] + route[:at]:
                if self.circuits.allows(name, now):
                    price = self.policies.price(name, message.phone)
                    out.append(Requeue(message_id=message.id, provider=name,
                                       cost=price * message.segments))
                    break
        return out

    # -- the dispatcher's policy -------------------------------------------------------------
    def limiter(self, provider: str) -> Optional[SharedRateLimiter]:
        """The rate limiter of ``provider`` (``None``: no ``<provider>_max_per_second``),
        shared with every process using the same store."""
        if provider not in self._limiters:
            rate = self.policies.max_per_second(provider)
            store: Callable[[], object] = self._store or _no_store
            with self._lock:
                if provider not in self._limiters:
                    self._limiters[provider] = (
                        SharedRateLimiter(rate, store, KEY_PREFIX + provider,
                                          **self._limiter_options)
                        if rate is not None else None)
        return self._limiters[provider]

    def batch_size(self, provider: Provider) -> int:
        """At most ``max_batch``, and one second's worth under a rate limit."""
        limiter = self.limiter(provider.name)
        return min(provider.max_batch, limiter.per_batch) if limiter else provider.max_batch

    def pace(self, provider: str, count: int) -> None:
        """Wait for ``provider``'s rate limit before sending ``count`` messages."""
        limiter = self.limiter(provider)
        if limiter is not None:
            limiter.acquire(count)

    def allows(self, provider: str, now: dt.datetime) -> bool:
        """Whether ``provider``'s circuit lets a batch through (always, without routing)."""
        return not self.active or self.circuits.allows(provider, now)

    def failed(self, provider: str, error: ProviderError, now: dt.datetime) -> bool:
        """A "sent nothing" error of ``provider``: a transient one (connection refused, 5xx
        before acceptance, 429 past the wait limit) counts towards its circuit; whether the
        circuit is open now (never without routing)."""
        if not self.active or not isinstance(error, TransientProviderError):
            return False
        return self.circuits.failed(provider, str(error), now)

    def succeeded(self, provider: str, now: dt.datetime) -> None:
        """``provider`` took a batch: its circuit closes."""
        if self.active:
            self.circuits.succeeded(provider, now)

    def reopens_at(self, provider: str) -> Optional[dt.datetime]:
        """When ``provider``'s open circuit lets a batch through again."""
        return self.circuits.reopens_at(provider)

    def not_yet(self, provider: str, messages: Sequence[Message],
                rules: Mapping[str, DndRule], now: dt.datetime
                ) -> Dict[str, Optional[dt.datetime]]:
        """The ``messages`` of ``provider`` that may not go out at ``now``, each with the next
        moment allowed: the provider's quiet hours forbid ``now`` (every message waits for
        their end), or the recipient's do-not-disturb rule (``rules``, by phone) does.
        ``None``: the recipient's rule leaves no time at all to send."""
        quiet = self.policies.quiet_hours(provider)
        closed = quiet.next_allowed(now)
        if closed is not None:
            return {m.id: closed for m in messages}
        if not rules:
            return {}
        tz = self.policies.settings.timezone
        found: Dict[str, Optional[dt.datetime]] = {}
        for message in messages:
            rule = rules.get(message.phone)
            if rule is None:
                continue
            try:
                later = dnd_next_allowed(rule, now, tz=tz, quiet_hours=quiet)
            except ValidationError:  # a rule changed since the message was queued
                found[message.id] = None
                continue
            if later is not None:
                found[message.id] = later
        return found
