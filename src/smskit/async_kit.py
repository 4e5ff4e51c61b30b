"""The asynchronous facade: :class:`AsyncSmsKit`, the twin of :class:`smskit.SmsKit`.

::

    from smskit import AsyncSmsKit

    async with AsyncSmsKit(database_url="sqlite:///sms.db", provider="kolmeya",
                           kolmeya_token="...") as kit:
        outcome = await kit.send("(11) 98765-4321", "Olá {{ name }}!", variables={"name": "Ana"})
        results = await asyncio.gather(*(kit.send(phone, "Oi") for phone in phones))

Both kits share their core (:class:`smskit.kitbase.BaseKit`, :mod:`smskit.outbox`): the same
composing, policy, storing, decisions on the provider's answers and settling. This one awaits
the providers through their async twins (:meth:`~smskit.provider.Provider.asend_batch`: the
Kolmeya provider's own asynchronous client; a provider without one runs in a worker thread),
and runs the store and the plugin hooks, which are synchronous, in a worker thread
(``executor``, default: the event loop's), so the event loop never waits on a database.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
from typing import (
    AbstractSet,
    Any,
    AsyncIterable,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from smskit import outbox
from smskit.config import Settings
from smskit.kitbase import BaseKit
from smskit.models import InboundMessage, Message, State, StatusEvent, utcnow
from smskit.outbox import aio, compose, sending
from smskit.outbox.compose import BulkSummary, Outcome, Recipient
from smskit.plugins import Plugins
from smskit.provider import Provider, WebhookPayload
from smskit.store.base import ApplyOutcome, EventRecord, InboundOutcome, InsertClaim, Store
from smskit.threads import in_thread
from smskit.webhooks.apply import WebhookReport
from smskit.webhooks.auth import WebhookPolicy
from smskit.webhooks.gate import WebhookGate, WebhookResponse, answer, failure, read_payload
from smskit.webhooks.request import WebhookRequest

__all__ = ["AsyncSmsKit"]

T = TypeVar("T")


class AsyncSmsKit(BaseKit):
    """Send, receive and track SMS from asyncio code: :class:`smskit.SmsKit`'s methods,
    awaited (see the module docs). It takes the same arguments, and ``executor``, the
    :class:`concurrent.futures.Executor` its store and hook work runs in (default: the event
    loop's default executor).

    One instance per application, used from one event loop. ``kit.store`` is the synchronous
    store: call its other methods through :meth:`to_thread`. Close the kit
    (``async with``, or :meth:`close`) to close the providers' connections and the store.
    """

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        store: Optional[Store] = None,
        provider: Union[Provider, str, None] = None,
        plugins: Optional[Plugins] = None,
        clock: Callable[[], dt.datetime] = utcnow,
        executor: Optional[concurrent.futures.Executor] = None,
        **options: Any,
    ) -> None:
        super().__init__(settings, store=store, provider=provider, plugins=plugins, clock=clock,
                         **options)
        self.executor = executor
        self._gate: Optional[WebhookGate] = None
        self._preparing: Any = None  # an asyncio.Lock, made on the kit's event loop
        #: The batches being sent, by id: an asyncio.Event set once the batch is settled.
        self._in_flight: Dict[str, Any] = {}

    async def to_thread(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` in the kit's worker threads (for the store's other
        methods, or any blocking call)."""
        return await in_thread(func, *args, executor=self.executor, **kwargs)

    async def _prepared(self, *, store: bool = True) -> None:
        """Load the plugins (announcing the kit to them) and, with ``store``, open the store:
        off the event loop, once, whatever number of calls are waiting for it."""
        if self._ready and (not store or self._store is not None):
            return
        if self._preparing is None:
            import asyncio

            self._preparing = asyncio.Lock()
        async with self._preparing:
            if not self._ready:
                await self.to_thread(self._announce)
            if store and self._store is None:
                await self.to_thread(self._open_store)

    def _announce(self) -> Any:
        return self.hooks  # its first use loads the plugins and calls kit_ready

    # -- sending --------------------------------------------------------------------------
    async def send(
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
        """Send one SMS: :meth:`smskit.SmsKit.send`, awaited. Invalid input raises and stores
        nothing; with ``dispatch`` the message is handed to the provider before returning."""
        await self._prepared(store=False)
        composer = self.composer(provider, track_links=track_links)
        spec = self._one_spec(text, variables, at, idempotency_key=idempotency_key, tags=tags,
                              campaign_id=campaign_id, partner_ref=partner_ref)
        # As SmsKit.send: an invalid number raises before the store is touched, and a provider
        # that cannot be built before the store is opened.
        recipient = compose.parse_phone(phone, spec, composer)
        # Checked without dispatching too: what a worker could never send is not stored.
        names = self.check_providers(self._names(composer))
        await self._prepared()
        outcome, queued = await self.to_thread(self._store_one, composer, recipient, spec)
        if dispatch and queued is not None:
            report = await self.dispatch_due(providers=names, watch=frozenset({queued}))
            found = report.outcomes.get(queued)
            if found is not None:
                return outcome.after_dispatch(found)
            # Another send's dispatch claimed it into its batch: its state once settled.
            current = await self._settled(queued)
            batch = await self.to_thread(self.store.get_batch, current.batch_id) \
                if current is not None and current.batch_id else None
            outcome = sending.with_state(outcome, current, batch)
        return outcome

    async def _settled(self, message_id: str) -> Optional[Message]:
        """Message ``message_id`` once no batch this kit is sending holds it: another send's
        dispatch may have claimed it into its batch."""
        current = await self.to_thread(self.store.get, message_id)
        while current is not None and current.state is State.OUTGOING and current.batch_id:
            waiting = self._in_flight.get(current.batch_id)
            if waiting is not None:
                await waiting.wait()
            # Read again: the batch may also have been settled while the message was read
            # (a batch leaves the in-flight table only once its results are stored).
            latest = await self.to_thread(self.store.get, message_id)
            if waiting is None and latest is not None and (latest.state, latest.batch_id) == (
                    current.state, current.batch_id):
                return latest  # not in a batch of ours: queued, released or unsettled
            current = latest
        return current

    def _store_one(self, composer: outbox.Composer, recipient: compose.Parsed,
                   spec: compose.SendSpec) -> Tuple[Outcome, Optional[str]]:
        return sending.store_one(self.store, self.hooks, composer, recipient, spec,
                                 clock=self.clock)

    async def send_many(
        self,
        recipients: Union[Iterable[Recipient], AsyncIterable[Recipient]],
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
        on_outcome: Optional[Callable[[Outcome], Any]] = None,
        dispatch: bool = True,
        chunk_size: Optional[int] = None,
        track_links: Optional[bool] = None,
        recipient_fields: Optional[Mapping[str, str]] = None,
    ) -> BulkSummary:
        """Send ``text`` to every recipient, a chunk at a time: :meth:`smskit.SmsKit.send_many`,
        awaited. ``recipients`` may be an async iterable; ``on_outcome`` may be a coroutine
        function (it is awaited for each recipient, on the event loop)."""
        await self._prepared(store=False)
        composer = self.composer(provider, track_links=track_links)
        spec = self._many_spec(text, variables, at, idempotency_prefix=idempotency_prefix,
                               phone_field=phone_field, recipient_fields=recipient_fields,
                               tags=tags, campaign_id=campaign_id, schedule_id=schedule_id)
        size = self._chunk_size(composer, chunk_size, dispatch)
        # Checked without dispatching too: what a worker could never send is not stored.
        names = self.check_providers(self._names(composer))
        await self._prepared()

        def store_chunk(chunk: Sequence[Tuple[int, Recipient]], claim: Optional[InsertClaim]
                        ) -> Tuple[List[Outcome], Optional[sending.Opened]]:
            return sending.store_chunk_claimed(self.store, self.hooks, composer, chunk, spec,
                                               clock=self.clock, claim=claim)

        # As SmsKit.send_many: with one provider, each chunk's batch is opened as it is
        # inserted, and the next chunk stored while its request is out.
        single = dispatch and composer.route is None
        return await aio.asend_many(
            recipients, store_chunk, chunk_size=size, on_outcome=on_outcome,
            dispatch=functools.partial(self._dispatch_watching, names) if dispatch else None,
            run=self.to_thread,
            claim=functools.partial(self._insert_claim, composer.provider) if single else None,
            begin=functools.partial(self._begin_opened, composer.provider) if single else None)

    async def _begin_opened(self, name: str, watch: AbstractSet[str],
                            first: sending.Opened) -> Callable[[], Awaitable[
                                outbox.DispatchReport]]:
        """Start the request of a batch opened at insert (:func:`aio.abegin_dispatch`)."""
        return await aio.abegin_dispatch(
            self.store, self.provider(name), first, now=self.clock(),
            on_sent=self._sent_listener(), on_opted_out=self._on_opted_out,
            policy=self.router, run=self.to_thread, watch=watch, lookups=self.lookups)

    @staticmethod
    def _names(composer: outbox.Composer) -> Optional[Tuple[str, ...]]:
        """The providers a send may need: its own, or with routing every routed one (they may
        move on the way)."""
        return (composer.provider,) if composer.route is None else None

    async def _dispatch_watching(self, names: Sequence[str],
                                 watch: AbstractSet[str]) -> outbox.DispatchReport:
        return await self.dispatch_due(providers=names, watch=watch)

    async def dispatch_due(self, *, providers: Optional[Sequence[str]] = None,
                           watch: AbstractSet[str] = frozenset(),
                           now: Optional[dt.datetime] = None) -> outbox.DispatchReport:
        """:meth:`dispatch` each of ``providers`` (default: :meth:`routed_providers`), in one
        report (see :meth:`smskit.SmsKit.dispatch_due`)."""
        names = tuple(providers) if providers is not None else self.routed_providers()
        return outbox.DispatchReport.merge(
            [await self.dispatch(provider=name, watch=watch, now=now) for name in names])

    async def dispatch(self, *, provider: Optional[str] = None,
                       max_batches: Optional[int] = None,
                       now: Optional[dt.datetime] = None,
                       watch: AbstractSet[str] = frozenset()) -> outbox.DispatchReport:
        """Send every ``outgoing`` message of ``provider`` due at ``now`` (default: the
        clock); see :func:`smskit.outbox.aio.adispatch` (``watch``: ids whose outcome the
        report gives)."""
        await self._prepared()
        return await aio.adispatch(self.store, self.provider(provider), now=now or self.clock(),
                                   max_batches=max_batches, on_sent=self._sent_listener(),
                                   on_opted_out=self._on_opted_out, policy=self.router,
                                   run=self.to_thread, in_flight=self._in_flight,
                                   watch=watch, lookups=self.lookups)

    async def reconcile(self, *, provider: Optional[str] = None,
                        stale_after: dt.timedelta = dt.timedelta(minutes=5),
                        now: Optional[dt.datetime] = None) -> outbox.ReconcileReport:
        """Settle batches whose outcome is unknown (see :func:`smskit.outbox.aio.areconcile`):
        the gateway is asked through the provider's
        :meth:`~smskit.provider.Provider.areconcile`. A batch that cannot be settled is held,
        and ``batch_ambiguous`` tells the plugins once."""
        await self._prepared()
        return await aio.areconcile(self.store, self.provider(provider), now=now or self.clock(),
                                    stale_after=stale_after, lookups=self.lookups,
                                    on_sent=self._sent_listener(),
                                    on_status=self._apply_status,
                                    on_opted_out=self._on_opted_out, on_held=self._on_held,
                                    run=self.to_thread)

    async def held(self, provider: Optional[str] = None) -> List[outbox.HeldBatch]:
        """Batches whose outcome is unknown, with the messages of each still waiting: see
        :meth:`smskit.SmsKit.held`."""
        await self._prepared()
        return await self.to_thread(self._held, provider)

    async def resolve(self, target: str, *, sent: bool, who: str = "by hand") -> List[str]:
        """Settle a held batch, or one message of it, by hand: see
        :meth:`smskit.SmsKit.resolve`."""
        await self._prepared()
        return await self.to_thread(self._resolve, target, sent=sent, who=who)

    def _open_store(self) -> Store:
        return self.store

    # -- status and inbound -----------------------------------------------------------------
    async def apply_status(self, event: StatusEvent) -> ApplyOutcome:
        """Apply a status event forward only: :meth:`smskit.SmsKit.apply_status`, awaited."""
        await self._prepared()
        return await self.to_thread(self._apply_status, event)

    async def apply_statuses(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        """Apply status events in one store call: :meth:`smskit.SmsKit.apply_statuses`,
        awaited."""
        await self._prepared()
        return await self.to_thread(self._apply_statuses, events)

    async def receive(self, inbound: InboundMessage) -> InboundOutcome:
        """Record a reply, apply opt-out keywords, route it: :meth:`smskit.SmsKit.receive`,
        awaited."""
        await self._prepared()
        return await self.to_thread(self._receive, inbound)

    async def handle_webhook(self, provider: str, kind: str, headers: Mapping[str, str],
                             body: bytes) -> WebhookReport:
        """Decode, parse and apply a provider callback you trust, with none of the gate's
        checks: :meth:`smskit.SmsKit.handle_webhook`, awaited. Untrusted requests go through
        :meth:`receive_webhook`."""
        await self._prepared(store=False)
        request = WebhookRequest(provider=provider, kind=kind, headers=headers, body=body)
        payload = read_payload(self.provider(provider), request)
        await self._prepared()
        return await self.to_thread(self._apply_payload, payload)

    async def receive_webhook(self, request: WebhookRequest, *,
                              policy: Optional[WebhookPolicy] = None) -> WebhookResponse:
        """The whole webhook path of an asyncio receiver (a FastAPI or aiohttp view): the gate
        (:class:`~smskit.webhooks.gate.WebhookGate`, with ``policy``, default from the
        settings), then the accepted events applied; the response to send (status, JSON body,
        headers), as :func:`smskit.webhooks.receive` answers for a synchronous receiver."""
        await self._prepared(store=False)
        gate = self._gate if policy is None else None
        if gate is None:
            gate = WebhookGate.for_kit(self, policy=policy)
            if policy is None:
                self._gate = gate
        decision = gate.check(request)
        if isinstance(decision, WebhookResponse):
            return decision
        try:
            await self._prepared()
            report = await self.to_thread(self._apply_payload, decision.payload)
        except Exception as exc:  # mapped (and logged) in one place
            return failure(exc, decision.provider, decision.kind)
        return answer(report)

    def _apply_payload(self, payload: WebhookPayload) -> WebhookReport:
        statuses = self._apply_statuses(payload.statuses) if payload.statuses else []
        return WebhookReport(statuses=statuses,
                             inbound=[self._receive(item) for item in payload.inbound])

    # -- look-ups and lists -------------------------------------------------------------------
    async def get(self, message_id: str) -> Optional[Message]:
        """A message by our id."""
        await self._prepared()
        return await self.to_thread(self.store.get, message_id)

    async def history(self, message_id: str) -> List[EventRecord]:
        """Every event recorded for a message."""
        await self._prepared()
        return await self.to_thread(self.store.history, message_id)

    async def cancel(self, message_id: str, reason: str = "canceled by user",
                     ) -> Optional[Message]:
        """Cancel a message that has not been handed to the provider yet."""
        await self._prepared()
        return await self.to_thread(self.store.cancel, message_id, reason)

    async def blacklist_add(self, phone: Union[str, int], reason: str = "",
                            source: str = "api") -> bool:
        """Put a number on the local blacklist: :meth:`smskit.SmsKit.blacklist_add`, awaited."""
        await self._prepared()
        return await self.to_thread(self._blacklist_change, self._e164(phone), "add",
                                    reason=reason, source=source)

    async def blacklist_remove(self, phone: Union[str, int], reason: str = "",
                               source: str = "api") -> bool:
        """Take a number off the local blacklist: :meth:`smskit.SmsKit.blacklist_remove`,
        awaited."""
        await self._prepared()
        return await self.to_thread(self._blacklist_change, self._e164(phone), "remove",
                                    reason=reason, source=source)

    # -- closing --------------------------------------------------------------------------------
    async def close(self) -> None:
        """Close the providers (:meth:`~smskit.provider.Provider.aclose`) and the store."""
        providers: Dict[str, Provider] = dict(self._providers)
        for provider in providers.values():
            await provider.aclose()
        await self.to_thread(self._close_store)

    async def aclose(self) -> None:
        """The same as :meth:`close` (for :func:`contextlib.aclosing`)."""
        await self.close()

    async def __aenter__(self) -> AsyncSmsKit:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
