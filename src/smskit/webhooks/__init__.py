"""Receiving provider callbacks, with no web framework.

* :mod:`~smskit.webhooks.request`: :class:`WebhookRequest`, what a receiver read;
* :mod:`~smskit.webhooks.gate`: :class:`WebhookGate`, every rule (authentication, provider,
  media type, size, decoding, parsing) and every answer;
* :mod:`~smskit.webhooks.auth`: the secret token (current and previous ones) and IP allow list
  (:class:`WebhookPolicy`);
* :mod:`~smskit.webhooks.media`: the body formats and their decoders (and the NUL rule);
* :mod:`~smskit.webhooks.throttle`: refusal warnings, at most one a minute per client address;
* :mod:`~smskit.webhooks.apply`: applying accepted events to a kit synchronously
  (:func:`receive` is the whole path of a synchronous receiver).

The Starlette server (:mod:`smskit.server.app`) is one receiver among others: it streams the
body under the cap, asks the same gate and applies through its group commit.
"""

from smskit.webhooks.apply import WebhookReport, apply_payload, receive, respond
from smskit.webhooks.auth import WebhookPolicy
from smskit.webhooks.gate import (
    KINDS,
    Accepted,
    Admission,
    Decision,
    WebhookGate,
    WebhookResponse,
    authenticate,
)
from smskit.webhooks.request import WebhookRequest, parse_query

__all__ = [
    "KINDS",
    "Accepted",
    "Admission",
    "Decision",
    "WebhookGate",
    "WebhookPolicy",
    "WebhookReport",
    "WebhookRequest",
    "WebhookResponse",
    "apply_payload",
    "authenticate",
    "parse_query",
    "receive",
    "respond",
]
