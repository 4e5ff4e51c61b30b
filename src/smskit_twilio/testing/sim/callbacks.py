"""Webhook delivery of the Twilio simulator: each callback POSTed as
``application/x-www-form-urlencoded`` and signed with ``X-Twilio-Signature`` (HMAC-SHA1 of the
URL and the sorted fields, keyed with the account's auth token), as Twilio does.

Retries, and the chaos switches ``callback_drop_rate``, ``callback_duplicate_rate`` and
``callback_shuffle``, are settings (the queue is
:class:`smskit.testing.sim.callbacks.CallbackSender`'s).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple
from urllib.parse import urlencode

from smskit.testing.sim.callbacks import CallbackSender, PendingCallback
from smskit_twilio.signature import SIGNATURE_HEADER, compute_signature
from smskit_twilio.testing.sim.config import SimulatorConfig

__all__ = ["CallbackDispatcher"]


class CallbackDispatcher(CallbackSender[List[Tuple[str, str]], SimulatorConfig]):
    """Queues callbacks (``kind``: ``"status"`` or ``"inbound"``, data: the form fields) and
    delivers the due ones; each log entry carries the ``params`` and the ``signature``."""

    def prepare(self, callback: PendingCallback[List[Tuple[str, str]]],
                config: SimulatorConfig) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Sign the fields with the auth token (again on every attempt, so a changed token
        applies); POST them form-encoded."""
        params = callback.data
        signature = compute_signature(config.auth_token, callback.url, params)
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   SIGNATURE_HEADER: signature, "User-Agent": "TwilioProxy/1.1 (smskit simulator)"}
        return ({"params": dict(params), "signature": signature},
                {"content": urlencode(params).encode("ascii"), "headers": headers})
