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
from concurrent.futures import ThreadPoolExecutor
from typing import (
    AbstractSet,
    Any,
    Callable,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from smskit import outbox
from smskit.kitbase import BaseKit
from smskit.models import InboundMessage, Message, StatusEvent
from smskit.outbox import compose, sending
from smskit.outbox.compose import BulkSummary, Outcome, Recipient
from smskit.store.base import ApplyOutcome, EventRecord, InboundOutcome
from smskit.webhooks.apply import WebhookReport, apply_payload
from smskit.webhooks.gate import read_payload
from smskit.webhooks.request import WebhookRequest

__all__ = ["BulkSummary", "Outcome", "SmsKit", "WebhookReport"]

log = logging.getLogger(__name__)


class SmsKit(BaseKit):
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
        spec = self._one_spec(text, variables, at, idempotency_key=idempotency_key, tags=tags,
                              campaign_id=campaign_id, partner_ref=partner_ref)
        # An invalid number raises before the store or the plugins are touched, and a provider
        # that cannot be built (no token) before the store is opened (or its file created).
        recipient = compose.parse_phone(phone, spec, composer)
        # Checked without dispatching too: what a worker could never send is not stored.
        names = self._send_providers(composer)
        send = self._dispatcher(names) if dispatch else None
        return sending.send_one(self.store, self.hooks, composer, recipient, spec, clock=self.clock,
                                dispatch=send)

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
        spec = self._many_spec(text, variables, at, idempotency_prefix=idempotency_prefix,
                               phone_field=phone_field, recipient_fields=recipient_fields,
                               tags=tags, campaign_id=campaign_id, schedule_id=schedule_id)
        # Checked without dispatching too: what a worker could never send is not stored.
        names = self._send_providers(composer)
        send = self._bulk_dispatcher(composer, names) if dispatch else None
        size = self._chunk_size(composer, chunk_size, dispatch)
        return sending.send_many(self.store, self.hooks, composer, recipients, spec,
                                 clock=self.clock, chunk_size=size, on_outcome=on_outcome,
                                 dispatch=send)

    def dispatch_due(self, *, providers: Optional[Sequence[str]] = None,
                     watch: AbstractSet[str] = frozenset(),
                     now: Optional[dt.datetime] = None,
                     first: Optional[sending.Opened] = None) -> outbox.DispatchReport:
        """:meth:`dispatch` each of ``providers`` (default: :meth:`routed_providers`, those
        a worker serves: messages may move between them on the way), in one report.
        ``first``: a batch already claimed, sent first by its provider's dispatch."""
        names = tuple(providers) if providers is not None else self.routed_providers()
        return outbox.DispatchReport.merge(
            [self.dispatch(provider=name, watch=watch, now=now,
                           first=first if first is not None and first[0].provider == name
                           else None)
             for name in names])

    def _bulk_dispatcher(self, composer: outbox.Composer,
                         names: Sequence[str]) -> sending.BulkDispatcher:
        """:meth:`_dispatcher` for a bulk send. With one provider (no route) whose circuit is
        closed, each chunk's batch is opened as the chunk is inserted and its request goes
        out from a background thread while the next chunk is composed and stored; its
        results, the hooks and everything else stay on the calling thread."""
        if composer.route is not None:
            return sending.BulkDispatcher.serial(
                lambda watch: self.dispatch_due(providers=names, watch=watch))
        name = composer.provider
        pool: List[ThreadPoolExecutor] = []

        def begin(watch: AbstractSet[str], first: Optional[sending.Opened]) -> sending.Finish:
            if first is None:
                report = self.dispatch_due(providers=names, watch=watch)
                return lambda: report
            if not pool:
                pool.append(ThreadPoolExecutor(1, thread_name_prefix="smskit-request"))
            return outbox.begin_dispatch(
                self.store, self.provider(name), now=self.clock(),
                on_sent=self._sent_listener(), on_opted_out=self._on_opted_out,
                policy=self.router, watch=watch, lookups=self.lookups, first=first,
                submit=pool[0].submit)

        def close() -> None:
            for executor in pool:
                executor.shutdown(wait=True)

        return sending.BulkDispatcher(begin, lambda: self._insert_claim(name), close)

    def _send_providers(self, composer: outbox.Composer) -> Tuple[str, ...]:
        """Every provider a send may need, checked (:meth:`check_providers`): its own, or
        with routing every routed one. An unknown or misconfigured one raises
        :class:`~smskit.errors.ConfigurationError` before anything is stored."""
        return self.check_providers(
            (composer.provider,) if composer.route is None else None)

    def _dispatcher(self, names: Sequence[str]) -> sending.Dispatch:
        """What a send dispatches with: :meth:`dispatch_due` of ``names``."""
        return lambda watch: self.dispatch_due(providers=names, watch=watch)

    def dispatch(self, *, provider: Optional[str] = None, max_batches: Optional[int] = None,
                 now: Optional[dt.datetime] = None,
                 watch: AbstractSet[str] = frozenset(),
                 first: Optional[sending.Opened] = None) -> outbox.DispatchReport:
        """Send every ``outgoing`` message of ``provider`` due at ``now`` (default: the clock);
        see :func:`outbox.dispatch` (``watch``: ids whose outcome the report gives;
        ``first``: a batch of ``provider`` already claimed, sent first)."""
        return outbox.dispatch(self.store, self.provider(provider), now=now or self.clock(),
                               max_batches=max_batches, on_sent=self._sent_listener(),
                               on_opted_out=self._on_opted_out, policy=self.router,
                               watch=watch, lookups=self.lookups, first=first)

    def reconcile(self, *, provider: Optional[str] = None,
                  stale_after: dt.timedelta = dt.timedelta(minutes=5),
                  now: Optional[dt.datetime] = None) -> outbox.ReconcileReport:
        """Settle batches whose outcome is unknown (see :func:`outbox.reconcile`); a batch
        that cannot be settled is held, and ``batch_ambiguous`` tells the plugins once."""
        return outbox.reconcile(self.store, self.provider(provider), now=now or self.clock(),
                                stale_after=stale_after, lookups=self.lookups,
                                on_sent=self._sent_listener(), on_status=self.apply_status,
                                on_opted_out=self._on_opted_out, on_held=self._on_held)

    def held(self, provider: Optional[str] = None) -> List[outbox.HeldBatch]:
        """Batches whose outcome is unknown, with the messages of each still waiting (see
        :func:`outbox.held`): never sent again by themselves; :meth:`resolve` settles them."""
        return self._held(provider)

    def resolve(self, target: str, *, sent: bool, who: str = "by hand") -> List[str]:
        """Settle a held batch, or one message of it, by hand: ``sent=True`` confirms the
        gateway has it, ``sent=False`` sends it again (see :func:`outbox.resolve`). Returns
        the message ids settled."""
        return self._resolve(target, sent=sent, who=who)

    # -- status and inbound -----------------------------------------------------------------
    def apply_status(self, event: StatusEvent) -> ApplyOutcome:
        """Apply a status event forward only (idempotent); unknown ids are recorded, not dropped.

        An event naming only a batch (a request the gateway rejected as a whole) is applied to
        each message of that batch; the outcome returned is the last one.
        """
        return self._apply_status(event)

    def apply_statuses(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        """:meth:`apply_status` for each event in turn, through the store's
        :meth:`~smskit.store.base.Store.apply_statuses` (one transaction in the SQL store:
        group commit). Outcomes are in the order of ``events``.

        ``message_status_changed`` fires for each applied change once the whole call is
        stored. With a transactional store a failure stores nothing of the call and raises;
        apply fewer events to isolate it. An event naming only a batch makes the call go one
        event at a time (:meth:`apply_status` expands it).
        """
        return self._apply_statuses(events)

    def receive(self, inbound: InboundMessage) -> InboundOutcome:
        """Record a reply once per provider reply id; apply opt-out keywords; route it."""
        return self._receive(inbound)

    def handle_webhook(self, provider: str, kind: str, headers: Mapping[str, str],
                       body: bytes) -> WebhookReport:
        """Decode, parse and apply a provider callback you trust, with none of the gate's
        checks (token, size...): a receiver of untrusted requests uses
        :func:`smskit.webhooks.receive` instead. Raises :class:`ValidationError` for a body the
        provider does not recognise."""
        request = WebhookRequest(provider=provider, kind=kind, headers=headers, body=body)
        return apply_payload(self, read_payload(self.provider(provider), request))

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
        return self._blacklist_change(self._e164(phone), "add", reason=reason, source=source)

    def blacklist_remove(self, phone: Union[str, int], reason: str = "",
                         source: str = "api") -> bool:
        """Take a number off the local blacklist; ``False`` if it was not there (audited and
        queued for the gateways like :meth:`blacklist_add`)."""
        return self._blacklist_change(self._e164(phone), "remove", reason=reason,
                                      source=source)

    def close(self) -> None:
        """Close providers and the store."""
        for provider in self._providers.values():
            provider.close()
        self._close_store()

    def __enter__(self) -> SmsKit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

