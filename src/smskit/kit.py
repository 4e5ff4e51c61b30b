"""The public facade: :class:`SmsKit` ties settings, plugins, the store and providers together.

::

    from smskit import SmsKit

    kit = SmsKit.from_env()                      # SMSKIT_* variables / smskit.toml
    outcome = kit.send("(11) 98765-4321", "Olá {{ name }}!", variables={"name": "Ana"})
    summary = kit.send_many(rows, template="Olá {{ name }}, sua fatura vence {{ due }}.")
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from smskit import outbox
from smskit.config import Settings
from smskit.errors import ValidationError
from smskit.models import InboundMessage, Message, SendResult, StatusEvent, utcnow
from smskit.outbox import compose, sending
from smskit.outbox.compose import BulkSummary, Outcome, Recipient
from smskit.phone import Phone
from smskit.plugins import Plugins
from smskit.policy import QuietHours, is_optout
from smskit.provider import Provider
from smskit.routing import ProviderPolicies, Router
from smskit.store.base import ApplyOutcome, EventRecord, InboundOutcome, Store
from smskit.store.outreach import OutreachStore
from smskit.template import Template
from smskit.webhooks.apply import WebhookReport, apply_payload
from smskit.webhooks.gate import read_payload
from smskit.webhooks.request import WebhookRequest

__all__ = ["BulkSummary", "Outcome", "SmsKit", "WebhookReport"]

log = logging.getLogger(__name__)



def _storable(text: str) -> str:
    """``text`` itself, or with lone UTF-16 surrogates (which no store can encode, and which a
    gateway's JSON can smuggle in as escapes) replaced by U+FFFD, so a reply is kept, not lost."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class SmsKit:
    """Send, receive and track SMS. One instance per application (no global state).

    Settings come as keywords, or as one :class:`~smskit.config.Settings` value::

        SmsKit(database_url="sqlite:///sms.db", provider="kolmeya", kolmeya_token="...")
        SmsKit(Settings(database_url="sqlite:///sms.db"))    # exactly these, nothing read

    Keywords (any setting, a plugin's too) win over ``SMSKIT_*`` environment variables, which
    win over ``smskit.toml`` (``config_file=``, ``$SMSKIT_CONFIG`` or ``./smskit.toml``), which
    win over the defaults; ``SmsKit()`` alone reads the environment and ``smskit.toml`` too
    (as :meth:`from_env`). A ``Settings`` value is used as given.

    ``store`` and ``provider`` objects replace the ones the settings name, which the plugins
    build on first use (``provider`` may also be a provider's name, a setting). Nothing is
    opened or connected by the constructor. ``clock`` is injectable for tests.
    """

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

    @classmethod
    def from_env(cls, **kwargs: Any) -> SmsKit:
        """An instance configured from ``SMSKIT_*`` variables and ``smskit.toml`` (what
        ``SmsKit(**kwargs)`` does without a ``Settings`` value; keywords win)."""
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

    # -- sending --------------------------------------------------------------------------
    def send(
        self,
        phone: Union[str, int],
        text: str,
        *,
        variables: Optional[Mapping[str, Any]] = None,
        at: Optional[dt.datetime] = None,
        idempotency_key: Optional[str] = None,
        tags: Sequence[str] = (),
        campaign_id: Optional[str] = None,
        partner_ref: Optional[str] = None,
        provider: Optional[str] = None,
        dispatch: bool = True,
        track_links: Optional[bool] = None,
    ) -> Outcome:
        """Send one SMS. ``text`` is a template (``{{ name }}``) rendered with ``variables``.

        Invalid input raises (:class:`~smskit.errors.InvalidPhoneError`,
        :class:`~smskit.errors.MissingVariableError`...) and stores nothing. A policy veto
        returns a ``canceled`` outcome; quiet hours a deferred one. With ``dispatch`` the
        message is handed to the provider before returning. ``track_links`` (default: the
        ``link_tracking`` setting) sends URLs as short links that count clicks.
        """
        composer = self.composer(provider, track_links=track_links)
        spec = compose.SendSpec(template=Template(text), variables=dict(variables or {}), at=at,
                                fields=dict(idempotency_key=idempotency_key, tags=tuple(tags),
                                            campaign_id=campaign_id, partner_ref=partner_ref))
        # An invalid number raises before the store or the plugins are touched, and a provider
        # that cannot be built (no token) before the store is opened (or its file created).
        recipient = compose.parse_phone(phone, spec, composer)
        if dispatch:
            self.provider(composer.provider)
        return sending.send_one(self.store, self.hooks, composer, recipient, spec, clock=self.clock,
                             dispatch=self._dispatcher(composer) if dispatch else None)

    def send_many(
        self,
        recipients: Iterable[Recipient],
        text: str,
        *,
        variables: Optional[Mapping[str, Any]] = None,
        phone_field: str = "phone",
        at: Optional[dt.datetime] = None,
        idempotency_prefix: Optional[str] = None,
        tags: Sequence[str] = (),
        campaign_id: Optional[str] = None,
        schedule_id: Optional[str] = None,
        provider: Optional[str] = None,
        on_outcome: Optional[Callable[[Outcome], None]] = None,
        dispatch: bool = True,
        chunk_size: Optional[int] = None,
        track_links: Optional[bool] = None,
        recipient_fields: Optional[Mapping[str, str]] = None,
    ) -> BulkSummary:
        """Send ``text`` to every recipient, streaming: memory stays constant however many.

        A recipient is a phone, or a mapping whose ``phone_field`` is the phone and whose
        other keys are template variables (a CSV row). One bad recipient never aborts the
        batch: it becomes a ``rejected`` record and an outcome with the reason. With
        ``idempotency_prefix``, the key ``"<prefix>:<E.164>"`` makes a re-run (after a crash)
        skip recipients already stored. A rejected record gets its own key
        (``"<prefix>:<E.164 or input>:rejected"``), so re-running unchanged input does not
        record it twice, while a corrected recipient is sent. ``track_links``: as in
        :meth:`send` (each recipient's URLs get their own codes, stored per chunk).
        ``recipient_fields`` takes message fields from each mapping recipient
        (``{"idempotency_key": "order", "partner_ref": "customer"}``; see
        :class:`~smskit.outbox.compose.SendSpec`): keyed by its own value, each row is one
        message sent once, even with two rows to one number.
        """
        composer = self.composer(provider, track_links=track_links)
        spec = compose.SendSpec(template=Template(text), variables=dict(variables or {}), at=at,
                                fields=dict(tags=tuple(tags), campaign_id=campaign_id,
                                            schedule_id=schedule_id),
                                idempotency_prefix=idempotency_prefix, phone_field=phone_field,
                                recipient_fields=dict(recipient_fields or {}))
        size = chunk_size or max(1, self.provider(composer.provider).max_batch
                                 if dispatch else 1000)
        return sending.send_many(self.store, self.hooks, composer, recipients, spec,
                              clock=self.clock, chunk_size=size, on_outcome=on_outcome,
                              dispatch=self._dispatcher(composer) if dispatch else None)

    def _dispatcher(self, composer: outbox.Composer) -> Callable[[], outbox.DispatchReport]:
        if composer.route is None:
            return lambda: self.dispatch(provider=composer.provider)
        # Routed: any of the providers may hold the messages (and they may move on the way).
        return lambda: outbox.DispatchReport.merge(
            [self.dispatch(provider=name) for name in self.routed_providers()])

    def dispatch(self, *, provider: Optional[str] = None, max_batches: Optional[int] = None,
                 now: Optional[dt.datetime] = None) -> outbox.DispatchReport:
        """Send every ``outgoing`` message of ``provider`` due at ``now`` (default: the clock);
        see :func:`outbox.dispatch`."""
        return outbox.dispatch(self.store, self.provider(provider), now=now or self.clock(),
                               max_batches=max_batches, on_sent=self._sent_listener(),
                               on_opted_out=self._on_opted_out, policy=self.router)

    def reconcile(self, *, provider: Optional[str] = None,
                  stale_after: dt.timedelta = dt.timedelta(minutes=5),
                  now: Optional[dt.datetime] = None) -> outbox.ReconcileReport:
        """Settle batches whose outcome is unknown (see :func:`outbox.reconcile`)."""
        return outbox.reconcile(self.store, self.provider(provider), now=now or self.clock(),
                                stale_after=stale_after, on_sent=self._sent_listener(),
                                on_status=self.apply_status, on_opted_out=self._on_opted_out)

    # -- status and inbound -----------------------------------------------------------------
    def apply_status(self, event: StatusEvent) -> ApplyOutcome:
        """Apply a status event forward only (idempotent); unknown ids are recorded, not dropped.

        An event naming only a batch (a request the gateway rejected as a whole) is applied to
        each message of that batch; the outcome returned is the last one.
        """
        if event.message_id is None and event.provider_message_id is None and event.batch_id:
            batch = self.store.get_batch(event.batch_id)
            if batch is not None and batch.message_ids:
                outcomes = [self.apply_status(attrs.evolve(event, message_id=mid, batch_id=None))
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

    def apply_statuses(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
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
            return [self.apply_status(event) for event in events]
        outcomes = self.store.apply_statuses(events)
        if not self.hooks.message_status_changed.get_hookimpls() and not any(
                e.opted_out for e in events):
            return outcomes
        for event, outcome in zip(events, outcomes):
            self._after_status(event, outcome)
        return outcomes

    def receive(self, inbound: InboundMessage) -> InboundOutcome:
        """Record a reply once per provider reply id; apply opt-out keywords; route it."""
        try:
            phone = Phone.parse(inbound.phone, self.settings.default_region,
                                allow_landlines=True).e164
        except ValidationError:
            phone = inbound.phone
        if phone != inbound.phone:
            inbound = attrs.evolve(inbound, phone=phone)
        body = _storable(inbound.body)
        if body is not inbound.body:
            inbound = attrs.evolve(inbound, body=body)
        outcome = self.store.record_inbound(inbound)
        if not outcome.created:
            return outcome
        keyword = inbound.opt_out or is_optout(inbound.body, self.settings.optout_keywords)
        if keyword is not None:
            answered = self.store.get(outcome.message.in_reply_to) \
                if outcome.message.in_reply_to else None
            self._blacklist_change(phone, "add", reason=f"opt-out keyword {keyword}",
                                   source=f"inbound:{inbound.provider}",
                                   campaign_id=answered.campaign_id if answered else None)
            self.store.record_event(outcome.message.id, "optout", f"keyword {keyword}",
                                    provider=inbound.provider)
        self._route(outcome.message)
        self._notify("message_received", outcome.message)
        return outcome

    def handle_webhook(self, provider: str, kind: str, headers: Mapping[str, str],
                       body: bytes) -> WebhookReport:
        """Decode, parse and apply a provider callback you trust, with none of the gate's
        checks (token, size...): a receiver of untrusted requests uses
        :func:`smskit.webhooks.receive` instead. Raises :class:`ValidationError` for a body the
        provider does not recognise."""
        request = WebhookRequest(provider=provider, kind=kind, headers=headers, body=body)
        return apply_payload(self, read_payload(self.provider(provider), request))

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

    def _on_opted_out(self, message: Message, result: SendResult) -> None:
        self._opted_out_at_gateway(message, result.error_code)

    def _opted_out_at_gateway(self, message: Message, code: Optional[str]) -> None:
        # The gateway will refuse this number from now on: stop sending to it everywhere.
        why = f"recipient opted out at the gateway ({code or 'opted out'})"
        self._blacklist_change(message.phone, "add", reason=why,
                               source=f"gateway:{message.provider or self._default_provider}",
                               campaign_id=message.campaign_id)
        self.store.record_event(message.id, "optout", why, provider=message.provider)

    def _sent_listener(self) -> Optional[Callable[[Message], None]]:
        # Without a message_sent implementation the sent messages need not be read back.
        return self._on_sent if self.hooks.message_sent.get_hookimpls() else None

    # -- look-ups and lists -------------------------------------------------------------------
    def get(self, message_id: str) -> Optional[Message]:
        """A message by our id."""
        return self.store.get(message_id)

    def history(self, message_id: str) -> List[EventRecord]:
        """Every event recorded for a message."""
        return self.store.history(message_id)

    def cancel(self, message_id: str, reason: str = "canceled by user") -> Optional[Message]:
        """Cancel a message that has not been handed to the provider yet."""
        return self.store.cancel(message_id, reason)

    def blacklist_add(self, phone: Union[str, int], reason: str = "",
                      source: str = "api") -> bool:
        """Put a number on the local blacklist (authoritative); ``False`` if already there.

        The change is audited (``source``: who or what, ``reason``: why) and queued for the
        gateways of :meth:`blacklist_sync_targets` (see :mod:`smskit.outreach.blacklist_sync`).
        """
        e164 = Phone.parse(phone, self.settings.default_region, allow_landlines=True).e164
        return self._blacklist_change(e164, "add", reason=reason, source=source)

    def blacklist_remove(self, phone: Union[str, int], reason: str = "",
                         source: str = "api") -> bool:
        """Take a number off the local blacklist; ``False`` if it was not there (audited and
        queued for the gateways like :meth:`blacklist_add`)."""
        e164 = Phone.parse(phone, self.settings.default_region, allow_landlines=True).e164
        return self._blacklist_change(e164, "remove", reason=reason, source=source)

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

    def close(self) -> None:
        """Close providers and the store."""
        for provider in self._providers.values():
            provider.close()
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> SmsKit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

