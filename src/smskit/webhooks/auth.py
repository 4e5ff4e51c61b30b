"""Who may call a webhook: the shared secret (checked in constant time) and an IP allow list.

Kolmeya does not sign its callbacks, so the webhook URL we hand it carries a secret token.
The token is accepted from the ``token`` query parameter, an ``X-Smskit-Token`` header or an
``Authorization: Bearer <secret>`` header. Every presented token must match (each value of a
repeated ``token`` parameter too, and a parameter named ``Token``, ``TOKEN``... is a ``token``
parameter: :func:`is_token_param`); none at all is *missing* (401), a wrong one is *wrong*
(403). The answers to each case are the gate's (:mod:`smskit.webhooks.gate`).

**Rotation.** A message sent before a rotation carries the old secret in the callback URL
it gave the gateway, and its status callbacks may come days later. So a token matches when it
is the current secret (``webhook_secret``) or one of the previous ones listed in
``webhook_secrets_previous`` (comma-separated): rotate by moving the current secret there and
setting a new one; drop it from the list once the old messages are final.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
from typing import List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import unquote_plus

import attrs

from smskit.config import Secret, Settings
from smskit.errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "TOKEN_HEADER",
    "TOKEN_PARAM",
    "AuthResult",
    "WebhookPolicy",
    "is_token_param",
    "parse_secret_list",
    "presented_tokens",
    "query_tokens",
    "split_query_token",
]

#: The header carrying the webhook secret (the query parameter is :data:`TOKEN_PARAM`).
TOKEN_HEADER = "x-smskit-token"  # noqa: S105 - a name, not a secret
#: The query parameter carrying the webhook secret, in any case (redacted before anything logs
#: the URL).
TOKEN_PARAM = "token"  # noqa: S105 - a name, not a secret
#: Default webhook body cap: 256 KiB.
DEFAULT_MAX_BYTES = 256 * 1024

_REDACTED = b"********"
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class AuthResult(str, enum.Enum):
    """The outcome of a token check."""

    OK = "ok"
    MISSING = "missing"
    WRONG = "wrong"
    NOT_CONFIGURED = "not_configured"


def _parse_networks(raw: Optional[str]) -> Optional[Tuple[Network, ...]]:
    if raw is None or not raw.strip():
        return None
    networks: List[Network] = []
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ConfigurationError(
                f"webhook_allow_ips: {entry!r} is not an IP address or CIDR network"
            ) from exc
    return tuple(networks)


def is_token_param(name: str) -> bool:
    """Whether a query parameter named ``name`` (percent-decoded) carries a token: ``token``
    in any case. Each is checked and redacted, so ``?Token=`` cannot slip past either."""
    return name.lower() == TOKEN_PARAM


def query_tokens(query: Sequence[Tuple[str, str]]) -> List[str]:
    """Every value of every token parameter of a request's query pairs, in order."""
    return [value for name, value in query if is_token_param(name)]


def parse_secret_list(raw: Optional[str]) -> Tuple[Secret, ...]:
    """The secrets of a comma-separated setting (``webhook_secrets_previous``), blanks
    dropped."""
    if raw is None:
        return ()
    return tuple(Secret(item.strip()) for item in raw.split(",") if item.strip())


def _parse_max_bytes(raw: Optional[str]) -> int:
    if raw is None or not raw.strip():
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw.strip())
    except ValueError as exc:
        raise ConfigurationError(f"webhook_max_bytes: not an integer: {raw!r}") from exc
    if value <= 0:
        raise ConfigurationError(f"webhook_max_bytes: must be positive, got {value}")
    return value


@attrs.frozen(kw_only=True)
class WebhookPolicy:
    """Everything the server enforces on a webhook request, read once from the settings.

    ``secret`` is ``settings.webhook_secret``; ``previous`` the secrets still accepted after
    a rotation (``webhook_secrets_previous``); ``insecure`` is ``allow_insecure_webhooks=true``
    (only used when no secret is set); ``allow_ips`` the parsed ``webhook_allow_ips``
    (``None``: any address); ``max_bytes`` the body cap.
    """

    secret: Optional[Secret] = None
    previous: Tuple[Secret, ...] = ()
    insecure: bool = False
    allow_ips: Optional[Tuple[Network, ...]] = None
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookPolicy:
        """Read ``webhook_secret``, ``webhook_secrets_previous``, ``allow_insecure_webhooks``,
        ``webhook_allow_ips`` and ``webhook_max_bytes``; a malformed value raises
        :class:`ConfigurationError`."""
        insecure = settings.flag("allow_insecure_webhooks", False)
        return cls(
            secret=settings.webhook_secret or None,
            previous=parse_secret_list(settings.get("webhook_secrets_previous")),
            insecure=insecure,
            allow_ips=_parse_networks(settings.get("webhook_allow_ips")),
            max_bytes=_parse_max_bytes(settings.get("webhook_max_bytes")),
        )

    @property
    def mode(self) -> str:
        """``"token"``, ``"insecure"`` (no secret, explicitly allowed) or ``"disabled"``."""
        if self.secret:
            return "token"
        return "insecure" if self.insecure else "disabled"

    def ip_allowed(self, host: Optional[str]) -> bool:
        """Whether a client address may call webhooks (always, without an allow list)."""
        if self.allow_ips is None:
            return True
        if not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        candidates: List[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            candidate in network
            for candidate in candidates
            for network in self.allow_ips
            if candidate.version == network.version
        )

    def secrets(self) -> Tuple[Secret, ...]:
        """Every secret a webhook token may be: the current one, then the previous ones (none
        while no current secret is set)."""
        return (self.secret, *self.previous) if self.secret else ()

    def check_tokens(self, presented: Sequence[str]) -> AuthResult:
        """Compare every presented token with every accepted secret in constant time: each
        token must be one of them."""
        if not self.secret:
            return AuthResult.OK if self.insecure else AuthResult.NOT_CONFIGURED
        if not presented:
            return AuthResult.MISSING
        accepted = [s.reveal().encode("utf-8", "surrogatepass") for s in self.secrets()]
        good = True
        for token in presented:
            given = token.encode("utf-8", "surrogatepass")
            # compare with every secret, and every token (no early exit), so timing does not
            # tell which token failed or which secret matched
            matched = False
            for expected in accepted:
                matched = hmac.compare_digest(given, expected) or matched
            good = matched and good
        return AuthResult.OK if good else AuthResult.WRONG


def presented_tokens(headers: Mapping[str, str], from_query: Sequence[str]) -> List[str]:
    """The tokens a request presents: ``X-Smskit-Token``, ``Authorization: Bearer``, and every
    ``?token=`` value (``from_query``, see :func:`query_tokens`; a repeated parameter presents
    each of its values).

    ``headers`` must have lower-case keys (Starlette's ``Headers`` do). An ``Authorization``
    header with another scheme (``Basic`` from a proxy) is not a token and is ignored.
    """
    tokens: List[str] = []
    header = headers.get(TOKEN_HEADER)
    if header is not None:
        tokens.append(header.strip())
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            tokens.append(value.strip())
    tokens.extend(from_query)
    return tokens


def split_query_token(query_string: bytes) -> Tuple[Optional[str], bytes]:
    """Take the token parameters out of a raw query string.

    Returns the first token value (percent-decoded) or ``None``, and the query string with the
    value of every token parameter (``token`` in any case, :func:`is_token_param`) replaced by
    ``********``, so that access logs never show the secret.
    """
    if not query_string:
        return None, query_string
    token: Optional[str] = None
    parts = query_string.split(b"&")
    changed = False
    for index, part in enumerate(parts):
        raw_key, sep, raw_value = part.partition(b"=")
        if not is_token_param(unquote_plus(raw_key.decode("latin-1"))):
            continue
        if token is None:
            token = unquote_plus(raw_value.decode("latin-1")) if sep else ""
        parts[index] = raw_key + b"=" + _REDACTED
        changed = True
    return token, (b"&".join(parts) if changed else query_string)
