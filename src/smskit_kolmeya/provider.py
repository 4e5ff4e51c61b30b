"""The Kolmeya provider: :class:`smskit.provider.Provider` over :class:`KolmeyaClient`.

``send_batch`` makes exactly one ``sms/store`` request whose ``reference`` is our batch id (and
each message's ``reference`` our message id), so :meth:`KolmeyaProvider.reconcile` can later ask
``sms/status/request`` by that reference. Errors follow the provider contract: the client raises
:class:`~smskit.errors.AmbiguousSendError` whenever the request may have arrived.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence

import attrs

from smskit.config import Settings
from smskit.errors import (
    AmbiguousSendError,
    InvalidPhoneError,
    ProviderNotFoundError,
    ValidationError,
)
from smskit.models import InboundMessage, Message, SendResult, State, StatusEvent, utcnow
from smskit.provider import Capabilities, Provider, ReconcileResult, WebhookPayload
from smskit.webhooks.request import WebhookRequest
from smskit_kolmeya import wire
from smskit_kolmeya.client import KolmeyaClient
from smskit_kolmeya.webhooks import parse_webhook_data

__all__ = ["KolmeyaProvider"]

log = logging.getLogger(__name__)


class KolmeyaProvider(Provider):
    """Sends through Kolmeya and answers reconciliation, status queries, balance, blacklist,
    webhooks, reply polling and job pause/resume. Build it with :meth:`from_settings` or
    around your own client."""

    name = "kolmeya"
    max_batch = wire.MAX_BATCH
    capabilities = Capabilities(status_query=True, reconcile=True, balance=True, blacklist=True,
                                webhooks=True, reply_polling=True, job_control=True)
    #: How :meth:`reconcile` asks (the core proves this form before trusting a "not found").
    LOOKUP = "status/request by reference"

    def __init__(self, client: KolmeyaClient, *, owns_client: bool = True) -> None:
        self.client = client
        self._owns_client = owns_client

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> KolmeyaProvider:
        """A provider whose client reads the ``kolmeya_*`` settings (``client_options`` such as
        ``http=`` go to :class:`KolmeyaClient`)."""
        return cls(KolmeyaClient.from_settings(settings, **client_options))

    def __repr__(self) -> str:
        return f"KolmeyaProvider(client={self.client!r})"

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        """Send at most 1000 messages as one Kolmeya request referenced ``batch_id``.

        A message whose phone is not a Brazilian number is REJECTED (``invalid_phone``) without
        being sent; the others go out. Messages Kolmeya does not mention get no result.
        """
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
        if sendable:
            (outcome,) = self.client.send_batch(sendable, batch_id=batch_id)
            for result in outcome.results:
                results[result.message_id] = result
            if outcome.unmatched:
                log.warning("Kolmeya request %s: %d response items matched no message",
                            outcome.request_id, len(outcome.unmatched))
        return [results[m.id] for m in messages if m.id in results]

    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """Ask Kolmeya for the request referenced ``batch_id`` (``sms/status/request`` with
        ``{"reference": batch_id}``, the form :attr:`LOOKUP`).

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
            return ReconcileResult(known=False, form=self.LOOKUP)
        if not answer.known:
            return ReconcileResult(known=False, form=self.LOOKUP)
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
        return ReconcileResult(known=True, results=ordered, statuses=statuses, form=self.LOOKUP)

    def message_status(self, provider_message_id: str) -> StatusEvent:
        """The current status of one message as a status event (status query)."""
        return self.client.message_status(provider_message_id).to_event()

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
        """Replies since ``since`` (whole hours, at most Kolmeya's 168; default the last 24 h).

        Replies are not filtered by time: the store records each reply id once.
        """
        hours = 24
        if since is not None:
            elapsed = ((now or utcnow()) - since).total_seconds() / 3600
            hours = max(1, math.ceil(elapsed))
            if hours > wire.MAX_REPLY_PERIOD_HOURS:
                log.warning("Kolmeya keeps replies for %d hours; older ones since %s are not "
                            "fetched", wire.MAX_REPLY_PERIOD_HOURS, since.isoformat())
        return self.client.replies(min(hours, wire.MAX_REPLY_PERIOD_HOURS))

    def close(self) -> None:
        """Close the client (when this provider created it)."""
        if self._owns_client:
            self.client.close()
