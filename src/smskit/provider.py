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
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, List, Mapping, Optional, Sequence

import attrs
from typing_extensions import Protocol, runtime_checkable

from smskit.models import InboundMessage, Message, SendResult, StatusEvent

if TYPE_CHECKING:
    from smskit.config import Settings

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

    def parse_webhook(
        self, kind: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookPayload:
        """Parse a callback (``kind``: ``"status"``/``"reply"``); ValidationError if malformed."""
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
