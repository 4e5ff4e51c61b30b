"""Twilio settings: the ``SMSKIT_TWILIO_*`` keys read from :class:`smskit.config.Settings`.

===================================  ============================================  ==============
Key (``SMSKIT_`` + upper case)        Meaning                                       Default
===================================  ============================================  ==============
``twilio_account_sid``               the account (``AC`` + 32 hex digits)          required
``twilio_auth_token``                auth token: REST auth and webhook signatures  required [1]_
``twilio_api_key_sid``               API key (``SK...``) for REST auth instead     not used
``twilio_api_key_secret``            its secret                                    not used
``twilio_from``                      sender number (E.164) or alphanumeric ID      [2]_
``twilio_messaging_service_sid``     Messaging Service (``MG...``) as sender       [2]_
``twilio_base_url``                  API root                                      Twilio's
``twilio_allow_http``                allow plain ``http://`` to a remote host      false
``twilio_timeout``                   read/write timeout in seconds                 30
``twilio_connect_timeout``           connect timeout in seconds                    10
``twilio_max_attempts``              attempts when nothing was sent                4
``twilio_max_retry_wait``            longest ``Retry-After`` waited in-process (s)  60
``twilio_max_batch``                 messages per smskit batch (one request each)  50
``twilio_reconcile_skew``            clock skew allowed when matching (s)          120
``twilio_reconcile_grace``           wait after an ambiguous send before saying    60
                                     "never arrived" (s)
``twilio_reconcile_max_pages``       list pages read per number when reconciling   5
``twilio_webhook_shared_key``        secret of a Webhooks Rule (HMAC-SHA256)        not used
``twilio_verify_signatures``         check ``X-Twilio-Signature``                  true
===================================  ============================================  ==============

.. [1] with an API key the auth token is still needed to check webhook signatures.
.. [2] one of the two (both may be given: Twilio then uses ``From`` within the service).

The status callback URL given with every send is ``public_url + "/webhooks/twilio/status"``
(plus ``?token=<webhook_secret>`` when a secret is set) when ``public_url`` is set; configure the
inbound ("A message comes in") webhook of the number or service as
``public_url + "/webhooks/twilio/reply"`` with the same query.
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import quote, urlsplit

import attrs

from smskit.config import Secret, Settings
from smskit.errors import ConfigurationError
from smskit_twilio.wire import DEFAULT_BASE_URL, is_e164

__all__ = ["WEBHOOK_PATH", "TwilioSettings", "check_base_url", "webhook_url"]

WEBHOOK_PATH = "/webhooks/twilio/"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_KEY_SID = re.compile(r"^SK[0-9a-fA-F]{32}$")
_ALPHANUMERIC = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


def check_base_url(url: str, *, allow_http: bool = False) -> str:
    """``url`` without its trailing slash; refuses non-HTTP(S) and, unless ``allow_http``,
    plain HTTP to anything but loopback (the credentials would travel in clear text)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"twilio_base_url must be an http(s) URL, got {url!r}")
    if parts.scheme == "http" and not allow_http and parts.hostname not in _LOOPBACK:
        raise ConfigurationError(
            f"twilio_base_url {url!r} is plain http to a remote host; use https "
            "(or set SMSKIT_TWILIO_ALLOW_HTTP=true for a test gateway)")
    return url.strip().rstrip("/")


def webhook_url(public_url: str, kind: str, secret: Optional[Secret] = None,
                query: Optional[str] = None) -> str:
    """The URL Twilio calls for ``kind`` (``status``/``reply``): ``public_url`` +
    ``/webhooks/twilio/<kind>``, then ``query`` (the raw query of a request) or, without
    one, ``?token=<secret>``. It is the URL the signature covers."""
    base = public_url.strip().rstrip("/")
    if urlsplit(base).scheme not in ("http", "https"):
        raise ConfigurationError(f"public_url must be an http(s) URL, got {public_url!r}")
    url = f"{base}{WEBHOOK_PATH}{kind}"
    if query is None and secret:
        query = f"token={quote(secret.reveal(), safe='')}"
    return f"{url}?{query}" if query else url


def _matching(settings: Settings, key: str, pattern: re.Pattern[str],
              what: str) -> Optional[str]:
    value = (settings.get(key) or "").strip() or None
    if value is not None and not pattern.match(value):
        raise ConfigurationError(f"{key} must be {what}, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class TwilioSettings:
    """Everything the Twilio client and provider need, validated."""

    account_sid: str
    auth_token: Optional[Secret] = None
    api_key_sid: Optional[str] = None
    api_key_secret: Optional[Secret] = None
    from_: Optional[str] = None
    messaging_service_sid: Optional[str] = None
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_attempts: int = 4
    max_retry_wait: float = 60.0
    max_batch: int = 50
    reconcile_skew: float = 120.0
    reconcile_grace: float = 60.0
    reconcile_max_pages: int = 5
    public_url: Optional[str] = None
    webhook_secret: Optional[Secret] = None
    webhook_shared_key: Optional[Secret] = None
    verify_signatures: bool = True

    @property
    def status_callback(self) -> Optional[Secret]:
        """The ``StatusCallback`` sent with every message (a Secret: it carries the token)."""
        if not self.public_url:
            return None
        return Secret(webhook_url(self.public_url, "status", self.webhook_secret))

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioSettings:
        """Read the ``twilio_*`` keys (see the module docstring); clear errors for bad values."""
        account_sid = _matching(settings, "twilio_account_sid", _ACCOUNT_SID,
                                "'AC' followed by 32 hex digits")
        if account_sid is None:
            raise ConfigurationError(
                "SMSKIT_TWILIO_ACCOUNT_SID (twilio_account_sid) is not set")
        auth_token = settings.secret("twilio_auth_token")
        key_sid = _matching(settings, "twilio_api_key_sid", _KEY_SID,
                            "'SK' followed by 32 hex digits")
        key_secret = settings.secret("twilio_api_key_secret")
        if bool(key_sid) != bool(key_secret):
            raise ConfigurationError(
                "twilio_api_key_sid and twilio_api_key_secret go together")
        if auth_token is None and key_sid is None:
            raise ConfigurationError(
                "SMSKIT_TWILIO_AUTH_TOKEN is not set (nor an API key): Twilio needs credentials")
        sender = (settings.get("twilio_from") or "").strip() or None
        if sender is not None and not (is_e164(sender) or _ALPHANUMERIC.match(sender)):
            raise ConfigurationError(
                f"twilio_from must be an E.164 number or an alphanumeric sender ID, got "
                f"{sender!r}")
        service = _matching(settings, "twilio_messaging_service_sid", _SERVICE_SID,
                            "'MG' followed by 32 hex digits")
        if sender is None and service is None:
            raise ConfigurationError(
                "set SMSKIT_TWILIO_FROM or SMSKIT_TWILIO_MESSAGING_SERVICE_SID: Twilio needs a "
                "sender")
        verify = settings.flag("twilio_verify_signatures", True)
        if settings.public_url and verify and auth_token is None:
            raise ConfigurationError(
                "public_url is set (webhooks on) but twilio_auth_token is not: Twilio signs "
                "webhooks with the auth token, so it is needed to check them")
        return cls(
            account_sid=account_sid, auth_token=auth_token, api_key_sid=key_sid,
            api_key_secret=key_secret, from_=sender, messaging_service_sid=service,
            base_url=check_base_url(settings.get("twilio_base_url") or DEFAULT_BASE_URL,
                                    allow_http=settings.flag("twilio_allow_http", False)),
            timeout=settings.number("twilio_timeout", 30.0) or 30.0,
            connect_timeout=settings.number("twilio_connect_timeout", 10.0) or 10.0,
            max_attempts=settings.count("twilio_max_attempts", 4),
            max_retry_wait=settings.number("twilio_max_retry_wait", 60.0),
            max_batch=settings.count("twilio_max_batch", 50),
            reconcile_skew=settings.number("twilio_reconcile_skew", 120.0),
            reconcile_grace=settings.number("twilio_reconcile_grace", 60.0),
            reconcile_max_pages=settings.count("twilio_reconcile_max_pages", 5),
            public_url=settings.public_url or None, webhook_secret=settings.webhook_secret,
            webhook_shared_key=settings.secret("twilio_webhook_shared_key"),
            verify_signatures=verify,
        )
