"""The server's own credentials: the dashboard's and ``/metrics``' tokens.

The webhook secret opens webhooks and nothing else. Kolmeya receives it in every callback URL
(so do its logs, and any proxy on the way): a dashboard or metrics endpoint that took it would
be open to whoever reads those. Each of them has its own token instead
(``dashboard_token``, ``metrics_token``), sent as ``Authorization: Bearer <token>`` or as the
password of HTTP Basic (any user name: a browser asks for it, and Prometheus's ``basic_auth``
sends it), compared in constant time, never read from the URL. A token set to the webhook
secret, current or previous, is refused: the server logs an error at start and the route
answers as if no token were set.

``/metrics`` without a ``metrics_token`` is open only when the server is bound to a loopback
address (:func:`is_loopback`): then only this machine (or a proxy on it, which must restrict the
route itself) can scrape it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from typing import Mapping, Optional, Type, TypeVar

from smskit.config import Secret, Settings
from smskit.webhooks.auth import parse_secret_list

__all__ = ["Credential", "is_loopback", "presented_token"]

log = logging.getLogger(__name__)

_C = TypeVar("_C", bound="Credential")


def presented_token(authorization: str) -> Optional[str]:
    """The token an ``Authorization`` header carries: a Bearer token or a Basic password."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None


def _bytes(secret: Secret) -> bytes:
    return secret.reveal().encode("utf-8", "surrogatepass")


def is_loopback(host: Optional[str]) -> bool:
    """Whether a bind address is a loopback one (``127.0.0.0/8``, ``::1``, ``localhost``); an
    unknown one (``None``), ``0.0.0.0`` or a public address is not."""
    if not host:
        return False
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class Credential:
    """One route's token (``setting``, e.g. ``"dashboard_token"``): see the module."""

    def __init__(self, token: Optional[Secret], *, setting: str, refused: bool = False) -> None:
        self._token = token if token else None
        self.setting = setting
        #: Whether the setting was given but refused (it is the webhook secret).
        self.refused = refused

    @classmethod
    def from_settings(cls: Type[_C], settings: Settings, setting: str) -> _C:
        """The token of ``setting``; refused (with an error logged) when it is the webhook
        secret or one of ``webhook_secrets_previous``."""
        token = settings.secret(setting)
        if token is None:
            return cls(None, setting=setting)
        webhook = [s for s in (settings.webhook_secret, *parse_secret_list(
            settings.get("webhook_secrets_previous"))) if s]
        if any(hmac.compare_digest(_bytes(token), _bytes(s)) for s in webhook):
            log.error("%s is the webhook secret (or a previous one), which the gateway receives "
                      "in every callback URL: it is refused; set a token of its own",
                      cls.variable_of(setting))
            return cls(None, setting=setting, refused=True)
        return cls(token, setting=setting)

    @staticmethod
    def variable_of(setting: str) -> str:
        """The environment variable of a setting (``SMSKIT_DASHBOARD_TOKEN``)."""
        return f"SMSKIT_{setting.upper()}"

    @property
    def variable(self) -> str:
        """This credential's environment variable."""
        return self.variable_of(self.setting)

    @property
    def configured(self) -> bool:
        """Whether a usable token is set."""
        return self._token is not None

    def allows(self, headers: Mapping[str, str]) -> bool:
        """Whether ``Authorization`` carries the token (Bearer, or Basic password), compared in
        constant time. ``headers`` has lower-case keys."""
        if self._token is None:
            return False
        presented = presented_token(headers.get("authorization", ""))
        if presented is None:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"),
                                   _bytes(self._token))
