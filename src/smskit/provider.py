"""The provider contract: what an SMS gateway plugin implements.

A provider turns batches of persisted :class:`~smskit.models.Message` objects into
:class:`~smskit.models.SendResult` objects, and optionally answers status queries, balance,
blacklist operations, reply polling and webhook parsing. Which of these it supports is said by
its :class:`Capabilities`.

Error contract of :meth:`Provider.send_batch` (the pipeline relies on it to never send twice):

* return one :class:`SendResult` per message it accepted or refused (a message with no result
  stays ``outgoing`` and is reconciled later);
* raise a :class:`~smskit.errors.ProviderError` whose ``sent_nothing`` is ``True`` only when no
  message can have reached the gateway; the pipeline then dispatches the batch again later;
* raise one with ``sent_nothing=False`` (e.g. :class:`~smskit.errors.AmbiguousSendError`) when
  the request may have arrived; the pipeline then calls :meth:`Provider.reconcile`.

Receiving webhooks (``capabilities.webhooks``): the gate of :mod:`smskit.webhooks.gate` checks
every callback (the smskit token, IP allow list, size cap, media type) and decodes its body
once; the provider then only reads it:

* :meth:`Provider.parse_webhook` receives the :class:`~smskit.webhooks.request.WebhookRequest`
  with its body already decoded in ``request.data`` and returns the events in it, or raises
  :class:`~smskit.errors.ValidationError` (the gate answers 400). It must not decode
  ``request.body`` again, and must not do I/O (the server calls it on its event loop);
* optional attribute ``webhook_media_types``: the media types the gateway posts, among
  :data:`smskit.webhooks.media.MEDIA_TYPES` (default ``("application/json",)``; a form-posting
  gateway declares ``("application/x-www-form-urlencoded",)`` and reads ``request.data`` as
  ``(name, value)`` pairs). Any other ``Content-Type`` is refused with 415 before the body is
  read;
* optional method ``verify_webhook(request) -> AuthResult``: the gateway's own authentication
  (a signature header over ``request.url``, the public URL called, and ``request.data``),
  checked after the smskit token and before ``parse_webhook``. ``AuthResult.OK`` lets the
  request through, ``MISSING`` is a 401 and ``WRONG`` a 403
  (:class:`~smskit.webhooks.auth.AuthResult`). Without the method only the token is checked.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

import attrs
from typing_extensions import Protocol, runtime_checkable

from smskit.models import InboundMessage, Message, SendResult, StatusEvent

if TYPE_CHECKING:
    from smskit.config import Settings
    from smskit.webhooks.request import WebhookRequest

__all__ = [
    "Capabilities",
    "Provider",
    "ProviderFactory",
    "ReconcileResult",
    "WebhookPayload",
]


@attrs.frozen(kw_only=True)
class Capabilities:
    """What a provider can do besides sending."""

    status_query: bool = False
    reconcile: bool = False
    balance: bool = False
    blacklist: bool = False
    webhooks: bool = False
    reply_polling: bool = False


@attrs.frozen(kw_only=True)
class WebhookPayload:
    """The events found in one webhook request. Either list may be empty."""

    statuses: Sequence[StatusEvent] = ()
    inbound: Sequence[InboundMessage] = ()


@attrs.frozen(kw_only=True)
class ReconcileResult:
    """The answer to "did you receive batch X?".

    ``known`` is ``False`` when the gateway has never seen the request: only then may the
    batch be sent again. When ``known`` is ``True``, ``results`` holds a result for every
    message the gateway has (messages without one are reported as lost by the gateway and
    are also safe to resend).
    """

    known: bool
    results: Sequence[SendResult] = ()
    statuses: Sequence[StatusEvent] = ()


@runtime_checkable
class Provider(Protocol):
    """An SMS gateway. Implementations are created by a :data:`ProviderFactory`."""

    name: str
    max_batch: int
    capabilities: Capabilities

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        """Send ``messages`` (at most :attr:`max_batch`) as one request named ``batch_id``."""
        ...

    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """Ask the gateway what became of an earlier request whose outcome is unknown."""
        ...

    def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
        """The events of a callback the gate accepted (``request.kind``: ``"status"`` or
        ``"reply"``; ``request.data``: the decoded body); ValidationError if malformed."""
        ...

    def balance(self) -> Decimal:
        """The account balance in the account's currency."""
        ...

    def blacklist_add(self, phones: Sequence[str]) -> None:
        """Add E.164 numbers to the gateway's blacklist."""
        ...

    def blacklist_remove(self, phones: Sequence[str]) -> None:
        """Remove E.164 numbers from the gateway's blacklist."""
        ...

    def poll_replies(self, since: Optional[dt.datetime] = None) -> List[InboundMessage]:
        """Fetch replies (the fallback when webhooks cannot reach us)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


ProviderFactory = Callable[["Settings"], Provider]
"""Builds a provider from the settings: ``factory(settings) -> Provider``."""
