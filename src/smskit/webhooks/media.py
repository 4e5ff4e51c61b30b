"""The body formats a webhook may use, and the one place each is decoded.

A provider declares the media types its callbacks use (``webhook_media_types``, default
:data:`DEFAULT_MEDIA_TYPES`: JSON only); the gate refuses any other ``Content-Type`` with 415
and decodes the body exactly once, here, before the provider sees it (:func:`match` says which
media type a ``Content-Type`` falls under; a request without one is read as the provider's first
media type):

* ``application/json`` (and any ``application/...+json``): the JSON value. Text that is not
  Unicode (a lone surrogate escape such as ``"\\ud800"``) is malformed: it decodes, but no
  store could ever write it. So are ``NaN`` and ``Infinity`` (Python reads them, JSON has no
  such values) and a value nested deeper than :data:`MAX_DEPTH` (no gateway sends one; at
  about a thousand levels the decoder itself runs out of stack);
* ``application/x-www-form-urlencoded``: the fields as a tuple of ``(name, value)`` pairs in
  the order sent (a repeated field appears once per value), UTF-8 only;
* :data:`ANY` (``*/*``), for a gateway whose callbacks' media type is not known: whatever the
  ``Content-Type`` says (or without one), the body decides. JSON when it parses as JSON
  (:func:`parse_json`'s rules), else a form read the way PHP reads one
  (:func:`parse_nested_form`: ``messages[0][status_code]=3`` is
  ``{"messages": [{"status_code": "3"}]}``); a body that is neither (or one that opens like
  JSON but is malformed) does not decode. A provider declaring it gets no 415.

The NUL rule: the gate replaces every U+0000 in the decoded text (names included) with U+FFFD,
the replacement character (:func:`without_nul`), after the provider's own check of the request
(a signature covers the text as sent) and before its parser. PostgreSQL cannot store U+0000 in
text at all, and some gateways write GSM-7's ``@`` (septet 0x00) as that character: kept, a
reply carrying it would fail every write and be retried forever. Replacing it there means the
provider's parser, the hooks, the ChatRoom and every store see the same text; the stores apply
the same rule to whatever reaches them by another path.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import parse_qsl

__all__ = [
    "ANY",
    "DEFAULT_MEDIA_TYPES",
    "FORM",
    "JSON",
    "MAX_DEPTH",
    "MEDIA_TYPES",
    "NUL",
    "REPLACEMENT",
    "decode",
    "essence",
    "expectation",
    "malformed",
    "match",
    "may_hold_nul",
    "parse_any",
    "parse_form",
    "parse_json",
    "parse_nested_form",
    "without_nul",
]

#: JSON bodies (``application/...+json`` types count as JSON).
JSON = "application/json"
#: HTML form bodies, as Twilio and most SMS gateways outside Brazil post them.
FORM = "application/x-www-form-urlencoded"
#: Any ``Content-Type``: the body decides (JSON, else a form with PHP's nested names).
ANY = "*/*"
#: What a provider that declares nothing accepts.
DEFAULT_MEDIA_TYPES: Tuple[str, ...] = (JSON,)


#: The deepest nesting of arrays and objects a JSON body may have (Kolmeya's go 4 deep).
MAX_DEPTH = 32
#: The character PostgreSQL cannot store in text, and what it becomes.
NUL = "\x00"
REPLACEMENT = "\ufffd"


def without_nul(value: Any) -> Any:
    """``value`` (a decoded JSON value or form pairs) with U+0000 replaced by U+FFFD in every
    text, names included; ``value`` itself when it holds none."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, tuple):
        return tuple(without_nul(item) for item in value)
    return value


def may_hold_nul(body: bytes) -> bool:
    """Whether a body's decoded text may hold U+0000 (JSON's ``\\u0000`` escape, a form's
    ``%00``, or a NUL byte, which a UTF-16 or UTF-32 body always has): a cheap test, so that
    :func:`without_nul` walks only the bodies that need it."""
    return b"\\u0000" in body or b"%00" in body or b"\x00" in body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


#: The JSON decoder of webhook bodies, built once (``json.loads`` with an option builds one a
#: call).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests arrays and objects (walked without recursion)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else None)
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json(body: bytes) -> Any:
    """The JSON of a webhook body, or ``ValueError`` for malformed JSON: text that is not
    Unicode (a lone surrogate escape such as ``"\\ud800"`` decodes, but could never be stored:
    it must be a 400, not a failed write), ``NaN``/``Infinity``, or nesting deeper than
    :data:`MAX_DEPTH`. The body is decoded strictly (UTF-8, or the UTF-16/32 JSON allows), so
    surrogates encoded as raw bytes are malformed too."""
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:  # raw surrogates or broken bytes: say so plainly
        raise ValueError(f"the body is not valid Unicode text: {exc}") from exc
    try:
        data = _DECODER.decode(text)
    except RecursionError as exc:  # the C decoder gives up near a thousand levels
        raise ValueError(f"the body nests arrays or objects deeper than {MAX_DEPTH} "
                         "levels") from exc
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(data) > MAX_DEPTH:
        raise ValueError(f"the body nests arrays or objects deeper than {MAX_DEPTH} levels")
    if "\\ud" in text or "\\uD" in text:  # only escapes can smuggle a lone surrogate in
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"the body holds text that is not valid Unicode: {exc.reason} "
                             f"(a lone surrogate escape)") from exc
    return data


def parse_form(body: bytes) -> Tuple[Tuple[str, str], ...]:
    """The fields of a form body as ``(name, value)`` pairs in order, or ``ValueError`` when it
    is not a well-formed UTF-8 form."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if not text:
        return ()
    return tuple(parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                           encoding="utf-8", errors="strict"))


#: A PHP form field name: a base, then ``[key]`` parts (``[]`` appends).
_NESTED_NAME = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_NESTED_KEY = re.compile(r"\[([^\[\]]*)\]")
#: An array index as PHP reads one from a key (``"01"`` stays a text key).
_INDEX = re.compile(r"0|[1-9][0-9]*")


def _next_index(node: Dict[str, Any]) -> str:
    """The key ``[]`` appends under in ``node``: one past its largest index (PHP's rule)."""
    indexes = [int(key) for key in node if _INDEX.fullmatch(key)]
    return str(max(indexes) + 1) if indexes else "0"


def _as_lists(value: Any) -> Any:
    """``value`` with every object whose keys are ``0, 1, 2...`` in order turned into a list,
    as PHP's ``json_encode`` writes such an array (the depth is bounded by the caller)."""
    if not isinstance(value, dict):
        return value
    items = {key: _as_lists(child) for key, child in value.items()}
    if list(items) == [str(i) for i in range(len(items))]:
        return list(items.values())
    return items


def parse_nested_form(body: bytes) -> Dict[str, Any]:
    """The fields of a form body nested the way PHP (and so Laravel) reads them:
    ``a[b][0]=x`` is ``{"a": {"b": ["x"]}}`` and ``a[]=x`` appends; an object whose keys are
    ``0, 1, 2...`` in order becomes a list (what ``json_encode`` makes of such an array); a
    later field wins over an earlier one of the same name; values stay texts. A name that is
    not ``base[key]...`` is a plain key. ``ValueError`` when the body is not a well-formed
    UTF-8 form, or a name nests deeper than :data:`MAX_DEPTH`."""
    root: Dict[str, Any] = {}
    for name, value in parse_form(body):
        shape = _NESTED_NAME.fullmatch(name)
        keys = [shape.group(1), *_NESTED_KEY.findall(shape.group(2))] if shape else [name]
        if len(keys) > MAX_DEPTH:
            raise ValueError(f"the form field {name[:40]!r} nests deeper than {MAX_DEPTH} "
                             "levels")
        node = root
        for key in keys[:-1]:
            key = key or _next_index(node)
            child = node.get(key)
            if not isinstance(child, dict):  # a later field wins, as in PHP
                child = node[key] = {}
            node = child
        node[keys[-1] or _next_index(node)] = value
    return {key: _as_lists(value) for key, value in root.items()}


def parse_any(body: bytes) -> Any:
    """A body whatever its ``Content-Type`` said (:data:`ANY`): its JSON value when it is JSON
    (:func:`parse_json`), else its fields as PHP reads a form (:func:`parse_nested_form`).
    ``ValueError`` when it is neither; a body that opens like JSON (``{`` or ``[``) is never
    read as a form, so malformed JSON is reported as such."""
    try:
        return parse_json(body)
    except ValueError as exc:
        if body.lstrip()[:1] in (b"{", b"["):
            raise
        not_json = exc
    try:
        return parse_nested_form(body)
    except ValueError as exc:
        raise ValueError(f"the body is neither JSON ({not_json}) nor a form ({exc})") from exc


class _Format(NamedTuple):
    decode: Callable[[bytes], Any]
    malformed: str  # the ``error`` of the 400 a body that does not decode gets
    described: str  # how the 415 names it


#: Every media type the gate can decode.
_FORMATS: Dict[str, _Format] = {
    JSON: _Format(parse_json, "malformed JSON", "JSON (application/json)"),
    FORM: _Format(parse_form, "malformed form", f"a form ({FORM})"),
    ANY: _Format(parse_any, "malformed body", "JSON or a form (any Content-Type)"),
}
MEDIA_TYPES: Tuple[str, ...] = tuple(_FORMATS)


def essence(content_type: str) -> str:
    """``type/subtype`` of a ``Content-Type`` value, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def match(accepted: Sequence[str], content_type: str) -> Optional[str]:
    """The declared media type a ``Content-Type`` falls under, or ``None`` (a 415): the type
    itself; JSON for ``application/...+json``; :data:`ANY` for any other type when the
    provider declares it; and, for a request without a ``Content-Type`` (``""``), the
    provider's first media type. The gate and :func:`smskit.webhooks.gate.read_payload` both
    ask here, so they read a body alike."""
    media = essence(content_type)
    if media in accepted:
        return media
    if JSON in accepted and media.startswith("application/") and media.endswith("+json"):
        return JSON
    if ANY in accepted:
        return ANY
    if not media and accepted:
        return accepted[0]
    return None


def expectation(accepted: Sequence[str]) -> str:
    """The 415 detail: what the body must be."""
    return "the body must be " + " or ".join(_FORMATS[m].described for m in accepted)


def decode(media_type: str, body: bytes) -> Any:
    """Decode ``body`` as ``media_type`` (one of :data:`MEDIA_TYPES`); ``ValueError`` if
    malformed."""
    return _FORMATS[media_type].decode(body)


def malformed(media_type: str) -> str:
    """The ``error`` of the 400 answered for a body that does not decode as ``media_type``."""
    return _FORMATS[media_type].malformed
