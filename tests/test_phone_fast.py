"""The Brazilian fast path of :mod:`smskit.phone` answers exactly what phonenumbers would.

``_fast_br_mobile`` skips ``phonenumbers.parse`` for the common mobile forms; every input it
takes must give the same :class:`Phone` as the full path, and every input it leaves must reach
the full path (same result, same error message).
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any, Iterable, List, Union

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberDesc, PhoneNumberType
from phonenumbers.phonenumberutil import _number_type_helper

from smskit import phone
from smskit.errors import InvalidPhoneError
from smskit.phone import (
    _FAST_NSN,
    Phone,
    _br_mobile,
    _br_mobile_pattern,
    _fast_br_mobile,
    _is_br_mobile,
    _parse_cached,
    _parse_full,
)

_SEPARATOR = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", "  ", "+", "\u00a0", "x",
                              "\u200e", "\u202a", "\u202c", "\u2066", "\ufeff"])
_PREFIX = st.sampled_from(["", "+55", "55", "+55 ", "+ 55", "(+55)", " +55", "0", "055", "+",
                           "+1", "5", "90", "0055", "+555", "(55)"])


@st.composite
def phone_like(draw: st.DrawFn) -> str:
    """A number as people might write it: prefix, DDD, mostly a 9, 8 digits, separators."""
    parts = [draw(_PREFIX), draw(st.sampled_from(["11", "21", "55", "23", "20", "01", "99",
                                                  "61", "90", "19"])),
             draw(st.sampled_from(["9", "9", "9", "8", "3", "0"]))]
    rest = draw(st.text("0123456789", min_size=7, max_size=9))  # mostly the 8 digits
    cuts = sorted(draw(st.lists(st.integers(1, len(rest) - 1), max_size=3)))
    parts += [rest[start:end] for start, end in zip([0, *cuts], [*cuts, len(rest)])]
    out = ""
    for part in parts:
        out += draw(_SEPARATOR) + part
    return out + draw(_SEPARATOR)


def _outcome(text: str, region: str, allow_landlines: bool) -> Union[Phone, str]:
    """The full path's answer: the Phone, or the error message."""
    try:
        return _parse_full(text, region, allow_landlines, text)
    except InvalidPhoneError as exc:
        return f"error: {exc}"


def _combined(text: str, region: str, allow_landlines: bool) -> Union[Phone, str]:
    """What Phone.parse computes on a cache miss (fast path, then the full one)."""
    try:
        return _parse_cached.__wrapped__(text, region, allow_landlines, text)  # type: ignore[attr-defined]
    except InvalidPhoneError as exc:
        return f"error: {exc}"


@settings(max_examples=3000, deadline=None)
@given(text=st.one_of(phone_like(), st.text("0123456789 -.()+", max_size=20)),
       region=st.sampled_from(["BR", "PT", "US"]), allow_landlines=st.booleans())
@example(text="+5511987654321", region="BR", allow_landlines=False)
@example(text="5511987654321", region="BR", allow_landlines=False)
@example(text="55987654321", region="BR", allow_landlines=False)
@example(text="(11) 98765-4321", region="BR", allow_landlines=False)
@example(text="+55 11 98765-4321", region="PT", allow_landlines=True)
@example(text="11987654321", region="PT", allow_landlines=False)
@example(text="5511987654321", region="US", allow_landlines=True)
@example(text="11987654321)", region="BR", allow_landlines=False)
@example(text="\u202a+55 11 98765-4321\u202c", region="BR", allow_landlines=False)
@example(text="+\u200e55 11 98765-4321", region="PT", allow_landlines=False)
@example(text="\u200e\u2069", region="BR", allow_landlines=False)
def test_fast_path_equals_phonenumbers(text: str, region: str, allow_landlines: bool) -> None:
    full = _outcome(text, region, allow_landlines)
    assert _combined(text, region, allow_landlines) == full
    fast = _fast_br_mobile(text, region)
    if fast is not None:
        assert fast == full


@pytest.mark.parametrize("text", ["+5511987654321", "+55 11 98765-4321", "(11) 98765-4321",
                                  "5511987654321", "11.98765.4321", "11987654321",
                                  "\u202a+55 11 98765-4321\u202c", "\u200e(11) 98765-4321"])
def test_common_forms_take_the_fast_path(text: str) -> None:
    # The point of the fast path: the forms a bulk send sees most skip phonenumbers.parse.
    assert _fast_br_mobile(text, "BR") == Phone.parse(text)


@pytest.mark.parametrize("text", ["+55 23 98765-4321", "(11) 3456-7890", "011 98765-4321",
                                  "+351 912 345 678", " +5511987654321", "1198765432\u0661"])
def test_other_forms_are_left_to_phonenumbers(text: str) -> None:
    assert _fast_br_mobile(text, "BR") is None


# The Brazilian mobile check: an expression built at import from phonenumbers' metadata, which
# must answer exactly what phonenumbers.number_type does (itself run here as the reference).

_BR = phonenumbers.PhoneMetadata.metadata_for_region("BR")
_DESC_NAMES = ("general_desc", "premium_rate", "toll_free", "shared_cost", "voip",
               "personal_number", "pager", "uan", "voicemail", "fixed_line", "mobile")


def _number_type_says_mobile(nsn: str) -> bool:
    """What _br_mobile answered before the expression: the fast shape, then number_type."""
    if not _FAST_NSN.fullmatch(nsn):
        return False
    number = phonenumbers.PhoneNumber(country_code=55, national_number=int(nsn))
    return phonenumbers.number_type(number) == PhoneNumberType.MOBILE


def _every_prefix(suffixes: int, seed: int) -> Iterable[str]:
    """Every DDD 00-99 with every first three subscriber digits, each with a few endings."""
    rng = random.Random(seed)
    for head in range(100_000):
        ends = ["000000", "999999"] + [f"{rng.randrange(10**6):06d}" for _ in range(suffixes)]
        for end in ends:
            yield f"{head:05d}{end}"


def test_br_mobile_expression_is_built_from_the_installed_metadata() -> None:
    # Otherwise the comparisons below would only test the number_type fallback, and the fast
    # path would have lost its point: the metadata changed shape, look at _br_mobile_pattern.
    assert phone._BR_MOBILE_NSN is not None
    assert phone._BR_MOBILE_NSN.pattern != "(?!)"


def test_br_mobile_check_equals_number_type_for_every_prefix() -> None:
    wrong: List[str] = []
    mobiles = 0
    for nsn in _every_prefix(suffixes=2, seed=55):
        expected = _number_type_says_mobile(nsn)
        mobiles += expected
        if _is_br_mobile(nsn) != expected:
            wrong.append(nsn)
    assert wrong == []
    assert mobiles > 20_000  # 67 DDDs x 100 "9xx" prefixes x 4 endings: not a vacuous pass


@settings(max_examples=3000, deadline=None)
@given(nsn=st.text("0123456789", min_size=10, max_size=12))
@example(nsn="11987654321")
@example(nsn="11387654321")
@example(nsn="20987654321")
@example(nsn="55987654321")
def test_br_mobile_check_equals_number_type(nsn: str) -> None:
    assert _is_br_mobile(nsn) == _number_type_says_mobile(nsn)
    mobile = _br_mobile.__wrapped__(nsn)  # type: ignore[attr-defined]
    assert (mobile is not None) == _number_type_says_mobile(nsn)
    if mobile is not None:
        assert mobile == _parse_full(nsn, "BR", False, nsn)


def _metadata(**changes: Any) -> SimpleNamespace:
    """BR's metadata as number_type reads it, with some descriptions changed."""
    fields = {name: getattr(_BR, name) for name in _DESC_NAMES}
    fields["same_mobile_and_fixed_line_pattern"] = _BR.same_mobile_and_fixed_line_pattern
    fields.update(changes)
    return SimpleNamespace(**fields)


def _desc(pattern: Any, *lengths: int) -> PhoneNumberDesc:
    return PhoneNumberDesc(national_number_pattern=pattern, possible_length=lengths)


@pytest.mark.parametrize("metadata", [
    # Descriptions number_type tests before mobile, taking some 11-digit mobiles away: by
    # listed length, by no listed length (any length), fixed line (FIXED_LINE_OR_MOBILE).
    _metadata(toll_free=_desc(r"119\d{8}", 11), voip=_desc(r"21\d{9}"),
              fixed_line=_desc(r"3[1-5]9\d{8}|(?:[14689][1-9])[2-5]\d{7}", 10, 11),
              premium_rate=_desc(r"4\d{10}", 10),  # wrong length: takes nothing away
              pager=_desc("", 11), uan=_desc(r"\d+", -1), voicemail=None),
    _metadata(personal_number=_desc(r"6[1-9]9[0-4]\d{7}", 11),
              shared_cost=_desc(r"8\d9\d{8}", 8, 11)),
    _metadata(mobile=_desc(r"(?:1[1-9]|2[1-4])9\d{8}")),  # no lengths: any length
    _metadata(mobile=_desc(r"1[1-9]9\d{8}", 10)),  # mobiles of 10 digits only: none here
    _metadata(general_desc=_desc(r"[1-5]\d{10}", 11)),
    _metadata(general_desc=_desc(r"[1-9]\d{10}", 10)),
    _metadata(general_desc=None),
    _metadata(mobile=_desc(None, 11)),
    _metadata(same_mobile_and_fixed_line_pattern=True),
    _metadata(fixed_line=_BR.mobile),
])
def test_expression_follows_number_type_on_other_metadata(metadata: SimpleNamespace) -> None:
    # The real BR metadata gives most descriptions no 11-digit numbers; these give them some,
    # so the part of _br_mobile_pattern that excludes them is compared with phonenumbers too.
    pattern = _br_mobile_pattern(metadata, ("BR",))
    assert pattern is not None
    wrong = [nsn for nsn in (f"{head:03d}{end}" for head in range(1000)
                             for end in ("00000000", "12345678", "99999999"))
             if (pattern.match(nsn) is not None) != (
                 _FAST_NSN.fullmatch(nsn) is not None
                 and _number_type_helper(nsn, metadata) == PhoneNumberType.MOBILE)]
    assert wrong == []


@pytest.mark.parametrize(("metadata", "regions"), [
    (_BR, ("BR", "XK")),  # several regions: region_code_for_number would look further
    (_BR, None),
    (None, ("BR",)),
    (SimpleNamespace(**{k: v for k, v in vars(_metadata()).items() if k != "voicemail"}),
     ("BR",)),
    (_metadata(same_mobile_and_fixed_line_pattern=None), ("BR",)),
    (_metadata(toll_free=SimpleNamespace(national_number_pattern=r"\d+")), ("BR",)),
    (_metadata(toll_free=SimpleNamespace(national_number_pattern=1, possible_length=(11,))),
     ("BR",)),
    (_metadata(mobile=_desc(r"(1)\1\d{9}", 11)), ("BR",)),  # a group: left to phonenumbers
    (_metadata(mobile=_desc(r"(?x) 1 \d{10}", 11)), ("BR",)),  # an inline flag
    (_metadata(general_desc=_desc(r"[", 11)), ("BR",)),
])
def test_unexpected_metadata_falls_back_to_number_type(metadata: Any, regions: Any) -> None:
    assert _br_mobile_pattern(metadata, regions) is None


def test_fallback_answers_like_number_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phone, "_BR_MOBILE_NSN", None)
    nsns = list(_every_prefix(suffixes=0, seed=0))[::37]
    assert [nsn for nsn in nsns if _is_br_mobile(nsn) != _number_type_says_mobile(nsn)] == []
    assert any(_is_br_mobile(nsn) for nsn in nsns)
