"""Parse Kolmeya callbacks into a :class:`~smskit.provider.WebhookPayload`.

No real callback has ever been captured (``docs/kolmeya.md``, "Webhooks" and "What is not
confirmed"), so every plausible shape is accepted and the kind is read from the body, not from
the URL. Kolmeya takes one ``webhook_url`` per request, so statuses and replies of a request
arrive at the same URL:

* wrapped status (docs transcription, the default)::

    {"id": <request uuid>, "reference": <batch id>,
     "messages": [{"id": <message uuid>, "reference": <our id>, "status_code": 3,
                   "status": "entregue"}]}

* flat status (speculative): ``{"id", "reference", "status", "status_code", "phone"}``, where
  ``id``/``reference`` name the message;
* request rejected at homologation: ``{"id", "reference", "status": "rejected",
  "status_message"}``. It names a request, not messages, so it becomes one REJECTED
  :class:`~smskit.models.StatusEvent` with ``message_id=None``, ``provider_message_id=None``,
  ``provider_request_id=<request uuid>``, ``error_code="request_rejected"`` and the reason in
  ``error_text``; ``raw["reference"]`` is our batch id. The core applies it to every message of
  that request (or batch). The envelope decides what an object is: a ``messages`` list, or a
  ``status_message`` without a ``phone``, makes it request-level (its ``status_code`` is then
  the request's, another code space), and a request-level object is a rejection when its
  ``status`` is a rejection word (``rejected``, ``rejeitado``, ``reprovado``, ``inválido``...)
  or it has no ``status`` at all. A wrapped rejection also yields its messages' statuses;
  a ``phone`` always names one message;
* wrapped reply: ``{"reply": {"id", "reply", "received_at", "message": {"id", "reference",
  "phone", "content"}}}`` (a bare reply item, as ``sms/replys`` lists them, is accepted too);
* reply to a panel campaign, wrapped or bare, shaped as ``sms/replys-web`` lists it
  (``{"id", "job", "phone", "parameters", "reply", "message": <the campaign's text>}``): read
  as the polling path reads it (:func:`smskit_kolmeya.wire.parse_web_reply_item`), so its id
  is ``web:<id>`` and a reply seen both ways is stored once;
* flat reply (speculative): ``{"phone", "message", "reference", "data"}``, recognised only when
  it has no status field and ``message`` is a text. It has no reply id, so a stable one is
  derived from its content (``sha256:...``) and a repeated delivery is still recorded once.

A JSON list of any of these is accepted. A key whose value is null counts as absent
(``"reply": null`` does not make a status a reply). ``messages`` may be an object (PHP's
``json_encode`` of an array with other keys), read as its values. Status codes may be numbers
or digit strings; a blank ``status_code`` is absent, and without one a ``status`` that is a
number is the code; a code outside 1..6 maps to SENT (see
:func:`smskit_kolmeya.wire.state_for`). Wrong types or missing ids raise
:class:`~smskit.errors.ValidationError` naming the problem; a missing or unreadable timestamp
does not (the event is kept, timed at arrival).

The webhook gate (:mod:`smskit.webhooks.gate`) decodes the body whatever its ``Content-Type``
(JSON, or a form with PHP's nested names: :data:`smskit.webhooks.media.ANY`) and the provider
hands the decoded value to :func:`parse_webhook_data`; :func:`parse_webhook` reads raw bytes
with the gate's decoder, for tests and tools that hold a body.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, List, Mapping, Optional, Union

from smskit.errors import ValidationError
from smskit.models import InboundMessage, State, StatusEvent, utcnow
from smskit.provider import WebhookPayload
from smskit.timeutil import DEFAULT_TZ
from smskit.webhooks.gate import KINDS
from smskit.webhooks.media import parse_any
from smskit_kolmeya import wire

__all__ = ["KINDS", "parse_webhook", "parse_webhook_data"]

#: Request-level statuses that say "rejected". The only request status seen is "Válido"
#: (``sms/status/request``), so its negation is taken to be one too.
_REJECTED_WORDS = ("rejected", "rejeitado", "rejeitada", "reprovado", "reprovada", "inválido",
                   "inválida", "invalido", "invalida", "invalid")


def _fail(text: str) -> Exception:
    return ValidationError(f"malformed Kolmeya webhook: {text}")


def parse_webhook(body: Union[bytes, str], kind: str = "status",
                  tz: str = DEFAULT_TZ) -> WebhookPayload:
    """Parse a raw callback body (decoded as the gate decodes one without a ``Content-Type``:
    JSON, else a PHP-style form), then :func:`parse_webhook_data`."""
    try:
        data = parse_any(body.encode("utf-8", "surrogatepass") if isinstance(body, str)
                         else body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, lone surrogates
        raise _fail(f"the body is not valid JSON nor a form ({exc})") from exc
    return parse_webhook_data(data, tz, kind)


def parse_webhook_data(data: Any, tz: str = DEFAULT_TZ, kind: str = "status") -> WebhookPayload:
    """Parse a decoded callback (an object, or a list of objects). ``kind`` (``"status"`` or
    ``"reply"``, from the URL) is checked but the body decides what it holds."""
    if kind not in KINDS:
        raise ValidationError(f"unknown Kolmeya webhook kind {kind!r} (expected status or reply)")
    objects = data if isinstance(data, list) else [data]
    if not objects:
        raise _fail("the body is an empty list")
    statuses: List[StatusEvent] = []
    inbound: List[InboundMessage] = []
    for obj in objects:
        if not isinstance(obj, dict):
            raise _fail(f"expected a JSON object, got {type(obj).__name__}")
        _parse_object(obj, tz, statuses, inbound)
    return WebhookPayload(statuses=tuple(statuses), inbound=tuple(inbound))


def _given(obj: Mapping[str, Any], key: str) -> bool:
    """Whether ``obj`` gives ``key`` a value: a key whose value is null says nothing (a PHP
    backend writes absent fields as ``null``), so it never decides what a body is."""
    return obj.get(key) is not None


def _parse_object(obj: Mapping[str, Any], tz: str, statuses: List[StatusEvent],
                  inbound: List[InboundMessage]) -> None:
    if _given(obj, "reply"):
        item = obj["reply"] if isinstance(obj["reply"], dict) else obj
        inbound.append(_reply(item, tz))
    elif _given(obj, "messages"):
        statuses.extend(_wrapped_statuses(obj, tz))
    elif _is_request_rejection(obj):
        statuses.append(_request_rejection(obj))
    elif _given(obj, "status_code") or _given(obj, "status"):
        statuses.append(wire.parse_status_item(obj, _fail, tz).to_event())
    elif _given(obj, "phone") and isinstance(obj.get("message"), str):
        inbound.append(_flat_reply(obj, tz))
    else:
        keys = ", ".join(sorted(str(k) for k in obj)) or "none"
        raise _fail(f"not a status or reply payload (keys: {keys})")


def _reply(item: Any, tz: str) -> InboundMessage:
    """A reply item: an API reply (``message`` is the original message, an object), or a
    reply to a panel campaign shaped as ``sms/replys-web`` lists it (``message`` is the
    campaign's text), which gets the same ``web:<id>`` id as when it is polled."""
    if isinstance(item, dict) and isinstance(item.get("message"), str):
        return wire.parse_web_reply_item(item, _fail, tz)
    return wire.parse_reply_item(item, _fail, tz)


def _wrapped_statuses(obj: Mapping[str, Any], tz: str) -> List[StatusEvent]:
    """The statuses of a request envelope (``sms/status/request``'s shape): one per message
    listed, and the request's rejection when the envelope says the request was rejected (its
    own ``status``/``status_code`` are the request's, another code space)."""
    items = wire.listed(obj["messages"])
    if items is None:
        raise _fail("'messages' is not a list")
    request_id = wire.text_or_none(obj.get("id"))
    events = [wire.parse_status_item(item, _fail, tz).to_event(request_id) for item in items]
    if _rejects_request(obj):
        events.append(_request_rejection(obj))
    return events


def _is_request_rejection(obj: Mapping[str, Any]) -> bool:
    """Whether an object without ``messages`` is a request's rejection rather than a message's
    status. A ``phone`` names a message, so never; a ``status_message`` marks a request (the
    rejection's reason), whatever ``status_code`` it carries (a request-level code); without
    either, a ``status_code`` makes it a message's status (``"rejeitado"``/5 is a message the
    carrier refused)."""
    if _given(obj, "phone"):
        return False
    if not _given(obj, "status_message") and _given(obj, "status_code"):
        return False
    return _rejects_request(obj)


def _rejects_request(obj: Mapping[str, Any]) -> bool:
    """Whether a request-level object says the request was rejected: its ``status`` is a
    rejection word, or it gives a ``status_message`` and no ``status`` at all."""
    status = obj.get("status")
    if isinstance(status, str):
        return status.strip().lower() in _REJECTED_WORDS
    return status is None and _given(obj, "status_message")


def _request_rejection(obj: Mapping[str, Any]) -> StatusEvent:
    request_id = wire.text_or_none(obj.get("id"))
    if request_id is None:
        raise _fail("a request rejection has no request 'id'")
    reason = wire.text_or_none(obj.get("status_message"))
    return StatusEvent(
        provider=wire.PROVIDER, state=State.REJECTED, message_id=None,
        provider_message_id=None, provider_request_id=request_id,
        batch_id=wire.text_or_none(obj.get("reference")),
        status_text=wire.text_or_none(obj.get("status")), error_code="request_rejected",
        error_text=reason or "Kolmeya rejected the request at homologation", raw=obj,
    )


def _flat_reply(obj: Mapping[str, Any], tz: str) -> InboundMessage:
    phone = wire.e164_from_kolmeya(obj.get("phone"))
    if phone is None:
        raise _fail("a reply has no phone number")
    reference = wire.text_or_none(obj.get("reference"))
    when = obj.get("data") if isinstance(obj.get("data"), str) else None
    reply_id = wire.text_or_none(obj.get("id")) or _derived_id(phone, obj["message"], reference,
                                                               when)
    return InboundMessage(
        provider=wire.PROVIDER, provider_reply_id=reply_id, phone=phone, body=obj["message"],
        received_at=wire.parse_datetime(when, tz) or utcnow(),
        in_reply_to_message_id=reference, raw=obj,
    )


def _derived_id(phone: str, text: str, reference: Optional[str], when: Optional[str]) -> str:
    material = json.dumps([phone, text, reference, when], ensure_ascii=False)
    return "sha256:" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]
