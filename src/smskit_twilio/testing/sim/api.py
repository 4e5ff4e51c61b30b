"""The simulated Twilio endpoints: route a request, authenticate it, call the simulator, shape
the answer. Pure of HTTP plumbing: :func:`handle` takes the method, path, query, form and
``Authorization`` header and returns an :class:`~smskit.testing.sim.serving.Answer`;
:mod:`.app` serves it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import re
from typing import Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlencode

from smskit.testing.sim.serving import Answer
from smskit_twilio.testing.sim.core import TwilioApiError, TwilioSimulator
from smskit_twilio.wire import API_VERSION, MAX_PAGE_SIZE

__all__ = ["endpoint_of", "handle"]

_ROUTE = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/"
    r"(?:(?P<list>Messages\.json)|Messages/(?P<sid>[^/]+)\.json|(?P<balance>Balance\.json))$")
_PAGE_TOKEN = re.compile(r"^PA([0-9]+)$")


def _error(exc: TwilioApiError, headers: Optional[Dict[str, str]] = None) -> Answer:
    return Answer(exc.status, exc.body(), headers or {})


def endpoint_of(method: str, path: str) -> Optional[str]:
    """The fault-switch name of a request (``messages.create``...), ``None`` if unknown."""
    match = _ROUTE.match(path)
    if match is None:
        return None
    if match.group("list"):
        return {"POST": "messages.create", "GET": "messages.list"}.get(method)
    if match.group("sid"):
        return "messages.fetch" if method == "GET" else None
    return "balance" if method == "GET" else None


def _authorised(sim: TwilioSimulator, authorization: str) -> bool:
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode(
            "utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    cfg = sim.config
    pairs = [(cfg.account_sid, cfg.auth_token)]
    if cfg.api_key_sid and cfg.api_key_secret:
        pairs.append((cfg.api_key_sid, cfg.api_key_secret))
    good = False
    for expected_user, expected_password in pairs:
        match = (hmac.compare_digest(user.encode(), expected_user.encode())
                 and hmac.compare_digest(password.encode(), expected_password.encode()))
        good = good or match
    return good


def _day(value: Optional[str]) -> Optional[dt.date]:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise TwilioApiError(400, 20001, f"Invalid date: {value}") from None


def _int_param(query: Mapping[str, str], name: str, default: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= high:
        raise TwilioApiError(400, 20001, f"Invalid {name}: {raw}")
    return int(raw)


def _list(sim: TwilioSimulator, path: str, query: Mapping[str, str]) -> Answer:
    items = sim.list_messages(to=query.get("To") or None, from_=query.get("From") or None,
                              sent_on=_day(query.get("DateSent")),
                              sent_after=_day(query.get("DateSent>")),
                              sent_before=_day(query.get("DateSent<")))
    size = _int_param(query, "PageSize", sim.config.page_size, MAX_PAGE_SIZE) or 1
    page = _int_param(query, "Page", 0, 10**9)
    token = _PAGE_TOKEN.match(query.get("PageToken", ""))
    start = int(token.group(1)) if token else page * size
    chunk = items[start:start + size]
    filters: List[Tuple[str, str]] = [(k, v) for k, v in query.items()
                                      if k not in ("Page", "PageSize", "PageToken")]

    def uri(number: int) -> str:
        extra = [("PageSize", str(size)), ("Page", str(number))]
        if number:
            extra.append(("PageToken", f"PA{number * size}"))
        return f"{path}?{urlencode(filters + extra)}"

    number = start // size
    more = start + size < len(items)
    return Answer(200, {
        "messages": chunk, "page": number, "page_size": size, "start": start,
        "end": start + max(0, len(chunk) - 1), "uri": uri(number), "first_page_uri": uri(0),
        "next_page_uri": uri(number + 1) if more else None,
        "previous_page_uri": uri(number - 1) if number > 0 else None,
    })


def handle(sim: TwilioSimulator, method: str, path: str, query: Mapping[str, str],
           form: Mapping[str, str], authorization: str) -> Answer:
    """Answer one API request as Twilio would (faults are applied by the app around this)."""
    match = _ROUTE.match(path)
    endpoint = endpoint_of(method, path)
    if match is None or endpoint is None:
        return _error(TwilioApiError(404, 20404, f"The requested resource {path} was not found"))
    if not _authorised(sim, authorization):
        return _error(TwilioApiError(401, 20003, "Authenticate"),
                      {"WWW-Authenticate": 'Basic realm="Twilio API"'})
    if match.group("account") != sim.config.account_sid:
        return _error(TwilioApiError(404, 20404, f"The requested resource {path} was not found"))
    try:
        if endpoint == "messages.create":
            return Answer(201, sim.create_message(form))
        if endpoint == "messages.list":
            return _list(sim, path, query)
        if endpoint == "messages.fetch":
            return Answer(200, sim.fetch_message(match.group("sid")))
        return Answer(200, sim.balance())
    except TwilioApiError as exc:
        return _error(exc)
