"""The provider contract: what an SMS gateway plugin implements.

A provider turns batches of persisted :class:`~smskit.models.Message` objects into
:class:`~smskit.models.SendResult` objects, and optionally answers status queries, balance,
blacklist operations, reply polling, webhook parsing and gateway job control. Which of these it
supports is said by its :class:`Capabilities`. Subclass :class:`Provider`: it declares every
method the core calls, with the default behaviour of each optional one::

    class MyGateway(Provider):
        name = "mygateway"
        max_batch = 500
        capabilities = Capabilities(reconcile=True, balance=True)

        def send_batch(self, messages, *, batch_id): ...
        def reconcile(self, batch_id, messages): ...
        def balance(self): ...

A provider is built by the factory registered under its ``name`` (``register_providers``); a
factory whose provider names itself otherwise is refused, because messages are queued and
claimed under the provider's ``name``.

Error contract of :meth:`Provider.send_batch` (the pipeline relies on it to never send twice):

* return one :class:`SendResult` per message it accepted or refused. A message with no result
  may have gone out: it stays ``outgoing``, its batch is marked ``ambiguous`` and
  :meth:`Provider.reconcile` is asked about it (never resent blindly); the results returned
  are recorded;
* raise a :class:`~smskit.errors.ProviderError` whose ``sent_nothing`` is ``True`` only when no
  message can have reached the gateway; the pipeline then dispatches the batch again later
  (or, with routing, through the next provider of each message's route);
* raise one with ``sent_nothing=False`` (e.g. :class:`~smskit.errors.AmbiguousSendError`) when
  the request may have arrived; the pipeline then calls :meth:`Provider.reconcile`;
* a provider that sends a batch as several requests and stops part-way raises
  :class:`~smskit.errors.PartialSendError` with the results so far, the ids whose request
  may have arrived (``ambiguous``) and the ids certainly never sent (``unsent``), and the
  error that stopped it as ``__cause__``: the pipeline records the results, puts the unsent
  messages back in the queue (due at the cause's ``Retry-After`` when the stop itself sent
  nothing) and reconciles only the ambiguous ones.

A provider that cannot ask its gateway about an earlier request (no
``Capabilities(reconcile=True)``) says so with ``ambiguous_sends_need_a_person = True``: its
ambiguous batches are never sent twice, but stay ``ambiguous`` until a person settles them.
The conformance suite (:mod:`smskit.testing.conformance`) refuses a provider that does neither.

:class:`smskit.AsyncSmsKit` calls the async twins :meth:`Provider.asend_batch`,
:meth:`Provider.areconcile` and :meth:`Provider.aclose`, which run the synchronous methods in a
worker thread unless the provider overrides them with its own asynchronous client.

Receiving webhooks (``capabilities.webhooks``): the gate of :mod:`smskit.webhooks.gate` checks
every callback (the smskit token, IP allow list, size cap, media type) and decodes its body
once; the provider then only reads it:

* :meth:`Provider.parse_webhook` receives the :class:`~smskit.webhooks.request.WebhookRequest`
  with its body already decoded in ``request.data`` and returns the events in it, or raises
  :class:`~smskit.errors.ValidationError` (the gate answers 400). It must not decode
  ``request.body`` again, and must not do I/O (the server calls it on its event loop);
* ``webhook_media_types``: the media types the gateway posts, among
  :data:`smskit.webhooks.media.MEDIA_TYPES` (default ``("application/json",)``; a form-posting
  gateway declares ``("application/x-www-form-urlencoded",)`` and reads ``request.data`` as
  ``(name, value)`` pairs; one whose media type is not known adds
  :data:`~smskit.webhooks.media.ANY` and reads whatever the body turned out to be). Any other
  ``Content-Type`` is refused with 415 before the body is read; a request without one is read
  as the first media type declared;
* ``verify_webhook(request) -> AuthResult``: the gateway's own authentication
  (a signature header over ``request.url``, the public URL called, and ``request.data``),
  checked after the smskit token and before ``parse_webhook``. ``AuthResult.OK`` lets the
  request through, ``MISSING`` is a 401 and ``WRONG`` a 403
  (:class:`~smskit.webhooks.auth.AuthResult`). By default only the token is checked.
"""

from __future__ import annotations

import abc
import datetime as dt
import inspect
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence, Tuple

import attrs

from smskit.errors import NotSupportedError
from smskit.models import InboundMessage, Message, SendResult, StatusEvent
from smskit.threads import in_thread
from smskit.webhooks.auth import AuthResult
from smskit.webhooks.media import DEFAULT_MEDIA_TYPES

if TYPE_CHECKING:
    from smskit.config import Settings
    from smskit.webhooks.request import WebhookRequest

__all__ = [
    "CAPABILITY_METHODS",
    "Capabilities",
    "Provider",
    "ProviderFactory",
    "ReconcileResult",
    "WebhookPayload",
    "contract_problems",
]


@attrs.frozen(kw_only=True)
class Capabilities:
    """What a provider can do besides sending. Each flag promises the
    :class:`Provider` methods :data:`CAPABILITY_METHODS` names; the core reads the flag before
    it calls them."""

    #: :meth:`Provider.message_status` (``smskit status --refresh``; status polling one
    #: message at a time when the provider has no :attr:`status_polling`).
    status_query: bool = False
    #: :meth:`Provider.poll_statuses` (the worker's status polling, many messages a call).
    status_polling: bool = False
    #: :meth:`Provider.reconcile` (without it an ambiguous batch waits for a person).
    reconcile: bool = False
    #: :meth:`Provider.balance` (balance checks and alerts).
    balance: bool = False
    #: :meth:`Provider.blacklist_add` / :meth:`Provider.blacklist_remove` (blacklist sync).
    blacklist: bool = False
    #: :meth:`Provider.parse_webhook` (the server's webhook routes).
    webhooks: bool = False
    #: :meth:`Provider.poll_replies` (the worker polls when webhooks cannot reach us).
    reply_polling: bool = False
    #: :meth:`Provider.pause_job` / :meth:`Provider.play_job` (campaign pause and resume).
    job_control: bool = False


@attrs.frozen(kw_only=True)
class WebhookPayload:
    """The events found in one webhook request. Either list may be empty."""

    #: Delivery reports.
    statuses: Sequence[StatusEvent] = ()
    #: Customers' replies.
    inbound: Sequence[InboundMessage] = ()


@attrs.frozen(kw_only=True)
class ReconcileResult:
    """The answer to "did you receive batch X?".

    ``known`` is ``False`` when the gateway says it has never seen the request. When
    ``known`` is ``True``, ``results`` holds a result for every message the gateway has
    (messages without one are reported as lost by the gateway).

    Either "never received" answer lets the batch (or the messages without a result) be sent
    again only when the lookup that gave it, named by ``form``, is proven: asked about a
    request smskit knows the gateway accepted, it found it (:mod:`smskit.outbox.proof`).
    Until then the batch is held. A provider that looks batches up in more than one way
    names each way differently; ``""`` is its only one.
    """

    #: Whether the gateway has seen the batch's request at all.
    known: bool
    #: One result per message the gateway has, when ``known``.
    results: Sequence[SendResult] = ()
    #: Delivery reports the gateway gave with its answer (applied like webhooks).
    statuses: Sequence[StatusEvent] = ()
    #: How the gateway was asked (``"status/request by reference"``); proofs are kept per form.
    form: str = ""


class Provider(abc.ABC):
    """An SMS gateway: subclass this, implement :meth:`send_batch`, and override what your
    :attr:`capabilities` claim. Implementations are created by a :data:`ProviderFactory`.

    Every method the core calls on a provider is declared here. The optional ones keep their
    default, which raises :class:`~smskit.errors.NotSupportedError` naming the provider and
    the operation (:meth:`close` is a no-op), for as long as the matching flag of
    :class:`Capabilities` is ``False``; the core reads the flag before it calls. A flag set
    without its methods is refused when the provider is built (:func:`contract_problems`).
    """

    #: The name the provider is registered under; its messages are queued under it.
    name: str
    #: The most messages one :meth:`send_batch` call takes.
    max_batch: int
    #: What the provider can do besides sending (default: nothing).
    capabilities: Capabilities = Capabilities()
    #: Set to ``True`` by a provider that cannot reconcile (no ``capabilities.reconcile``):
    #: its ambiguous batches wait for a person. The conformance suite requires one or the other.
    ambiguous_sends_need_a_person: bool = False

    @abc.abstractmethod
    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        """Send ``messages`` (at most :attr:`max_batch`) as one request named ``batch_id``,
        following the error contract of this module."""

    async def asend_batch(self, messages: Sequence[Message], *,
                          batch_id: str) -> List[SendResult]:
        """:meth:`send_batch` for :class:`smskit.AsyncSmsKit`, with the same contract.

        Default: :meth:`send_batch` in a worker thread. A provider with an asynchronous client
        overrides it (the Kolmeya provider does); the synchronous method stays the contract.
        """
        return await in_thread(self.send_batch, messages, batch_id=batch_id)

    async def areconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """:meth:`reconcile` for :class:`smskit.AsyncSmsKit`. Default: :meth:`reconcile` in a
        worker thread."""
        return await in_thread(self.reconcile, batch_id, messages)

    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """Ask the gateway what became of an earlier request whose outcome is unknown
        (``capabilities.reconcile``).

        Default: :class:`~smskit.errors.NotSupportedError`, so the batch stays ``ambiguous``
        and is never sent twice; a person settles it.
        """
        raise NotSupportedError(self.name, "reconcile")

    def message_status(self, provider_message_id: str) -> StatusEvent:
        """The current status of one message, by the gateway's id, as a status event
        (``capabilities.status_query``; ``smskit status --refresh``)."""
        raise NotSupportedError(self.name, "message_status")

    def poll_statuses(self, messages: Sequence[Message]) -> List[StatusEvent]:
        """The current status of each of ``messages`` (``sent``, with their gateway ids), as
        status events naming our message ids, for those the gateway could say something
        about (``capabilities.status_polling``). The worker asks when a delivery report may
        have been lost, and applies the events forward only, as webhooks are. A message left
        out is asked about again later."""
        raise NotSupportedError(self.name, "poll_statuses")

    def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
        """The events of a callback the gate accepted (``request.kind``: ``"status"`` or
        ``"reply"``; ``request.data``: the decoded body); ValidationError if malformed
        (``capabilities.webhooks``)."""
        raise NotSupportedError(self.name, "parse_webhook")

    #: The media types the gate accepts for this provider's callbacks (any of
    #: :data:`smskit.webhooks.media.MEDIA_TYPES`; default JSON only).
    webhook_media_types: Tuple[str, ...] = DEFAULT_MEDIA_TYPES

    def verify_webhook(self, request: WebhookRequest) -> AuthResult:
        """The provider's own check of a callback (a signature), run by the gate after the
        smskit token and before :meth:`parse_webhook`: ``MISSING`` answers 401, ``WRONG``
        403. ``request.url`` is the URL the gateway called. Default: nothing more to check."""
        return AuthResult.OK

    def balance(self) -> Decimal:
        """The account balance in the account's currency (``capabilities.balance``)."""
        raise NotSupportedError(self.name, "balance")

    def blacklist_add(self, phones: Sequence[str]) -> None:
        """Add E.164 numbers to the gateway's blacklist (``capabilities.blacklist``)."""
        raise NotSupportedError(self.name, "blacklist_add")

    def blacklist_remove(self, phones: Sequence[str]) -> None:
        """Remove E.164 numbers from the gateway's blacklist (``capabilities.blacklist``)."""
        raise NotSupportedError(self.name, "blacklist_remove")

    def poll_replies(self, since: Optional[dt.datetime] = None) -> List[InboundMessage]:
        """Fetch replies, the fallback when webhooks cannot reach us
        (``capabilities.reply_polling``)."""
        raise NotSupportedError(self.name, "poll_replies")

    def pause_job(self, job_id: int) -> Mapping[str, Any]:
        """Pause a gateway-side job still sending (a campaign pause); the gateway's answer
        (``capabilities.job_control``)."""
        raise NotSupportedError(self.name, "pause_job")

    def play_job(self, job_id: int) -> Mapping[str, Any]:
        """Resume a paused gateway-side job (a campaign resume); the gateway's answer
        (``capabilities.job_control``)."""
        raise NotSupportedError(self.name, "play_job")

    def close(self) -> None:
        """Release connections. Default: nothing to release."""
        return None  # deliberately a no-op, not abstract: most fakes hold no connection

    async def aclose(self) -> None:
        """Release connections, from :class:`smskit.AsyncSmsKit`. Default: :meth:`close`."""
        self.close()


#: The methods each :class:`Capabilities` flag promises.
CAPABILITY_METHODS: Mapping[str, Tuple[str, ...]] = {
    "status_query": ("message_status",),
    "status_polling": ("poll_statuses",),
    "reconcile": ("reconcile",),
    "balance": ("balance",),
    "blacklist": ("blacklist_add", "blacklist_remove"),
    "webhooks": ("parse_webhook",),
    "reply_polling": ("poll_replies",),
    "job_control": ("pause_job", "play_job"),
}


def contract_problems(provider: object) -> List[str]:
    """Why ``provider`` breaks the provider contract; empty when it keeps it.

    It must be a :class:`Provider` with a non-empty ``name``, a positive ``max_batch`` and
    :class:`Capabilities`, and every flag it sets must come with the methods
    :data:`CAPABILITY_METHODS` lists, overridden (the defaults only raise).
    """
    if not isinstance(provider, Provider):
        return [f"{type(provider).__qualname__} is not a subclass of smskit.provider.Provider"]
    try:
        name, max_batch = provider.name, provider.max_batch
    except AttributeError as exc:  # declared by Provider, never assigned by the subclass
        return [f"name and max_batch must be set ({exc})"]
    problems: List[str] = []
    if not isinstance(name, str) or not name:
        problems.append(f"name must be a non-empty string, not {name!r}")
    if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
        problems.append(f"max_batch must be a positive integer, not {max_batch!r}")
    capabilities: object = provider.capabilities  # a plugin's value: checked, not trusted
    if not isinstance(capabilities, Capabilities):
        return [*problems, "capabilities must be a smskit.provider.Capabilities"]
    claimed = attrs.asdict(capabilities)
    for flag, methods in CAPABILITY_METHODS.items():
        missing = [m for m in methods if _inherits_default(type(provider), m)]
        if claimed[flag] and missing:
            problems.append(f"capabilities.{flag} is set but the provider does not "
                            f"implement {' and '.join(missing)}")
    return problems


def _inherits_default(cls: type, method: str) -> bool:
    """Whether ``cls`` still has :class:`Provider`'s default ``method`` (found statically:
    nothing of the provider runs)."""
    return inspect.getattr_static(cls, method) is inspect.getattr_static(Provider, method)


ProviderFactory = Callable[["Settings"], Provider]
"""Builds a provider from the settings: ``factory(settings) -> Provider``."""
