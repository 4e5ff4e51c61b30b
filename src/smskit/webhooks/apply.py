"""Applying an accepted callback to a kit, synchronously: what an Odoo controller (or any
receiver without an event loop) and :meth:`smskit.kit.SmsKit.handle_webhook` do.

The Starlette server applies the same :class:`~smskit.webhooks.gate.Accepted` events through its
group commit instead (:mod:`smskit.server.batcher`); both answer with
:func:`~smskit.webhooks.gate.answer` and :func:`~smskit.webhooks.gate.failure`::

    from smskit.webhooks import WebhookRequest, receive

    response = receive(kit, WebhookRequest(provider="kolmeya", kind="status", headers=headers,
                                           query=query_pairs, body=body, client_host=addr))
    # response.status, response.body (JSON), response.headers
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import attrs

from smskit.webhooks.gate import Decision, WebhookGate, WebhookResponse, answer, failure

if TYPE_CHECKING:
    from smskit.kit import SmsKit
    from smskit.provider import WebhookPayload
    from smskit.store.base import ApplyOutcome, InboundOutcome
    from smskit.webhooks.auth import WebhookPolicy
    from smskit.webhooks.request import WebhookRequest

__all__ = ["WebhookReport", "apply_payload", "receive", "respond"]


@attrs.frozen(kw_only=True)
class WebhookReport:
    """What a webhook request changed: one outcome per status event and per inbound message."""

    statuses: Sequence[ApplyOutcome] = ()
    inbound: Sequence[InboundOutcome] = ()


def apply_payload(kit: SmsKit, payload: WebhookPayload) -> WebhookReport:
    """Apply a callback's events: its status events in one store transaction
    (:meth:`SmsKit.apply_statuses <smskit.kit.SmsKit.apply_statuses>`, as the server's group
    commit does), then its replies (:meth:`SmsKit.receive <smskit.kit.SmsKit.receive>`)."""
    statuses = kit.apply_statuses(payload.statuses) if payload.statuses else []
    inbound = [kit.receive(item) for item in payload.inbound]
    return WebhookReport(statuses=statuses, inbound=inbound)


def respond(kit: SmsKit, decision: Decision) -> WebhookResponse:
    """The answer to a gate's decision: a refusal as it is, accepted events applied to ``kit``."""
    if isinstance(decision, WebhookResponse):
        return decision
    try:
        report = apply_payload(kit, decision.payload)
    except Exception as exc:  # mapped (and logged) in one place
        return failure(exc, decision.provider, decision.kind)
    return answer(report)


def receive(kit: SmsKit, request: WebhookRequest, *,
            policy: Optional[WebhookPolicy] = None) -> WebhookResponse:
    """Check ``request`` with ``kit``'s gate (``policy`` default: from ``kit.settings``) and
    apply it: the whole webhook path of a synchronous receiver."""
    return respond(kit, WebhookGate.for_kit(kit, policy=policy).check(request))
