"""The Brazilian fast path of :mod:`smskit.phone` answers exactly what phonenumbers would.

``_fast_br_mobile`` skips ``phonenumbers.parse`` for the common mobile forms; every input it
takes must give the same :class:`Phone` as the full path, and every input it leaves must reach
the full path (same result, same error message).
"""

from __future__ import annotations

from typing import Union

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smskit.errors import InvalidPhoneError
from smskit.phone import Phone, _fast_br_mobile, _parse_cached, _parse_full

_SEPARATOR = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", "  ", "+", "\u00a0", "x"])
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
def test_fast_path_equals_phonenumbers(text: str, region: str, allow_landlines: bool) -> None:
    full = _outcome(text, region, allow_landlines)
    assert _combined(text, region, allow_landlines) == full
    fast = _fast_br_mobile(text, region)
    if fast is not None:
        assert fast == full


@pytest.mark.parametrize("text", ["+5511987654321", "+55 11 98765-4321", "(11) 98765-4321",
                                  "5511987654321", "11.98765.4321", "11987654321"])
def test_common_forms_take_the_fast_path(text: str) -> None:
    # The point of the fast path: the forms a bulk send sees most skip phonenumbers.parse.
    assert _fast_br_mobile(text, "BR") == Phone.parse(text)


@pytest.mark.parametrize("text", ["+55 23 98765-4321", "(11) 3456-7890", "011 98765-4321",
                                  "+351 912 345 678", " +5511987654321", "1198765432\u0661"])
def test_other_forms_are_left_to_phonenumbers(text: str) -> None:
    assert _fast_br_mobile(text, "BR") is None
