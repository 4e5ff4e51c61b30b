"""Link tracking: URLs in a body become short links served by the reference server.

::

    kit = SmsKit(Settings.load(public_url="https://sms.exemplo.com.br", link_tracking="true"))
    kit.send(phone, "Sua fatura: https://pagamentos.exemplo.com.br/f/8812?via=sms")
    # body sent: "Sua fatura: https://sms.exemplo.com.br/l/Xa81bQ2k"

Each URL of each message gets its own code (8 base62 characters), so a click is counted per
message and per campaign; ``GET /l/{code}`` answers a 302 to the stored URL and records the
click (:mod:`smskit.server.dashboard`). The body is shortened *before* its segments are
counted, so the count (and the cost) is that of what is really sent.

Found: ``http://`` and ``https://`` URLs, and ``www.`` host names (sent to ``http://``, which
every site answers, usually by moving to https). Trailing punctuation is not part of a URL
(``.,;:!?`` quotes, ``…``), nor is a closing bracket without its opening one inside the URL.

Only links the *template* holds are shortened: a URL whose scheme and host (everything before
its first ``/``, ``?`` or ``#``) are the template's own text. Its path and query may come from
variables (``https://pagar.exemplo.com.br/f/{{ fatura }}`` is shortened per message), but a URL
that arrives in a variable, or whose host a variable completes, is sent as it is: a field a
customer can edit (a name, an address) must never become a redirect served from the company's
domain. :func:`template_spans` says which parts of a body are template text.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import quote, urlsplit, urlunsplit

import attrs

from smskit.config import Settings
from smskit.errors import ConfigurationError, StoreError
from smskit.models import Message
from smskit.store.analytics import Link, LinkStore
from smskit.store.base import AddOutcome, ClaimedAdd, InsertClaim, Store, add_messages_claimed

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "LinkShortener",
    "add_messages_with_links",
    "find_urls",
    "new_code",
    "shortener_for",
    "store_messages",
    "template_spans",
    "to_uri",
]

#: Characters of a code: base62, so a short link is never percent-encoded.
CODE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Characters of a code: 62**8 (2.2e14) possible codes; a taken one is drawn again.
CODE_LENGTH = 8
#: How a code looks in a request path (anything else is a 404 without asking the store).
CODE_PATTERN = re.compile(r"^[0-9A-Za-z]{4,32}$")

_CLOSERS = {")": "(", "]": "[", "}": "{"}
_TRAILING = ".,;:!?'\"\u2026\u00bb\u201d\u2019*"
# Not glued to a word, an e-mail address or a path; then a scheme or "www."; then anything up
# to a space or a character that cannot be in a URL written in text.
_URL = re.compile(r"(?<![\w@.\/-])(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
_MAX_ATTEMPTS = 5


def _trim(candidate: str) -> str:
    """Drop trailing punctuation, and closing brackets that close nothing inside the URL."""
    while candidate:
        last = candidate[-1]
        unbalanced = last in _CLOSERS and candidate.count(last) > candidate.count(_CLOSERS[last])
        if last not in _TRAILING and not unbalanced:
            break
        candidate = candidate[:-1]
    return candidate


def to_uri(url: str) -> Optional[str]:
    """The ASCII URI a browser is sent to, or ``None`` when ``url`` is not a usable web URL.

    ``www.`` gets ``http://``; an international host name becomes IDNA, other non-ASCII
    characters are percent-encoded (existing escapes are kept).
    """
    bare = url.lower().startswith("www.")
    if bare:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or parts.username is not None:
        return None
    if host.count(".") < (2 if bare else 1) and host != "localhost":
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    netloc = ascii_host if port is None else f"{ascii_host}:{port}"
    safe = "/:@!$&'()*+,;=%~-._"
    return urlunsplit((parts.scheme.lower(), netloc, quote(parts.path, safe=safe),
                       quote(parts.query, safe=safe + "?/"),
                       quote(parts.fragment, safe=safe + "?/")))


def find_urls(body: str) -> List[Tuple[int, int, str]]:
    """Every URL in ``body`` as ``(start, end, text)``, in order (``text == body[start:end]``)."""
    found: List[Tuple[int, int, str]] = []
    for match in _URL.finditer(body):
        text = _trim(match.group(0))
        if to_uri(text) is None:
            continue
        found.append((match.start(), match.start() + len(text), text))
    return found


def template_spans(pieces: Iterable[Tuple[str, bool]]) -> List[Tuple[int, int]]:
    """Where the template's own text lies in a rendered body, as ``(start, end)`` offsets,
    from :meth:`smskit.template.Template.render_pieces`."""
    spans: List[Tuple[int, int]] = []
    position = 0
    for text, literal in pieces:
        end = position + len(text)
        if literal and text:
            if spans and spans[-1][1] == position:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((position, end))
        position = end
    return spans


def _origin_end(text: str) -> int:
    """Where a found URL's scheme and host (and port) end: its first ``/``, ``?`` or ``#``
    after the scheme, or its end."""
    scheme = text.find("://")
    start = scheme + 3 if scheme >= 0 else 0
    ends = [i for i in (text.find(c, start) for c in "/?#") if i >= 0]
    return min(ends) if ends else len(text)


def _in_template(start: int, end: int, spans: Sequence[Tuple[int, int]]) -> bool:
    return any(lo <= start and end <= hi for lo, hi in spans)


def new_code(length: int = CODE_LENGTH) -> str:
    """A random base62 code from the system's secure random source."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def _without_slash(url: object) -> str:
    return str(url).rstrip("/")


@attrs.define
class LinkShortener:
    """Replaces the URLs of bodies with ``{base_url}/l/{code}`` and keeps the new links until
    :func:`add_messages_with_links` stores them (one per
    :class:`~smskit.outbox.compose.Composer`)."""

    base_url: str = attrs.field(converter=_without_slash)
    code_length: int = CODE_LENGTH
    pending: List[Link] = attrs.field(factory=list)

    def short_url(self, code: str) -> str:
        """The short link of ``code``."""
        return f"{self.base_url}/l/{code}"

    def shorten(self, body: str, *, message_id: str, campaign_id: Optional[str],
                now: dt.datetime, template: Optional[Sequence[Tuple[int, int]]] = None
                ) -> Tuple[str, List[Link]]:
        """``body`` with its URLs replaced, and the links that stand for them (not kept yet:
        :meth:`keep` them once the message is accepted). A short link of ours stays as is.

        ``template`` gives where the template's own text lies in ``body``
        (:func:`template_spans`): a URL is replaced only when its scheme and host lie there
        (see the module). ``None``: the whole body is the template's text.
        """
        links: List[Link] = []
        parts: List[str] = []
        position = 0
        own = self.base_url + "/l/"
        for start, end, text in find_urls(body):
            uri = to_uri(text)
            if uri is None or text.startswith(own):
                continue
            if template is not None and not _in_template(start, start + _origin_end(text),
                                                         template):
                continue  # the link, or its host, came in a variable
            code = new_code(self.code_length)
            links.append(Link(code=code, url=uri, message_id=message_id,
                              campaign_id=campaign_id, created_at=now))
            parts.append(body[position:start])
            parts.append(self.short_url(code))
            position = end
        if not links:
            return body, []
        parts.append(body[position:])
        return "".join(parts), links

    def keep(self, links: Iterable[Link]) -> None:
        """Queue links to be stored with their messages."""
        self.pending.extend(links)

    def take(self) -> List[Link]:
        """The queued links, emptying the queue."""
        taken, self.pending = self.pending, []
        return taken


def shortener_for(settings: Settings, track_links: Optional[bool] = None
                  ) -> Optional[LinkShortener]:
    """The shortener a send uses: ``track_links`` if given, else the ``link_tracking`` setting.

    Short links are ``{link_base_url}/l/{code}`` (default base: ``public_url``, the reference
    server's address); tracking without either raises :class:`ConfigurationError`.
    """
    if track_links is None:
        track_links = settings.flag("link_tracking", False)
    if not track_links:
        return None
    base = settings.get("link_base_url") or settings.public_url
    if not base:
        raise ConfigurationError(
            "link tracking needs the server's address: set SMSKIT_PUBLIC_URL (or "
            "SMSKIT_LINK_BASE_URL), e.g. https://sms.example.com")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigurationError(f"link base URL {base!r} must be http(s)://host[/path]")
    return LinkShortener(base)


def add_messages_with_links(store: Store, shortener: Optional[LinkShortener],
                            messages: Iterable[Message]) -> List[AddOutcome]:
    """``store.add_messages`` for messages whose bodies the shortener changed.

    Their links are stored first, in one call (so a message never goes out with a code the
    server does not know); a code another message already has is drawn again and the body
    changed to match (same length: the segment count stays right). Then the messages; the
    links of a message that was not inserted (an idempotency hit) are deleted again.
    """
    return store_messages(store, shortener, messages, None).outcomes


def store_messages(store: Store, shortener: Optional[LinkShortener],
                   messages: Iterable[Message], claim: Optional[InsertClaim]) -> ClaimedAdd:
    """:func:`add_messages_with_links`, opening the batch ``claim`` describes as the messages
    are inserted when the store can (:func:`~smskit.store.base.add_messages_claimed`)."""
    given = list(messages)
    pending = shortener.take() if shortener is not None else []
    if shortener is None or not pending:
        return add_messages_claimed(store, given, claim)
    if not isinstance(store, LinkStore):
        raise ConfigurationError(f"link tracking: the store {store!r} cannot keep short links")
    by_id = {m.id: m for m in given}
    pending = [link for link in pending if link.message_id in by_id]
    for _attempt in range(_MAX_ATTEMPTS):
        taken = set(store.add_links(pending))
        if not taken:
            break
        pending = _redraw(shortener, by_id, [k for k in pending if k.code in taken])
    else:
        raise StoreError(f"link tracking: no free short code after {_MAX_ATTEMPTS} draws")
    added = add_messages_claimed(store, [by_id[m.id] for m in given], claim)
    unused = [m.id for m, outcome in zip(given, added.outcomes) if not outcome.created]
    if unused:
        store.discard_links(unused)
    return added


def _redraw(shortener: LinkShortener, by_id: Dict[str, Message],
            taken: Sequence[Link]) -> List[Link]:
    """New codes for ``taken`` links, written into their messages' bodies."""
    fresh: List[Link] = []
    for link in taken:
        code = new_code(len(link.code))
        message = by_id[link.message_id]
        body = message.body.replace(shortener.short_url(link.code), shortener.short_url(code))
        by_id[link.message_id] = attrs.evolve(message, body=body)
        fresh.append(attrs.evolve(link, code=code))
    return fresh
