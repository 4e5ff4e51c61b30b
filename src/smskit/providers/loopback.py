"""A loopback provider: "sends" by recording, so users test their code without a network.

It can be told to refuse numbers, to fail whole calls (before or after "accepting" them), and
it produces the status events and replies a real gateway would::

    provider = LoopbackProvider()
    provider.refuse("+5511900000000", "blacklist")
    provider.fail_next(TransientProviderError("down"))        # nothing accepted
    provider.fail_next(AmbiguousSendError("timeout"), after_accept=True)  # accepted, then fails
    event = provider.status_event(message_id, State.DELIVERED)
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from decimal import Decimal
from typing import Dict, List, Optional, Sequence, Set, Tuple

import attrs

from smskit.errors import ProviderError, ProviderNotFoundError, ValidationError
from smskit.ids import new_id
from smskit.models import InboundMessage, Message, SendResult, State, StatusEvent, utcnow
from smskit.provider import Capabilities, Provider, ReconcileResult, WebhookPayload
from smskit.webhooks.request import WebhookRequest

__all__ = ["LoopbackProvider", "SentRecord"]


@attrs.frozen
class SentRecord:
    """One message the loopback provider accepted."""

    message_id: str
    phone: str
    body: str
    batch_id: str
    provider_message_id: str


class LoopbackProvider(Provider):
    """An in-memory provider implementing the :class:`smskit.provider.Provider` contract: every
    operation but gateway job control (it has no jobs)."""

    capabilities = Capabilities(status_query=True, reconcile=True, balance=True, blacklist=True,
                                webhooks=True, reply_polling=True)

    def __init__(self, name: str = "loopback", *, max_batch: int = 100,
                 balance: Decimal = Decimal("100.00")) -> None:
        self.name = name
        self.max_batch = max_batch
        self._balance = balance
        self._lock = threading.Lock()
        self.sent: List[SentRecord] = []
        self.calls: List[Tuple[str, int]] = []
        self._batches: Dict[str, List[SendResult]] = {}
        self._refused: Dict[str, str] = {}
        self._failures: List[Tuple[ProviderError, bool]] = []
        self._replies: List[InboundMessage] = []
        self.gateway_blacklist: Set[str] = set()

    # -- test controls -------------------------------------------------------------------
    def refuse(self, phone: str, reason: str = "invalid") -> None:
        """Refuse every message to ``phone`` (E.164) with ``reason`` as error code."""
        self._refused[phone] = reason

    def fail_next(self, error: ProviderError, *, after_accept: bool = False) -> None:
        """Make the next ``send_batch`` raise ``error``; ``after_accept`` records the batch first
        (as a gateway that accepted the request and then timed out)."""
        self._failures.append((error, after_accept))

    def accepted_counts(self) -> Counter[str]:
        """How many times each of our message ids was accepted (above 1: a double send)."""
        return Counter(record.message_id for record in self.sent)

    def status_event(self, message_id: str, state: State, **fields: object) -> StatusEvent:
        """The event a gateway would send when ``message_id`` reaches ``state``."""
        provider_id = next((r.provider_message_id for r in self.sent
                            if r.message_id == message_id), None)
        return StatusEvent(provider=self.name, state=state, message_id=message_id,
                           provider_message_id=provider_id, **fields)  # type: ignore[arg-type]

    def add_reply(self, phone: str, body: str, in_reply_to: Optional[str] = None) -> InboundMessage:
        """Queue a customer reply (returned by :meth:`poll_replies`)."""
        reply = InboundMessage(provider=self.name, provider_reply_id=new_id(), phone=phone,
                               body=body, in_reply_to_message_id=in_reply_to)
        self._replies.append(reply)
        return reply

    # -- Provider ------------------------------------------------------------------------
    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        """Accept every message except refused numbers; honour queued failures."""
        if len(messages) > self.max_batch:
            raise ValidationError(f"batch of {len(messages)} exceeds max_batch {self.max_batch}")
        with self._lock:
            self.calls.append((batch_id, len(messages)))
            failure = self._failures.pop(0) if self._failures else None
            if failure is not None and not failure[1]:
                raise failure[0]
            results = []
            for message in messages:
                reason = self._refused.get(message.phone)
                if reason or message.phone in self.gateway_blacklist:
                    results.append(SendResult(message_id=message.id, state=State.REJECTED,
                                              error_code=reason or "blacklist",
                                              error_text=f"refused by loopback: {reason}"))
                    continue
                provider_id = new_id()
                self.sent.append(SentRecord(message.id, message.phone, message.body, batch_id,
                                            provider_id))
                results.append(SendResult(message_id=message.id, state=State.SENT,
                                          provider_message_id=provider_id,
                                          provider_request_id=batch_id))
            self._batches[batch_id] = results
            if failure is not None:
                raise failure[0]
            return results

    async def asend_batch(self, messages: Sequence[Message], *,
                          batch_id: str) -> List[SendResult]:
        """:meth:`send_batch` (in memory: nothing to wait for, no thread needed)."""
        return self.send_batch(messages, batch_id=batch_id)

    async def areconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """:meth:`reconcile` (in memory)."""
        return self.reconcile(batch_id, messages)

    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """Known iff the batch reached :meth:`send_batch` and was accepted."""
        with self._lock:
            results = self._batches.get(batch_id)
        if results is None:
            return ReconcileResult(known=False)
        return ReconcileResult(known=True, results=tuple(results))

    def message_status(self, provider_message_id: str) -> StatusEvent:
        """``sent`` for a message this provider accepted (it delivers nothing by itself);
        :class:`~smskit.errors.ProviderNotFoundError` for an id it never gave out."""
        with self._lock:
            record = next((r for r in self.sent if r.provider_message_id == provider_message_id),
                          None)
        if record is None:
            raise ProviderNotFoundError(f"loopback knows no message {provider_message_id!r}",
                                        status_code=404)
        return StatusEvent(provider=self.name, state=State.SENT, message_id=record.message_id,
                           provider_message_id=provider_message_id)

    def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
        """Read ``{"message_id", "state"}`` (status) or ``{"id", "phone", "text"}`` (reply)."""
        data, kind = request.data, request.kind
        if not isinstance(data, dict):
            raise ValidationError("loopback webhook: expected a JSON object")
        try:
            if kind == "status":
                event = StatusEvent(provider=self.name, state=State(data["state"]),
                                    message_id=data.get("message_id"),
                                    provider_message_id=data.get("provider_message_id"))
                return WebhookPayload(statuses=(event,))
            if kind == "reply":
                inbound = InboundMessage(provider=self.name, provider_reply_id=str(data["id"]),
                                         phone=str(data["phone"]), body=str(data["text"]))
                return WebhookPayload(inbound=(inbound,))
        except (KeyError, ValueError) as exc:
            raise ValidationError(f"loopback webhook: bad {kind} payload: {exc}") from exc
        raise ValidationError(f"loopback webhook: unknown kind {kind!r}")

    def balance(self) -> Decimal:
        """A fixed balance minus 0.08 per accepted message."""
        return self._balance - Decimal("0.08") * len(self.sent)

    def blacklist_add(self, phones: Sequence[str]) -> None:
        """Add numbers to the fake gateway blacklist."""
        self.gateway_blacklist.update(phones)

    def blacklist_remove(self, phones: Sequence[str]) -> None:
        """Remove numbers from the fake gateway blacklist."""
        self.gateway_blacklist.difference_update(phones)

    def poll_replies(self, since: Optional[dt.datetime] = None) -> List[InboundMessage]:
        """Queued replies received after ``since``."""
        return [r for r in self._replies if since is None or r.received_at > since]

    def close(self) -> None:
        """Nothing to release."""

    def now(self) -> dt.datetime:
        """The provider's clock (UTC)."""
        return utcnow()
