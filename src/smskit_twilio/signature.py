"""Twilio's request signature (``X-Twilio-Signature``), as pure functions.

Twilio signs every webhook request: it takes the full URL it called (scheme, host, path and
query, exactly as configured), appends every POST parameter sorted by name as ``name`` +
``value`` with no separator, computes HMAC-SHA1 of that string keyed with the account's auth
token, and sends the Base64 of the digest in ``X-Twilio-Signature``. A Webhooks Rule may sign
with a shared key and HMAC-SHA256 instead, naming the algorithm in
``X-Twilio-Webhooks-Signature-Settings`` (``key=...,algorithm=HMAC_SHA256``).

These functions reproduce the official ``twilio`` package's ``RequestValidator`` (a test
compares them on generated requests): a parameter given several times contributes each distinct
value once, in sorted order; the URL is checked both with and without its default port, because
Twilio is not consistent about it. Unlike that validator, the port is removed from the host part
only, so URLs with credentials or IPv6 literals are handled too; comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = [
    "HMAC_SHA1",
    "HMAC_SHA256",
    "SETTINGS_HEADER",
    "SIGNATURE_HEADER",
    "Params",
    "algorithm_of",
    "compute_signature",
    "signed_text",
    "url_variants",
    "validate_signature",
]

SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
HMAC_SHA1 = "HMAC_SHA1"
HMAC_SHA256 = "HMAC_SHA256"
_HASHES: Dict[str, Callable[..., Any]] = {
    HMAC_SHA1: hashlib.sha1,
    HMAC_SHA256: hashlib.sha256,
}
_DEFAULT_PORTS = {"https": 443, "http": 80}

#: POST parameters: a mapping, or the (name, value) pairs of a form (repeated names allowed).
Params = Union[Mapping[str, str], Iterable[Tuple[str, str]]]


def _grouped(params: Optional[Params]) -> Dict[str, Set[str]]:
    pairs = params.items() if isinstance(params, Mapping) else (params or ())
    grouped: Dict[str, Set[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, set()).add(value)
    return grouped


def signed_text(url: str, params: Optional[Params]) -> str:
    """The string Twilio signs: ``url`` followed by every parameter sorted by name, each
    distinct value of a repeated name once, in sorted order."""
    grouped = _grouped(params)
    return url + "".join(name + value for name in sorted(grouped)
                         for value in sorted(grouped[name]))


def compute_signature(secret: str, url: str, params: Optional[Params],
                      algorithm: str = HMAC_SHA1) -> str:
    """The Base64 signature of a request to ``url`` with ``params`` under ``secret``.

    ``algorithm`` is ``HMAC_SHA1`` (the auth token's, the default) or ``HMAC_SHA256``; any
    other raises ``ValueError``.
    """
    digest = _HASHES.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported Twilio signature algorithm {algorithm!r}")
    mac = hmac.new(secret.encode("utf-8"), signed_text(url, params).encode("utf-8"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def _with_netloc(parts: SplitResult, host_port: str) -> str:
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit((parts.scheme, f"{userinfo}{at}{host_port}", parts.path, parts.query,
                       parts.fragment))


def url_variants(url: str) -> List[str]:
    """``url`` without and with its scheme's default port (443/80), as Twilio may sign either.

    A URL whose port is not the default keeps it in both (the host must match exactly).
    """
    parts = urlsplit(url)
    host_port = parts.netloc.rpartition("@")[2]
    bracket = host_port.rfind("]")
    colon = host_port.rfind(":")
    host, port = host_port, ""
    if colon > bracket:
        host, port = host_port[:colon], host_port[colon + 1:]
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if port:
        return [_with_netloc(parts, host), _with_netloc(parts, host_port)]
    if default is None:
        return [urlunsplit(parts)]
    return [urlunsplit(parts), _with_netloc(parts, f"{host}:{default}")]


def validate_signature(secret: str, url: str, params: Optional[Params], signature: str,
                       algorithm: str = HMAC_SHA1) -> bool:
    """Whether ``signature`` is Twilio's for this request (the URL with or without its
    default port); ``False`` for an unsupported ``algorithm``. Constant-time comparisons."""
    if algorithm.upper() not in _HASHES:
        return False
    given = signature.strip().encode("utf-8")
    good = False
    for variant in url_variants(url):
        expected = compute_signature(secret, variant, params, algorithm).encode("ascii")
        good = hmac.compare_digest(expected, given) or good
    return good


def algorithm_of(settings_header: Optional[str]) -> str:
    """The algorithm named by ``X-Twilio-Webhooks-Signature-Settings``; ``HMAC_SHA1`` (the
    auth token's) when the header is absent or names none."""
    for part in (settings_header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip().lower() == "algorithm" and value.strip():
            return value.strip().upper()
    return HMAC_SHA1
