"""The Twilio simulator's data and bookkeeping, without locks or threads (the caller holds the
lock): messages as Twilio's Message resource shows them, the progress schedule and opt-outs.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import heapq
import secrets
from collections import Counter
from decimal import Decimal
from typing import Any, Dict, List, Optional, Set, Tuple

import attrs

from smskit_twilio.wire import API_VERSION, ERROR_TEXT, message_path

__all__ = ["SimMessage", "SimState", "new_sid", "rfc2822"]


def new_sid(prefix: str = "SM") -> str:
    """A fresh Twilio-shaped SID: the prefix and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def rfc2822(moment: Optional[dt.datetime]) -> Optional[str]:
    """``"Tue, 26 Jul 2016 12:50:07 +0000"`` (Twilio's timestamps), or ``None``."""
    if moment is None:
        return None
    return email.utils.format_datetime(moment.astimezone(dt.timezone.utc).replace(microsecond=0))


@attrs.define
class SimMessage:
    """One message, outbound or inbound, with its status history."""

    sid: str
    account_sid: str
    to: str
    from_: Optional[str]
    body: str
    direction: str
    status: str
    date_created: dt.datetime
    service_sid: Optional[str] = None
    status_callback: Optional[str] = None
    segments: int = 1
    price: Optional[Decimal] = None
    currency: str = "USD"
    error_code: Optional[int] = None
    date_sent: Optional[dt.datetime] = None
    date_updated: Optional[dt.datetime] = None
    outcome: Optional[str] = None
    history: List[Tuple[str, dt.datetime]] = attrs.field(factory=list)

    @property
    def sender_key(self) -> str:
        """What an opt-out is recorded against: the Messaging Service, else the number."""
        return self.service_sid or self.from_ or ""

    def resource(self) -> Dict[str, Any]:
        """The Message resource as Twilio's API returns it."""
        uri = message_path(self.account_sid, self.sid)
        return {
            "account_sid": self.account_sid, "api_version": API_VERSION, "body": self.body,
            "date_created": rfc2822(self.date_created), "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated or self.date_created),
            "direction": self.direction, "error_code": self.error_code,
            "error_message": ERROR_TEXT.get(self.error_code) if self.error_code else None,
            "from": self.from_, "messaging_service_sid": self.service_sid, "num_media": "0",
            "num_segments": str(self.segments),
            "price": f"-{self.price}" if self.price is not None else None,
            "price_unit": self.currency, "sid": self.sid, "status": self.status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": self.to, "uri": uri,
        }


class SimState:
    """Messages (in creation order), the due-time heap of outbound progress, opt-outs, counters."""

    def __init__(self, balance: Decimal, opted_out: Set[str]) -> None:
        self.messages: Dict[str, SimMessage] = {}
        self.balance = balance
        self.opted_out_everywhere = set(opted_out)
        self.opted_out: Set[Tuple[str, str]] = set()
        self.rejected: Counter[int] = Counter()
        self.created: Counter[Tuple[str, str]] = Counter()
        self._due: List[Tuple[dt.datetime, int, str]] = []
        self._seq = 0

    def add(self, message: SimMessage) -> None:
        """Record a message; an outbound one is counted by (to, body) to expose double sends."""
        message.history.append((message.status, message.date_created))
        self.messages[message.sid] = message
        if message.direction.startswith("outbound"):
            self.created[(message.to, message.body)] += 1

    def schedule(self, message: SimMessage, due: dt.datetime) -> None:
        """Move ``message`` forward at ``due``."""
        self._seq += 1
        heapq.heappush(self._due, (due, self._seq, message.sid))

    def due(self, now: dt.datetime) -> List[SimMessage]:
        """Pop the messages whose next step is due at ``now``, in due order."""
        out = []
        while self._due and self._due[0][0] <= now:
            _, _, sid = heapq.heappop(self._due)
            out.append(self.messages[sid])
        return out

    def pending(self) -> List[SimMessage]:
        """Messages still waiting for a step (to reschedule them)."""
        sids = [sid for _, _, sid in self._due]
        self._due = []
        return [self.messages[sid] for sid in sids]

    def set_status(self, message: SimMessage, status: str, now: dt.datetime) -> None:
        """Move ``message`` to ``status`` at ``now`` (recorded in its history)."""
        message.status = status
        message.date_updated = now
        message.history.append((status, now))

    def is_opted_out(self, sender_key: str, phone: str) -> bool:
        """Whether ``phone`` opted out of ``sender_key`` (or of everything, by the settings)."""
        return phone in self.opted_out_everywhere or (sender_key, phone) in self.opted_out

    def newest_first(self) -> List[SimMessage]:
        """Every message, newest first (the list endpoint's order)."""
        oldest_first = sorted(self.messages.values(), key=lambda m: m.date_created)
        return oldest_first[::-1]  # ties: the later created first, as creation order breaks them
