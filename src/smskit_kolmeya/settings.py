"""Kolmeya settings: the ``SMSKIT_KOLMEYA_*`` keys read from :class:`smskit.config.Settings`.

=============================  ====================================================  ===========
Key (``SMSKIT_`` + upper case)  Meaning                                               Default
=============================  ====================================================  ===========
``kolmeya_token``              API token (Bearer), kept as a :class:`Secret`          required
``kolmeya_base_url``           API root                                              Kolmeya's
``kolmeya_cost_centre_id``     cost centre (``tenant_segment_id``) sent with sends    not sent
``kolmeya_sms_api_id``         ``sms_api_id`` sent with sends                         not sent
``kolmeya_timeout``            read/write timeout in seconds                         60
``kolmeya_connect_timeout``    connect timeout in seconds                            10
``kolmeya_max_attempts``       attempts when nothing was sent (connect error, 429)   4
``kolmeya_max_retry_wait``     longest ``Retry-After`` waited for in-process (s)     60
``kolmeya_job_control``        ``path`` (``/sms/jobs/{id}/pause``) or ``body``       path
``kolmeya_allow_http``         allow plain ``http://`` to a non-loopback host        false
``kolmeya_timezone``           zone of Kolmeya's timestamps (not documented)         São Paulo
=============================  ====================================================  ===========

``kolmeya_segment_id``, the cost centre's former name, is still read when
``kolmeya_cost_centre_id`` is not set.

The callback URL given to Kolmeya is ``public_url + "/webhooks/kolmeya/status?token=" +
webhook_secret`` when ``public_url`` is set.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import quote, urlsplit

import attrs

from smskit.config import Secret, Settings
from smskit.errors import ConfigurationError
from smskit.timeutil import DEFAULT_TZ, zone

__all__ = ["DEFAULT_BASE_URL", "KolmeyaSettings", "check_base_url", "webhook_url_for"]

DEFAULT_BASE_URL = "https://kolmeya.com.br/api/v1"
WEBHOOK_PATH = "/webhooks/kolmeya/status"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_base_url(url: str, *, allow_http: bool = False) -> str:
    """``url`` without its trailing slash; refuses non-HTTP(S) and, unless ``allow_http``,
    plain HTTP to anything but loopback (the Bearer token would travel in clear text)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"kolmeya_base_url must be an http(s) URL, got {url!r}")
    if parts.scheme == "http" and not allow_http and parts.hostname not in _LOOPBACK:
        raise ConfigurationError(
            f"kolmeya_base_url {url!r} is plain http to a remote host; use https "
            "(or set SMSKIT_KOLMEYA_ALLOW_HTTP=true for a test gateway)")
    return url.strip().rstrip("/")


def webhook_url_for(public_url: str, secret: Secret) -> Secret:
    """The callback URL for Kolmeya (statuses and replies both arrive there), as a Secret."""
    base = public_url.strip().rstrip("/")
    if urlsplit(base).scheme not in ("http", "https"):
        raise ConfigurationError(f"public_url must be an http(s) URL, got {public_url!r}")
    return Secret(f"{base}{WEBHOOK_PATH}?token={quote(secret.reveal(), safe='')}")


def _optional_int(settings: Settings, key: str) -> Optional[int]:
    raw = settings.get(key)
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{key}: not an integer: {raw!r}") from exc


def _cost_centre_id(settings: Settings) -> Optional[int]:
    """``kolmeya_cost_centre_id``, else its former name ``kolmeya_segment_id``; both set to
    different values is an error (which one was meant?)."""
    new = _optional_int(settings, "kolmeya_cost_centre_id")
    old = _optional_int(settings, "kolmeya_segment_id")
    if new is not None and old is not None and new != old:
        raise ConfigurationError(
            f"kolmeya_cost_centre_id ({new}) and its former name kolmeya_segment_id ({old}) "
            "differ; set only SMSKIT_KOLMEYA_COST_CENTRE_ID")
    return new if new is not None else old


@attrs.frozen(kw_only=True)
class KolmeyaSettings:
    """Everything the Kolmeya client and provider need, validated."""

    token: Secret
    base_url: str = DEFAULT_BASE_URL
    cost_centre_id: Optional[int] = None
    sms_api_id: Optional[int] = None
    webhook_url: Optional[Secret] = None
    timeout: float = 60.0
    connect_timeout: float = 10.0
    max_attempts: int = 4
    max_retry_wait: float = 60.0
    job_control: str = "path"
    timezone: str = DEFAULT_TZ

    @classmethod
    def from_settings(cls, settings: Settings) -> KolmeyaSettings:
        """Read the ``kolmeya_*`` keys (see the module docstring); clear errors for bad values."""
        token = settings.secret("kolmeya_token")
        if token is None:
            raise ConfigurationError(
                "SMSKIT_KOLMEYA_TOKEN (kolmeya_token) is not set: the Kolmeya API needs a token")
        allow_http = settings.flag("kolmeya_allow_http", False)
        base_url = check_base_url(settings.get("kolmeya_base_url") or DEFAULT_BASE_URL,
                                  allow_http=allow_http)
        webhook_url = None
        if settings.public_url:
            if settings.webhook_secret is None:
                raise ConfigurationError(
                    "public_url is set but webhook_secret is not: Kolmeya does not sign "
                    "callbacks, so the callback URL must carry SMSKIT_WEBHOOK_SECRET")
            webhook_url = webhook_url_for(settings.public_url, settings.webhook_secret)
        job_control = (settings.get("kolmeya_job_control") or "path").strip().lower()
        if job_control not in ("path", "body"):
            raise ConfigurationError(
                f"kolmeya_job_control must be 'path' or 'body', got {job_control!r}")
        timezone = (settings.get("kolmeya_timezone") or DEFAULT_TZ).strip()
        zone(timezone)  # a clear ConfigurationError for an unknown zone
        attempts = _optional_int(settings, "kolmeya_max_attempts")
        if attempts is not None and attempts < 1:
            raise ConfigurationError(f"kolmeya_max_attempts must be at least 1, got {attempts}")
        return cls(
            token=token, base_url=base_url,
            cost_centre_id=_cost_centre_id(settings),
            sms_api_id=_optional_int(settings, "kolmeya_sms_api_id"),
            webhook_url=webhook_url,
            timeout=settings.number("kolmeya_timeout", 60.0, exclusive=True),
            connect_timeout=settings.number("kolmeya_connect_timeout", 10.0, exclusive=True),
            max_attempts=attempts or 4,
            max_retry_wait=settings.number("kolmeya_max_retry_wait", 60.0, exclusive=True),
            job_control=job_control, timezone=timezone,
        )
