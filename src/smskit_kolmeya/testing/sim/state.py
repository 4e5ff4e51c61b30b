"""The simulator's data and bookkeeping, without locks or threads (the caller holds the lock).

Messages waiting for their next status sit in a heap keyed by due time, so a progress tick costs
only the messages that are due, however many are in flight.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import Counter
from decimal import Decimal
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import attrs

from smskit.errors import NotFoundError, ValidationError
from smskit_kolmeya.testing.sim.config import STATUS_TEXT
from smskit_kolmeya.testing.sim.rules import brazilian

__all__ = ["Event", "SimMessage", "SimRequest", "SimState"]

_FIRST_JOB = 1_000_001
_FIRST_LOTE = 50_001


@attrs.define
class SimRequest:
    """One accepted ``sms/store`` / ``sms/store-token`` call (a Kolmeya "requisição")."""

    id: str
    reference: Any
    job: int
    lote: int
    kind: str
    webhook_url: Optional[str]
    cost_centre_id: int
    created_at: dt.datetime
    message_ids: List[str] = attrs.field(factory=list)
    rejected: Dict[str, int] = attrs.field(factory=dict)
    paused: bool = False


@attrs.define
class SimMessage:
    """One valid message; ``phone`` holds national digits, ``history`` (code, time) pairs."""

    id: str
    request_id: str
    phone: str
    body: str
    reference: Any
    segments: int
    cost: Decimal
    accepted_at: dt.datetime
    status_code: int = 1
    history: List[Tuple[int, dt.datetime]] = attrs.field(factory=list)

    @property
    def status(self) -> str:
        """The status text (``"entregue"``...)."""
        return STATUS_TEXT[self.status_code]

    def status_item(self) -> Dict[str, Any]:
        """``{id, reference, status, status_code}`` as in ``sms/status/request``."""
        return {"id": self.id, "reference": self.reference, "status": self.status,
                "status_code": self.status_code}


#: A status change: the message and its new code.
Event = Tuple[SimMessage, int]


class SimState:
    """Requests, messages, replies, blacklist, balance, counters and the progress schedule."""

    def __init__(self, balance: Decimal, blacklist: Iterable[str]) -> None:
        self.requests: Dict[str, SimRequest] = {}
        self.messages: Dict[str, SimMessage] = {}
        self.active: Dict[str, None] = {}
        self.held: Dict[str, List[str]] = {}
        self.replies: List[Tuple[dt.datetime, Dict[str, Any]]] = []
        self.web_replies: List[Tuple[dt.datetime, Dict[str, Any]]] = []
        #: Clicks on messages' shortened links: (when, message id, by a robot).
        self.accesses: List[Tuple[dt.datetime, str, bool]] = []
        self.blacklist = set(blacklist)
        self.balance = balance
        self.rejected: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.references: Counter[str] = Counter()
        self._due: List[Tuple[dt.datetime, int, str]] = []
        self._seq = 0
        self._next_job = _FIRST_JOB
        self._next_lote = _FIRST_LOTE
        self._last_to_phone: Dict[str, str] = {}
        self._by_reference: Dict[Any, str] = {}

    # -- writing ----------------------------------------------------------------------------

    def new_request(self, request_id: str, reference: Any, kind: str,
                    webhook_url: Optional[str], cost_centre_id: int,
                    now: dt.datetime) -> SimRequest:
        """Record a request and give it the next job and lote numbers."""
        request = SimRequest(request_id, reference, self._next_job, self._next_lote, kind,
                             webhook_url, cost_centre_id, now)
        self._next_job += 1
        self._next_lote += 1
        self.requests[request.id] = request
        if reference is not None:
            self._by_reference[reference] = request.id
        return request

    def add_message(self, msg: SimMessage, delays: Tuple[float, float]) -> None:
        """Record a valid message at status 1 and schedule its next step."""
        msg.history.append((1, msg.accepted_at))
        self.messages[msg.id] = msg
        self.active[msg.id] = None
        self.requests[msg.request_id].message_ids.append(msg.id)
        self.by_status[1] += 1
        self._last_to_phone[msg.phone] = msg.id
        if msg.reference is not None:
            self.references[str(msg.reference)] += 1
        self._schedule(msg, delays)

    def _next_due(self, msg: SimMessage, delays: Tuple[float, float]) -> dt.datetime:
        sent_delay, final_delay = delays
        delay = sent_delay if msg.status_code == 1 else max(sent_delay, final_delay)
        return msg.accepted_at + dt.timedelta(seconds=delay)

    def _schedule(self, msg: SimMessage, delays: Tuple[float, float]) -> None:
        self._seq += 1
        heapq.heappush(self._due, (self._next_due(msg, delays), self._seq, msg.id))

    def reschedule(self, delays: Tuple[float, float]) -> None:
        """Recompute every due time (after the delays changed)."""
        held = {i for ids in self.held.values() for i in ids}
        self._due = []
        for msg_id in self.active:
            if msg_id not in held:
                self._schedule(self.messages[msg_id], delays)

    def progress(self, now: dt.datetime, delays: Tuple[float, float],
                 outcome: Callable[[SimMessage], int]) -> Tuple[int, List[Event]]:
        """Apply every step due at ``now``; (messages changed, events in order)."""
        events: List[Event] = []
        changed = 0
        while self._due and self._due[0][0] <= now:
            _, _, msg_id = heapq.heappop(self._due)
            if msg_id not in self.active:
                continue
            msg = self.messages[msg_id]
            if self.requests[msg.request_id].paused:
                self.held.setdefault(msg.request_id, []).append(msg_id)
                continue
            before = msg.status_code
            if msg.status_code == 1:
                self._set_status(msg, 2, now, events)
            if msg.status_code == 2 and self._next_due(msg, delays) <= now:
                self._set_status(msg, outcome(msg), now, events)
                del self.active[msg_id]
            else:
                self._schedule(msg, delays)
            changed += msg.status_code != before
        return changed, events

    def _set_status(self, msg: SimMessage, code: int, now: dt.datetime,
                    events: List[Event]) -> None:
        self.by_status[msg.status_code] -= 1
        self.by_status[code] += 1
        msg.status_code = code
        msg.history.append((code, now))
        events.append((msg, code))

    def set_paused(self, job: int, paused: bool, delays: Tuple[float, float]) -> None:
        """Pause or resume a job; only a job with unfinished messages can be paused."""
        request = next((r for r in self.requests.values() if r.job == job), None)
        if request is None:
            raise NotFoundError(f"no job {job}")
        if paused and not any(i in self.active for i in request.message_ids):
            raise ValidationError(f"job {job} has finished and cannot be paused")
        if not paused and not request.paused:
            raise ValidationError(f"job {job} is not paused")
        request.paused = paused
        if not paused:
            for msg_id in self.held.pop(request.id, []):
                self._schedule(self.messages[msg_id], delays)

    # -- reading ----------------------------------------------------------------------------

    def find_request(self, request_id: Any, reference: Any) -> SimRequest:
        """A request by UUID, else the latest one with that reference."""
        if request_id is not None:
            found = self.requests.get(str(request_id))
        else:
            found = self.requests.get(self._by_reference.get(reference, ""))
        if found is None:
            raise NotFoundError(f"no request {request_id or reference!r}")
        return found

    def find_message(self, phone_or_id: Any, national: Optional[str]) -> SimMessage:
        """A message by UUID, else the latest one sent to that national number."""
        msg = self.messages.get(str(phone_or_id))
        if msg is None and national is not None:
            msg = self.messages.get(self._last_to_phone.get(national, ""))
        if msg is None:
            raise NotFoundError(f"no message was sent to {phone_or_id!r}")
        return msg

    def report_rows(self, start: dt.datetime, end: dt.datetime, limit: int, job: Optional[int],
                    tz: dt.tzinfo, cost_centres: Dict[int, str]) -> List[Dict[str, Any]]:
        """``sms/reports/statuses`` rows: messages sent in [start, end], or all of one job."""
        rows: List[Dict[str, Any]] = []
        for msg in self.messages.values():
            request = self.requests[msg.request_id]
            if job is not None and request.job != job:
                continue
            if job is None and not start <= msg.accepted_at <= end:
                continue
            rows.append({
                "telefone": int(msg.phone), "nome": "", "cpf": 0, "mensagem": msg.body,
                "status": msg.status,
                "enviada_em": brazilian(msg.accepted_at, tz, seconds=False),
                "parametros": [], "lote": request.lote, "job": request.job,
                "centro_custo": cost_centres.get(request.cost_centre_id, ""),
                "api": "API Simulador", "broker": "Simulador", "produto": "SMS"})
            if len(rows) >= limit:
                break
        return rows
