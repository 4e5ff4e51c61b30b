"""Twilio's wire format: pure request builders and response parsers (no I/O).

Everything here follows Twilio's public documentation of the Programmable Messaging REST API
(``docs/twilio.md`` cites each fact): a message is created by ``POST
/2010-04-01/Accounts/{AccountSid}/Messages.json`` with a form-encoded body (``To``, ``From``
or ``MessagingServiceSid``, ``Body``, ``StatusCallback``), answered with the Message resource
as JSON; errors come as ``{"code", "message", "more_info", "status"}``; lists are paged with
``next_page_uri``; timestamps are RFC 2822 (``"Tue, 26 Jul 2016 12:50:07 +0000"``).

Parsers of gateway answers raise :class:`~smskit.errors.ProviderError` on an unexpected shape
(the client turns that into :class:`~smskit.errors.AmbiguousSendError` for a send);
:func:`error_for_response` maps an HTTP error answer to the matching smskit exception.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
from decimal import Decimal, InvalidOperation
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    cast,
)

import attrs

from smskit.config import redact
from smskit.errors import (
    AmbiguousSendError,
    AuthenticationError,
    ConfigurationError,
    EmptyBodyError,
    InvalidPhoneError,
    ProviderError,
    ProviderNotFoundError,
    RateLimitedError,
    RequestRejectedError,
    TransientProviderError,
)
from smskit.models import Message, State, StatusEvent, utcnow

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "ERROR_TEXT",
    "MAX_PAGE_SIZE",
    "OPTED_OUT",
    "PROVIDER",
    "RECIPIENT_ERRORS",
    "Balance",
    "MessagePage",
    "TwilioMessage",
    "TwilioRequestError",
    "balance_path",
    "build_list_query",
    "build_send_form",
    "error_for_response",
    "is_e164",
    "message_path",
    "messages_path",
    "parse_balance",
    "parse_datetime",
    "parse_error_body",
    "parse_message",
    "parse_message_page",
    "parse_retry_after",
    "state_for",
]

PROVIDER = "twilio"
API_VERSION = "2010-04-01"
DEFAULT_BASE_URL = "https://api.twilio.com"
#: The largest ``PageSize`` the list endpoint takes.
MAX_PAGE_SIZE = 1000
#: Error 21610: the recipient replied STOP (or another opt-out keyword) to this sender.
OPTED_OUT = 21610

#: Error codes of a create request that concern this one recipient or body, not the account:
#: the message is ``rejected`` and the batch goes on. Any other 4xx stops the batch.
RECIPIENT_ERRORS: FrozenSet[int] = frozenset({21211, 21408, 21610, 21612, 21614, 21617})

#: Short texts for the codes smskit reports most often (Twilio's error dictionary).
ERROR_TEXT: Dict[int, str] = {
    21211: "invalid 'To' phone number",
    21408: "sending to this region is not enabled on the account",
    21610: "the recipient opted out (replied STOP); Twilio refuses to message them",
    21612: "the 'To' number is not currently reachable via SMS",
    21614: "the 'To' number is not a valid mobile number",
    21617: "the message body exceeds the 1600 character limit",
    30001: "queue overflow",
    30002: "account suspended",
    30003: "unreachable destination handset",
    30004: "message blocked",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "message filtered by the carrier",
    30008: "unknown error",
}

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
Fail = Callable[[str], Exception]


def _response_error(text: str) -> Exception:
    return ProviderError(f"unexpected Twilio response: {text}")


def is_e164(value: str) -> bool:
    """Whether ``value`` is an E.164 number (``+`` and 7 to 15 digits, no leading zero)."""
    return bool(_E164.match(value))


# -- paths ---------------------------------------------------------------------------------

def messages_path(account_sid: str) -> str:
    """The Messages list resource of an account."""
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"


def message_path(account_sid: str, sid: str) -> str:
    """One Message resource."""
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"


def balance_path(account_sid: str) -> str:
    """The Balance resource of an account."""
    return f"/{API_VERSION}/Accounts/{account_sid}/Balance.json"


# -- requests ------------------------------------------------------------------------------

def build_send_form(message: Message, *, from_: Optional[str] = None,
                    messaging_service_sid: Optional[str] = None,
                    status_callback: Optional[str] = None) -> List[Tuple[str, str]]:
    """The form fields that create ``message``: ``To``, ``Body``, the sender, the callback.

    ``To`` must be E.164 (Twilio's 21211 otherwise, so it is refused here before any request).
    The sender is ``MessagingServiceSid`` and/or ``From``; at least one is required.
    """
    if not is_e164(message.phone):
        raise InvalidPhoneError(message.phone, "Twilio needs an E.164 number (+ and digits)")
    if not message.body or not message.body.strip():
        raise EmptyBodyError(f"message {message.id} has no text")
    if not from_ and not messaging_service_sid:
        raise ConfigurationError("Twilio needs a sender: twilio_from or "
                                 "twilio_messaging_service_sid")
    form = [("To", message.phone), ("Body", message.body)]
    if messaging_service_sid:
        form.append(("MessagingServiceSid", messaging_service_sid))
    if from_:
        form.append(("From", from_))
    if status_callback:
        form.append(("StatusCallback", status_callback))
    return form


def build_list_query(*, to: Optional[str] = None, from_: Optional[str] = None,
                     date_sent_after: Optional[dt.date] = None,
                     page_size: int = 50) -> List[Tuple[str, str]]:
    """The query of ``GET Messages.json``: the ``To``/``From`` filters, ``DateSent>`` (a UTC
    date: messages sent on or after that day) and ``PageSize`` (1..1000)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigurationError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
    query: List[Tuple[str, str]] = []
    if to:
        query.append(("To", to))
    if from_:
        query.append(("From", from_))
    if date_sent_after is not None:
        query.append(("DateSent>", date_sent_after.strftime("%Y-%m-%d")))
    query.append(("PageSize", str(page_size)))
    return query


# -- the Message resource ------------------------------------------------------------------

#: Twilio's message statuses and the smskit state each one means.
_STATES: Dict[str, State] = {
    "accepted": State.SENT,  # a Messaging Service took it; Twilio holds it
    "scheduled": State.SENT,
    "queued": State.SENT,
    "sending": State.SENT,
    "sent": State.SENT,
    "delivered": State.DELIVERED,
    "read": State.DELIVERED,  # read receipts exist only where delivery was confirmed
    "undelivered": State.ERROR,
    "failed": State.REJECTED,  # the carrier did not take it; Twilio does not charge it
    "canceled": State.CANCELED,
}


def state_for(status: Optional[str]) -> State:
    """The smskit state of a Twilio status; an unknown status (``partially_delivered``,
    ``receiving``...) is a non-final ``sent``, so nothing is concluded from it."""
    return _STATES.get((status or "").strip().lower(), State.SENT)


def parse_datetime(value: Any) -> Optional[dt.datetime]:
    """An RFC 2822 timestamp (``"Tue, 26 Jul 2016 12:50:07 +0000"``) as aware UTC; ``None``
    when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = cast(Optional[dt.datetime], email.utils.parsedate_to_datetime(value.strip()))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:  # pragma: no cover - older Pythons return None for junk
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)
        return text if text else None
    return None


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _decimal(value: Any) -> Optional[Decimal]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@attrs.frozen(kw_only=True)
class TwilioMessage:
    """The fields of a Message resource smskit uses (``raw`` keeps the whole object)."""

    sid: str
    status: str
    to: Optional[str] = None
    from_: Optional[str] = None
    messaging_service_sid: Optional[str] = None
    account_sid: Optional[str] = None
    body: Optional[str] = None
    direction: Optional[str] = None
    error_code: Optional[int] = None
    error_message: Optional[str] = None
    num_segments: Optional[int] = None
    price: Optional[Decimal] = None
    price_unit: Optional[str] = None
    date_created: Optional[dt.datetime] = None
    date_sent: Optional[dt.datetime] = None
    date_updated: Optional[dt.datetime] = None
    raw: Optional[Mapping[str, Any]] = attrs.field(default=None, eq=False, repr=False)

    @property
    def state(self) -> State:
        """The smskit state of :attr:`status`."""
        return state_for(self.status)

    @property
    def outbound(self) -> bool:
        """Whether we sent it (``outbound-api``, ``outbound-call``, ``outbound-reply``)."""
        return (self.direction or "").startswith("outbound")

    def to_event(self, message_id: Optional[str] = None) -> StatusEvent:
        """This message's status as a :class:`StatusEvent` (timed by ``date_updated``)."""
        return status_event(self.sid, self.status, self.error_code,
                            error_message=self.error_message, message_id=message_id,
                            occurred_at=self.date_updated, raw=self.raw)


def status_event(sid: str, status: str, error_code: Optional[int], *,
                 error_message: Optional[str] = None, message_id: Optional[str] = None,
                 occurred_at: Optional[dt.datetime] = None,
                 raw: Optional[Mapping[str, Any]] = None) -> StatusEvent:
    """A status event for message ``sid``; an error code is kept only with a final error
    (``undelivered``, ``failed``), and explained from :data:`ERROR_TEXT` when known."""
    state = state_for(status)
    failed = state in (State.ERROR, State.REJECTED)
    code = error_code if failed and error_code else None
    text = None
    if code is not None:
        text = ERROR_TEXT.get(code) or error_message or f"Twilio error {code}"
    return StatusEvent(
        provider=PROVIDER, state=state, message_id=message_id, provider_message_id=sid,
        status_text=status, error_code=str(code) if code is not None else None,
        error_text=text, occurred_at=occurred_at or utcnow(), raw=raw,
        opted_out=code == OPTED_OUT,
    )


def parse_message(data: Any, fail: Fail = _response_error) -> TwilioMessage:
    """A Message resource (the answer of a create or fetch, or an item of a list)."""
    if not isinstance(data, dict):
        raise fail(f"expected a Message object, got {type(data).__name__}")
    sid = _text(data.get("sid"))
    status = _text(data.get("status"))
    if sid is None or status is None:
        raise fail("a Message has no 'sid' or 'status'")
    return TwilioMessage(
        sid=sid, status=status, to=_text(data.get("to")), from_=_text(data.get("from")),
        messaging_service_sid=_text(data.get("messaging_service_sid")),
        account_sid=_text(data.get("account_sid")),
        body=data.get("body") if isinstance(data.get("body"), str) else None,
        direction=_text(data.get("direction")), error_code=_int(data.get("error_code")),
        error_message=_text(data.get("error_message")),
        num_segments=_int(data.get("num_segments")), price=_decimal(data.get("price")),
        price_unit=_text(data.get("price_unit")),
        date_created=parse_datetime(data.get("date_created")),
        date_sent=parse_datetime(data.get("date_sent")),
        date_updated=parse_datetime(data.get("date_updated")), raw=data,
    )


@attrs.frozen
class MessagePage:
    """One page of ``GET Messages.json``; ``next_page_uri`` is ``None`` on the last page."""

    messages: Tuple[TwilioMessage, ...]
    next_page_uri: Optional[str]


def parse_message_page(data: Any) -> MessagePage:
    """A page of the Messages list: ``{"messages": [...], "next_page_uri": ...}``."""
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise _response_error("a Messages page has no 'messages' list")
    next_uri = data.get("next_page_uri")
    if next_uri is not None and not (isinstance(next_uri, str) and next_uri.startswith("/")):
        raise _response_error(f"'next_page_uri' is not a path: {next_uri!r}")
    return MessagePage(tuple(parse_message(item) for item in data["messages"]),
                       next_uri or None)


@attrs.frozen
class Balance:
    """The account balance and its currency (``"USD"``)."""

    amount: Decimal
    currency: Optional[str] = None


def parse_balance(data: Any) -> Balance:
    """``{"account_sid", "balance": "0.05", "currency": "USD"}`` as an exact Decimal."""
    amount = _decimal(data.get("balance")) if isinstance(data, dict) else None
    if amount is None:
        raise _response_error("the Balance has no readable 'balance'")
    return Balance(amount, _text(data.get("currency")))


# -- errors --------------------------------------------------------------------------------

class TwilioRequestError(RequestRejectedError):
    """Twilio refused a request (HTTP 4xx) with an error ``code`` (21211, 21610...).

    Nothing was sent (``sent_nothing``). ``more_info`` is the error's documentation URL.
    """

    def __init__(self, message: str, *, code: Optional[int] = None,
                 more_info: Optional[str] = None, status_code: Optional[int] = 400,
                 errors: Sequence[str] = ()) -> None:
        self.code = code
        self.more_info = more_info
        super().__init__(message, status_code=status_code, errors=errors)

    @property
    def about_recipient(self) -> bool:
        """Whether the refusal concerns this recipient or body only (:data:`RECIPIENT_ERRORS`)."""
        return self.code in RECIPIENT_ERRORS


def parse_error_body(data: Any) -> Tuple[Optional[int], Optional[str], Optional[str]]:
    """``(code, message, more_info)`` of an error body (each ``None`` when absent)."""
    if not isinstance(data, dict):
        return None, None, None
    return _int(data.get("code")), _text(data.get("message")), _text(data.get("more_info"))


def parse_retry_after(value: Optional[str], now: Optional[dt.datetime] = None) -> Optional[float]:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date); ``None`` if absent."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        when = parse_datetime(text)
        if when is None:
            return None
        seconds = (when - (now or utcnow())).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_for_response(status_code: int, data: Any, headers: Mapping[str, str], *,
                       what: str, send: bool, now: Optional[dt.datetime] = None,
                       secrets: Sequence[Optional[str]] = ()) -> ProviderError:
    """The exception for a non-2xx answer to ``what`` (``"POST Messages.json"``...).

    401/403 :class:`AuthenticationError`; 404 :class:`ProviderNotFoundError`; 429 (error
    20429: "not processed and safe to retry"), and 503 with ``Retry-After``,
    :class:`RateLimitedError`; 408 :class:`TransientProviderError`; other 4xx
    :class:`TwilioRequestError` with Twilio's error code; other 5xx (and 3xx)
    :class:`AmbiguousSendError` when ``send`` (the message may have been created), plain
    :class:`ProviderError` otherwise. Texts quote Twilio's message with ``secrets`` masked.
    """
    code, message, more_info = parse_error_body(data)
    said = [redact(message, *secrets)] if message else []
    if code is not None:
        said.append(f"(error {code})")
    detail = f": {' '.join(said)}" if said else ""
    text = f"Twilio {what} answered HTTP {status_code}{detail}"
    errors = [redact(message, *secrets)] if message else []
    lowered = {k.lower(): v for k, v in headers.items()}
    retry_after = parse_retry_after(lowered.get("retry-after"), now)
    if status_code in (401, 403):
        hint = " (check the account SID and the auth token or API key)"
        return AuthenticationError(text + hint, status_code=status_code, errors=errors)
    if status_code == 404:
        return ProviderNotFoundError(text, status_code=status_code, errors=errors)
    if status_code == 429 or (status_code == 503 and retry_after is not None):
        return RateLimitedError(text, retry_after=retry_after, status_code=status_code,
                                errors=errors)
    if status_code == 408:
        return TransientProviderError(text, status_code=status_code, errors=errors)
    if 400 <= status_code < 500:
        return TwilioRequestError(text, code=code, more_info=more_info,
                                  status_code=status_code, errors=errors)
    if send:
        return AmbiguousSendError(
            text + "; the message may have been created: reconcile before resending",
            status_code=status_code, errors=errors)
    return ProviderError(text, status_code=status_code, errors=errors)
