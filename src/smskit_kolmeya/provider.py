"""The Kolmeya provider: :class:`smskit.provider.Provider` over :class:`KolmeyaClient`.

``send_batch`` makes exactly one ``sms/store`` request whose ``reference`` is our batch id (and
each message's ``reference`` our message id), so :meth:`KolmeyaProvider.reconcile` can later ask
``sms/status/request`` by that reference. Errors follow the provider contract: the client raises
:class:`~smskit.errors.AmbiguousSendError` whenever the request may have arrived.

:class:`smskit.AsyncSmsKit` sends and reconciles through :meth:`KolmeyaProvider.asend_batch`
and :meth:`KolmeyaProvider.areconcile`, over an :class:`AsyncKolmeyaClient` with the same
settings (made on first use, on the caller's event loop). Both ways share what is not I/O:
which messages can go, and what Kolmeya's answers mean.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs

from smskit.config import Settings
from smskit.errors import (
    AmbiguousSendError,
    InvalidPhoneError,
    ProviderError,
    ProviderNotFoundError,
    RequestRejectedError,
    ValidationError,
)
from smskit.models import InboundMessage, Message, SendResult, State, StatusEvent, utcnow
from smskit.provider import Capabilities, Provider, ReconcileResult, WebhookPayload
from smskit.webhooks import media
from smskit.webhooks.request import WebhookRequest
from smskit_kolmeya import wire
from smskit_kolmeya.client import AsyncKolmeyaClient, KolmeyaClient
from smskit_kolmeya.webhooks import parse_webhook_data

__all__ = ["LOOKUP", "KolmeyaProvider"]

log = logging.getLogger(__name__)

#: The form of :meth:`KolmeyaProvider.reconcile`'s question, ``sms/status/request`` with
#: ``{"reference": <batch id>}``: documented second-hand, so proven before it is trusted.
LOOKUP = "status/request by reference"
#: Minutes around a message's ``sent_at`` its report row may say (``enviada_em`` has minutes).
REPORT_SLACK_MINUTES = 2


class KolmeyaProvider(Provider):
    """Sends through Kolmeya and answers reconciliation, status queries, balance, blacklist,
    webhooks, reply polling and job pause/resume. Build it with :meth:`from_settings` or
    around your own client."""

    name = "kolmeya"
    max_batch = wire.MAX_BATCH
    capabilities = Capabilities(status_query=True, status_polling=True, reconcile=True,
                                balance=True, blacklist=True, webhooks=True,
                                reply_polling=True, job_control=True)

    def __init__(self, client: KolmeyaClient, *, owns_client: bool = True,
                 async_client: Optional[Callable[[], AsyncKolmeyaClient]] = None) -> None:
        self.client = client
        self._owns_client = owns_client
        self._make_async = async_client
        self._async: Optional[AsyncKolmeyaClient] = None

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> KolmeyaProvider:
        """A provider whose clients read the ``kolmeya_*`` settings (``client_options`` such as
        ``http=`` go to the synchronous :class:`KolmeyaClient`; the asynchronous one is made
        from the settings alone, when first needed)."""
        return cls(KolmeyaClient.from_settings(settings, **client_options),
                   async_client=lambda: AsyncKolmeyaClient.from_settings(settings))

    @property
    def async_client(self) -> Optional[AsyncKolmeyaClient]:
        """The asynchronous client (made on first use; ``None`` for a provider built around a
        synchronous client alone: its async methods then run the synchronous ones in a worker
        thread)."""
        if self._async is None and self._make_async is not None:
            self._async = self._make_async()
        return self._async

    def __repr__(self) -> str:
        return f"KolmeyaProvider(client={self.client!r})"

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        """Send at most 1000 messages as one Kolmeya request referenced ``batch_id``.

        A message whose phone is not a Brazilian number is REJECTED (``invalid_phone``) without
        being sent; the others go out. Messages Kolmeya does not mention get no result.
        """
        results, sendable = self._sendable(messages)
        if sendable:
            (outcome,) = self.client.send_batch(sendable, batch_id=batch_id)
            self._take(results, outcome)
        return [results[m.id] for m in messages if m.id in results]

    async def asend_batch(self, messages: Sequence[Message], *,
                          batch_id: str) -> List[SendResult]:
        """:meth:`send_batch` over the asynchronous client."""
        client = self.async_client
        if client is None:
            return await super().asend_batch(messages, batch_id=batch_id)
        results, sendable = self._sendable(messages)
        if sendable:
            (outcome,) = await client.send_batch(sendable, batch_id=batch_id)
            self._take(results, outcome)
        return [results[m.id] for m in messages if m.id in results]

    def _sendable(self, messages: Sequence[Message]) -> Tuple[Dict[str, SendResult],
                                                               List[Message]]:
        """The ``rejected`` results of messages Kolmeya cannot take (not a Brazilian number),
        and the messages to send."""
        if len(messages) > self.max_batch:
            raise ValidationError(
                f"Kolmeya takes at most {self.max_batch} messages per batch, got {len(messages)}")
        results: Dict[str, SendResult] = {}
        sendable: List[Message] = []
        for message in messages:
            try:
                wire.national_digits(message.phone)
            except InvalidPhoneError as exc:
                results[message.id] = SendResult(message_id=message.id, state=State.REJECTED,
                                                 error_code="invalid_phone", error_text=str(exc))
            else:
                sendable.append(message)
        return results, sendable

    @staticmethod
    def _take(results: Dict[str, SendResult], outcome: wire.StoreOutcome) -> None:
        """Add the results of a ``sms/store`` answer to ``results``."""
        for result in outcome.results:
            results[result.message_id] = result
        if outcome.unmatched:
            log.warning("Kolmeya request %s: %d response items matched no message",
                        outcome.request_id, len(outcome.unmatched))

    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """Ask Kolmeya for the request referenced ``batch_id`` (``sms/status/request`` with
        ``{"reference": batch_id}``, the form :data:`LOOKUP`).

        404 or an empty answer: ``known=False`` (never seen); the core resends only once this
        form has found a request Kolmeya is known to have accepted. Otherwise SENT results
        (with provider ids) for every listed message, plus status events for statuses past
        "sent". A request Kolmeya knows but lists no messages for (still being processed)
        raises :class:`~smskit.errors.AmbiguousSendError`; any other error (a 422 for a form
        it does not take...) propagates: the batch is held, never resent.
        """
        try:
            answer = self.client.request_status(reference=batch_id)
        except ProviderNotFoundError:
            return ReconcileResult(known=False, form=LOOKUP)
        return self._reconciled(batch_id, messages, answer)

    async def areconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """:meth:`reconcile` over the asynchronous client."""
        client = self.async_client
        if client is None:
            return await super().areconcile(batch_id, messages)
        try:
            answer = await client.request_status(reference=batch_id)
        except ProviderNotFoundError:
            return ReconcileResult(known=False, form=LOOKUP)
        return self._reconciled(batch_id, messages, answer)

    @staticmethod
    def _reconciled(batch_id: str, messages: Sequence[Message],
                    answer: wire.RequestStatus) -> ReconcileResult:
        """What Kolmeya's status of request ``batch_id`` says of ``messages``."""
        if not answer.known:
            return ReconcileResult(known=False, form=LOOKUP)
        if not answer.messages:
            raise AmbiguousSendError(
                f"Kolmeya knows request {answer.request_id} (reference {batch_id}) but lists no "
                "messages yet; reconcile again later")
        ours = {m.id: m for m in messages}
        by_provider_id = {m.provider_message_id: m for m in messages if m.provider_message_id}
        results: Dict[str, SendResult] = {}
        statuses: List[StatusEvent] = []
        for item in answer.messages:
            message = ours.get(item.reference or "") or by_provider_id.get(
                item.provider_message_id or "")
            if message is None:
                continue
            results[message.id] = SendResult(
                message_id=message.id, state=State.SENT,
                provider_message_id=item.provider_message_id,
                provider_request_id=answer.request_id)
            if item.state.rank > State.SENT.rank:
                statuses.append(attrs.evolve(item.to_event(answer.request_id),
                                             message_id=message.id))
        ordered = [results[m.id] for m in messages if m.id in results]
        return ReconcileResult(known=True, results=ordered, statuses=statuses, form=LOOKUP)

    def message_status(self, provider_message_id: str) -> StatusEvent:
        """The current status of one message as a status event (status query)."""
        return self.client.message_status(provider_message_id).to_event()

    def poll_statuses(self, messages: Sequence[Message]) -> List[StatusEvent]:
        """The statuses of ``messages`` (status polling): one ``sms/status/request`` by
        request id for each request they came in (:attr:`Message.provider_request_id`, the
        observed form); messages without one, or whose request Kolmeya refuses to look up
        (404, 422), from ``sms/reports/statuses`` over the minutes they were sent, matched by
        phone, text and minute (only a match that is one to one counts). A request that fails
        in passing (a timeout, a 5xx) is skipped: its messages are asked about next time."""
        by_request: Dict[str, List[Message]] = {}
        rest: List[Message] = []
        for message in messages:
            if message.provider_request_id:
                by_request.setdefault(message.provider_request_id, []).append(message)
            else:
                rest.append(message)
        events: List[StatusEvent] = []
        for request_id, group in by_request.items():
            try:
                answer = self.client.request_status(id=request_id)
            except (ProviderNotFoundError, RequestRejectedError) as exc:
                log.warning("Kolmeya request %s cannot be looked up (%s); its %d message(s) "
                            "are looked for in the status report", request_id, exc, len(group))
                rest.extend(group)
                continue
            except ProviderError as exc:
                log.warning("Kolmeya request %s: status not read this time: %s", request_id, exc)
                continue
            events.extend(_request_events(answer, group))
        if rest:
            events.extend(self._report_events(rest))
        return events

    def _report_events(self, messages: Sequence[Message]) -> List[StatusEvent]:
        """Statuses of ``messages`` from the report rows of the minutes they were sent."""
        times = [m.sent_at for m in messages if m.sent_at is not None]
        if not times:
            return []
        slack = dt.timedelta(minutes=REPORT_SLACK_MINUTES)
        now = utcnow()
        start, end = min(times) - slack, min(max(times) + slack, now)
        try:
            rows = self.client.report_statuses(start, end, now=now)
        except (ProviderError, ValidationError) as exc:
            log.warning("Kolmeya status report not read this time: %s", exc)
            return []
        return _report_matches(messages, rows, slack)

    #: No Kolmeya callback has been captured, so its media type is not known: a body labelled
    #: JSON is read as JSON, and any other (or none) by what it is, JSON or a PHP-style form
    #: (Kolmeya runs on Laravel); see :data:`smskit.webhooks.media.ANY`.
    webhook_media_types = (media.JSON, media.ANY)

    def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
        """The events of a callback the gate decoded; the body decides whether it holds
        statuses or replies."""
        return parse_webhook_data(request.data, self.client.timezone, request.kind)

    def balance(self) -> Decimal:
        """The account balance in BRL."""
        return self.client.balance()

    def blacklist_add(self, phones: Sequence[str]) -> None:
        """Add E.164 numbers to Kolmeya's blacklist (sent as national digits)."""
        self.client.blacklist_add(phones)

    def blacklist_remove(self, phones: Sequence[str]) -> None:
        """Remove E.164 numbers from Kolmeya's blacklist."""
        self.client.blacklist_remove(phones)

    def pause_job(self, job_id: int) -> Dict[str, Any]:
        """Pause a Kolmeya job still sending (campaign pause; the job id comes from reports)."""
        return self.client.pause_job(job_id)

    def play_job(self, job_id: int) -> Dict[str, Any]:
        """Resume a paused Kolmeya job (campaign resume)."""
        return self.client.play_job(job_id)

    def poll_replies(self, since: Optional[dt.datetime] = None,
                     *, now: Optional[dt.datetime] = None) -> List[InboundMessage]:
        """Replies since ``since`` (whole hours, at most Kolmeya's 168; default the last 24 h),
        then the replies to campaigns sent from Kolmeya's panel (``sms/replys-web``, reply
        ids ``web:<id>``; a failure there is logged and leaves the API replies).

        Replies are not filtered by time: the store records each reply id once.
        """
        hours = 24
        if since is not None:
            elapsed = ((now or utcnow()) - since).total_seconds() / 3600
            hours = max(1, math.ceil(elapsed))
            if hours > wire.MAX_REPLY_PERIOD_HOURS:
                log.warning("Kolmeya keeps replies for %d hours; older ones since %s are not "
                            "fetched", wire.MAX_REPLY_PERIOD_HOURS, since.isoformat())
        replies = self.client.replies(min(hours, wire.MAX_REPLY_PERIOD_HOURS))
        try:
            replies.extend(self.client.web_replies())
        except ProviderError as exc:
            log.warning("Kolmeya panel replies (sms/replys-web) not read this time: %s", exc)
        return replies

    def close(self) -> None:
        """Close the client (when this provider created it)."""
        if self._owns_client:
            self.client.close()

    async def aclose(self) -> None:
        """Close both clients (when this provider created them)."""
        if self._async is not None and self._owns_client:
            await self._async.aclose()
        self._async = None
        self.close()

def _request_events(answer: wire.RequestStatus,
                    messages: Sequence[Message]) -> List[StatusEvent]:
    """The status events of ``messages`` among the messages of a request's status."""
    ours = {m.id: m for m in messages}
    by_provider_id = {m.provider_message_id: m for m in messages if m.provider_message_id}
    events: List[StatusEvent] = []
    for item in answer.messages:
        message = ours.get(item.reference or "") or by_provider_id.get(
            item.provider_message_id or "")
        if message is not None:
            events.append(attrs.evolve(item.to_event(answer.request_id), message_id=message.id))
    return events


def _report_matches(messages: Sequence[Message], rows: Sequence[wire.ReportRow],
                    slack: dt.timedelta) -> List[StatusEvent]:
    """Events for the messages that match exactly one report row (same phone and text, sent
    within ``slack``) that no other message matches; rows whose status is not known are
    skipped."""
    by_key: Dict[Tuple[Optional[str], Optional[str]], List[int]] = {}
    for index, row in enumerate(rows):
        by_key.setdefault((row.phone, row.text), []).append(index)
    candidates: Dict[str, List[int]] = {}
    claimed: Dict[int, int] = {}
    for message in messages:
        found: List[int] = []
        for index in by_key.get((message.phone, message.body), []):
            row_at, sent_at = rows[index].sent_at, message.sent_at
            if row_at is not None and sent_at is not None and abs(row_at - sent_at) <= slack:
                found.append(index)
        candidates[message.id] = found
        for index in found:
            claimed[index] = claimed.get(index, 0) + 1
    events: List[StatusEvent] = []
    for message in messages:
        found = candidates[message.id]
        if len(found) != 1 or claimed[found[0]] != 1:
            continue
        row = rows[found[0]]
        if row.state is None:
            continue
        events.append(StatusEvent(
            provider=wire.PROVIDER, state=row.state, message_id=message.id,
            provider_message_id=message.provider_message_id,
            provider_request_id=message.provider_request_id, status_text=row.status,
            occurred_at=utcnow(), raw=dict(row.raw)))
    return events
