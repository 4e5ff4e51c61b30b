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
  that request (or batch);
* wrapped reply: ``{"reply": {"id", "reply", "received_at", "message": {"id", "reference",
  "phone", "content"}}}`` (a bare reply item, as ``sms/replys`` lists them, is accepted too);
* flat reply (speculative): ``{"phone", "message", "reference", "data"}``, recognised only when
  it has no status field and ``message`` is a text. It has no reply id, so a stable one is
  derived from its content (``sha256:...``) and a repeated delivery is still recorded once.

A JSON list of any of these is accepted. Status codes may be numbers or digit strings; a code
outside 1..6 maps to SENT (see :func:`smskit_kolmeya.wire.state_for`). Wrong types or missing
ids raise :class:`~smskit.errors.ValidationError` naming the problem; a missing or unreadable
timestamp does not (the event is kept, timed at arrival).

The webhook gate (:mod:`smskit.webhooks.gate`) decodes the JSON and the provider hands the
decoded value to :func:`parse_webhook_data`; :func:`parse_webhook` reads raw bytes with the
gate's decoder, for tests and tools that hold a body.
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
from smskit.webhooks.media import parse_json
from smskit_kolmeya import wire

__all__ = ["KINDS", "parse_webhook", "parse_webhook_data"]

_REJECTED_WORDS = ("rejected", "rejeitado", "rejeitada", "reprovado", "reprovada")


def _fail(text: str) -> Exception:
    return ValidationError(f"malformed Kolmeya webhook: {text}")


def parse_webhook(body: Union[bytes, str], kind: str = "status",
                  tz: str = DEFAULT_TZ) -> WebhookPayload:
    """Parse a raw callback body (decoded as the gate decodes it), then
    :func:`parse_webhook_data`."""
    try:
        data = parse_json(body.encode("utf-8", "surrogatepass") if isinstance(body, str)
                          else body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, lone surrogates
        raise _fail(f"the body is not valid JSON ({exc})") from exc
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


def _parse_object(obj: Mapping[str, Any], tz: str, statuses: List[StatusEvent],
                  inbound: List[InboundMessage]) -> None:
    if "reply" in obj:
        item = obj["reply"] if isinstance(obj["reply"], dict) else obj
        inbound.append(wire.parse_reply_item(item, _fail, tz))
    elif "messages" in obj:
        statuses.extend(_wrapped_statuses(obj, tz))
    elif _is_request_rejection(obj):
        statuses.append(_request_rejection(obj))
    elif "status_code" in obj or "status" in obj:
        statuses.append(wire.parse_status_item(obj, _fail, tz).to_event())
    elif "phone" in obj and isinstance(obj.get("message"), str):
        inbound.append(_flat_reply(obj, tz))
    else:
        keys = ", ".join(sorted(str(k) for k in obj)) or "none"
        raise _fail(f"not a status or reply payload (keys: {keys})")


def _wrapped_statuses(obj: Mapping[str, Any], tz: str) -> List[StatusEvent]:
    items = obj["messages"]
    if not isinstance(items, list):
        raise _fail("'messages' is not a list")
    request_id = wire.text_or_none(obj.get("id"))
    if not items and _is_request_rejection(obj):
        return [_request_rejection(obj)]
    return [wire.parse_status_item(item, _fail, tz).to_event(request_id) for item in items]


def _is_request_rejection(obj: Mapping[str, Any]) -> bool:
    if "status_message" in obj and "status_code" not in obj:
        return True
    status = obj.get("status")
    return (isinstance(status, str) and status.strip().lower() in _REJECTED_WORDS
            and "status_code" not in obj and "phone" not in obj and not obj.get("messages"))


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
