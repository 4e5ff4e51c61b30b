"""How many SMS parts a text costs: GSM-7 / UCS-2 detection, part count, cost, transliteration.

An SMS part carries 140 octets. A text made only of GSM 03.38 characters travels in **GSM-7**
(7 bits a character: 160 in one part, 153 a part once it is split, because each part of a long
message spends 6 octets on its header); the extension characters ``^ { } \\ [ ~ ] | €`` and
form feed cost two septets (an escape plus the character) and never straddle two parts. Any
other character switches the whole text to **UCS-2** (16-bit UTF-16 code units: 70 in one
part, 67 a part), where a user-perceived character is never split across two parts unless it is
longer than a part.

The rules are those of Twilio's ``sms-segments-calculator`` 1.3.0 (``encoding='auto'``, smart
encoding off), which ``tests/test_segments.py`` checks on generated text, with one departure
(the last point):

* line breaks are counted as written: ``\\n`` and ``\\r`` are one septet each, so ``\\r\\n``
  costs two; nothing is normalised;
* ``ç`` is not GSM-7 (only ``Ç`` is); ``é è ù ì ò à ä ö ñ ü Ä Ö Ñ Ü Å å Ø ø Æ æ ß É`` are;
* the empty text counts as one (empty) part;
* in UCS-2 a part break never falls inside a grapheme cluster (an emoji with its skin tone, a
  flag, a letter with combining accents), as found by the Unicode 10 rules the calculator uses
  (see :mod:`smskit._graphemes`);
* a cluster longer than a part (more than 67 units: a letter under hundreds of combining marks)
  cannot travel whole, so, as a gateway does under 3GPP TS 23.038, it is cut by code units,
  never inside a surrogate pair; it starts a new part like any cluster that does not fit. The
  calculator counts such a cluster as one part whatever its length, which would let a pasted
  "zalgo" name slip past ``max_segments`` and be billed a fraction of its parts.

:func:`transliterate` replaces characters that force UCS-2 by GSM-7 look-alikes (``ã`` -> ``a``,
curly quotes -> straight, en dash -> ``-``) so that a pt-BR message goes back to 160 characters a
part, and says how many parts that saves.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections import Counter
from decimal import Decimal
from functools import lru_cache
from itertools import accumulate
from typing import AbstractSet, Dict, List, Optional, Sequence, Set, Tuple, Union

import attrs

from smskit._graphemes import cluster_sizes, has_joiners
from smskit.errors import ValidationError

__all__ = [
    "GSM_7",
    "GSM_BASIC",
    "GSM_EXTENSION",
    "UCS_2",
    "SegmentInfo",
    "TransliterationResult",
    "count_segments",
    "transliterate",
]

GSM_7 = "GSM-7"
UCS_2 = "UCS-2"

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""GSM 03.38 default alphabet (one septet each), as Unicode."""
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
"""GSM 03.38 extension table (escape + character: two septets each)."""

_GSM_CLASS = "".join(re.escape(char) for char in sorted(GSM_BASIC | GSM_EXTENSION))
_NON_GSM_RE = re.compile(f"[^{_GSM_CLASS}]")
_EXTENSION_RE = re.compile("[" + "".join(re.escape(char) for char in GSM_EXTENSION) + "]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")

# Part sizes: GSM-7 in septets, UCS-2 in UTF-16 code units (one part / each part of several).
_GSM_SINGLE, _GSM_MULTI = 160, 153
_UCS_SINGLE, _UCS_MULTI = 70, 67


@attrs.frozen
class SegmentInfo:
    """Encoding, part count and sizes of one SMS text (see :func:`count_segments`)."""

    encoding: str
    """``"GSM-7"`` or ``"UCS-2"``."""
    segments: int
    """Number of SMS parts billed (1 for the empty text)."""
    characters: int
    """Number of Unicode code points (what ``len()`` gives, surrogate pairs joined)."""
    code_units: int
    """GSM-7: septets (extension characters count 2). UCS-2: UTF-16 code units."""
    non_gsm_characters: Tuple[str, ...] = ()
    """The distinct characters that forced UCS-2, in order of first appearance."""

    def cost(self, price_per_segment: Union[Decimal, int]) -> Decimal:
        """The price of this text: ``segments`` times ``price_per_segment``.

        ``price_per_segment`` must be a finite, non-negative :class:`~decimal.Decimal` (or an
        ``int``); a ``float`` is refused, since money is never binary floating point.
        """
        given: object = price_per_segment
        if isinstance(given, bool) or not isinstance(given, (Decimal, int)):
            raise ValidationError(f"price_per_segment must be a Decimal, got {given!r}")
        price = Decimal(given)
        if not price.is_finite() or price < 0:
            raise ValidationError(
                f"price_per_segment must be a finite amount >= 0, got {price_per_segment!r}"
            )
        return price * self.segments


def _pack(prefix: Sequence[int], single: int, multi: int) -> int:
    """Parts needed for items whose running sizes are ``prefix`` (``prefix[0] == 0``).

    Items never straddle a part. They fill a first part of ``single`` units; when one does
    not fit, the message becomes multipart: the first part is cut back to ``multi`` units (the
    items it gives up open part two with the one that did not fit, as in Twilio's calculator)
    and every part holds ``multi``. Every item must fit an empty part (``<= multi``): a text
    with a longer grapheme cluster is counted by :func:`_pack_split`.
    """
    total = len(prefix) - 1
    if prefix[total] <= single:
        return 1
    overflow = bisect_right(prefix, single) - 1  # items that fitted the single part
    start = bisect_right(prefix, multi) - 1  # items the first part keeps
    forced = overflow + 1  # the moved items and the one that overflowed open part two
    parts = 2
    while True:
        end = max(forced, bisect_right(prefix, prefix[start] + multi) - 1)
        if end >= total:
            return parts
        parts += 1
        start, forced = end, end + 1


def _pack_split(sizes: Sequence[int], breaks: AbstractSet[int], single: int, multi: int) -> int:
    """Parts needed for items of ``sizes`` where the items at ``breaks`` open a new part.

    :func:`_pack` one item at a time, for the rare text with a grapheme cluster longer than a
    part: its code points are items of their own and the first of them (in ``breaks``) opens
    a new part unless the current one is empty. Without ``breaks`` it answers as ``_pack``.
    """
    if sum(sizes) <= single:
        return 1
    parts, fill, room = 1, 0, single
    first: List[int] = []  # the items of part one, while it may still be cut back
    for index, size in enumerate(sizes):
        if fill + size > room or (fill and index in breaks):
            parts += 1
            if room == single:  # part two: part one makes room for the header
                moved = 0
                while fill > multi:
                    last = first.pop()
                    fill -= last
                    moved += last
                fill, room = moved, multi
            else:
                fill = 0
        fill += size
        if room == single:
            first.append(size)
    return parts


def _split_long_clusters(
    text: str, clusters: Sequence[int], longest: int
) -> Tuple[List[int], AbstractSet[int]]:
    """The items of ``text`` for :func:`_pack_split`, and the index of each cut cluster's first.

    Clusters (``clusters``: their sizes in code units, from ``cluster_sizes``) of up to
    ``longest`` units stay whole; a longer one is cut into its code points, so a surrogate pair
    stays one item of 2 units.
    """
    items: List[int] = []
    breaks: Set[int] = set()
    position = 0
    for size in clusters:
        widths: List[int] = []  # its code points' units
        left = size
        while left > 0:
            widths.append(2 if text[position] > "\uffff" else 1)
            left -= widths[-1]
            position += 1
        if size <= longest:
            items.append(size)
        else:
            breaks.add(len(items))
            items.extend(widths)
    return items, breaks


def _prefix(double: re.Pattern[str], text: str) -> List[int]:
    """Running sizes of the characters of ``text``: 2 where ``double`` matches, else 1."""
    sizes = [1] * len(text)
    for match in double.finditer(text):
        sizes[match.start()] = 2
    return list(accumulate(sizes, initial=0))


def _join_surrogates(text: str) -> str:
    """``text`` with surrogate pairs written as two code points joined into one character."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def count_segments(text: str) -> SegmentInfo:
    """Encoding, number of SMS parts and sizes of ``text``.

    >>> count_segments("Olá, sua fatura vence amanhã").encoding
    'UCS-2'
    >>> count_segments("x" * 161).segments
    2
    """
    if not isinstance(text, str):
        raise ValidationError(f"SMS text must be a str, got {type(text).__name__}: {text!r:.40}")
    if _NON_GSM_RE.search(text) is None:
        length = len(text)
        extensions = len(_EXTENSION_RE.findall(text))
        septets = length + extensions
        if septets <= _GSM_SINGLE:
            parts = 1
        elif not extensions:
            parts = -(-length // _GSM_MULTI)
        else:
            parts = _pack(_prefix(_EXTENSION_RE, text), _GSM_SINGLE, _GSM_MULTI)
        return SegmentInfo(GSM_7, parts, length, septets)

    if _SURROGATE_RE.search(text) is not None:
        text = _join_surrogates(text)
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    non_gsm = tuple(dict.fromkeys(_NON_GSM_RE.findall(text)))
    if units <= _UCS_SINGLE:
        parts = 1
    elif has_joiners(text):
        clusters = cluster_sizes(text)
        # A cluster longer than a part leaves at most units - 68 units to the others, so most
        # texts are cleared by their count of clusters without looking at each size.
        if len(clusters) > units - _UCS_MULTI or max(clusters) <= _UCS_MULTI:
            parts = _pack(list(accumulate(clusters, initial=0)), _UCS_SINGLE, _UCS_MULTI)
        else:  # a cluster longer than a part: cut it by code units (see the module docs)
            items, breaks = _split_long_clusters(text, clusters, _UCS_MULTI)
            parts = _pack_split(items, breaks, _UCS_SINGLE, _UCS_MULTI)
    elif units == len(text):
        parts = -(-units // _UCS_MULTI)
    else:
        parts = _pack(_prefix(_ASTRAL_RE, text), _UCS_SINGLE, _UCS_MULTI)
    return SegmentInfo(UCS_2, parts, len(text), units, non_gsm)


# ---------------------------------------------------------------------------------------------
# Transliteration

# Replacements that Unicode decomposition does not give (or gives badly).
_EXPLICIT: Dict[str, str] = {
    # quotes and apostrophes
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u2035": "'",
    "\u00b4": "'", "`": "'", "\u02b9": "'", "\u02bc": "'", "\u2039": "'", "\u203a": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"',
    "\u00bb": '"',
    # dashes, minus, slashes
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u2044": "/", "\u2215": "/", "\u00f7": "/",
    # spaces and invisible characters
    "\t": " ", "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u3000": " ",
    "\u200b": "", "\u2060": "", "\ufeff": "", "\u00ad": "",
    # punctuation and symbols
    "\u2026": "...", "\u2022": "*", "\u00b7": ".", "\u00d7": "x", "\u02dc": "~", "\u02c6": "^",
    # letters without a decomposition
    "\u0152": "OE", "\u0153": "oe", "\u0110": "D", "\u0111": "d", "\u00d0": "D", "\u00f0": "d",
    "\u0141": "L", "\u0142": "l", "\u0131": "i", "\u00de": "TH", "\u00fe": "th",
}

# Combining diacritical marks (the blocks Latin text uses) that attach to the character before.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# A unit of replacement: a non-GSM character with its marks, or a GSM letter with marks.
_UNIT_RE = re.compile(f"[^{_GSM_CLASS}][{_MARKS}]*|[{_GSM_CLASS}][{_MARKS}]+")


@attrs.frozen
class TransliterationResult:
    """The GSM-7 version of a text and what it changed (see :func:`transliterate`)."""

    text: str
    """The text with GSM-7 look-alikes; characters with no look-alike are left as they were."""
    changes: Tuple[Tuple[str, str, int], ...]
    """``(original, replacement, count)`` for each replaced character, in order of appearance."""
    segments_before: int
    """Parts the original text needs."""
    segments_after: int
    """Parts :attr:`text` needs."""

    @property
    def saved(self) -> int:
        """Parts saved by sending :attr:`text` instead (negative if it costs more)."""
        return self.segments_before - self.segments_after


def _is_gsm(text: str) -> bool:
    """Whether every character of ``text`` is in the GSM-7 alphabet (basic or extension)."""
    return _NON_GSM_RE.search(text) is None


@lru_cache(maxsize=4096)
def _replacement(unit: str) -> Optional[str]:
    """The GSM-7 look-alike of one unit (a character and its combining marks), or ``None``."""
    explicit = _EXPLICIT.get(unit)
    if explicit is not None:
        return explicit
    composed = unicodedata.normalize("NFC", unit)
    if _is_gsm(composed):  # "e" + U+0301 is "é", which GSM-7 has
        return composed
    decomposed = unicodedata.normalize("NFKD", composed)
    bare = "".join(_EXPLICIT.get(c, c) for c in decomposed if unicodedata.category(c)[0] != "M")
    if not bare or not _is_gsm(bare):
        return None
    if bare.isspace() and not composed.isspace():
        return None  # spacing accents (diaeresis, cedilla) decompose to a space: not a look-alike
    return bare


def transliterate(text: str) -> TransliterationResult:
    """Replace the characters that force UCS-2 by GSM-7 look-alikes.

    Accents GSM-7 lacks are dropped (``ã`` -> ``a``, ``ç`` -> ``c``, ``Ó`` -> ``O``) while the
    accented letters GSM-7 has are kept (``é``, ``à``, ``ü``, ``Ç``); typographic punctuation
    becomes plain (curly quotes -> straight, en/em dashes -> ``-``, ``…`` -> ``...``, no-break
    space -> space) and invisible characters (zero-width space, soft hyphen) are removed.
    Characters with no sensible look-alike (emoji, other scripts) are **left unchanged**, so the
    result may still be UCS-2; compare :attr:`~TransliterationResult.saved` before using it.

    >>> transliterate("Olá, sua fatura vence amanhã").text
    'Ola, sua fatura vence amanha'
    """
    before = count_segments(text)
    if before.encoding == GSM_7:
        return TransliterationResult(text, (), before.segments, before.segments)
    counts = Counter(_UNIT_RE.findall(text))
    mapping: Dict[str, str] = {}
    changes: List[Tuple[str, str, int]] = []
    for unit, count in counts.items():
        replacement = _replacement(unit)
        if replacement is not None:
            mapping[unit] = replacement
            changes.append((unit, replacement, count))
    if not mapping:
        return TransliterationResult(text, (), before.segments, before.segments)
    if all(len(unit) == 1 for unit in counts):
        result = text.translate({ord(unit): value for unit, value in mapping.items()})
    else:
        result = _UNIT_RE.sub(lambda match: mapping.get(match.group(), match.group()), text)
    after = count_segments(result)
    return TransliterationResult(result, tuple(changes), before.segments, after.segments)
