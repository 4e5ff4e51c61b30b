"""smskit: a plugin-oriented SMS toolkit (Kolmeya, Odoo, acrux ChatRoom).

The public surface is re-exported here. Importing smskit is light: the SQL store, the server and
the CLI are imported only when used, and no plugin loads at import time.
"""

from __future__ import annotations

from smskit.async_kit import AsyncSmsKit
from smskit.config import Settings
from smskit.errors import SmsKitError
from smskit.hookspecs import hookimpl
from smskit.kit import BulkSummary, Outcome, SmsKit
from smskit.models import Direction, InboundMessage, Message, SendResult, State, StatusEvent
from smskit.phone import Phone
from smskit.segments import count_segments, transliterate
from smskit.template import Template

__version__ = "0.1.0"

__all__ = [
    "AsyncSmsKit",
    "BulkSummary",
    "Direction",
    "InboundMessage",
    "Message",
    "Outcome",
    "Phone",
    "SendResult",
    "Settings",
    "SmsKit",
    "SmsKitError",
    "State",
    "StatusEvent",
    "Template",
    "__version__",
    "count_segments",
    "hookimpl",
    "transliterate",
]
