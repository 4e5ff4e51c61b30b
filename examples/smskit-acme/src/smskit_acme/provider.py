"""The Acme SMS gateway as a :class:`smskit.provider.Provider`.

Acme's HTTP API (JSON, ``Authorization: Bearer <api key>``):

* ``POST /batches`` ``{"reference", "messages": [{"ref", "to", "text"}]}`` sends a batch and
  answers ``{"batch", "messages": [{"ref", "id", "status", "reason"}]}``: ``status`` is
  ``queued`` (accepted, ``id`` is Acme's) or ``refused`` (with a ``reason``);
* ``GET /batches/<reference>`` answers the same for an earlier batch, 404 when Acme never
  received it: how an ambiguous send is settled (:meth:`AcmeProvider.reconcile`);
* ``GET /messages/<id>`` ``{"id", "ref", "status"}`` and ``GET /balance`` ``{"balance"}``.

Acme posts delivery reports and replies as HTML forms, signed: ``X-Acme-Signature`` is the
hex HMAC-SHA256, under the account's webhook key, of the URL it called followed by every form
field's name and value, sorted by name (:func:`sign`).

Settings (``SMSKIT_ACME_*`` variables, ``[smskit]`` keys of ``smskit.toml`` or keywords of
``SmsKit``): ``acme_api_key`` (required), ``acme_webhook_key`` (to check signatures),
``acme_base_url``, ``acme_timeout`` (seconds).
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import httpx

from smskit.config import Secret, Settings
from smskit.errors import (
    AmbiguousSendError,
    AuthenticationError,
    ConfigurationError,
    ProviderError,
    ProviderNotFoundError,
    RateLimitedError,
    RequestRejectedError,
    TransientProviderError,
    ValidationError,
)
from smskit.models import InboundMessage, Message, SendResult, State, StatusEvent
from smskit.provider import Capabilities, Provider, ReconcileResult, WebhookPayload
from smskit.providers.retrying import NOTHING_SENT  # raised before a byte left
from smskit.webhooks.auth import AuthResult
from smskit.webhooks.media import FORM
from smskit.webhooks.request import WebhookRequest

__all__ = ["DEFAULT_BASE_URL", "STATES", "AcmeProvider", "sign"]

DEFAULT_BASE_URL = "https://api.acme-sms.example/v1"
#: Acme's message statuses and smskit's states.
STATES: Mapping[str, State] = {
    "queued": State.SENT,
    "sent": State.SENT,
    "delivered": State.DELIVERED,
    "failed": State.ERROR,
    "expired": State.EXPIRED,
    "refused": State.REJECTED,
}


def sign(key: str, url: str, fields: Iterable[Tuple[str, str]]) -> str:
    """Acme's callback signature: hex HMAC-SHA256 of ``url`` then each field's name and value,
    sorted by name."""
    text = url + "".join(name + value for name, value in sorted(fields))
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


class AcmeProvider(Provider):
    """Sends through Acme, settles ambiguous sends, answers status and balance queries and
    reads Acme's signed callbacks. Build it with :meth:`from_settings` (what the plugin's
    factory does) or directly."""

    name = "acme"
    max_batch = 100
    capabilities = Capabilities(reconcile=True, status_query=True, balance=True, webhooks=True)
    # Acme posts callbacks as forms: the gate decodes them, parse_webhook reads the pairs.
    webhook_media_types = (FORM,)

    def __init__(self, api_key: Secret, *, base_url: str = DEFAULT_BASE_URL,
                 webhook_key: Optional[Secret] = None, timeout: float = 30.0,
                 http: Optional[httpx.Client] = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._webhook_key = webhook_key
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client()

    @classmethod
    def from_settings(cls, settings: Settings) -> AcmeProvider:
        """The provider the ``acme_*`` settings describe; ConfigurationError without a key."""
        api_key = settings.secret("acme_api_key")
        if api_key is None:
            raise ConfigurationError("acme: set SMSKIT_ACME_API_KEY (or acme_api_key)")
        return cls(api_key, base_url=settings.get("acme_base_url") or DEFAULT_BASE_URL,
                   webhook_key=settings.secret("acme_webhook_key"),
                   timeout=settings.number("acme_timeout", 30.0, exclusive=True))

    def __repr__(self) -> str:  # the keys stay out of logs
        return f"AcmeProvider(base_url={self.base_url!r})"

    # -- sending --------------------------------------------------------------------------
    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        """One ``POST /batches`` whose reference is ``batch_id`` (so :meth:`reconcile` can
        ask about it) and each message's ``ref`` our message id."""
        if len(messages) > self.max_batch:
            raise ValidationError(f"acme takes at most {self.max_batch} messages per batch")
        body = {"reference": batch_id,
                "messages": [{"ref": m.id, "to": m.phone, "text": m.body} for m in messages]}
        answer = self._call("POST", "/batches", body=body, sends=True)
        try:
            return self._results(answer, {m.id for m in messages})
        except (KeyError, TypeError, ValueError) as exc:
            # Acme answered 200, so it has the batch, but we cannot read what it did.
            raise AmbiguousSendError(f"acme: unreadable answer to a send ({exc!r}); "
                                     "reconcile before resending") from exc

    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """Ask Acme for the batch referenced ``batch_id``: unknown (404) means it never
        arrived and may be sent again."""
        try:
            answer = self._call("GET", f"/batches/{batch_id}")
        except ProviderNotFoundError:
            return ReconcileResult(known=False)
        try:
            results = self._results(answer, {m.id for m in messages})
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(f"acme: unreadable batch {batch_id}: {exc!r}") from exc
        return ReconcileResult(known=True, results=results)

    def message_status(self, provider_message_id: str) -> StatusEvent:
        """Acme's current status of one message."""
        answer = self._call("GET", f"/messages/{provider_message_id}")
        if not isinstance(answer, dict):
            raise ProviderError(f"acme: unreadable status of message {provider_message_id}")
        return StatusEvent(provider=self.name, state=_state(answer.get("status")),
                           message_id=answer.get("ref"), provider_message_id=answer.get("id"))

    def balance(self) -> Decimal:
        """The account balance, exactly."""
        try:
            return Decimal(str(self._call("GET", "/balance")["balance"]))
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise ProviderError(f"acme: unreadable balance ({exc!r})") from exc

    # -- webhooks (the gate has checked the smskit token and decoded the form) ---------------
    def verify_webhook(self, request: WebhookRequest) -> AuthResult:
        """Acme's signature over the URL it called and the form's fields."""
        if self._webhook_key is None:
            return AuthResult.OK  # no key configured: the smskit token alone protects us
        given = request.headers.get("x-acme-signature")
        if not given:
            return AuthResult.MISSING
        expected = sign(self._webhook_key.reveal(), request.url or "", request.data)
        return AuthResult.OK if hmac.compare_digest(given, expected) else AuthResult.WRONG

    def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
        """A delivery report (``status``: ``message``, ``ref``, ``status``, ``error``) or a reply
        (``reply``: ``id``, ``from``, ``text``, ``in_reply_to``), from the decoded form."""
        fields: Dict[str, str] = dict(request.data)  # (name, value) pairs, decoded by the gate
        if request.kind == "status":
            if "message" not in fields or "status" not in fields:
                raise ValidationError("acme status callback: no message or status field")
            event = StatusEvent(provider=self.name, state=_state(fields["status"]),
                                message_id=fields.get("ref") or None,
                                provider_message_id=fields["message"],
                                error_text=fields.get("error") or None, raw=fields)
            return WebhookPayload(statuses=[event])
        if not fields.get("id") or not fields.get("from") or "text" not in fields:
            raise ValidationError("acme reply callback: no id, from or text field")
        reply = InboundMessage(provider=self.name, provider_reply_id=fields["id"],
                               phone=fields["from"], body=fields["text"],
                               in_reply_to_provider_id=fields.get("in_reply_to") or None,
                               raw=fields)
        return WebhookPayload(inbound=[reply])

    def close(self) -> None:
        """Close the HTTP client (when this provider made it)."""
        if self._owns_http:
            self._http.close()

    # -- HTTP and Acme's answers ---------------------------------------------------------
    def _call(self, method: str, path: str, *, body: Optional[Mapping[str, Any]] = None,
              sends: bool = False) -> Any:
        """One request; every failure as the ProviderError that says whether the messages
        of a send (``sends``) may have reached Acme."""
        what = f"acme {method} {path}"
        try:
            response = self._http.request(
                method, self.base_url + path, json=body, timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._api_key.reveal()}"})
        except NOTHING_SENT as exc:  # the connection never opened
            raise TransientProviderError(f"{what}: could not connect ({type(exc).__name__}); "
                                         "nothing was sent") from exc
        except httpx.TransportError as exc:  # sent, then the answer never came
            error = AmbiguousSendError if sends else TransientProviderError
            raise error(f"{what}: {type(exc).__name__} after the request was sent") from exc
        status = response.status_code
        if status in (401, 403):
            raise AuthenticationError(f"{what}: the API key was refused", status_code=status)
        if status == 404:
            raise ProviderNotFoundError(f"{what}: not found", status_code=404)
        if status == 429:
            raise RateLimitedError(f"{what}: rate limited", retry_after=_seconds(
                response.headers.get("retry-after")))
        if status in (400, 422):
            raise RequestRejectedError(f"{what}: refused: {response.text[:200]}",
                                       status_code=status)
        if not 200 <= status < 300:  # a 5xx may come after Acme stored the batch
            error = AmbiguousSendError if sends else TransientProviderError
            raise error(f"{what}: HTTP {status}", status_code=status)
        try:
            return response.json()
        except ValueError as exc:
            unreadable = AmbiguousSendError if sends else ProviderError
            raise unreadable(f"{what}: the answer is not JSON") from exc

    def _results(self, answer: Mapping[str, Any], ours: Iterable[str]) -> List[SendResult]:
        """One result per message of ``answer`` that is one of ``ours``."""
        wanted = set(ours)
        results = []
        for item in answer["messages"]:
            if item["ref"] not in wanted:
                continue
            if item["status"] == "refused":
                results.append(SendResult(message_id=item["ref"], state=State.REJECTED,
                                          error_code="refused", error_text=item.get("reason")))
            else:
                results.append(SendResult(message_id=item["ref"], state=State.SENT,
                                          provider_message_id=item["id"],
                                          provider_request_id=answer["batch"]))
        return results


def _state(status: object) -> State:
    """smskit's state for an Acme status; ValidationError for one Acme does not document."""
    try:
        return STATES[str(status)]
    except KeyError:
        raise ValidationError(f"acme: unknown status {status!r}") from None


def _seconds(value: Optional[str]) -> Optional[float]:
    """A ``Retry-After`` in seconds (``None`` when absent or not a number)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
