"""Kolmeya's wire format: pure request builders and response parsers (no I/O).

Everything here follows what ``docs/kolmeya.md`` records of the API: strict in what it builds
(exactly the request shapes production code is known to send), liberal in what it parses (integer
or string phones, both balance formats, status codes as numbers or digit strings). Parsers of
gateway responses raise :class:`~smskit.errors.ProviderError` on an unexpected shape; the client
turns that into :class:`~smskit.errors.AmbiguousSendError` for sends. :func:`error_for_response`
maps an HTTP error answer to the matching smskit exception.

Phones are sent as JSON **integers** holding the national number (DDD + number, no ``55``): that
is what the independent production senders do (a Laravel app that strips ``55``, a Python CSV
sender, a Next.js app) and exactly what Kolmeya echoes back in ``valids[].phone`` and in reports.
The live test that sent strings proves strings work too, but it is one observation against three
production code bases.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    cast,
)

import attrs

from smskit import phone as phone_rules
from smskit.config import redact
from smskit.errors import (
    AmbiguousSendError,
    AuthenticationError,
    InvalidPhoneError,
    ProviderError,
    ProviderNotFoundError,
    RateLimitedError,
    RequestRejectedError,
    TransientProviderError,
    ValidationError,
)
from smskit.models import InboundMessage, Message, SendResult, State, StatusEvent, utcnow
from smskit.timeutil import DEFAULT_TZ, ensure_aware, zone

__all__ = [
    "MAX_BATCH",
    "MAX_BLACKLIST",
    "MAX_ID_LENGTH",
    "MAX_PHONE_DIGITS",
    "MAX_REPLY_PERIOD_HOURS",
    "MAX_REPORT_LIMIT",
    "MAX_REPORT_WINDOW",
    "WEB_REPLY_PREFIX",
    "PROVIDER",
    "CostCentre",
    "MessageStatus",
    "RATE_LOW_SHARE",
    "RateBudget",
    "RepliesPage",
    "ReportRow",
    "RequestStatus",
    "StoreOutcome",
    "build_blacklist_request",
    "build_job_request",
    "build_message_status_request",
    "build_replies_request",
    "build_report_statuses_request",
    "build_request_status_request",
    "build_store_request",
    "build_store_token_request",
    "build_web_replies_request",
    "chunk",
    "error_for_response",
    "errors_in_body",
    "id_or_none",
    "listed",
    "parse_retry_after",
    "e164_from_kolmeya",
    "national_digits",
    "parse_balance",
    "parse_balance_value",
    "parse_cost_centres",
    "parse_datetime",
    "parse_message_status",
    "parse_replies_page",
    "parse_reply_item",
    "parse_report_statuses",
    "parse_request_status",
    "parse_status_code",
    "parse_status_item",
    "parse_store_response",
    "parse_web_reply_item",
    "report_windows",
    "state_for",
    "text_or_none",
]

PROVIDER = "kolmeya"
MAX_BATCH = 1000
MAX_BLACKLIST = 1000
MAX_REPLY_PERIOD_HOURS = 168
MAX_REPORT_LIMIT = 30000
MAX_REPORT_WINDOW = dt.timedelta(days=7)
#: The start of the reply id of a reply to a panel campaign (``sms/replys-web``).
WEB_REPLY_PREFIX = "web:"
REPORT_TIME_FORMAT = "%Y-%m-%d %H:%M"

T = TypeVar("T")
Fail = Callable[[str], Exception]
"""Builds a parser's exception: ProviderError for responses, ValidationError for webhooks."""


def _response_error(text: str) -> Exception:
    return ProviderError(f"unexpected Kolmeya response: {text}")


def chunk(items: Sequence[T], size: int = MAX_BATCH) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    if size < 1:
        raise ValidationError(f"chunk size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- phones ----------------------------------------------------------------------------------

def national_digits(phone: str) -> str:
    """A Brazilian number (E.164 or national, with any punctuation) as DDD + number digits
    (:func:`smskit.phone.national_digits` restricted to +55: Kolmeya only sends to Brazil).

    Raises :class:`~smskit.errors.InvalidPhoneError` for a number that is not valid, or not
    Brazilian.
    """
    return phone_rules.national_digits(phone, "BR", country_code=55)


def _phone_key(value: Any) -> Optional[str]:
    """National digits of an echoed phone (int or string, with or without 55), for matching;
    digits Kolmeya echoes that are not a valid number are matched as they are."""
    if value is None or isinstance(value, bool):
        return None
    digits = re.sub(r"\D", "", str(value))
    if not digits:
        return None
    try:
        return phone_rules.national_digits(digits, "BR")
    except InvalidPhoneError:
        return digits


#: More digits than any numbering plan uses (E.164 allows 15): not a phone number at all.
MAX_PHONE_DIGITS = 20


def e164_from_kolmeya(value: Any) -> Optional[str]:
    """E.164 for a phone as Kolmeya gives it (national or with 55); ``None`` without digits,
    or with more than :data:`MAX_PHONE_DIGITS` of them.

    Uses :func:`smskit.phone.from_kolmeya`; a number it finds invalid is still kept (a reply
    must not be lost over a number format): 10-11 digits get ``+55``, others just ``+``.
    """
    if value is None or isinstance(value, bool):
        return None
    digits = re.sub(r"\D", "", str(value))
    if not digits or len(digits) > MAX_PHONE_DIGITS:
        return None
    try:
        return phone_rules.from_kolmeya(digits).e164
    except InvalidPhoneError:
        return ("+55" + digits) if len(digits) in (10, 11) else ("+" + digits)


# -- status codes ----------------------------------------------------------------------------

_CODE_STATES: Dict[int, State] = {
    1: State.SENT,  # "tentando enviar": Kolmeya holds the message and is handing it to a carrier
    2: State.SENT,  # "enviado": in transit
    3: State.DELIVERED,
    4: State.ERROR,  # "não entregue"
    5: State.REJECTED,  # rejected by the carrier/broker
    6: State.EXPIRED,
}

# Prefixes of normalised (lower case, no accents) status texts; order matters ("nao entreg"
# before "entreg"). Only "enviado" and "entregue" are confirmed strings.
_TEXT_CODES: Tuple[Tuple[str, int], ...] = (
    ("tentando", 1),
    ("nao entreg", 4),
    ("entreg", 3),
    ("envi", 2),
    ("rejeit", 5),
    ("expir", 6),
    ("undeliver", 4),
    ("not deliver", 4),
    ("deliver", 3),
    ("sent", 2),
    ("fail", 4),
    ("error", 4),
    ("reject", 5),
)


def _fold(text: str) -> str:
    """Lower case, without accents, with ``_``, ``-`` and runs of spaces as one space
    (``"NAO_ENTREGUE"`` reads as ``"nao entregue"``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.replace("_", " ").replace("-", " ").split()).lower()


#: Status codes are small numbers; anything wider than this is not one (nor storable as one).
_CODE_LIMIT = 2**31
_CODE_DIGITS = re.compile(r"[0-9]{1,10}")


def parse_status_code(value: Any) -> Optional[int]:
    """A status code given as an int, an ASCII digit string or an integral float; ``None``
    otherwise, and for a number outside a 32-bit integer (no status code is that wide).

    ``str.isdigit`` is not used: it accepts ``"²"`` and other digits ``int`` refuses.
    """
    if isinstance(value, bool):
        return None
    code: Optional[int] = None
    if isinstance(value, int):
        code = value
    elif isinstance(value, float) and value.is_integer():
        code = int(value)
    elif isinstance(value, str) and _CODE_DIGITS.fullmatch(value.strip()):
        code = int(value.strip())
    if code is None or not -_CODE_LIMIT <= code < _CODE_LIMIT:
        return None
    return code


def code_for_text(text: Optional[str]) -> Optional[int]:
    """The status code a status text stands for (``"entregue"`` -> 3), ``None`` if unknown."""
    if not text:
        return None
    folded = _fold(text)
    for prefix, code in _TEXT_CODES:
        if folded.startswith(prefix):
            return code
    return None


def state_for(code: Optional[int], text: Optional[str] = None) -> State:
    """The smskit state for a Kolmeya message status.

    1 and 2 are both SENT (Kolmeya accepted the message; 1 only says it is still handing it
    over), 3 DELIVERED, 4 ERROR, 5 REJECTED, 6 EXPIRED. An unknown code maps to SENT: Kolmeya
    knows the message, so SENT is true, and a non-final state can still move on when a known
    final status arrives (the raw event stays in the message's history).
    """
    if code is None:
        code = code_for_text(text)
    if code is None:
        return State.SENT
    return _CODE_STATES.get(code, State.SENT)


# -- times -----------------------------------------------------------------------------------

_DATETIME_FORMATS = (
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
)


def parse_datetime(value: Any, tz: str = DEFAULT_TZ) -> Optional[dt.datetime]:
    """A Kolmeya timestamp as aware UTC: ``dd/mm/yyyy HH:MM[:SS]`` (read in ``tz``, São Paulo by
    default), ``YYYY-MM-DD HH:MM[:SS]`` or ISO 8601 with an offset; ``None`` if not parseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for fmt in _DATETIME_FORMATS:
        try:
            return ensure_aware(dt.datetime.strptime(text, fmt), tz)
        except ValueError:
            continue
        except OverflowError:  # a date at the edge of the calendar, moved out of it by UTC
            return None
    iso = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        return ensure_aware(dt.datetime.fromisoformat(iso), tz)
    except (ValueError, OverflowError):
        return None


# -- sms/store and sms/store-token --------------------------------------------------------------

def _message_item(message: Message) -> Dict[str, Any]:
    return {"phone": int(national_digits(message.phone)), "message": message.body,
            "reference": message.id}


def _send_options(body: Dict[str, Any], webhook_url: Optional[str],
                  cost_centre_id: Optional[int], sms_api_id: Optional[int]) -> Dict[str, Any]:
    if webhook_url:
        body["webhook_url"] = webhook_url
    if cost_centre_id is not None:
        body["tenant_segment_id"] = int(cost_centre_id)  # Kolmeya's name for a cost centre
    if sms_api_id is not None:
        body["sms_api_id"] = int(sms_api_id)
    return body


def build_store_request(
    messages: Sequence[Message],
    *,
    batch_id: str,
    webhook_url: Optional[str] = None,
    cost_centre_id: Optional[int] = None,
    sms_api_id: Optional[int] = None,
) -> Dict[str, Any]:
    """The ``POST /sms/store`` body for 1..1000 messages.

    ``{"messages": [{"phone", "message", "reference"}], "reference": batch_id}`` plus
    ``webhook_url``, ``tenant_segment_id`` (``cost_centre_id``) and ``sms_api_id`` only when
    given. Each message's
    ``reference`` is our message id, the top ``reference`` our batch id.
    """
    if not messages:
        raise ValidationError("a Kolmeya request needs at least one message")
    if len(messages) > MAX_BATCH:
        raise ValidationError(
            f"a Kolmeya request takes at most {MAX_BATCH} messages, got {len(messages)}")
    if not batch_id:
        raise ValidationError("batch_id (the Kolmeya request reference) must not be empty")
    body: Dict[str, Any] = {"messages": [_message_item(m) for m in messages],
                            "reference": batch_id}
    return _send_options(body, webhook_url, cost_centre_id, sms_api_id)


def build_store_token_request(
    message: Message,
    *,
    reference: Optional[str] = None,
    webhook_url: Optional[str] = None,
    cost_centre_id: Optional[int] = None,
    sms_api_id: Optional[int] = None,
) -> Dict[str, Any]:
    """The ``POST /sms/store-token`` body: the same shape as sms/store with exactly one message."""
    body: Dict[str, Any] = {"messages": [_message_item(message)]}
    if reference:
        body["reference"] = reference
    return _send_options(body, webhook_url, cost_centre_id, sms_api_id)


@attrs.frozen(kw_only=True)
class StoreOutcome:
    """What ``sms/store`` said: the request id and one result per message it mentioned.

    Messages it did not mention have no result (they stay ``outgoing`` for reconciliation).
    ``unmatched`` holds response items that matched none of our messages.
    """

    request_id: Optional[str]
    reference: Optional[str]
    results: Tuple[SendResult, ...] = ()
    unmatched: Tuple[Mapping[str, Any], ...] = ()


_REJECTIONS = (
    ("invalids", "invalid", "Kolmeya listed the number as invalid"),
    ("blacklist", "blacklist", "the number is on the Kolmeya blacklist"),
    ("not_disturb", "not_disturb", "the number is on the 'Não Perturbe' do-not-disturb list"),
    ("duplicates", "duplicate", "duplicate number in the same request: Kolmeya sends it once"),
)


def text_or_none(value: Any) -> Optional[str]:
    """A scalar JSON value as a non-empty string (``3`` -> ``"3"``); ``None`` otherwise."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value)
    return text or None


#: The longest id Kolmeya's can be taken to be (theirs are numbers and UUIDs). A longer one
#: is refused: a database index cannot hold an arbitrarily long key (PostgreSQL's stop at
#: about 2.7 kB), and a callback that fails every write would be retried forever.
MAX_ID_LENGTH = 255


def id_or_none(value: Any, what: str, fail: Fail = _response_error) -> Optional[str]:
    """:func:`text_or_none` for an id Kolmeya gives (a reply's, a message's); one longer than
    :data:`MAX_ID_LENGTH` characters raises ``fail``."""
    text = text_or_none(value)
    if text is not None and len(text) > MAX_ID_LENGTH:
        raise fail(f"{what} has {len(text)} characters; a Kolmeya id has at most "
                   f"{MAX_ID_LENGTH}")
    return text


def listed(value: Any) -> Optional[List[Any]]:
    """A JSON array as a list: ``None`` (or absent) is empty, and an object is its values in
    the order given, since PHP's ``json_encode`` writes an array whose keys are not ``0, 1,
    2...`` (one left by ``array_filter``, or an empty ``(object)[]``) as an object. ``None``
    for anything else."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return None


def _items(data: Mapping[str, Any], key: str) -> List[Mapping[str, Any]]:
    value = listed(data.get(key))
    if value is None:
        raise _response_error(f"{key!r} is not a list")
    return [item if isinstance(item, dict) else {"phone": item} for item in value]


def _result(key: str, item: Mapping[str, Any], message: Message,
            request_id: Optional[str]) -> SendResult:
    provider_id = text_or_none(item.get("id"))
    if key == "valids":
        return SendResult(message_id=message.id, state=State.SENT,
                          provider_message_id=provider_id, provider_request_id=request_id)
    for array, code, default_text in _REJECTIONS:
        if array == key:
            text = text_or_none(item.get("error")) or default_text
            return SendResult(message_id=message.id, state=State.REJECTED,
                              provider_message_id=provider_id, provider_request_id=request_id,
                              error_code=code, error_text=text, duplicate=code == "duplicate")
    raise ValueError(key)  # pragma: no cover - keys come from the tuple above


def parse_store_response(data: Any, messages: Sequence[Message]) -> StoreOutcome:
    """Map an ``sms/store`` (or store-token) response onto ``messages``.

    Items are matched by their ``reference`` (our message id) first, then by the echoed phone
    (national digits, int or string). With two messages to one phone and no references, the
    phone matches go to the messages in request order, ``valids`` first, so the one Kolmeya
    kept is SENT and the other is REJECTED as ``duplicate``.
    """
    if not isinstance(data, dict):
        raise _response_error(f"sms/store answered {type(data).__name__}, expected an object")
    request_id = text_or_none(data.get("id"))
    by_id = {m.id: m for m in messages}
    arrays = ["valids"] + [array for array, _c, _t in _REJECTIONS]
    results: Dict[str, SendResult] = {}
    deferred: List[Tuple[str, Mapping[str, Any]]] = []
    for key in arrays:
        for item in _items(data, key):
            ref = text_or_none(item.get("reference"))
            if ref in by_id and ref not in results:
                results[ref] = _result(key, item, by_id[ref], request_id)
            else:
                deferred.append((key, item))
    unmatched: List[Mapping[str, Any]] = []
    # Only items without a known reference are matched by phone: the numbers are read then.
    by_phone: Dict[str, List[Message]] = {}
    for m in messages if deferred else ():
        number = _phone_key(m.phone)
        if number:
            by_phone.setdefault(number, []).append(m)
    for key, item in deferred:
        phone = _phone_key(item.get("phone"))
        candidates = [m for m in by_phone.get(phone or "", []) if m.id not in results]
        if candidates:
            results[candidates[0].id] = _result(key, item, candidates[0], request_id)
        else:
            unmatched.append(item)
    ordered = tuple(results[m.id] for m in messages if m.id in results)
    return StoreOutcome(request_id=request_id, reference=text_or_none(data.get("reference")),
                        results=ordered, unmatched=tuple(unmatched))


# -- statuses --------------------------------------------------------------------------------

@attrs.frozen(kw_only=True)
class MessageStatus:
    """One message's status as Kolmeya reports it (status query, reconciliation or webhook)."""

    provider_message_id: Optional[str]
    reference: Optional[str]
    status_code: Optional[int]
    status: Optional[str]
    state: State
    phone: Optional[str] = None
    occurred_at: Optional[dt.datetime] = None
    raw: Optional[Mapping[str, Any]] = attrs.field(default=None, eq=False, repr=False)

    def to_event(self, request_id: Optional[str] = None) -> StatusEvent:
        """This status as a :class:`~smskit.models.StatusEvent` (``message_id`` = our reference)."""
        return StatusEvent(
            provider=PROVIDER, state=self.state, message_id=self.reference,
            provider_message_id=self.provider_message_id, provider_request_id=request_id,
            status_code=self.status_code, status_text=self.status,
            occurred_at=self.occurred_at or utcnow(), raw=self.raw,
        )


def parse_status_item(item: Any, fail: Fail = _response_error,
                      tz: str = DEFAULT_TZ) -> MessageStatus:
    """One ``{id, reference, status_code, status}`` item (extra keys such as ``phone`` allowed).

    A ``status_code`` that is null or blank (``""``, as a form sends an empty field) is not
    given; without one, a ``status`` that is a number (``3`` or ``"3"``) is the code."""
    if not isinstance(item, dict):
        raise fail(f"a message status must be an object, got {type(item).__name__}")
    provider_id = id_or_none(item.get("id"), "a message status 'id'", fail)
    reference = text_or_none(item.get("reference"))
    if provider_id is None and reference is None:
        raise fail("a message status has neither 'id' nor 'reference'")
    raw_code = item.get("status_code")
    if isinstance(raw_code, str) and not raw_code.strip():
        raw_code = None
    code = parse_status_code(raw_code)
    if raw_code is not None and code is None:
        shown = repr(raw_code)
        raise fail(f"status_code {shown if len(shown) <= 40 else shown[:40] + '...'} is not "
                   "a status code")
    status = text_or_none(item.get("status"))
    if code is None:
        code = parse_status_code(item.get("status"))
        status = None if code is not None else status
    if code is None and status is None:
        raise fail("a message status has neither 'status_code' nor 'status'")
    when = None
    for key in ("delivered_at", "updated_at", "occurred_at", "data", "date"):
        when = when or parse_datetime(item.get(key), tz)
    return MessageStatus(
        provider_message_id=provider_id, reference=reference, status_code=code, status=status,
        state=state_for(code, status), phone=e164_from_kolmeya(item.get("phone")),
        occurred_at=when, raw=item,
    )


def build_request_status_request(*, id: Optional[str] = None,
                                 reference: Optional[str] = None) -> Dict[str, Any]:
    """The ``POST /sms/status/request`` body: ``{"id": uuid}`` or ``{"reference": ref}``."""
    if bool(id) == bool(reference):
        raise ValidationError("give exactly one of id (request uuid) or reference (batch id)")
    return {"id": id} if id else {"reference": reference}


@attrs.frozen(kw_only=True)
class RequestStatus:
    """The answer of ``sms/status/request``: the request and its messages' statuses.

    ``status``/``status_code`` are request-level (``"Válido"``/2 seen), a different code space
    from the message statuses.
    """

    request_id: Optional[str]
    reference: Optional[str]
    status: Optional[str]
    status_code: Optional[int]
    messages: Tuple[MessageStatus, ...] = ()

    @property
    def known(self) -> bool:
        """Whether the answer names a request at all (an empty answer means "never seen")."""
        return self.request_id is not None or bool(self.messages)


def parse_request_status(data: Any) -> RequestStatus:
    """Parse ``{id, reference, status, status_code, messages: [...]}``; ``{}``/null is empty."""
    if data is None or data == [] or data == {}:
        return RequestStatus(request_id=None, reference=None, status=None, status_code=None)
    if not isinstance(data, dict):
        raise _response_error(f"sms/status/request answered {type(data).__name__}")
    items = _items(data, "messages")
    return RequestStatus(
        request_id=text_or_none(data.get("id")), reference=text_or_none(data.get("reference")),
        status=text_or_none(data.get("status")),
        status_code=parse_status_code(data.get("status_code")),
        messages=tuple(parse_status_item(i) for i in items),
    )


def build_message_status_request(id: str) -> Dict[str, Any]:
    """The ``POST /sms/status/message`` body: ``{"id": message uuid}``."""
    if not id:
        raise ValidationError("a Kolmeya message id is needed for sms/status/message")
    return {"id": id}


def parse_message_status(data: Any) -> MessageStatus:
    """Parse the (unconfirmed) ``sms/status/message`` answer: a bare status, or one wrapped in
    ``{"message": {...}}`` or ``{"messages": [{...}]}``."""
    if isinstance(data, dict) and isinstance(data.get("message"), dict):
        data = data["message"]
    elif isinstance(data, dict) and isinstance(data.get("messages"), list):
        if len(data["messages"]) != 1:
            raise _response_error(
                f"sms/status/message listed {len(data['messages'])} messages, expected 1")
        data = data["messages"][0]
    return parse_status_item(data)


# -- balance and cost centres ----------------------------------------------------------------

def parse_balance_value(value: Any) -> Decimal:
    """``"R$9.397,30"``, ``"R$ 9.397,30"``, ``"9397.30"``, ``"9397,30"``, ``9397.3`` -> Decimal.

    With both separators the last one is the decimal mark; a lone comma is decimal; several
    dots (or one dot followed by exactly three digits after ``R$``) are thousands separators.
    """
    if isinstance(value, bool):
        raise _response_error(f"balance {value!r} is not an amount")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _response_error(f"balance {value!r} is not an amount")
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise _response_error(f"balance {value!r} is not an amount")
    text = value.replace("\xa0", " ").strip()
    currency = "R$" in text
    text = text.replace("R$", "").replace(" ", "")
    negative = text.startswith("-")
    text = text.lstrip("+-")
    if not re.fullmatch(r"[0-9.,]+", text) or not re.search(r"[0-9]", text):
        raise _response_error(f"balance {value!r} is not an amount")
    if "," in text and "." in text:
        decimal_mark = "," if text.rfind(",") > text.rfind(".") else "."
    elif "," in text:
        decimal_mark = "," if text.count(",") == 1 else ""
    elif "." in text:
        thousands = text.count(".") > 1 or (currency and len(text.split(".")[1]) == 3)
        decimal_mark = "" if thousands else "."
    else:
        decimal_mark = ""
    thousands_mark = {",": ".", ".": ",", "": ".,"}[decimal_mark]
    for mark in thousands_mark:
        text = text.replace(mark, "")
    if decimal_mark:
        text = text.replace(decimal_mark, ".")
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise _response_error(f"balance {value!r} is not an amount") from exc
    return -amount if negative else amount


def parse_balance(data: Any) -> Decimal:
    """The ``sms/balance`` answer ``{"balance": ...}`` (formats of :func:`parse_balance_value`)."""
    if isinstance(data, dict) and "balance" in data:
        return parse_balance_value(data["balance"])
    if isinstance(data, dict) and "saldo" in data:
        return parse_balance_value(data["saldo"])
    raise _response_error("sms/balance answered without a 'balance' field")


@attrs.frozen
class CostCentre:
    """A Kolmeya cost centre (Kolmeya calls them segments: ``tenant_segment_id``) and its
    name."""

    id: int
    name: str


def parse_cost_centres(data: Any) -> List[CostCentre]:
    """The ``sms/segments`` answer ``{"segments": [{"id", "name"}]}`` (a bare list is accepted):
    the account's cost centres."""
    items = data.get("segments") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise _response_error("sms/segments answered without a 'segments' list")
    out = []
    for item in items:
        code = parse_status_code(item.get("id")) if isinstance(item, dict) else None
        if code is None:
            raise _response_error(f"cost centre {item!r} has no integer 'id'")
        out.append(CostCentre(code, str(item.get("name") or "")))
    return out


# -- replies ---------------------------------------------------------------------------------

def build_replies_request(period_hours: int = 24, page: int = 1) -> Dict[str, Any]:
    """The ``POST /sms/replys`` body: ``{"period": hours}``, plus ``"page"`` after page 1."""
    if isinstance(period_hours, bool) or not 1 <= period_hours <= MAX_REPLY_PERIOD_HOURS:
        raise ValidationError(
            f"reply period must be 1..{MAX_REPLY_PERIOD_HOURS} hours, got {period_hours!r}")
    if page < 1:
        raise ValidationError(f"page must be at least 1, got {page!r}")
    body: Dict[str, Any] = {"period": int(period_hours)}
    if page > 1:
        body["page"] = int(page)
    return body


def parse_reply_item(item: Any, fail: Fail = _response_error,
                     tz: str = DEFAULT_TZ) -> InboundMessage:
    """One reply ``{id, reply, received_at, message: {id, reference, phone}}`` -> InboundMessage."""
    if not isinstance(item, dict):
        raise fail(f"a reply must be an object, got {type(item).__name__}")
    reply_id = id_or_none(item.get("id"), "a reply 'id'", fail)
    if reply_id is None:
        raise fail("a reply has no 'id'")
    text = item.get("reply")
    if not isinstance(text, str):
        raise fail(f"reply {reply_id}: 'reply' is not a text")
    original = item.get("message")
    if original is not None and not isinstance(original, dict):
        raise fail(f"reply {reply_id}: 'message' is not an object")
    original = original or {}
    phone = e164_from_kolmeya(original.get("phone")) or e164_from_kolmeya(item.get("phone"))
    if phone is None:
        raise fail(f"reply {reply_id}: no phone number")
    return InboundMessage(
        provider=PROVIDER, provider_reply_id=reply_id, phone=phone, body=text,
        received_at=parse_datetime(item.get("received_at"), tz) or utcnow(),
        in_reply_to_provider_id=text_or_none(original.get("id")),
        in_reply_to_message_id=text_or_none(original.get("reference")), raw=item,
    )


@attrs.frozen(kw_only=True)
class RepliesPage:
    """One page of the Laravel paginator ``sms/replys`` answers with."""

    replies: Tuple[InboundMessage, ...]
    current_page: int
    has_next: bool


def parse_web_reply_item(item: Any, fail: Fail = _response_error,
                         tz: str = DEFAULT_TZ) -> InboundMessage:
    """One ``sms/replys-web`` item (a reply to a campaign sent from Kolmeya's panel):
    ``{id, job, phone, parameters, reply, message, send_at, received_at}`` -> InboundMessage.

    Its reply id becomes ``web:<id>`` (:data:`WEB_REPLY_PREFIX`): nothing says panel replies
    and API replies share one id space. It answers no message of ours (the campaign was not
    sent by smskit), so only its phone ties it to a conversation.
    """
    if not isinstance(item, dict):
        raise fail(f"a panel reply must be an object, got {type(item).__name__}")
    reply_id = text_or_none(item.get("id"))
    if reply_id is None:
        raise fail("a panel reply has no 'id'")
    text = item.get("reply")
    if not isinstance(text, str):
        raise fail(f"panel reply {reply_id}: 'reply' is not a text")
    phone = e164_from_kolmeya(item.get("phone"))
    if phone is None:
        raise fail(f"panel reply {reply_id}: no phone number")
    return InboundMessage(
        provider=PROVIDER, provider_reply_id=WEB_REPLY_PREFIX + reply_id, phone=phone,
        body=text, received_at=parse_datetime(item.get("received_at"), tz) or utcnow(),
        raw=item,
    )


def build_web_replies_request(page: int = 1) -> Dict[str, Any]:
    """The ``POST /sms/replys-web`` body: ``{}`` (what production code sends), plus
    ``"page"`` after page 1."""
    if page < 1:
        raise ValidationError(f"page must be at least 1, got {page!r}")
    return {"page": int(page)} if page > 1 else {}


def parse_replies_page(data: Any, tz: str = DEFAULT_TZ, *, web: bool = False) -> RepliesPage:
    """Parse ``{current_page, data: [...], next_page_url, last_page, ...}`` (``web``: a page of
    ``sms/replys-web``, read with :func:`parse_web_reply_item`)."""
    if not isinstance(data, dict) or not isinstance(data.get("data", []), list):
        raise _response_error("sms/replys answered without a 'data' list")
    parse = parse_web_reply_item if web else parse_reply_item
    replies = tuple(parse(i, tz=tz) for i in data.get("data") or [])
    current = parse_status_code(data.get("current_page")) or 1
    last = parse_status_code(data.get("last_page"))
    has_next = bool(data.get("next_page_url")) or (last is not None and current < last)
    return RepliesPage(replies=replies, current_page=current, has_next=has_next and bool(replies))


# -- reports ---------------------------------------------------------------------------------

def _floor_minute(value: dt.datetime) -> dt.datetime:
    return ensure_aware(value).replace(second=0, microsecond=0)


def report_windows(start: dt.datetime, end: dt.datetime, *, now: Optional[dt.datetime] = None,
                   max_window: dt.timedelta = MAX_REPORT_WINDOW,
                   ) -> List[Tuple[dt.datetime, dt.datetime]]:
    """``[start, end]`` cut into consecutive windows of at most ``max_window`` (7 days).

    Times are floored to the minute (the API's precision); ``end`` is clamped to ``now`` because
    Kolmeya refuses an ``end_at`` in the future. Naive datetimes are read as São Paulo time.
    """
    start, end = _floor_minute(start), _floor_minute(end)
    end = min(end, _floor_minute(now or utcnow()))
    if start >= end:
        raise ValidationError(
            f"report window is empty: start {start.isoformat()} is not before end "
            f"{end.isoformat()} (the end is clamped to now)")
    windows = []
    while start < end:
        stop = min(start + max_window, end)
        windows.append((start, stop))
        start = stop
    return windows


def build_report_statuses_request(start: dt.datetime, end: dt.datetime,
                                  limit: int = MAX_REPORT_LIMIT,
                                  tz: str = DEFAULT_TZ) -> Dict[str, Any]:
    """The ``POST /sms/reports/statuses`` body for one window of at most 7 days.

    ``{"start_at": "YYYY-MM-DD HH:MM", "end_at": ..., "limit": n}`` in São Paulo time.
    """
    if not 1 <= limit <= MAX_REPORT_LIMIT:
        raise ValidationError(f"report limit must be 1..{MAX_REPORT_LIMIT}, got {limit}")
    start, end = ensure_aware(start), ensure_aware(end)
    if not start < end or end - start > MAX_REPORT_WINDOW:
        raise ValidationError(
            f"report window {start.isoformat()} .. {end.isoformat()} must be positive and at "
            "most 7 days (use report_windows to split it)")
    local = zone(tz)
    return {"start_at": start.astimezone(local).strftime(REPORT_TIME_FORMAT),
            "end_at": end.astimezone(local).strftime(REPORT_TIME_FORMAT), "limit": int(limit)}


@attrs.frozen(kw_only=True)
class ReportRow:
    """One row of ``sms/reports/statuses`` (Portuguese field names mapped to English)."""

    phone: Optional[str]
    status: Optional[str]
    state: Optional[State]
    sent_at: Optional[dt.datetime]
    text: Optional[str]
    job: Optional[int]
    batch: Optional[int]
    cost_centre: Optional[str]
    raw: Mapping[str, Any] = attrs.field(eq=False, repr=False)


def parse_report_statuses(data: Any, tz: str = DEFAULT_TZ) -> List[ReportRow]:
    """Parse ``{"messages": [{telefone, status, enviada_em, mensagem, job, lote, ...}]}``."""
    if not isinstance(data, dict):
        raise _response_error("sms/reports/statuses answered without a 'messages' list")
    rows = []
    for item in _items(data, "messages"):
        status = text_or_none(item.get("status"))
        code = code_for_text(status)
        rows.append(ReportRow(
            phone=e164_from_kolmeya(item.get("telefone")), status=status,
            state=state_for(code) if code is not None else None,
            sent_at=parse_datetime(item.get("enviada_em"), tz),
            text=text_or_none(item.get("mensagem")), job=parse_status_code(item.get("job")),
            batch=parse_status_code(item.get("lote")),
            cost_centre=text_or_none(item.get("centro_custo")), raw=item,
        ))
    return rows


# -- blacklist and jobs ----------------------------------------------------------------------

def build_blacklist_request(phones: Sequence[str]) -> Dict[str, Any]:
    """The ``POST /blacklist/store`` (and ``/blacklist/destroy``) body for 1..1000 numbers."""
    if not phones:
        raise ValidationError("a blacklist request needs at least one phone")
    if len(phones) > MAX_BLACKLIST:
        raise ValidationError(
            f"a blacklist request takes at most {MAX_BLACKLIST} phones, got {len(phones)}")
    return {"phones": [{"phone": int(national_digits(p))} for p in phones]}


JOB_FORMS = ("path", "body")


def build_job_request(job_id: int, action: str, form: str = "path") -> Tuple[str, Dict[str, Any]]:
    """``(path, body)`` to pause or play a job.

    ``form="path"`` (default, the docs transcription): ``/sms/jobs/{id}/{action}`` with ``{}``;
    ``form="body"`` (one app's proxy): ``/sms/jobs/{action}`` with ``{"smsJob": id}``.
    """
    if action not in ("pause", "play"):
        raise ValidationError(f"job action must be 'pause' or 'play', got {action!r}")
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 1:
        raise ValidationError(f"a Kolmeya job id is a positive integer, got {job_id!r}")
    if form == "path":
        return f"/sms/jobs/{job_id}/{action}", {}
    if form == "body":
        return f"/sms/jobs/{action}", {"smsJob": job_id}
    raise ValidationError(f"job control form must be one of {JOB_FORMS}, got {form!r}")


# -- errors ----------------------------------------------------------------------------------

def errors_in_body(data: Any) -> List[str]:
    """The messages of an error body: ``{"errors": [...]}`` (also Laravel's ``{"message",
    "errors": {field: [...]}}`` and a bare ``{"error": "..."}``)."""
    if not isinstance(data, dict):
        return []
    found: List[str] = []
    errors = data.get("errors")
    if isinstance(errors, list):
        found.extend(str(e) for e in errors if e not in (None, ""))
    elif isinstance(errors, dict):
        for field, problems in errors.items():
            items = problems if isinstance(problems, list) else [problems]
            found.extend(f"{field}: {p}" for p in items)
    elif isinstance(errors, str) and errors:
        found.append(errors)
    for key in ("error", "message"):
        if not found and isinstance(data.get(key), str) and data[key]:
            found.append(data[key])
    return found


def parse_retry_after(value: Optional[str], now: Optional[dt.datetime] = None) -> Optional[float]:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date); ``None`` if absent."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = cast(Optional[dt.datetime], email.utils.parsedate_to_datetime(text))
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - some Python versions return None for junk
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - (now or utcnow())).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


#: Below this share of its limit left, :class:`RateBudget` spreads what is left until the reset.
RATE_LOW_SHARE = 0.1


@attrs.frozen(kw_only=True)
class RateBudget:
    """What a response's ``X-RateLimit-*`` headers said: the ``limit``, the requests
    ``remaining`` and when the window resets (``reset_at``, epoch seconds; ``None`` when not
    said). Only a weak observation documents these headers (500 or 1000 a "period"), so
    every field is optional but ``remaining``."""

    limit: Optional[int]
    remaining: int
    reset_at: Optional[float]

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], now: float) -> Optional[RateBudget]:
        """The budget in ``headers`` (any case), ``None`` without ``X-RateLimit-Remaining``.
        A ``Reset`` above 10^9 is an epoch time (Laravel's), a smaller one seconds from
        ``now``."""
        lowered = {k.lower(): v for k, v in headers.items()}
        remaining = parse_status_code(lowered.get("x-ratelimit-remaining"))
        if remaining is None:
            return None
        limit = parse_status_code(lowered.get("x-ratelimit-limit"))
        reset: Optional[float] = None
        try:
            raw = float(lowered.get("x-ratelimit-reset") or "nan")
        except ValueError:
            raw = float("nan")
        if math.isfinite(raw) and raw >= 0:
            reset = raw if raw > 1e9 else now + raw
        return cls(limit=limit, remaining=max(0, remaining), reset_at=reset)

    def wait(self, now: float) -> float:
        """Seconds to wait before the next request: none while plenty is left; once
        ``remaining`` falls to :data:`RATE_LOW_SHARE` of the limit (or 1), what is left is
        spread evenly until the reset, and with nothing left the wait is the whole way to
        it. Without a reset time, nothing is waited (a 429's ``Retry-After`` then says)."""
        if self.reset_at is None or now >= self.reset_at:
            return 0.0
        low = max(1, math.ceil(self.limit * RATE_LOW_SHARE)) if self.limit else 1
        if self.remaining > low:
            return 0.0
        return (self.reset_at - now) / (self.remaining + 1)


def error_for_response(
    status_code: int,
    data: Any,
    headers: Mapping[str, str],
    *,
    endpoint: str,
    send: bool,
    now: Optional[dt.datetime] = None,
    secrets: Sequence[Optional[str]] = (),
) -> ProviderError:
    """The exception for a non-2xx answer to ``POST endpoint``.

    401/403 :class:`AuthenticationError`; 404 :class:`ProviderNotFoundError`; 400/405/422 and
    other 4xx :class:`RequestRejectedError`; 408 :class:`TransientProviderError`; 429 (and 503
    with ``Retry-After``) :class:`RateLimitedError`; other 5xx and 3xx
    :class:`AmbiguousSendError` when ``send`` (the request may have been processed), plain
    :class:`ProviderError` otherwise. Messages quote Kolmeya's ``errors`` list, never a header,
    with every one of ``secrets`` (the token, the callback URL) masked.
    """
    errors = [redact(e, *secrets) for e in errors_in_body(data)]
    detail = f": {'; '.join(errors)}" if errors else ""
    text = f"Kolmeya POST {endpoint} answered HTTP {status_code}{detail}"
    lowered = {k.lower(): v for k, v in headers.items()}
    retry_after = parse_retry_after(lowered.get("retry-after"), now)
    if status_code in (401, 403):
        hint = " (check SMSKIT_KOLMEYA_TOKEN and that this IP is whitelisted in Kolmeya)"
        return AuthenticationError(text + hint, status_code=status_code, errors=errors)
    if status_code == 404:
        return ProviderNotFoundError(text, status_code=status_code, errors=errors)
    if status_code == 429 or (status_code == 503 and retry_after is not None):
        return RateLimitedError(text, retry_after=retry_after, status_code=status_code,
                                errors=errors)
    if status_code == 408:
        return TransientProviderError(text, status_code=status_code, errors=errors)
    if 400 <= status_code < 500:
        return RequestRejectedError(text, status_code=status_code, errors=errors)
    if send:
        return AmbiguousSendError(
            text + "; the messages may have been sent: reconcile before resending",
            status_code=status_code, errors=errors)
    return ProviderError(text, status_code=status_code, errors=errors)
