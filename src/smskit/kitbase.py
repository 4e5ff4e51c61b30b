"""What :class:`smskit.SmsKit` and :class:`smskit.AsyncSmsKit` share: settings, plugins,
store, providers, routing, the composer, and the synchronous core of applying status events and
replies.

The two kits differ only in how they wait: ``SmsKit`` calls the store, the plugin hooks and
the providers directly; ``AsyncSmsKit`` awaits the providers' async twins and runs the store
and hook work of this class in a worker thread. Plugins get either kit in ``kit_ready``; what
they may use of it (``settings``, ``plugins``, ``store``, ``has_store``, ``provider(name)``) is
defined here, once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

import attrs

from smskit import outbox
from smskit.config import Settings
from smskit.ids import new_id
from smskit.models import InboundMessage, Message, SendResult, StatusEvent, utcnow
from smskit.outbox import compose
from smskit.phone import blacklist_e164, matching_e164
from smskit.plugins import Plugins
from smskit.policy import QuietHours, is_optout
from smskit.provider import Provider
from smskit.routing import ProviderPolicies, Router
from smskit.store.base import ApplyOutcome, BatchInfo, InboundOutcome, InsertClaim, Store
from smskit.store.outreach import OutreachStore
from smskit.template import Template

__all__ = ["BaseKit"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound="BaseKit")


def _storable(text: str) -> str:
    """``text`` itself, or with lone UTF-16 surrogates (which no store can encode, and which a
    gateway's JSON can smuggle in as escapes) replaced by U+FFFD, so a reply is kept, not lost."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class BaseKit:
    """The parts both kits share (see the module docs); use :class:`smskit.SmsKit` or
    :class:`smskit.AsyncSmsKit`. Their constructor takes the same arguments."""

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        store: Optional[Store] = None,
        provider: Union[Provider, str, None] = None,
        plugins: Optional[Plugins] = None,
        clock: Callable[[], dt.datetime] = utcnow,
        **options: Any,
    ) -> None:
        if isinstance(provider, str):
            options["provider"] = provider
            provider = None
        self.settings = Settings.resolve(settings, **options)
        self.plugins = plugins or Plugins(self.settings)
        self._store = store
        self._providers: Dict[str, Provider] = {}
        if provider is not None:
            self._providers[provider.name] = provider
        self._default_provider = provider.name if provider is not None else self.settings.provider
        self.clock = clock
        self.quiet_hours = QuietHours.from_settings(self.settings)
        #: Each provider's prices, rate limit, quiet hours and balance threshold.
        self.policies = ProviderPolicies(self.settings, self.quiet_hours)
        self._router: Optional[Router] = None
        self._ready = False
        #: What reconciliation knows of each provider's lookup (:mod:`smskit.outbox.proof`).
        self.lookups = outbox.Lookups(lambda: self.store)

    @classmethod
    def from_env(cls: Type[K], **kwargs: Any) -> K:
        """An instance configured from ``SMSKIT_*`` variables and ``smskit.toml`` (what
        ``cls(**kwargs)`` does without a ``Settings`` value; keywords win)."""
        return cls(**kwargs)

    # -- parts ----------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The store (built from ``settings.database_url`` on first use)."""
        if self._store is None:
            self._store = self.plugins.create_store()
        return self._store

    @property
    def has_store(self) -> bool:
        """Whether the store exists already (handed to the kit, or built by :attr:`store`).

        Reading it builds nothing: a plugin can tell whether :attr:`store` would be built
        from ``settings.database_url`` (see :func:`smskit.plugins.store_scheme`) first.
        """
        return self._store is not None

    @property
    def hooks(self) -> Any:
        """The plugin hook relay. Its first use loads the plugins and announces this kit to
        them (``kit_ready``), so per-kit plugins (Odoo, ChatRoom) attach themselves."""
        hook = self.plugins.hook
        if not self._ready:
            self._ready = True
            hook.kit_ready(kit=self)
        return hook

    def provider(self, name: Optional[str] = None) -> Provider:
        """A provider by name (default: the configured one), built once."""
        name = name or self._default_provider
        if name not in self._providers:
            self._providers[name] = self.plugins.create_provider(name)
        return self._providers[name]

    @property
    def router(self) -> Router:
        """Routes, circuits and pacing (:mod:`smskit.routing`), built on first use."""
        if self._router is None:
            self._router = Router(self.settings, self._default_provider,
                                  policies=self.policies, hooks=lambda: self.hooks,
                                  store=lambda: self.store)
        return self._router

    def routed_providers(self) -> Tuple[str, ...]:
        """The providers messages may be queued under: the default one, then those the
        routes name (just the default one without routing)."""
        router = self.router
        return router.providers() if router.active else (self._default_provider,)

    def check_providers(self, names: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
        """Build each provider of ``names`` (default: :meth:`routed_providers`) and read its
        settings (its rate limit), so that a configuration error (no token, a bad value)
        raises now, before anything is stored; the names."""
        found = tuple(names) if names is not None else self.routed_providers()
        for name in found:
            self.provider(name)
            self.policies.max_per_second(name)
        return found

    def composer(self, provider: Optional[str] = None, *,
                 track_links: Optional[bool] = None) -> outbox.Composer:
        """The message composer for ``provider`` with this instance's settings.

        Without ``provider`` and with routing configured, each message gets the provider its
        route chooses (:meth:`smskit.routing.Router.choose`). ``track_links`` (default: the
        ``link_tracking`` setting) replaces URLs by short links (:mod:`smskit.outbox.links`).
        """
        route: Optional[Callable[[Message], str]] = None
        if provider is None and self.router.active:
            router = self.router
            route = lambda message: router.choose(message, self.clock())  # noqa: E731
        return outbox.Composer.from_settings(
            self.settings, provider or self._default_provider, quiet_hours=self.quiet_hours,
            track_links=track_links, route=route, policies=self.policies)

    # -- what every send shares ---------------------------------------------------------------
    @staticmethod
    def _one_spec(text: str, variables: Optional[Mapping[str, Any]], at: Optional[dt.datetime],
                  **fields: Any) -> compose.SendSpec:
        """The spec of a single send (``fields``: its idempotency key, tags, campaign...)."""
        fields["tags"] = tuple(fields.get("tags") or ())
        return compose.SendSpec(template=Template(text), variables=dict(variables or {}),
                                at=at, fields=fields)

    @staticmethod
    def _many_spec(text: str, variables: Optional[Mapping[str, Any]],
                   at: Optional[dt.datetime], *, idempotency_prefix: Optional[str],
                   phone_field: str,
                   recipient_fields: Optional[Mapping[str, str]] = None,
                   **fields: Any) -> compose.SendSpec:
        """The spec of a bulk send (``fields``: tags, campaign, schedule)."""
        fields["tags"] = tuple(fields.get("tags") or ())
        return compose.SendSpec(template=Template(text), variables=dict(variables or {}),
                                at=at, fields=fields, idempotency_prefix=idempotency_prefix,
                                phone_field=phone_field,
                                recipient_fields=dict(recipient_fields or {}))

    def _chunk_size(self, composer: outbox.Composer, chunk_size: Optional[int],
                    dispatch: bool) -> int:
        """A bulk send's chunk: ``chunk_size``, else the provider's batch (1000 without
        dispatching)."""
        return chunk_size or max(1, self.provider(composer.provider).max_batch
                                 if dispatch else 1000)

    def _e164(self, phone: Union[str, int]) -> str:
        """A number for the blacklist (:func:`~smskit.phone.blacklist_e164`)."""
        return blacklist_e164(phone, self.settings.default_region)

    # -- status and inbound (synchronous: AsyncSmsKit runs these in a worker thread) ----------
    def _apply_status(self, event: StatusEvent) -> ApplyOutcome:
        """Apply a status event forward only (idempotent); unknown ids are recorded, not dropped.

        An event naming only a batch (a request the gateway rejected as a whole) is applied to
        each message of that batch; the outcome returned is the last one.
        """
        if event.message_id is None and event.provider_message_id is None and event.batch_id:
            batch = self.store.get_batch(event.batch_id)
            if batch is not None and batch.message_ids:
                outcomes = [self._apply_status(attrs.evolve(event, message_id=mid, batch_id=None))
                            for mid in batch.message_ids]
                return outcomes[-1]
        outcome = self.store.apply_status(event)
        self._after_status(event, outcome)
        return outcome

    def _after_status(self, event: StatusEvent, outcome: ApplyOutcome) -> None:
        if outcome.applied and outcome.message is not None and event.opted_out:
            self._opted_out_at_gateway(outcome.message, event.error_code)
        if outcome.applied and outcome.message is not None and outcome.old and outcome.new:
            self._notify("message_status_changed", outcome.message,
                         old=outcome.old, new=outcome.new)

    def _apply_statuses(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        """:meth:`apply_status` for each event in turn, through the store's
        :meth:`~smskit.store.base.Store.apply_statuses` (one transaction in the SQL store:
        group commit). Outcomes are in the order of ``events``.

        ``message_status_changed`` fires for each applied change once the whole call is
        stored. With a transactional store a failure stores nothing of the call and raises;
        apply fewer events to isolate it. An event naming only a batch makes the call go one
        event at a time (:meth:`apply_status` expands it).
        """
        if any(e.message_id is None and e.provider_message_id is None and e.batch_id
               for e in events):
            return [self._apply_status(event) for event in events]
        outcomes = self.store.apply_statuses(events)
        if not self.hooks.message_status_changed.get_hookimpls() and not any(
                e.opted_out for e in events):
            return outcomes
        for event, outcome in zip(events, outcomes):
            self._after_status(event, outcome)
        return outcomes

    def _receive(self, inbound: InboundMessage) -> InboundOutcome:
        """Record a reply once per provider reply id; apply opt-out keywords; route it."""
        # As the blacklist reads numbers: a sender written before the ninth digit is the
        # mobile messages go to, so an opt-out blocks it; an unreadable number is kept as is.
        phone = matching_e164(inbound.phone, self.settings.default_region) or inbound.phone
        if phone != inbound.phone:
            inbound = attrs.evolve(inbound, phone=phone)
        body = _storable(inbound.body)
        if body is not inbound.body:
            inbound = attrs.evolve(inbound, body=body)
        outcome = self.store.record_inbound(inbound)
        keyword = inbound.opt_out or is_optout(inbound.body, self.settings.optout_keywords)
        if not outcome.created:
            self._redelivered(outcome.message, keyword)
            return outcome
        if keyword is not None:
            self._opt_out(outcome.message, keyword)
        self._route(outcome.message)
        self._notify("message_received", outcome.message)
        return outcome

    def _opt_out(self, message: Message, keyword: str) -> None:
        """Blacklist the sender of a reply carrying an opt-out ``keyword``, and say so in the
        reply's history (the ``optout`` event)."""
        answered = self.store.get(message.in_reply_to) if message.in_reply_to else None
        self._blacklist_change(message.phone, "add", reason=f"opt-out keyword {keyword}",
                               source=f"inbound:{message.provider}",
                               campaign_id=answered.campaign_id if answered else None)
        self.store.record_event(message.id, "optout", f"keyword {keyword}",
                                provider=message.provider)

    def _redelivered(self, message: Message, keyword: Optional[str]) -> None:
        """A reply stored already and delivered again (the gateway retried after a failure,
        or a poll saw it twice). What its first delivery may have left undone, because it
        failed or its process died after the reply was stored, is done now and once: the
        opt-out when no ``optout`` event records it, the routing when no ``routed`` event
        does (a router that raised, or the ChatRoom write that never started). Only read
        when there is something to check (a keyword, a ``route_inbound`` plugin)."""
        routers = bool(self.hooks.route_inbound.get_hookimpls())
        if keyword is None and not routers:
            return
        done = {event.kind for event in self.store.history(message.id)}
        if keyword is not None and "optout" not in done:
            self._opt_out(message, keyword)
        if routers and "routed" not in done:
            self._route(message)

    def _route(self, message: Message) -> None:
        try:
            where = self.hooks.route_inbound(message=message)
        except Exception as exc:  # a plugin failure must not lose the stored reply
            log.exception("route_inbound failed for %s", message.id)
            self.store.record_event(message.id, "hook_error", f"route_inbound: {exc!r}")
            return
        if where:
            self.store.record_event(message.id, "routed", str(where))

    def _notify(self, hook: str, message: Message, **kwargs: Any) -> None:
        try:
            getattr(self.hooks, hook)(message=message, **kwargs)
        except Exception as exc:  # logged and recorded; never loses or re-sends the message
            log.exception("%s hook failed for %s", hook, message.id)
            self.store.record_event(message.id, "hook_error", f"{hook}: {exc!r}")

    def _on_sent(self, message: Message) -> None:
        self._notify("message_sent", message)

    def _on_held(self, batch: BatchInfo, messages: List[Message], reason: str) -> None:
        try:
            self.hooks.batch_ambiguous(batch=batch, messages=messages, reason=reason)
        except Exception as exc:  # logged and recorded; the batch stays held
            log.exception("batch_ambiguous hook failed for batch %s", batch.id)
            for message in messages:
                self.store.record_event(message.id, "hook_error", f"batch_ambiguous: {exc!r}")

    # -- held batches (synchronous: AsyncSmsKit runs these in a worker thread) ---------------
    def _held(self, provider: Optional[str] = None) -> List[outbox.HeldBatch]:
        return outbox.held(self.store, provider)

    def _resolve(self, target: str, *, sent: bool, who: str) -> List[str]:
        return outbox.resolve(self.store, target, sent=sent, now=self.clock(), who=who)

    def _on_opted_out(self, message: Message, result: SendResult) -> None:
        self._opted_out_at_gateway(message, result.error_code)

    def _opted_out_at_gateway(self, message: Message, code: Optional[str]) -> None:
        # The gateway will refuse this number from now on: stop sending to it everywhere.
        why = f"recipient opted out at the gateway ({code or 'opted out'})"
        self._blacklist_change(message.phone, "add", reason=why,
                               source=f"gateway:{message.provider or self._default_provider}",
                               campaign_id=message.campaign_id)
        self.store.record_event(message.id, "optout", why, provider=message.provider)

    def _insert_claim(self, name: str) -> Optional[InsertClaim]:
        """The batch a bulk send's next chunk may open as it is inserted, for provider
        ``name`` (``None`` while its circuit is open: the dispatch then claims as usual)."""
        now = self.clock()
        if not self.router.allows(name, now):
            return None
        return InsertClaim(batch_id=new_id(), provider=name, now=now,
                           limit=self.router.batch_size(self.provider(name)))

    def _sent_listener(self) -> Optional[Callable[[Message], None]]:
        # Without a message_sent implementation the sent messages need not be read back.
        return self._on_sent if self.hooks.message_sent.get_hookimpls() else None

    def blacklist_sync_targets(self) -> Tuple[str, ...]:
        """The providers blacklist changes are pushed to: the ``blacklist_sync_providers``
        setting (comma-separated; empty for none), else the default provider."""
        names = self.settings.get("blacklist_sync_providers")
        if names is None:
            return (self._default_provider,)
        return tuple(n.strip() for n in names.split(",") if n.strip())

    def _blacklist_change(self, e164: str, action: str, *, reason: str, source: str,
                          campaign_id: Optional[str] = None) -> bool:
        store = self.store
        if isinstance(store, OutreachStore):
            return store.blacklist_change(e164, action, reason=reason, source=source,
                                          sync_to=self.blacklist_sync_targets(),
                                          campaign_id=campaign_id, now=self.clock())
        if action == "add":  # a store without audit and sync: the plain list
            return store.blacklist_add(e164, reason, source)
        return store.blacklist_remove(e164)

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
