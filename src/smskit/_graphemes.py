"""Grapheme clusters as Twilio's segment calculator sees them (private to :mod:`smskit.segments`).

Twilio's ``sms-segments-calculator`` never splits a user-perceived character (an extended grapheme
cluster) across two SMS parts. It finds clusters with the UAX #29 rules of **Unicode 10.0.0**
(``GraphemeBreakProperty.txt`` 10.0.0 plus the emoji-data 5.0 classes ``E_Base``,
``E_Modifier``, ``Glue_After_Zwj`` and ``E_Base_GAZ``), and its rule engine differs from the
standard in three observable ways, which :func:`cluster_sizes` reproduces on purpose so that
our part counts agree with Twilio's on any text (but one with a cluster longer than a part,
which :mod:`smskit.segments` cuts):

* ``E_Base Extend Extend E_Modifier`` breaks before the modifier (the standard joins any number
  of ``Extend``), and ``E_Base``/``EBG`` followed by an ``E_Modifier`` does not join when an
  ``Extend`` occurs anywhere earlier in the same cluster;
* a cluster whose second character is a regional indicator (``RI RI`` or ``Prepend RI``) ends
  after one more ``Extend``/``ZWJ``/``SpacingMark``;
* ``Prepend RI`` does not join a following ``RI``.

The calculator also treats ``CR LF`` as two characters, so :func:`cluster_sizes` never joins
them. The property table below is Unicode Character Database data (Unicode license), pinned to
10.0.0 rather than the ``unicodedata`` of the running Python because the calculator pins it;
``tests/test_segments.py`` checks it, class boundary by class boundary, against the calculator.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from functools import lru_cache
from typing import Dict, List, NamedTuple, Tuple

__all__ = ["cluster_sizes", "has_joiners"]

# Grapheme_Cluster_Break values (small ints; OTHER is 0 so a zeroed table means "Other").
OTHER = 0
CONTROL = 1
EXTEND = 2
SPACING_MARK = 3
PREPEND = 4
RI = 5
L = 6
V = 7
T = 8
LV = 9
LVT = 10
ZWJ = 11
E_BASE = 12
E_MODIFIER = 13
GAZ = 14
EBG = 15
CR = 16
LF = 17

# Unicode 10.0.0 code point ranges (hex, inclusive) of every class except Other, CR, LF and the
# precomposed Hangul syllables LV/LVT (U+AC00..U+D7A3, computed from the syllable index).
_RANGES: Dict[str, str] = {
    "Control": (
        "0-9 B-C E-1F 7F-9F AD 61C 180E 200B 200E-200F 2028-202E 2060-206F D800-DFFF FEFF "
        "FFF0-FFFB 1BCA0-1BCA3 1D173-1D17A E0000-E001F E0080-E00FF E01F0-E0FFF "
    ),
    "Extend": (
        "300-36F 483-489 591-5BD 5BF 5C1-5C2 5C4-5C5 5C7 610-61A 64B-65F 670 6D6-6DC 6DF-6E4 "
        "6E7-6E8 6EA-6ED 711 730-74A 7A6-7B0 7EB-7F3 816-819 81B-823 825-827 829-82D 859-85B "
        "8D4-8E1 8E3-902 93A 93C 941-948 94D 951-957 962-963 981 9BC 9BE 9C1-9C4 9CD 9D7 9E2-9E3 "
        "A01-A02 A3C A41-A42 A47-A48 A4B-A4D A51 A70-A71 A75 A81-A82 ABC AC1-AC5 AC7-AC8 ACD "
        "AE2-AE3 AFA-AFF B01 B3C B3E-B3F B41-B44 B4D B56-B57 B62-B63 B82 BBE BC0 BCD BD7 C00 "
        "C3E-C40 C46-C48 C4A-C4D C55-C56 C62-C63 C81 CBC CBF CC2 CC6 CCC-CCD CD5-CD6 CE2-CE3 "
        "D00-D01 D3B-D3C D3E D41-D44 D4D D57 D62-D63 DCA DCF DD2-DD4 DD6 DDF E31 E34-E3A E47-E4E "
        "EB1 EB4-EB9 EBB-EBC EC8-ECD F18-F19 F35 F37 F39 F71-F7E F80-F84 F86-F87 F8D-F97 F99-FBC "
        "FC6 102D-1030 1032-1037 1039-103A 103D-103E 1058-1059 105E-1060 1071-1074 1082 1085-1086 "
        "108D 109D 135D-135F 1712-1714 1732-1734 1752-1753 1772-1773 17B4-17B5 17B7-17BD 17C6 "
        "17C9-17D3 17DD 180B-180D 1885-1886 18A9 1920-1922 1927-1928 1932 1939-193B 1A17-1A18 "
        "1A1B 1A56 1A58-1A5E 1A60 1A62 1A65-1A6C 1A73-1A7C 1A7F 1AB0-1ABE 1B00-1B03 1B34 "
        "1B36-1B3A 1B3C 1B42 1B6B-1B73 1B80-1B81 1BA2-1BA5 1BA8-1BA9 1BAB-1BAD 1BE6 1BE8-1BE9 "
        "1BED 1BEF-1BF1 1C2C-1C33 1C36-1C37 1CD0-1CD2 1CD4-1CE0 1CE2-1CE8 1CED 1CF4 1CF8-1CF9 "
        "1DC0-1DF9 1DFB-1DFF 200C 20D0-20F0 2CEF-2CF1 2D7F 2DE0-2DFF 302A-302F 3099-309A "
        "A66F-A672 A674-A67D A69E-A69F A6F0-A6F1 A802 A806 A80B A825-A826 A8C4-A8C5 A8E0-A8F1 "
        "A926-A92D A947-A951 A980-A982 A9B3 A9B6-A9B9 A9BC A9E5 AA29-AA2E AA31-AA32 AA35-AA36 "
        "AA43 AA4C AA7C AAB0 AAB2-AAB4 AAB7-AAB8 AABE-AABF AAC1 AAEC-AAED AAF6 ABE5 ABE8 ABED "
        "FB1E FE00-FE0F FE20-FE2F FF9E-FF9F 101FD 102E0 10376-1037A 10A01-10A03 10A05-10A06 "
        "10A0C-10A0F 10A38-10A3A 10A3F 10AE5-10AE6 11001 11038-11046 1107F-11081 110B3-110B6 "
        "110B9-110BA 11100-11102 11127-1112B 1112D-11134 11173 11180-11181 111B6-111BE "
        "111CA-111CC 1122F-11231 11234 11236-11237 1123E 112DF 112E3-112EA 11300-11301 1133C "
        "1133E 11340 11357 11366-1136C 11370-11374 11438-1143F 11442-11444 11446 114B0 "
        "114B3-114B8 114BA 114BD 114BF-114C0 114C2-114C3 115AF 115B2-115B5 115BC-115BD "
        "115BF-115C0 115DC-115DD 11633-1163A 1163D 1163F-11640 116AB 116AD 116B0-116B5 116B7 "
        "1171D-1171F 11722-11725 11727-1172B 11A01-11A06 11A09-11A0A 11A33-11A38 11A3B-11A3E "
        "11A47 11A51-11A56 11A59-11A5B 11A8A-11A96 11A98-11A99 11C30-11C36 11C38-11C3D 11C3F "
        "11C92-11CA7 11CAA-11CB0 11CB2-11CB3 11CB5-11CB6 11D31-11D36 11D3A 11D3C-11D3D "
        "11D3F-11D45 11D47 16AF0-16AF4 16B30-16B36 16F8F-16F92 1BC9D-1BC9E 1D165 1D167-1D169 "
        "1D16E-1D172 1D17B-1D182 1D185-1D18B 1D1AA-1D1AD 1D242-1D244 1DA00-1DA36 1DA3B-1DA6C "
        "1DA75 1DA84 1DA9B-1DA9F 1DAA1-1DAAF 1E000-1E006 1E008-1E018 1E01B-1E021 1E023-1E024 "
        "1E026-1E02A 1E8D0-1E8D6 1E944-1E94A E0020-E007F E0100-E01EF "
    ),
    "SpacingMark": (
        "903 93B 93E-940 949-94C 94E-94F 982-983 9BF-9C0 9C7-9C8 9CB-9CC A03 A3E-A40 A83 ABE-AC0 "
        "AC9 ACB-ACC B02-B03 B40 B47-B48 B4B-B4C BBF BC1-BC2 BC6-BC8 BCA-BCC C01-C03 C41-C44 "
        "C82-C83 CBE CC0-CC1 CC3-CC4 CC7-CC8 CCA-CCB D02-D03 D3F-D40 D46-D48 D4A-D4C D82-D83 "
        "DD0-DD1 DD8-DDE DF2-DF3 E33 EB3 F3E-F3F F7F 1031 103B-103C 1056-1057 1084 17B6 17BE-17C5 "
        "17C7-17C8 1923-1926 1929-192B 1930-1931 1933-1938 1A19-1A1A 1A55 1A57 1A6D-1A72 1B04 "
        "1B35 1B3B 1B3D-1B41 1B43-1B44 1B82 1BA1 1BA6-1BA7 1BAA 1BE7 1BEA-1BEC 1BEE 1BF2-1BF3 "
        "1C24-1C2B 1C34-1C35 1CE1 1CF2-1CF3 1CF7 A823-A824 A827 A880-A881 A8B4-A8C3 A952-A953 "
        "A983 A9B4-A9B5 A9BA-A9BB A9BD-A9C0 AA2F-AA30 AA33-AA34 AA4D AAEB AAEE-AAEF AAF5 "
        "ABE3-ABE4 ABE6-ABE7 ABE9-ABEA ABEC 11000 11002 11082 110B0-110B2 110B7-110B8 1112C 11182 "
        "111B3-111B5 111BF-111C0 1122C-1122E 11232-11233 11235 112E0-112E2 11302-11303 1133F "
        "11341-11344 11347-11348 1134B-1134D 11362-11363 11435-11437 11440-11441 11445 "
        "114B1-114B2 114B9 114BB-114BC 114BE 114C1 115B0-115B1 115B8-115BB 115BE 11630-11632 "
        "1163B-1163C 1163E 116AC 116AE-116AF 116B6 11720-11721 11726 11A07-11A08 11A39 "
        "11A57-11A58 11A97 11C2F 11C3E 11CA9 11CB1 11CB4 16F51-16F7E 1D166 1D16D "
    ),
    "Prepend": (
        "600-605 6DD 70F 8E2 D4E 110BD 111C2-111C3 11A3A 11A86-11A89 11D46 "
    ),
    "Regional_Indicator": (
        "1F1E6-1F1FF "
    ),
    "L": (
        "1100-115F A960-A97C "
    ),
    "V": (
        "1160-11A7 D7B0-D7C6 "
    ),
    "T": (
        "11A8-11FF D7CB-D7FB "
    ),
    "ZWJ": (
        "200D "
    ),
    "E_Base": (
        "261D 26F9 270A-270D 1F385 1F3C2-1F3C4 1F3C7 1F3CA-1F3CC 1F442-1F443 1F446-1F450 1F46E "
        "1F470-1F478 1F47C 1F481-1F483 1F485-1F487 1F4AA 1F574-1F575 1F57A 1F590 1F595-1F596 "
        "1F645-1F647 1F64B-1F64F 1F6A3 1F6B4-1F6B6 1F6C0 1F6CC 1F918-1F91C 1F91E-1F91F 1F926 "
        "1F930-1F939 1F93D-1F93E 1F9D1-1F9DD "
    ),
    "E_Modifier": (
        "1F3FB-1F3FF "
    ),
    "Glue_After_Zwj": (
        "2640 2642 2695-2696 2708 2764 1F308 1F33E 1F373 1F393 1F3A4 1F3A8 1F3EB 1F3ED 1F48B "
        "1F4BB-1F4BC 1F527 1F52C 1F5E8 1F680 1F692 "
    ),
    "E_Base_GAZ": (
        "1F466-1F469 "
    ),

}

_NAMES: Dict[str, int] = {
    "Control": CONTROL,
    "Extend": EXTEND,
    "SpacingMark": SPACING_MARK,
    "Prepend": PREPEND,
    "Regional_Indicator": RI,
    "L": L,
    "V": V,
    "T": T,
    "ZWJ": ZWJ,
    "E_Base": E_BASE,
    "E_Modifier": E_MODIFIER,
    "Glue_After_Zwj": GAZ,
    "E_Base_GAZ": EBG,
}

# Classes that can make a cluster longer than one code point. A text without any of them is cut
# into single code points (LV/LVT only join a following V/T, GAZ/EBG only a preceding ZWJ).
_JOINING = frozenset({EXTEND, SPACING_MARK, PREPEND, RI, L, V, T, ZWJ, E_MODIFIER})


def _parse() -> List[Tuple[int, int, int]]:
    """All (first, last, class) ranges, sorted, Hangul syllables included."""
    ranges = [(0x0A, 0x0A, LF), (0x0D, 0x0D, CR)]
    for name, spec in _RANGES.items():
        for item in spec.split():
            first, _, last = item.partition("-")
            ranges.append((int(first, 16), int(last or first, 16), _NAMES[name]))
    for syllable in range(0xAC00, 0xD7A4, 28):
        ranges.append((syllable, syllable, LV))
        if syllable + 1 <= 0xD7A3:
            ranges.append((syllable + 1, min(syllable + 27, 0xD7A3), LVT))
    ranges.sort()
    return ranges


class _Tables(NamedTuple):
    """Lookup structures built once, on first use."""

    bmp: bytes  # class of every BMP code point
    astral_starts: List[int]
    astral_ends: List[int]
    astral_classes: List[int]
    # Any BMP character of a class in _JOINING, or any character above U+FFFF (regular
    # expressions test a class of BMP characters with a bitmap, but ranges beyond it one by one).
    suspect: re.Pattern[str]
    # A stretch whose clusters need the rules: a suspect character with its neighbours, chained
    # while suspects follow. Between two characters that are not suspect there is always a break.
    span: re.Pattern[str]


@lru_cache(maxsize=None)
def _tables() -> _Tables:
    """Build the lookup structures (a few milliseconds, so not at import time)."""
    bmp = bytearray(0x10000)
    starts: List[int] = []
    ends: List[int] = []
    classes: List[int] = []
    joining: List[str] = []
    for first, last, cls in _parse():
        if first < 0x10000:
            bmp[first : last + 1] = bytes((cls,)) * (last - first + 1)
            if cls in _JOINING:
                joining.append(f"\\u{first:04x}-\\u{last:04x}")
        else:
            starts.append(first)
            ends.append(last)
            classes.append(cls)
    suspect = "[" + "".join(joining) + "\\U00010000-\\U0010ffff]"
    return _Tables(
        bytes(bmp),
        starts,
        ends,
        classes,
        re.compile(suspect),
        re.compile(f".?(?:{suspect}+.?)+", re.DOTALL),
    )


def _astral_property(tables: _Tables, code: int) -> int:
    """The Unicode 10.0.0 Grapheme_Cluster_Break class of a code point above U+FFFF."""
    index = bisect_right(tables.astral_starts, code) - 1
    if index >= 0 and code <= tables.astral_ends[index]:
        return tables.astral_classes[index]
    return OTHER


def has_joiners(text: str) -> bool:
    """Whether some cluster of ``text`` may hold more than one code point."""
    tables = _tables()
    for match in tables.suspect.finditer(text):
        char = match.group()
        if char <= "\uffff" or _astral_property(tables, ord(char)) in _JOINING:
            return True
    return False


def _joins(first: int, second: int, prev: int, before_prev: int, length: int,
           seen_extend: bool, nxt: int) -> bool:
    """Whether a character of class ``nxt`` continues the current cluster.

    The cluster is described by the classes of its first, second, last and second-to-last
    characters, its ``length`` in code points and whether it holds an ``Extend`` anywhere.
    """
    if length >= 3 and second == RI:
        return False  # the calculator ends "RI RI x" / "Prepend RI x" clusters right away
    if prev in (CONTROL, CR, LF) or nxt in (CONTROL, CR, LF):
        return False  # CR LF included: the calculator counts them as two characters
    if prev == L and nxt in (L, V, LV, LVT):
        return True
    if prev in (LV, V) and nxt in (V, T):
        return True
    if prev in (LVT, T) and nxt == T:
        return True
    if nxt in (EXTEND, ZWJ, SPACING_MARK) or prev == PREPEND:
        return True
    if nxt == E_MODIFIER:
        if seen_extend:  # only a single Extend right after the base is looked through
            return prev == EXTEND and length >= 2 and before_prev in (E_BASE, EBG)
        return prev in (E_BASE, EBG)
    if prev == ZWJ and nxt in (GAZ, EBG):
        return True
    return prev == RI and nxt == RI and length == 1


def cluster_sizes(text: str) -> List[int]:
    """The size in UTF-16 code units of each grapheme cluster of ``text``, in order.

    ``text`` must not hold surrogate pairs as two code points (join them first); a lone
    surrogate is a one-unit control character.
    """
    tables = _tables()
    sizes: List[int] = []
    done = 0
    for match in tables.span.finditer(text):
        sizes.extend([1] * (match.start() - done))  # plain BMP characters, one cluster each
        _span_sizes(tables, match.group(), sizes)
        done = match.end()
    sizes.extend([1] * (len(text) - done))
    return sizes


def _span_sizes(tables: _Tables, span: str, sizes: List[int]) -> None:
    """Append the cluster sizes of ``span``, which starts and ends on a cluster boundary."""
    bmp = tables.bmp
    size = length = 0
    first = second = prev = before_prev = OTHER
    seen_extend = False
    for char in span:
        code = ord(char)
        if code < 0x10000:
            cls = bmp[code]
            width = 1
        else:
            cls = _astral_property(tables, code)
            width = 2
        if length and _joins(first, second, prev, before_prev, length, seen_extend, cls):
            if length == 1:
                second = cls
            length += 1
            size += width
            before_prev = prev
            seen_extend = seen_extend or cls == EXTEND
        else:
            if length:
                sizes.append(size)
            first = cls
            second = before_prev = OTHER
            length = 1
            size = width
            seen_extend = cls == EXTEND
        prev = cls
    if length:
        sizes.append(size)
