from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smskit.errors import ConfigurationError, InvalidPhoneError, ValidationError
from smskit.phone import (
    Phone,
    from_kolmeya,
    match_suffix,
    matching_e164,
    national_digits,
    normalize,
    same_number,
)

E164 = "+5511987654321"

# Every Brazilian area code (DDD) in use, from Anatel's plan.
VALID_DDDS = (
    [str(n) for n in range(11, 20)]
    + ["21", "22", "24", "27", "28"]
    + ["31", "32", "33", "34", "35", "37", "38"]
    + [str(n) for n in range(41, 50)]
    + ["51", "53", "54", "55"]
    + [str(n) for n in range(61, 70)]
    + ["71", "73", "74", "75", "77", "79"]
    + [str(n) for n in range(81, 90)]
    + [str(n) for n in range(91, 100)]
)


@pytest.mark.parametrize(
    "raw",
    [
        "(11) 98765-4321",
        "11987654321",
        "11 98765 4321",
        "11.98765.4321",
        "11-98765-4321",
        "+55 11 98765-4321",
        "+55 (11) 98765-4321",
        "+5511987654321",
        "5511987654321",
        "55 (11) 98765-4321",
        "011 98765-4321",
        "(011) 98765-4321",
        "0XX11 98765-4321",
        "(0xx11) 98765-4321",
        "0 21 11 98765-4321",
        "015 11 98765-4321",
        "  (11) 98765-4321  ",
        "(11)\u00a098765\u20134321",
        5511987654321,
        11987654321,
    ],
)
def test_brazilian_mobile_forms_normalise_to_one_e164(raw: object) -> None:
    phone = Phone.parse(raw)
    assert phone.e164 == E164
    assert str(phone) == E164
    assert phone.country_code == 55
    assert phone.national == "11987654321"
    assert phone.region == "BR"
    assert phone.kind == "mobile"


def test_foreign_mobile_with_plus_is_accepted() -> None:
    phone = Phone.parse("+351 912 345 678")
    assert phone == Phone(
        e164="+351912345678", country_code=351, national="912345678", region="PT", kind="mobile"
    )


def test_region_reads_national_numbers_of_that_country() -> None:
    assert Phone.parse("912 345 678", "PT").e164 == "+351912345678"
    assert Phone.parse("912 345 678", "pt").e164 == "+351912345678"


def test_unknown_region_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown phone region 'XX'"):
        Phone.parse("11987654321", "XX")


def test_landline_refused_by_default_with_a_clear_message() -> None:
    with pytest.raises(InvalidPhoneError) as info:
        Phone.parse("(11) 3333-4444")
    assert str(info.value) == (
        "invalid phone number '(11) 3333-4444': "
        "it is a fixed line number; landlines are not allowed"
    )
    assert info.value.raw == "(11) 3333-4444"
    assert isinstance(info.value, ValidationError)


def test_landline_accepted_when_allowed() -> None:
    phone = Phone.parse("(11) 3333-4444", allow_landlines=True)
    assert phone.e164 == "+551133334444"
    assert phone.national == "1133334444"
    assert phone.kind == "fixed_line"
    assert normalize("551133334444", allow_landlines=True) == "+551133334444"


def test_toll_free_is_refused_even_with_landlines_allowed() -> None:
    with pytest.raises(InvalidPhoneError) as info:
        Phone.parse("0800 123 4567", allow_landlines=True)
    assert str(info.value) == (
        "invalid phone number '0800 123 4567': it is a toll free number, which cannot receive SMS"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "(11) 3333-444",
            "invalid phone number '(11) 3333-444': not a valid number for region BR",
        ),
        (
            "(00) 98765-4321",
            "invalid phone number '(00) 98765-4321': not a valid number for region BR"
            " (missing or unknown area code)",
        ),
        (
            "(20) 98765-4321",
            "invalid phone number '(20) 98765-4321': not a valid number for region BR"
            " (missing or unknown area code)",
        ),
        (
            "+55 11 98765-43210",
            "invalid phone number '+55 11 98765-43210': not a valid number for region BR"
            " (too long)",
        ),
        (
            "+351 12",
            "invalid phone number '+351 12': not a valid number for country code +351 (too short)",
        ),
        (
            "11 8765-4321",
            "invalid phone number '11 8765-4321': not a valid number for region BR"
            " (a Brazilian mobile has a 9 before its 8 digits)",
        ),
        ("1", "invalid phone number '1': not a phone number"),
        ("+999 1234", "invalid phone number '+999 1234': unknown country code"),
        (
            "11 9876A-4321",
            "invalid phone number '11 9876A-4321': contains characters that are not part of a"
            " number: 'A'",
        ),
        (
            "abc",
            "invalid phone number 'abc': contains characters that are not part of a number:"
            " 'a', 'b', 'c'",
        ),
        (
            "11987654321 ext. 12",
            "invalid phone number '11987654321 ext. 12': contains characters that are not part"
            " of a number: 'e', 't', 'x'",
        ),
        ("", "invalid phone number '': the number is empty"),
        ("   ", "invalid phone number '   ': the number is empty"),
        (None, "invalid phone number None: no phone number given"),
        (True, "invalid phone number True: expected a string or an integer, got bool"),
        (False, "invalid phone number False: expected a string or an integer, got bool"),
        (
            11987654321.0,
            "invalid phone number 11987654321.0: expected a string or an integer, got float",
        ),
        (
            -11987654321,
            "invalid phone number -11987654321: a phone number cannot be zero or negative",
        ),
        (123, "invalid phone number 123: not a valid number for region BR (too short)"),
    ],
)
def test_invalid_input_names_the_input_and_the_reason(raw: object, message: str) -> None:
    with pytest.raises(InvalidPhoneError) as info:
        Phone.parse(raw)
    assert str(info.value) == message
    assert info.value.raw is raw


def test_letters_are_never_read_as_a_keypad_word() -> None:
    # phonenumbers alone would turn "abc" into "222" and accept a longer number.
    with pytest.raises(InvalidPhoneError, match="not part of a number"):
        Phone.parse("11 98765 4321 abc")


def test_parse_results_are_cached_and_immutable() -> None:
    first = Phone.parse("(21) 99876-5432")
    assert Phone.parse("(21) 99876-5432") is first
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        first.e164 = "+5511987654321"  # type: ignore[misc]
    assert Phone.parse("(21) 99876-5432").e164 == "+5521998765432"


def test_failures_are_not_cached_as_successes() -> None:
    for _ in range(2):
        with pytest.raises(InvalidPhoneError):
            Phone.parse("(11) 3333-4444")
    # the same text with landlines allowed is a different question with a different answer
    assert Phone.parse("(11) 3333-4444", allow_landlines=True).kind == "fixed_line"
    with pytest.raises(InvalidPhoneError):
        Phone.parse("(11) 3333-4444")


def test_normalize_returns_e164() -> None:
    assert normalize("(11) 98765-4321") == E164
    with pytest.raises(InvalidPhoneError, match="landlines are not allowed"):
        normalize("(11) 3333-4444")


def test_national_digits_accepts_e164_and_raw_forms() -> None:
    assert national_digits(E164) == "11987654321"
    assert national_digits("(11) 98765-4321") == "11987654321"
    assert national_digits("+551133334444") == "1133334444"
    with pytest.raises(InvalidPhoneError, match="'12345'"):
        national_digits("12345")


def test_national_digits_can_be_held_to_one_country() -> None:
    assert national_digits("+5511987654321", country_code=55) == "11987654321"
    assert national_digits("+14155550123") == "4155550123"
    with pytest.raises(InvalidPhoneError, match=r"only \+55 numbers"):
        national_digits("+14155550123", country_code=55)


@pytest.mark.parametrize(
    "echo", [11987654321, "11987654321", 5511987654321, "5511987654321", "+5511987654321"]
)
def test_from_kolmeya_reads_the_echoed_number(echo: object) -> None:
    assert from_kolmeya(echo).e164 == E164  # type: ignore[arg-type]


def test_from_kolmeya_keeps_ddd_55_apart_from_the_country_code() -> None:
    assert from_kolmeya(55987654321).e164 == "+5555987654321"
    assert from_kolmeya(5555987654321).e164 == "+5555987654321"


def test_from_kolmeya_accepts_an_echoed_landline_and_refuses_garbage() -> None:
    assert from_kolmeya(1133334444).e164 == "+551133334444"
    with pytest.raises(InvalidPhoneError) as info:
        from_kolmeya(119876)
    assert str(info.value).startswith("invalid phone number 119876:")


def test_same_number() -> None:
    assert same_number("(11) 98765-4321", 5511987654321)
    assert same_number("+55 11 3333-4444", "(11) 3333-4444")
    assert not same_number("(11) 98765-4321", "(11) 98765-4322")
    assert not same_number("(11) 98765-4321", False)
    assert not same_number(None, None)
    assert not same_number("garbage", "garbage")


def test_match_suffix_is_the_last_eight_digits() -> None:
    assert match_suffix(E164) == "87654321"
    # the same suffix finds a record saved before the ninth digit was added
    assert match_suffix("+551187654321") == "87654321"
    with pytest.raises(InvalidPhoneError) as info:
        match_suffix("+55123")
    assert str(info.value) == "invalid phone number '+55123': needs at least 8 digits"


def _variants(ddd: str, subscriber: str) -> list[object]:
    national = ddd + subscriber
    first, last = subscriber[:5], subscriber[5:]
    return [
        national,
        int(national),
        int("55" + national),
        "55" + national,
        "+55" + national,
        f"({ddd}) {first}-{last}",
        f"+55 ({ddd}) {first}-{last}",
        f"+55 {ddd} {first} {last}",
        f"{ddd}.{first}.{last}",
        f"0{ddd} {first}-{last}",
        f"0XX{ddd} {first}-{last}",
        f"0 21 {ddd} {first}-{last}",
    ]


@given(
    ddd=st.sampled_from(VALID_DDDS),
    rest=st.text(alphabet="0123456789", min_size=8, max_size=8),
)
def test_every_format_of_a_valid_mobile_gives_the_same_e164(ddd: str, rest: str) -> None:
    subscriber = "9" + rest
    expected = "+55" + ddd + subscriber
    for variant in _variants(ddd, subscriber):
        phone = Phone.parse(variant)
        assert phone.e164 == expected, variant
        assert phone.national == ddd + subscriber
        assert phone.kind in ("mobile", "fixed_line_or_mobile")
        assert from_kolmeya(int(ddd + subscriber)) == phone


# Invisible direction and format marks (Unicode category Cf) come along when a number is
# pasted from WhatsApp, a phone's contacts or a right-to-left page; phonenumbers ignores them.
FORMAT_MARKS = ["\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
                "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff", "\u200b", "\u2060", "\u00ad"]


@pytest.mark.parametrize("raw", [
    "\u202a+55 11 98765-4321\u202c",
    "\u200e+55 11 98765-4321",
    "+55 11 98765-4321\u200f",
    "\u2066+55 11 98765-4321\u2069",
    "\ufeff(11) 98765-4321",
    "\u200e11987654321\u200e",
    "\u2068\u200e0XX11 98765-4321\u2069",
    "(11) 3333\u200e-4444",
])
def test_invisible_format_marks_are_ignored(raw: str) -> None:
    clean = "".join(ch for ch in raw if ch not in FORMAT_MARKS)
    assert Phone.parse(raw, allow_landlines=True) == Phone.parse(clean, allow_landlines=True)
    assert same_number(raw, clean)


@given(
    ddd=st.sampled_from(VALID_DDDS),
    rest=st.text(alphabet="0123456789", min_size=8, max_size=8),
    marks=st.lists(st.sampled_from(FORMAT_MARKS), min_size=1, max_size=4),
    where=st.lists(st.integers(0, 30), min_size=4, max_size=4),
)
def test_format_marks_anywhere_change_nothing(ddd: str, rest: str, marks: list[str],
                                               where: list[int]) -> None:
    for variant in _variants(ddd, "9" + rest):
        text = str(variant)
        for mark, at in zip(marks, where):
            at = min(at, len(text))
            text = text[:at] + mark + text[at:]
        assert Phone.parse(text).e164 == "+55" + ddd + "9" + rest, repr(text)


def test_a_number_made_only_of_format_marks_is_empty() -> None:
    with pytest.raises(InvalidPhoneError, match="the number is empty"):
        Phone.parse("\u200e\u202a \u202c")


def test_visible_characters_other_than_separators_are_still_refused() -> None:
    with pytest.raises(InvalidPhoneError, match=r"not part of a number: 'x'$"):
        Phone.parse("\u200e11 98765-4321 x12")


# Brazilian mobiles got a ninth digit (a 9 in front) in 2012-2016; records saved before still
# hold the 8-digit form. Matching (never sending) reads them as the number they became.
OLD_FORMS = ["(11) 8765-4321", "11 8765-4321", "1187654321", 1187654321, "+55 11 8765-4321",
             "5511 8765 4321", 551187654321, "011 8765-4321", "0XX11 8765-4321",
             "\u202a+55 (11) 8765-4321\u202c"]


@pytest.mark.parametrize("old", OLD_FORMS)
def test_an_old_mobile_matches_the_number_with_its_ninth_digit(old: object) -> None:
    assert matching_e164(old) == E164
    assert same_number(old, E164)
    assert same_number(E164, old)
    assert same_number(old, "(11) 98765-4321")
    assert not same_number(old, "+5511987654322")
    assert not same_number(old, "+5521987654321")


@pytest.mark.parametrize("old", ["(11) 8765-4321", "+55 11 8765-4321", 1187654321])
def test_an_old_mobile_is_still_refused_for_sending(old: object) -> None:
    for allow_landlines in (False, True):
        with pytest.raises(InvalidPhoneError, match="a Brazilian mobile has a 9 before its 8"):
            Phone.parse(old, allow_landlines=allow_landlines)


@pytest.mark.parametrize(("raw", "expected"), [
    ("(11) 3333-4444", "+551133334444"),  # a landline (2-5) is itself, never a mobile
    ("(11) 5765-4321", "+551157654321"),
    ("(11) 1765-4321", None),  # 0 or 1 after the DDD was never a mobile
    ("(11) 0765-4321", None),
    ("(20) 8765-4321", None),  # no such DDD
    ("(11) 98765-4321", E164),
    ("(11) 9876-5432", "+5511998765432"),  # an old mobile may start with 9 as well
    ("(11) 7000-0000", "+551170000000"),  # still a mobile as written (trunked radio, no 9)
    ("+55 11 9876-543", None),  # too short either way
    ("+1 650 253 0000", "+16502530000"),
    ("+351 912 345 678", "+351912345678"),
    ("+351 12 345 678", None),  # 10 digits, 6-9 after two digits, but not Brazil
    ("abc", None), ("", None), (None, None), (False, None), (3.5, None),
])
def test_matching_e164_of_other_values(raw: object, expected: object) -> None:
    assert matching_e164(raw) == expected


def test_matching_e164_reads_national_numbers_with_the_region() -> None:
    assert matching_e164("912 345 678", "PT") == "+351912345678"
    assert matching_e164("+55 11 8765-4321", "PT") == E164
    assert matching_e164("11 8765-4321", "PT") is None  # not a Brazilian number in PT


@given(
    ddd=st.sampled_from(VALID_DDDS),
    first=st.sampled_from("689"),  # DDD + 7 + 7 digits is still a valid mobile: see above
    rest=st.text(alphabet="0123456789", min_size=7, max_size=7),
)
def test_every_form_of_an_old_mobile_matches_its_nine_digit_number(ddd: str, first: str,
                                                                   rest: str) -> None:
    new = Phone.parse(ddd + "9" + first + rest)  # phonenumbers: every DDD's 9 + 8 digits
    for variant in _variants(ddd, first + rest):
        assert matching_e164(variant) == new.e164, variant
        assert same_number(variant, new.e164), variant
