"""TwilioSimulator: the simulated account (settings, lifecycle, creating, progress, queries).

Built on :class:`smskit.testing.sim.base.SimulatorBase` (settings, clock, lock, seeded RNG,
background progress thread, reset and close): everything is guarded by its one lock; HTTP
handlers, the background progress thread and test code call these methods from any thread. A
refusal Twilio answers with an error body is raised as :class:`TwilioApiError`;
:mod:`smskit_twilio.testing.sim.api` turns it into HTTP.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Tuple

from smskit.segments import count_segments
from smskit.testing.sim import SimulatorBase
from smskit_twilio.signature import compute_signature
from smskit_twilio.testing.sim.callbacks import CallbackDispatcher
from smskit_twilio.testing.sim.config import SimulatorConfig
from smskit_twilio.testing.sim.state import SimMessage, SimState, new_sid
from smskit_twilio.webhooks import keyword_kind
from smskit_twilio.wire import API_VERSION, is_e164

__all__ = ["TwilioApiError", "TwilioSimulator"]

_ALPHANUMERIC_MAX = 11
_MAX_BODY = 1600


class TwilioApiError(Exception):
    """A refusal as Twilio answers it: HTTP ``status`` with ``{"code", "message", ...}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

    def body(self) -> Dict[str, Any]:
        """The JSON error body."""
        return {"code": self.code, "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
                "status": self.status}


def _dlr_date(moment: dt.datetime) -> str:
    return moment.strftime("%y%m%d%H%M")  # RawDlrDoneDate: YYMMDDhhmm


class TwilioSimulator(SimulatorBase[SimulatorConfig]):
    """A local Twilio account: serve :attr:`app` (or ``create_app``) and drive it from tests."""

    label = "twilio"

    def __init__(self, config: Optional[SimulatorConfig] = None, *,
                 clock: Optional[Callable[[], dt.datetime]] = None) -> None:
        super().__init__(config if config is not None else SimulatorConfig(), clock=clock)

    # -- settings and lifecycle -------------------------------------------------------------
    def new_state(self) -> None:
        """No message or callback; balance and opt-outs from the settings."""
        self._state = SimState(self.config.balance, set(self.config.opted_out))

    def new_callback_sender(self) -> CallbackDispatcher:
        """Form-encoded callbacks signed with the auth token."""
        return CallbackDispatcher(self.chance, lambda: self.config)

    def build_app(self) -> Any:
        """:func:`~smskit_twilio.testing.sim.app.create_app` with the control endpoints."""
        from smskit_twilio.testing.sim.app import create_app

        return create_app(self)

    def settings_changed(self, names: FrozenSet[str]) -> None:
        """A new ``balance`` or ``opted_out`` replaces the current one; new delays reschedule
        the messages in flight."""
        if "balance" in names:
            self._state.balance = self.config.balance
        if "opted_out" in names:
            self._state.opted_out_everywhere = set(self.config.opted_out)
        if "sent_delay" in names or "delivery_delay" in names:
            for message in self._state.pending():
                self._state.schedule(message, self._next_due(message))

    def signature(self, url: str, params: Any) -> str:
        """The ``X-Twilio-Signature`` this account puts on a request to ``url``."""
        return compute_signature(self.config.auth_token, url, params)

    # -- creating ---------------------------------------------------------------------------
    def _sender(self, form: Mapping[str, str]) -> Tuple[Optional[str], Optional[str]]:
        cfg = self.config
        service = form.get("MessagingServiceSid") or None
        sender = form.get("From") or None
        if service is None and sender is None:
            raise TwilioApiError(400, 21603, "A 'From' phone number is required.")
        if service is not None and service not in cfg.services:
            raise TwilioApiError(400, 21705, f"The Messaging Service Sid {service} is invalid.")
        if sender is not None:
            alphanumeric = (not sender.startswith("+") and len(sender) <= _ALPHANUMERIC_MAX
                            and sender.replace(" ", "").isalnum())
            owned = sender in cfg.numbers or (service is not None
                                              and sender in cfg.services[service])
            if not (owned or alphanumeric):
                raise TwilioApiError(400, 21606, f"The From phone number {sender} is not a valid, "
                                                 "SMS-capable inbound phone number or short code "
                                                 "for your account.")
        return sender, service

    def _check_recipient(self, to: str, body: str, sender_key: str) -> None:
        cfg = self.config
        if not is_e164(to) or to in cfg.invalid:
            raise TwilioApiError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in cfg.unreachable:
            raise TwilioApiError(400, 21612, f"The 'To' phone number: {to}, is not currently "
                                             "reachable using the 'From' phone number via SMS.")
        if to in cfg.landlines:
            raise TwilioApiError(400, 21614, f"'To' number {to} is not a valid mobile number")
        if len(body) > _MAX_BODY:
            raise TwilioApiError(400, 21617, "The concatenated message body exceeds the 1600 "
                                             "character limit.")
        if self._state.is_opted_out(sender_key, to):
            raise TwilioApiError(400, 21610, "Attempt to send to unsubscribed recipient")

    def create_message(self, form: Mapping[str, str]) -> Dict[str, Any]:
        """``POST Messages.json``: validate like Twilio, store the message (``queued``, or
        ``accepted`` through a Messaging Service) and return its resource."""
        to = (form.get("To") or "").strip()
        body = form.get("Body") or ""
        callback = form.get("StatusCallback") or None
        with self.lock:
            try:
                if not to:
                    raise TwilioApiError(400, 21604, "A 'To' phone number is required.")
                if not body.strip():
                    raise TwilioApiError(400, 21602, "Message body is required.")
                sender, service = self._sender(form)
                self._check_recipient(to, body, service or sender or "")
                if callback is not None and not callback.startswith(("http://", "https://")):
                    raise TwilioApiError(400, 21609, "Invalid StatusCallback url")
            except TwilioApiError as exc:
                self._state.rejected[exc.code] += 1
                raise
            now = self.now()
            message = SimMessage(
                sid=new_sid(), account_sid=self.config.account_sid, to=to,
                from_=None if service and not sender else sender, body=body,
                direction="outbound-api", status="accepted" if service else "queued",
                date_created=now, service_sid=service, status_callback=callback,
                segments=max(1, count_segments(body).segments), currency=self.config.currency)
            self._state.add(message)
            self._state.schedule(message, self._next_due(message))
            return message.resource()

    # -- progress and callbacks -------------------------------------------------------------
    def _next_due(self, message: SimMessage) -> dt.datetime:
        cfg = self.config
        first = message.status in ("accepted", "queued")
        delay = cfg.sent_delay if first else max(cfg.sent_delay, cfg.delivery_delay)
        return message.date_created + dt.timedelta(seconds=delay)

    def _outcome(self, message: SimMessage) -> str:
        if message.outcome is None:
            cfg = self.config
            message.outcome = cfg.forced_outcomes.get(message.to) or self.chance.pick(
                cfg.outcomes)
        return message.outcome

    def _step(self, message: SimMessage, now: dt.datetime) -> int:
        """Move one message as far as ``now`` allows; the number of status changes."""
        changes = 0
        state = self._state
        if message.status == "accepted":
            service_numbers = sorted(self.config.services.get(message.service_sid or "", ()))
            message.from_ = message.from_ or (service_numbers[0] if service_numbers else None)
            state.set_status(message, "queued", now)
            self._status_callback(message, now)
            changes += 1
        if message.status == "queued":
            if self._outcome(message) == "failed":
                message.error_code = self.config.failed_error
                state.set_status(message, "failed", now)
                self._status_callback(message, now)
                return changes + 1
            state.set_status(message, "sending", now)
            message.date_sent = now
            message.price = self.config.price_per_segment * message.segments
            state.balance -= message.price
            state.set_status(message, "sent", now)
            self._status_callback(message, now)
            changes += 2
        if message.status == "sent":
            if self._next_due(message) > now:
                state.schedule(message, self._next_due(message))
                return changes
            outcome = self._outcome(message)
            if outcome == "undelivered":
                message.error_code = self.config.undelivered_error
            state.set_status(message, outcome if outcome != "failed" else "undelivered", now)
            self._status_callback(message, now)
            changes += 1
        return changes

    def progress(self, now: dt.datetime) -> int:
        """Move every due message forward and queue its status callbacks; the number of status
        changes (what :meth:`advance` returns)."""
        return sum(self._step(m, now) for m in self._state.due(now))

    def _status_callback(self, message: SimMessage, now: dt.datetime) -> None:
        if not message.status_callback:
            return
        params = [("AccountSid", message.account_sid), ("ApiVersion", API_VERSION),
                  ("From", message.from_ or ""), ("MessageSid", message.sid),
                  ("MessageStatus", message.status), ("SmsSid", message.sid),
                  ("SmsStatus", message.status), ("To", message.to)]
        if message.service_sid:
            params.append(("MessagingServiceSid", message.service_sid))
        if message.error_code and message.status in ("failed", "undelivered"):
            params.append(("ErrorCode", str(message.error_code)))
        if message.status in ("delivered", "undelivered"):
            params.append(("RawDlrDoneDate", _dlr_date(now)))
        self.callbacks.enqueue("status", message.status_callback, params, now)

    # -- incoming messages ------------------------------------------------------------------
    def add_inbound(self, from_: str, body: str, *, to: Optional[str] = None) -> Dict[str, Any]:
        """A customer texts ``body`` from ``from_`` to ``to`` (default: the account's first
        number). Twilio's keyword handling applies (an opt-out keyword blocks ``from_`` for that
        number and its Messaging Services, an opt-in lifts it); the message is stored and POSTed
        (signed) to ``inbound_url``. Returns its resource."""
        cfg = self.config
        number = to or sorted(cfg.numbers)[0]
        if not is_e164(from_):
            raise TwilioApiError(400, 21211, f"'From' {from_} is not a valid phone number")
        now = self.now()
        with self.lock:
            services = sorted(sid for sid, nums in cfg.services.items() if number in nums)
            message = SimMessage(
                sid=new_sid(), account_sid=cfg.account_sid, to=number, from_=from_, body=body,
                direction="inbound", status="received", date_created=now,
                service_sid=services[0] if services else None, date_sent=now,
                segments=max(1, count_segments(body).segments) if body else 1)
            self._state.add(message)
            kind = keyword_kind(body)
            keys = [(key, from_) for key in (number, *services)]
            if kind == "opt_out":
                self._state.opted_out.update(keys)
            elif kind == "opt_in":
                self._state.opted_out.difference_update(keys)
            if cfg.inbound_url:
                params = self._inbound_params(message, kind)
                self.callbacks.enqueue("inbound", cfg.inbound_url, params, now)
        self.callbacks.deliver_due(now)
        return message.resource()

    def _inbound_params(self, message: SimMessage, kind: Optional[str]) -> List[Tuple[str, str]]:
        params = [("AccountSid", message.account_sid), ("ApiVersion", API_VERSION),
                  ("Body", message.body), ("From", message.from_ or ""),
                  ("MessageSid", message.sid), ("NumMedia", "0"),
                  ("NumSegments", str(message.segments)), ("SmsMessageSid", message.sid),
                  ("SmsSid", message.sid), ("SmsStatus", "received"), ("To", message.to)]
        if message.service_sid:
            params.append(("MessagingServiceSid", message.service_sid))
        if kind and self.config.advanced_opt_out:
            params.append(("OptOutType", {"opt_out": "STOP", "opt_in": "START",
                                          "help": "HELP"}[kind]))
        return params

    # -- queries ----------------------------------------------------------------------------
    def fetch_message(self, sid: str) -> Dict[str, Any]:
        """``GET Messages/{sid}.json``."""
        with self.lock:
            message = self._state.messages.get(sid)
            if message is None:
                raise TwilioApiError(404, 20404, f"The requested resource /Messages/{sid}.json "
                                                 "was not found")
            return message.resource()

    def list_messages(self, *, to: Optional[str] = None, from_: Optional[str] = None,
                      sent_on: Optional[dt.date] = None, sent_after: Optional[dt.date] = None,
                      sent_before: Optional[dt.date] = None) -> List[Dict[str, Any]]:
        """Resources matching the filters, newest first. A ``DateSent`` filter (a UTC day,
        inclusive) leaves out messages not sent yet (no ``date_sent``), as on Twilio."""
        dated = sent_on is not None or sent_after is not None or sent_before is not None
        out = []
        with self.lock:
            for message in self._state.newest_first():
                if (to and message.to != to) or (from_ and message.from_ != from_):
                    continue
                if dated:
                    if message.date_sent is None:
                        continue
                    day = message.date_sent.date()
                    if ((sent_on and day != sent_on) or (sent_after and day < sent_after)
                            or (sent_before and day > sent_before)):
                        continue
                out.append(message.resource())
        return out

    def balance(self) -> Dict[str, Any]:
        """``GET Balance.json``."""
        with self.lock:
            amount = self._state.balance.quantize(Decimal("0.00001"))
            return {"account_sid": self.config.account_sid, "balance": f"{amount:f}",
                    "currency": self.config.currency}

    @property
    def messages(self) -> Dict[str, SimMessage]:
        """Every message by SID (a copy of the index; the records are live)."""
        with self.lock:
            return dict(self._state.messages)

    def is_opted_out(self, phone: str, sender: Optional[str] = None) -> bool:
        """Whether ``phone`` is blocked for ``sender`` (a number or MG SID; default the first
        number)."""
        with self.lock:
            return self._state.is_opted_out(sender or sorted(self.config.numbers)[0], phone)

    def sent_twice(self) -> Dict[Tuple[str, str], int]:
        """(to, body) pairs created more than once: a message that went out twice."""
        with self.lock:
            return {pair: n for pair, n in self._state.created.items() if n > 1}

    def stats(self) -> Dict[str, Any]:
        """Counts for dashboards and benchmarks (JSON-friendly)."""
        with self.lock:
            by_status: Dict[str, int] = {}
            for message in self._state.messages.values():
                by_status[message.status] = by_status.get(message.status, 0) + 1
            return {
                "messages": len(self._state.messages), "by_status": by_status,
                "rejected": {str(code): n for code, n in sorted(self._state.rejected.items())},
                "sent_twice": len(self.sent_twice()),
                "callbacks": self.callbacks.stats(),
                "balance": self.balance()["balance"],
            }
