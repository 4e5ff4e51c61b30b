"""Webhook delivery of the simulator: callbacks POSTed as JSON, exactly to the ``webhook_url``
given (query string and its secret included).

Kolmeya's retry policy, timeout and ordering are unknown (docs/kolmeya.md, "What is not
confirmed"), so they are settings: retries with a doubling backoff on a non-2xx answer or a
connection error, and the chaos switches ``callback_drop_rate``, ``callback_duplicate_rate`` and
``callback_shuffle`` (the queue is :class:`smskit.testing.sim.callbacks.CallbackSender`'s).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from smskit.testing.sim.callbacks import CallbackSender, PendingCallback
from smskit_kolmeya.testing.sim.config import SimulatorConfig

__all__ = ["CallbackDispatcher"]


class CallbackDispatcher(CallbackSender[Dict[str, Any], SimulatorConfig]):
    """Queues callbacks (``kind``: ``"status"`` or ``"reply"``, data: the JSON payload) and
    delivers the due ones; each log entry carries the ``payload``."""

    def prepare(self, callback: PendingCallback[Dict[str, Any]],
                config: SimulatorConfig) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Log the payload; POST it as JSON."""
        return {"payload": callback.data}, {"json": callback.data}
