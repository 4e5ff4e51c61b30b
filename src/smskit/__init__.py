"""smskit: a plugin-oriented SMS toolkit (Kolmeya, Odoo, acrux ChatRoom).

The public surface is re-exported here; heavy parts (the SQL store, the server, the CLI) are
imported only when used.
"""

from __future__ import annotations

from smskit.errors import SmsKitError
from smskit.hookspecs import hookimpl
from smskit.models import Direction, InboundMessage, Message, SendResult, State, StatusEvent

__version__ = "0.1.0"

__all__ = [
    "Direction",
    "InboundMessage",
    "Message",
    "SendResult",
    "SmsKitError",
    "State",
    "StatusEvent",
    "__version__",
    "hookimpl",
]
