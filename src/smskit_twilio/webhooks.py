"""Twilio webhooks: status callbacks and incoming messages, checked and parsed.

Twilio POSTs ``application/x-www-form-urlencoded`` bodies and signs each request with
``X-Twilio-Signature`` (:mod:`smskit_twilio.signature`). Two kinds arrive:

* a **status callback** (to the ``StatusCallback`` URL given with the message): ``MessageSid``,
  ``MessageStatus`` (``queued``, ``sent``, ``delivered``, ``undelivered``, ``failed``...),
  ``ErrorCode`` on a failure, plus ``AccountSid``, ``From``, ``To``... It becomes one
  :class:`~smskit.models.StatusEvent` (see :func:`smskit_twilio.wire.state_for`);
* an **incoming message** (to the number's or Messaging Service's inbound URL): ``MessageSid``,
  ``From``, ``To``, ``Body``, ``NumMedia``... It becomes one
  :class:`~smskit.models.InboundMessage` recorded once per ``MessageSid``. Twilio handles the
  opt-out keywords itself (:data:`OPT_OUT_WORDS` block the sender, :data:`OPT_IN_WORDS` lift
  the block) and still forwards the message; with Advanced Opt-Out it adds ``OptOutType``
  (``STOP``, ``START``, ``HELP``). :func:`keyword_kind` reads either, and an opt-out is
  reported as :attr:`~smskit.models.InboundMessage.opt_out` so smskit blacklists the sender
  too (an opt-in is only recorded: smskit never takes a number off its blacklist on its own).

The body decides the kind (``MessageStatus`` other than ``received`` means a status), so a
misconfigured URL still parses. Anything malformed raises
:class:`~smskit.errors.ValidationError`; a request Twilio did not sign raises
:class:`WebhookSignatureError`, a subclass, so nothing is recorded either way.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qsl

from smskit.config import Secret
from smskit.errors import ValidationError
from smskit.models import InboundMessage, StatusEvent
from smskit.provider import WebhookPayload
from smskit.webhooks.auth import AuthResult
from smskit_twilio import wire
from smskit_twilio.signature import (
    SETTINGS_HEADER,
    SIGNATURE_HEADER,
    Params,
    algorithm_of,
    validate_signature,
)

__all__ = [
    "FORM_MEDIA_TYPE",
    "HELP_WORDS",
    "KINDS",
    "OPT_IN_WORDS",
    "OPT_OUT_WORDS",
    "SignatureCheck",
    "WebhookSignatureError",
    "decode_form",
    "keyword_kind",
    "opt_out_keyword",
    "parse_params",
    "parse_webhook",
]

log = logging.getLogger(__name__)

KINDS = ("status", "reply")
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
#: Twilio's default opt-out keywords: a one-word message blocks the sender for that number.
OPT_OUT_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
#: Opt back in.
OPT_IN_WORDS = ("START", "YES", "UNSTOP")
#: Answered by Twilio with a help text.
HELP_WORDS = ("HELP", "INFO")
_OPT_OUT_TYPES = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}
_MAX_FIELDS = 1000


class WebhookSignatureError(ValidationError):
    """The request does not carry a valid ``X-Twilio-Signature``: refuse it (HTTP 403)."""


class _MissingSignature(WebhookSignatureError):
    """No ``X-Twilio-Signature`` at all (HTTP 401)."""


def _fail(text: str) -> ValidationError:
    return ValidationError(f"malformed Twilio webhook: {text}")


def decode_form(body: bytes) -> List[Tuple[str, str]]:
    """The (name, value) pairs of a form-encoded UTF-8 body; ValidationError when it is not
    one (text that is not ``name=value&...``, bytes that are not UTF-8, an empty body)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                          errors="strict", max_num_fields=_MAX_FIELDS)
    except UnicodeDecodeError as exc:
        raise _fail(f"the body is not UTF-8 ({exc.reason})") from exc
    except ValueError as exc:
        raise _fail(f"the body is not form-encoded ({exc})") from exc
    if not pairs:
        raise _fail("the body is empty")
    return pairs


def keyword_kind(body: str, opt_out_type: Optional[str] = None) -> Optional[str]:
    """``"opt_out"``, ``"opt_in"`` or ``"help"`` when Twilio treats this message as a keyword,
    else ``None``. ``OptOutType`` (Advanced Opt-Out) is authoritative; without it, a message
    that is exactly one default keyword (any case, surrounding blanks ignored) counts, as only
    single-word messages trigger Twilio's handling."""
    if opt_out_type:
        return _OPT_OUT_TYPES.get(opt_out_type.strip().upper())
    word = body.strip().upper()
    if word in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS:
        return "opt_in"
    if word in HELP_WORDS:
        return "help"
    return None


def opt_out_keyword(body: str, opt_out_type: Optional[str] = None) -> Optional[str]:
    """The keyword to report as :attr:`InboundMessage.opt_out` when Twilio took the message
    as an opt-out (``OptOutType`` ``STOP``, or a default opt-out word), else ``None``."""
    if keyword_kind(body, opt_out_type) != "opt_out":
        return None
    return (opt_out_type or body).strip().upper()


def _required(params: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = params.get(name, "").strip()
        if value:
            return value
    raise _fail(f"no {' / '.join(names)}")


def _status(params: Mapping[str, str]) -> StatusEvent:
    sid = _required(params, "MessageSid", "SmsSid")
    status = _required(params, "MessageStatus", "SmsStatus")
    raw_code = params.get("ErrorCode", "").strip()
    if raw_code and not raw_code.isdigit():
        raise _fail(f"ErrorCode is not a number: {raw_code!r}")
    return wire.status_event(sid, status, int(raw_code) if raw_code else None,
                             raw=dict(params))


def _inbound(params: Mapping[str, str]) -> InboundMessage:
    sid = _required(params, "MessageSid", "SmsMessageSid", "SmsSid")
    sender = _required(params, "From")
    body = params.get("Body", "")
    return InboundMessage(provider=wire.PROVIDER, provider_reply_id=sid, phone=sender,
                          body=body, opt_out=opt_out_keyword(body, params.get("OptOutType")),
                          raw=dict(params))


def parse_params(params: Sequence[Tuple[str, str]], kind: str = "status") -> WebhookPayload:
    """The events in decoded form fields. ``kind`` (``status``/``reply``, from the URL) is
    checked, but the fields decide: ``MessageStatus`` other than ``received``/``receiving``
    is a status callback, ``From`` + ``MessageSid`` an incoming message."""
    if kind not in KINDS:
        raise ValidationError(f"unknown Twilio webhook kind {kind!r} (expected status or reply)")
    fields: Dict[str, str] = dict(params)
    status = fields.get("MessageStatus", "").strip().lower()
    if status and status not in ("received", "receiving"):
        return WebhookPayload(statuses=(_status(fields),))
    if "From" in fields and ("MessageSid" in fields or "SmsMessageSid" in fields):
        return WebhookPayload(inbound=(_inbound(fields),))
    keys = ", ".join(sorted(fields)[:20]) or "none"
    raise _fail(f"neither a status callback nor an incoming message (fields: {keys})")


class SignatureCheck:
    """The ``X-Twilio-Signature`` check of one account: the hook a webhook gate calls.

    ``auth_token`` signs ordinary webhooks (HMAC-SHA1); ``shared_key`` is the secret of a
    Webhooks Rule, used when the request names its algorithm in
    ``X-Twilio-Webhooks-Signature-Settings``.
    """

    def __init__(self, auth_token: Optional[Secret], shared_key: Optional[Secret] = None) -> None:
        self._auth_token = auth_token
        self._shared_key = shared_key

    def __repr__(self) -> str:
        return "SignatureCheck(auth_token=Secret('********'))"

    def verify(self, url: str, headers: Mapping[str, str], params: Params) -> AuthResult:
        """The webhook gate's answer for a request to ``url`` (the URL Twilio called, query
        included) with form ``params``: ``MISSING`` without the header (401), ``WRONG`` when it
        does not match or cannot be checked (403), else ``OK``."""
        try:
            self.check(url, headers, params)
        except _MissingSignature:
            return AuthResult.MISSING
        except WebhookSignatureError as exc:
            log.warning("Twilio webhook refused: %s", exc)
            return AuthResult.WRONG
        return AuthResult.OK

    def check(self, url: str, headers: Mapping[str, str], params: Params) -> None:
        """Raise :class:`WebhookSignatureError` unless the request to ``url`` (the URL Twilio
        called, query included) with form ``params`` carries Twilio's signature."""
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        signature = lowered.get(SIGNATURE_HEADER.lower())
        if not signature:
            raise _MissingSignature(f"the request has no {SIGNATURE_HEADER} header")
        settings = lowered.get(SETTINGS_HEADER.lower())
        secret = self._shared_key if settings else self._auth_token
        if secret is None:
            which = ("twilio_webhook_shared_key (the request is signed by a Webhooks Rule)"
                     if settings else "twilio_auth_token")
            raise WebhookSignatureError(f"cannot check {SIGNATURE_HEADER}: set {which}")
        if not validate_signature(secret.reveal(), url, params, signature, algorithm_of(settings)):
            raise WebhookSignatureError(
                f"{SIGNATURE_HEADER} does not match this request (is the public URL exactly the "
                "one configured at Twilio, and the auth token this account's?)")


def _media_type(headers: Mapping[str, str]) -> str:
    for key, value in headers.items():
        if str(key).lower() == "content-type":
            return str(value).split(";", 1)[0].strip().lower()
    return ""


def parse_webhook(kind: str, headers: Mapping[str, str], body: bytes, *,
                  url: Optional[str] = None,
                  check: Optional[SignatureCheck] = None) -> WebhookPayload:
    """Check and parse one webhook request: a form body, signed for ``url`` when ``check`` is
    given (``url`` is then required), holding a status callback or an incoming message."""
    if kind not in KINDS:
        raise ValidationError(f"unknown Twilio webhook kind {kind!r} (expected status or reply)")
    media = _media_type(headers)
    if media and media != FORM_MEDIA_TYPE:
        raise _fail(f"Twilio posts {FORM_MEDIA_TYPE}, got {media}")
    params = decode_form(body)
    if check is not None:
        if url is None:
            raise WebhookSignatureError("cannot check the signature: the URL Twilio called is "
                                        "unknown (set SMSKIT_PUBLIC_URL)")
        check.check(url, headers, params)
    return parse_params(params, kind)
