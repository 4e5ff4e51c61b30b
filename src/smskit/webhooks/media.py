"""The body formats a webhook may use, and the one place each is decoded.

A provider declares the media types its callbacks use (``webhook_media_types``, default
:data:`DEFAULT_MEDIA_TYPES`: JSON only); the gate refuses any other ``Content-Type`` with 415
and decodes the body exactly once, here, before the provider sees it:

* ``application/json`` (and any ``application/...+json``): the JSON value. Text that is not
  Unicode (a lone surrogate escape such as ``"\\ud800"``) is malformed: it decodes, but no
  store could ever write it;
* ``application/x-www-form-urlencoded``: the fields as a tuple of ``(name, value)`` pairs in
  the order sent (a repeated field appears once per value), UTF-8 only.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import parse_qsl

__all__ = [
    "DEFAULT_MEDIA_TYPES",
    "FORM",
    "JSON",
    "MEDIA_TYPES",
    "decode",
    "essence",
    "expectation",
    "malformed",
    "match",
    "parse_form",
    "parse_json",
]

#: JSON bodies (``application/...+json`` types count as JSON).
JSON = "application/json"
#: HTML form bodies, as Twilio and most SMS gateways outside Brazil post them.
FORM = "application/x-www-form-urlencoded"
#: What a provider that declares nothing accepts.
DEFAULT_MEDIA_TYPES: Tuple[str, ...] = (JSON,)


def parse_json(body: bytes) -> Any:
    """The JSON of a webhook body, or ``ValueError`` for malformed JSON, including text that is
    not Unicode (a lone surrogate escape such as ``"\\ud800"`` decodes, but could never be
    stored: it must be a 400, not a failed write)."""
    data = json.loads(body)
    # Only escapes, or raw bytes json.loads decodes with "surrogatepass" (UTF-8 bytes ED A0..BF,
    # or a UTF-16/32 body, which holds NUL bytes), can smuggle a lone surrogate in.
    if b"\\ud" in body or b"\\uD" in body or b"\xed" in body or b"\x00" in body:
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


class _Format(NamedTuple):
    decode: Callable[[bytes], Any]
    malformed: str  # the ``error`` of the 400 a body that does not decode gets
    described: str  # how the 415 names it


#: Every media type the gate can decode.
_FORMATS: Dict[str, _Format] = {
    JSON: _Format(parse_json, "malformed JSON", "JSON (application/json)"),
    FORM: _Format(parse_form, "malformed form", f"a form ({FORM})"),
}
MEDIA_TYPES: Tuple[str, ...] = tuple(_FORMATS)


def essence(content_type: str) -> str:
    """``type/subtype`` of a ``Content-Type`` value, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def match(accepted: Sequence[str], content_type: str) -> Optional[str]:
    """The declared media type a ``Content-Type`` falls under, or ``None``."""
    media = essence(content_type)
    if media in accepted:
        return media
    if JSON in accepted and media.startswith("application/") and media.endswith("+json"):
        return JSON
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
