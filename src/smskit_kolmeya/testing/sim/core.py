"""KolmeyaSimulator: the simulated gateway (settings, lifecycle, sending, progress, queries).

Built on :class:`smskit.testing.sim.base.SimulatorBase` (settings, clock, lock, seeded RNG,
background progress thread, reset and close): everything is guarded by its one lock; HTTP
handlers, the background progress thread and test code call these methods from any thread.
Methods raise smskit errors (``ValidationError`` for what the API answers with 422,
``NotFoundError`` for 404); :mod:`smskit_kolmeya.testing.sim.api` maps them to HTTP.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

from smskit.errors import NotFoundError, ValidationError
from smskit.testing.sim import SimulatorBase
from smskit.timeutil import zone
from smskit_kolmeya.testing.sim.callbacks import CallbackDispatcher
from smskit_kolmeya.testing.sim.config import FINAL_CODES, STATUS_TEXT, SimulatorConfig
from smskit_kolmeya.testing.sim.rules import (
    brazilian,
    count_segments,
    is_br_mobile,
    national_digits,
)
from smskit_kolmeya.testing.sim.state import SimMessage, SimRequest, SimState

__all__ = ["KolmeyaSimulator"]

#: How ``sms/accesses`` writes its times (the only client that reads them parses this).
_ACCESS_TIME = "%Y-%m-%d %H:%M:%S"


class KolmeyaSimulator(SimulatorBase[SimulatorConfig]):
    """A local Kolmeya: serve :attr:`app` (or :func:`create_app`) and drive it from tests."""

    label = "kolmeya"

    def __init__(self, config: Optional[SimulatorConfig] = None, *,
                 clock: Optional[Callable[[], dt.datetime]] = None) -> None:
        super().__init__(config if config is not None else SimulatorConfig(), clock=clock)

    def new_state(self) -> None:
        """No request, message, reply or callback; balance and blacklist from the settings."""
        self._state = SimState(self.config.balance, self.config.blacklist)
        self._rate_window: Tuple[Optional[dt.datetime], int] = (None, 0)
        #: Requests answered 429 because ``rate_limit`` was reached.
        self.rate_refused = 0

    def _delays(self) -> Tuple[float, float]:
        return self.config.sent_delay, self.config.delivery_delay

    # -- settings and lifecycle -------------------------------------------------------------

    def new_callback_sender(self) -> CallbackDispatcher:
        """JSON callbacks to each request's ``webhook_url``."""
        return CallbackDispatcher(self.chance, lambda: self.config)

    def build_app(self) -> Any:
        """:func:`~smskit_kolmeya.testing.sim.app.create_app` with the control endpoints."""
        from smskit_kolmeya.testing.sim.app import create_app

        return create_app(self)

    def settings_changed(self, names: FrozenSet[str]) -> None:
        """A new ``balance`` or ``blacklist`` replaces the current one; new delays reschedule
        the messages in flight."""
        if "balance" in names:
            self._state.balance = self.config.balance
        if "blacklist" in names:
            self._state.blacklist = set(self.config.blacklist)
        if "sent_delay" in names or "delivery_delay" in names:
            self._state.reschedule(self._delays())

    # -- sending ----------------------------------------------------------------------------

    def take_rate(self) -> Tuple[bool, Dict[str, str]]:
        """Count one API request against ``rate_limit``: whether it may go, and the
        ``X-RateLimit-*`` headers to answer with (none without a limit)."""
        cfg = self.config
        if not cfg.rate_limit:
            return True, {}
        now = self.now()
        with self.lock:
            start, used = self._rate_window
            if start is None or now >= start + dt.timedelta(seconds=cfg.rate_window):
                start, used = now, 0
            allowed = used < cfg.rate_limit
            used += 1 if allowed else 0
            self._rate_window = (start, used)
            self.rate_refused += 0 if allowed else 1
        reset = start + dt.timedelta(seconds=cfg.rate_window)
        headers = {"X-RateLimit-Limit": str(cfg.rate_limit),
                   "X-RateLimit-Remaining": str(max(0, cfg.rate_limit - used)),
                   "X-RateLimit-Reset": str(int(reset.timestamp() + 0.999))}
        if not allowed:
            headers["Retry-After"] = str(max(1, int((reset - now).total_seconds() + 0.999)))
        return allowed, headers

    def accept(self, kind: str, items: Sequence[Dict[str, Any]], *, reference: Any = None,
               webhook_url: Optional[str] = None, cost_centre_id: Optional[int] = None,
               check_not_disturb: bool = True) -> Dict[str, Any]:
        """Sort validated ``items`` ({phone, message, reference}) into valids and the four
        rejection lists, store the valids at status 1 and charge the balance."""
        cfg = self.config
        now = self.now()
        out: Dict[str, List[Dict[str, Any]]] = {
            "valids": [], "invalids": [], "duplicates": [], "blacklist": [], "not_disturb": []}
        with self.lock:
            state = self._state
            seen = set()
            segments: Dict[str, int] = {}
            accepted: List[Tuple[Dict[str, Any], str, int]] = []
            for item in items:
                digits = national_digits(item["phone"])
                echo = int(digits) if digits else item["phone"]
                if (digits is None or digits in cfg.invalid
                        or not is_br_mobile(digits, allow_ten_digits=cfg.allow_ten_digits)):
                    out["invalids"].append({"phone": echo, "message": item["message"],
                                            "reference": item.get("reference"),
                                            "error": cfg.invalid_error})
                elif digits in seen:
                    out["duplicates"].append({"phone": echo, "message": item["message"],
                                              "reference": item.get("reference")})
                elif digits in state.blacklist:
                    seen.add(digits)
                    out["blacklist"].append({"phone": echo})
                elif check_not_disturb and digits in cfg.not_disturb:
                    seen.add(digits)
                    out["not_disturb"].append({"phone": echo})
                else:
                    seen.add(digits)
                    text = item["message"]
                    if text not in segments:
                        segments[text] = count_segments(text)
                    accepted.append((item, digits, segments[text]))
            cost = cfg.price_per_segment * sum(segs for _, _, segs in accepted)
            if cfg.enforce_balance and cost > state.balance:
                raise ValidationError(f"insufficient balance for a send costing {cost}")
            centre = cost_centre_id if cost_centre_id is not None else cfg.cost_centres[0][0]
            request = state.new_request(str(uuid.uuid4()), reference, kind, webhook_url,
                                        centre, now)
            for item, digits, segs in accepted:
                msg = SimMessage(str(uuid.uuid4()), request.id, digits, item["message"],
                                 item.get("reference"), segs, cfg.price_per_segment * segs, now)
                state.add_message(msg, self._delays())
                out["valids"].append({"id": msg.id, "phone": int(digits),
                                      "reference": msg.reference})
            for name in ("invalids", "duplicates", "blacklist", "not_disturb"):
                request.rejected[name] = len(out[name])
                state.rejected[name] += len(out[name])
            state.balance -= cost
        return {"id": request.id, "reference": reference, **out}

    # -- progress and callbacks -------------------------------------------------------------

    def progress(self, now: dt.datetime) -> int:
        """Move every due message forward (1 -> 2 -> final, as far as its delays allow at
        ``now``) and queue the callbacks; the number of messages whose status changed (what
        :meth:`advance` returns)."""
        changed, events = self._state.progress(now, self._delays(), self._outcome)
        self._queue_status_callbacks(events, now)
        return changed

    def _outcome(self, msg: SimMessage) -> int:
        cfg = self.config
        return cfg.forced_outcomes.get(msg.phone) or self.chance.pick(cfg.outcomes)

    def _queue_status_callbacks(self, events: List[Tuple[SimMessage, int]],
                                now: dt.datetime) -> None:
        cfg = self.config
        wanted = [(m, c) for m, c in events
                  if (c in FINAL_CODES or cfg.callbacks_on == "all")
                  and self._state.requests[m.request_id].webhook_url]
        if cfg.callback_shape == "flat":
            for msg, code in wanted:
                url = self._state.requests[msg.request_id].webhook_url or ""
                self.callbacks.enqueue("status", url, {
                    "id": msg.id, "reference": msg.reference, "status": STATUS_TEXT[code],
                    "status_code": code, "phone": int(msg.phone)}, now)
            return
        # The k-th event of a message in this advance goes to the request's k-th callback, so
        # one callback never names a message twice and events keep their order.
        batches: Dict[str, List[List[Tuple[SimMessage, int]]]] = {}
        seen: Counter[str] = Counter()
        for msg, code in wanted:
            groups = batches.setdefault(msg.request_id, [])
            index = seen[msg.id]
            seen[msg.id] += 1
            if index == len(groups):
                groups.append([])
            groups[index].append((msg, code))
        for request_id, groups in batches.items():
            request = self._state.requests[request_id]
            for group in groups:
                self.callbacks.enqueue("status", request.webhook_url or "", {
                    "id": request.id, "reference": request.reference,
                    "messages": [{"id": m.id, "reference": m.reference, "status_code": c,
                                  "status": STATUS_TEXT[c]} for m, c in group]}, now)

    # -- queries ----------------------------------------------------------------------------

    @property
    def requests(self) -> Dict[str, SimRequest]:
        """Accepted requests by request UUID (a copy of the index; the records are live)."""
        with self.lock:
            return dict(self._state.requests)

    @property
    def messages(self) -> Dict[str, SimMessage]:
        """Valid messages by message UUID (a copy of the index; the records are live)."""
        with self.lock:
            return dict(self._state.messages)

    @property
    def balance(self) -> Decimal:
        """The current balance."""
        return self._state.balance

    @property
    def blacklist(self) -> FrozenSet[str]:
        """The numbers blocked now (settings plus ``blacklist/store`` minus ``destroy``)."""
        with self.lock:
            return frozenset(self._state.blacklist)

    def accepted_references(self) -> Counter[str]:
        """How many times each message ``reference`` was accepted (a valid) over all requests:
        more than 1 means the same message was sent twice."""
        with self.lock:
            return Counter(self._state.references)

    def request_status(self, *, request_id: Any = None, reference: Any = None) -> Dict[str, Any]:
        """The ``sms/status/request`` body; by reference, the latest such request."""
        with self.lock:
            found = self._state.find_request(request_id, reference)
            messages = [self._state.messages[i].status_item() for i in found.message_ids]
            return {"id": found.id, "status": "Válido", "status_code": 2,
                    "reference": found.reference, "messages": messages}

    def message_status(self, message_id: Any) -> Dict[str, Any]:
        """The ``sms/status/message`` body."""
        with self.lock:
            msg = self._state.messages.get(str(message_id))
            if msg is None:
                raise NotFoundError(f"no message {message_id!r}")
            return msg.status_item()

    def report(self, start: dt.datetime, end: dt.datetime, limit: int,
               job: Optional[int] = None) -> List[Dict[str, Any]]:
        """``sms/reports/statuses`` rows for messages sent in [start, end] (or of one job)."""
        cfg = self.config
        with self.lock:
            if job is not None and not any(r.job == job for r in self._state.requests.values()):
                raise NotFoundError(f"no job {job}")
            return self._state.report_rows(start, end, limit, job, zone(cfg.timezone),
                                           dict(cfg.cost_centres))

    def jobs(self, since: dt.datetime) -> List[Dict[str, Any]]:
        """``sms/reports/jobs`` rows for requests created since ``since``."""
        tz = zone(self.config.timezone)
        with self.lock:
            return [{"id": r.job, "created": brazilian(r.created_at, tz),
                     "approved": brazilian(r.created_at, tz)}
                    for r in self._state.requests.values() if r.created_at >= since]

    def set_paused(self, job: int, paused: bool) -> None:
        """Pause or resume a job (``sms/jobs/{job}/pause|play``); a paused job's messages do not
        move. Only a job with unfinished messages can be paused (else ValidationError)."""
        with self.lock:
            self._state.set_paused(job, paused, self._delays())

    def blacklist_add(self, phones: Iterable[str]) -> None:
        """Block national numbers for later sends."""
        with self.lock:
            self._state.blacklist.update(phones)

    def blacklist_remove(self, phones: Iterable[str]) -> None:
        """Unblock national numbers."""
        with self.lock:
            self._state.blacklist.difference_update(phones)

    # -- replies --------------------------------------------------------------------------

    def add_reply(self, phone_or_message_id: Union[str, int], text: str, *,
                  received_at: Optional[dt.datetime] = None) -> Dict[str, Any]:
        """A customer answers: to the message with that UUID, else to the latest message sent
        to that phone (NotFoundError if none). Listed by ``sms/replys``; a reply callback is
        queued to the request's ``webhook_url``. Returns the reply as ``sms/replys`` lists it."""
        now = received_at or self.now()
        with self.lock:
            state = self._state
            msg = state.find_message(phone_or_message_id, national_digits(phone_or_message_id))
            request = state.requests[msg.request_id]
            reply = {
                "id": len(state.replies) + 1, "reply": text,
                "received_at": brazilian(now, zone(self.config.timezone)),
                "message": {"id": msg.id, "reference": msg.reference, "phone": msg.phone,
                            "content": msg.body},
                "request": {"id": request.id, "reference": request.reference}}
            state.replies.append((now, reply))
            if request.webhook_url:
                callback = {"reply": {k: reply[k] for k in ("id", "reply", "received_at",
                                                            "message")}}
                self.callbacks.enqueue("reply", request.webhook_url, callback, now)
        return reply

    def replies(self, since: dt.datetime) -> List[Dict[str, Any]]:
        """Replies received since ``since``, oldest first."""
        with self.lock:
            return [item for at, item in self._state.replies if at >= since]

    def add_web_reply(self, phone: Union[str, int], text: str, *, job: int = 999_001,
                      parameters: Optional[Dict[str, Any]] = None,
                      received_at: Optional[dt.datetime] = None) -> Dict[str, Any]:
        """A customer answers a campaign sent from Kolmeya's web panel (not through the API):
        listed by ``sms/replys-web`` only (the campaign webhook's shape is unknown, so none
        is sent). Returns the item as ``sms/replys-web`` lists it."""
        digits = national_digits(phone)
        if digits is None:
            raise ValidationError(f"not a phone number: {phone!r}")
        now = received_at or self.now()
        tz = zone(self.config.timezone)
        with self.lock:
            item = {"id": 500_001 + len(self._state.web_replies), "job": job,
                    "phone": int(digits), "parameters": dict(parameters or {}),
                    "reply": text, "message": "Campanha do painel",
                    "send_at": brazilian(now, tz), "received_at": brazilian(now, tz)}
            self._state.web_replies.append((now, item))
        return item

    def web_replies(self) -> List[Dict[str, Any]]:
        """Replies to panel campaigns, oldest first."""
        with self.lock:
            return [item for _, item in self._state.web_replies]

    # -- link accesses and monthly totals ------------------------------------------------

    def add_access(self, phone_or_message_id: Union[str, int], *, is_robot: bool = False,
                   accessed_at: Optional[dt.datetime] = None) -> Dict[str, Any]:
        """A click on the shortened link of a message: the message with that UUID, else the
        latest one sent to that phone (NotFoundError if none). Listed by ``sms/accesses`` and
        counted by ``sms/reports/quantity-jobs``. Returns the item as ``sms/accesses`` lists
        it."""
        now = accessed_at or self.now()
        with self.lock:
            msg = self._state.find_message(phone_or_message_id,
                                           national_digits(phone_or_message_id))
            self._state.accesses.append((now, msg.id, is_robot))
            return self._access_item(now, msg.id, is_robot)

    def _access_item(self, at: dt.datetime, message_id: str, is_robot: bool) -> Dict[str, Any]:
        """An ``sms/accesses`` item (the lock held). The simulator knows no names or CPFs;
        ``fullphone`` is taken to carry the 55, and the times are ``YYYY-MM-DD HH:MM:SS``."""
        tz = zone(self.config.timezone)
        msg = self._state.messages[message_id]
        request = self._state.requests[msg.request_id]
        return {"cpf": 0, "name": "", "fullphone": int("55" + msg.phone), "message": msg.body,
                "is_robot": int(is_robot),
                "accessed_at": at.astimezone(tz).strftime(_ACCESS_TIME),
                "tenant_segment_id": request.cost_centre_id, "job_id": request.job,
                "job_created_at": request.created_at.astimezone(tz).strftime(_ACCESS_TIME)}

    def accesses(self, first_day: dt.date, last_day: dt.date, *, is_robot: bool = False,
                 cost_centre_id: int = 0, limit: int = 5000) -> Tuple[List[Dict[str, Any]], int]:
        """The ``sms/accesses`` answer: the clicks from ``first_day`` to ``last_day`` (the
        simulator's time zone), by robots or not as ``is_robot`` says, on messages of one cost
        centre (0: all), oldest first; at most ``limit`` of them, and how many there are."""
        tz = zone(self.config.timezone)
        with self.lock:
            state = self._state
            found = [self._access_item(at, message_id, robot)
                     for at, message_id, robot in state.accesses
                     if first_day <= at.astimezone(tz).date() <= last_day
                     and robot == is_robot and cost_centre_id in (0, state.requests[
                         state.messages[message_id].request_id].cost_centre_id)]
        return found[:limit], len(found)

    def quantity_jobs(self, year: int, month: int) -> List[Dict[str, Any]]:
        """The ``sms/reports/quantity-jobs`` rows for the jobs created in that month (the
        simulator's time zone): the job ``id`` and the fields production code reads, its cost
        centre's name (``centro_custo``), its messages delivered (``entregues``) and the
        clicks on their links (``acessos``)."""
        tz = zone(self.config.timezone)
        names = dict(self.config.cost_centres)
        with self.lock:
            state = self._state
            clicks = Counter(state.messages[m].request_id for _, m, _ in state.accesses)
            rows = []
            for request in state.requests.values():
                created = request.created_at.astimezone(tz)
                if (created.year, created.month) != (year, month):
                    continue
                delivered = sum(1 for m in request.message_ids
                                if state.messages[m].status_code == 3)
                rows.append({"id": request.job,
                             "centro_custo": names.get(request.cost_centre_id, ""),
                             "entregues": delivered, "acessos": clicks[request.id]})
        return rows

    # -- statistics -----------------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """Counts for dashboards and benchmarks (JSON-friendly)."""
        with self.lock:
            state = self._state
            return {
                "requests": len(state.requests),
                "messages": len(state.messages),
                "by_status": {str(k): v for k, v in sorted(state.by_status.items()) if v},
                "rejected": {k: state.rejected.get(k, 0)
                             for k in ("invalids", "duplicates", "blacklist", "not_disturb")},
                "accepted_twice": sum(1 for n in state.references.values() if n > 1),
                "replies": len(state.replies),
                "callbacks": self.callbacks.stats(),
                "balance": str(state.balance),
            }
