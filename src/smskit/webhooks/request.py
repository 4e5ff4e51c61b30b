"""One webhook request as the gate sees it, whatever web framework received it."""

from __future__ import annotations

from collections import abc
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union
from urllib.parse import parse_qsl

import attrs

from smskit.webhooks.media import essence

__all__ = ["Headers", "Pairs", "WebhookRequest", "parse_query"]

Pairs = Tuple[Tuple[str, str], ...]
Headers = Union[Mapping[str, str], Iterable[Tuple[str, str]]]


def _items(values: Headers) -> Iterable[Tuple[str, str]]:
    # collections.abc's Mapping: typing's alias goes through a slow __instancecheck__
    return values.items() if isinstance(values, abc.Mapping) else values


def _lower_headers(headers: Headers) -> Dict[str, str]:
    """Header names in lower case; a repeated header keeps its first value (as Starlette's
    ``headers.get`` and Werkzeug's ``headers.get`` do)."""
    lowered: Dict[str, str] = {}
    for name, value in _items(headers):
        lowered.setdefault(str(name).lower(), str(value))
    return lowered


def _pairs(query: Headers) -> Pairs:
    return tuple((str(name), str(value)) for name, value in _items(query))


def parse_query(query_string: Union[bytes, str]) -> Pairs:
    """The ``(name, value)`` pairs of a raw query string, percent-decoded, in order."""
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return tuple(parse_qsl(text, keep_blank_values=True))


@attrs.frozen(kw_only=True)
class WebhookRequest:
    """A provider callback: what the receiver read, and (once the gate decoded it) the body.

    ``provider`` and ``kind`` come from the route (``/webhooks/{provider}/{kind}``).
    ``headers`` may be given in any case, as a mapping or as pairs; they are kept with
    lower-case names. ``query`` holds every query parameter as ``(name, value)`` pairs, so a
    repeated parameter is seen (a mapping is accepted too). ``client_host`` is the caller's
    address (checked against ``webhook_allow_ips``); ``url`` the full URL the gateway called,
    query string included, as far as the receiver knows it (a provider that signs its
    callbacks signs this URL).

    ``data`` is the decoded body. Receivers leave it unset: the gate decodes the body (see
    :mod:`smskit.webhooks.media`) and hands the provider a copy carrying it, without the
    smskit token (its headers and ``token`` parameter are removed; ``url`` keeps it, as the
    gateway signed it: never log it). The body, URL, headers and data are left out of the
    ``repr``.
    """

    provider: str
    kind: str
    method: str = "POST"
    headers: Dict[str, str] = attrs.field(factory=dict, converter=_lower_headers, repr=False)
    query: Pairs = attrs.field(default=(), converter=_pairs, repr=False)
    body: bytes = attrs.field(default=b"", repr=False)
    client_host: Optional[str] = None
    url: Optional[str] = attrs.field(default=None, repr=False)
    data: Any = attrs.field(default=None, repr=False)

    def with_body(self, body: bytes) -> WebhookRequest:
        """This request with its body, once read (a receiver may check the head first)."""
        return attrs.evolve(self, body=body)

    @property
    def media_type(self) -> str:
        """The ``Content-Type`` without parameters, lower case (``""`` when there is none)."""
        return essence(self.headers.get("content-type", ""))

    def params(self, name: str) -> List[str]:
        """Every value of the query parameter ``name``, in order."""
        return [value for key, value in self.query if key == name]
