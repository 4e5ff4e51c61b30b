"""Phone numbers: parse anything a Brazilian user or Kolmeya writes into one E.164 value.

Built on `phonenumbers` with ``"BR"`` as the default region::

    >>> Phone.parse("(11) 98765-4321").e164
    '+5511987654321'
    >>> Phone.parse(11987654321).national      # what Kolmeya takes and echoes
    '11987654321'

Accepted forms: national numbers with or without punctuation (``"(11) 98765-4321"``,
``"11.98765.4321"``), the trunk prefix ``0`` (``"011 98765-4321"``), carrier-selection prefixes
(``"0 21 11 98765-4321"``, ``"0XX11 98765-4321"``), the country code with or without ``+``
(``"+55 11 98765-4321"``, ``"5511987654321"``), integers (``5511987654321``, ``11987654321``) and
foreign numbers written with ``+`` (``"+351 912 345 678"``). Invisible format marks (Unicode
category Cf: the direction marks WhatsApp and phone contacts paste around a number, U+FEFF) are
ignored.

Only mobile numbers are accepted unless ``allow_landlines=True`` (``FIXED_LINE_OR_MOBILE``, used by
countries whose plans do not tell the two apart, counts as mobile). Anything else raises
:class:`~smskit.errors.InvalidPhoneError`, whose message names the input and the reason.

Parsing is cached (an LRU of recent results), so normalising the same numbers again during a bulk
send costs a dictionary look-up. Failures are not cached. The common Brazilian mobile forms skip
``phonenumbers.parse`` (see ``_fast_br_mobile``); the answers are the same.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Optional, Pattern, Union

import attrs
import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from smskit.errors import ConfigurationError, InvalidPhoneError

__all__ = [
    "DEFAULT_REGION",
    "MATCH_SUFFIX_LENGTH",
    "Phone",
    "blacklist_e164",
    "from_kolmeya",
    "match_suffix",
    "matching_e164",
    "national_digits",
    "normalize",
    "same_number",
]

DEFAULT_REGION = "BR"
"""The region used to read numbers written without a country code."""

MATCH_SUFFIX_LENGTH = 8
"""How many trailing digits :func:`match_suffix` returns."""

_CACHE_SIZE = 32768

_KINDS = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}
_MOBILE_KINDS = frozenset({"mobile", "fixed_line_or_mobile"})

# Punctuation people put in phone numbers. Anything else that is not a digit (letters, "#", ";",
# "ext") is refused: phonenumbers would read letters as a keypad word or an extension.
_SEPARATORS = frozenset(" -.()+\u00a0\u2010\u2011\u2012\u2013\u2014\u2212\u3000\uff0b")
# Invisible marks (Unicode category Cf: U+200E/U+200F, U+202A-U+202E, U+2066-U+2069, U+FEFF,
# zero-width space and joiners, soft hyphen) come along when a number is pasted from WhatsApp, a
# phone's contacts or a right-to-left page. They are dropped before anything else, on both paths,
# as phonenumbers itself ignores them.
_FORMAT_CATEGORY = "Cf"
# "0XX11 98765-4321": "XX" stands for "your carrier's code"; the leading 0 is the trunk prefix.
_CARRIER_PLACEHOLDER = re.compile(r"^(\s*\(?\s*0)\s*[xX]{2}")

# The Brazilian area codes (DDD) in use, as in phonenumbers' metadata for BR mobiles.
_BR_AREA_CODE = re.compile(r"(?:[14689][1-9]|2[12478]|3[1-578]|5[13-5]|7[13-579])")
# The fast path (see :func:`_fast_br_mobile`): the separators it strips (ASCII only), and the
# national significant numbers it takes, an 11-digit DDD + 9 + 8 digits. Neither a DDD nor this
# shape starts with 0 or 90, so phonenumbers' Brazilian national-prefix rules never apply to it.
_FAST_SEPARATORS = str.maketrans("", "", " -.()")
_FAST_MAX_LENGTH = 40
_FAST_NSN = re.compile(r"[1-9][1-9]9[0-9]{8}")
_FAST_NSN_LENGTH = 11  # every national number _FAST_NSN takes has this many digits
# The number descriptions phonenumbers.number_type tests, in its order, before it says MOBILE
# (phonenumberutil._number_type_helper): a number matching any of them is something else.
_BR_NOT_MOBILE_DESCS = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number",
                        "pager", "uan", "voicemail", "fixed_line")
_PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short to be a phone number",
    NumberParseException.TOO_LONG: "too long to be a phone number",
}
_POSSIBILITY = {
    phonenumbers.ValidationResult.TOO_SHORT: " (too short)",
    phonenumbers.ValidationResult.TOO_LONG: " (too long)",
    phonenumbers.ValidationResult.INVALID_LENGTH: " (wrong length)",
}


@attrs.frozen
class Phone:
    """A valid phone number. Build one with :meth:`parse`; ``str(phone)`` is the E.164 form.

    Attributes:
        e164: ``"+5511987654321"``, the form smskit stores and compares.
        country_code: ``55``.
        national: the national significant number, digits only: area code (DDD) + number for
            Brazil, ``"11987654321"``. This is what Kolmeya takes and echoes.
        region: the ISO region the number belongs to (``"BR"``, ``"PT"``).
        kind: ``"mobile"``, ``"fixed_line"``, ``"fixed_line_or_mobile"``, ``"toll_free"``, ...
    """

    e164: str
    country_code: int
    national: str
    region: str
    kind: str

    @classmethod
    def parse(
        cls, raw: object, region: str = DEFAULT_REGION, *, allow_landlines: bool = False
    ) -> Phone:
        """Parse and validate ``raw`` (a string or an int); ``region`` reads national numbers.

        Raises :class:`~smskit.errors.InvalidPhoneError` for anything that is not a valid number
        or, unless ``allow_landlines``, not a mobile one; :class:`~smskit.errors.ConfigurationError`
        for an unknown ``region``.
        """
        text = _as_text(raw)
        return _parse_cached(text, _check_region(region), allow_landlines, raw)

    def __str__(self) -> str:
        """The E.164 form."""
        return self.e164


def _as_text(raw: object) -> str:
    """``raw`` as a string, refusing types that are not a phone number."""
    if raw is None:
        raise InvalidPhoneError(raw, "no phone number given")
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InvalidPhoneError(raw, f"expected a string or an integer, got {type(raw).__name__}")
    if isinstance(raw, int):
        if raw <= 0:
            raise InvalidPhoneError(raw, "a phone number cannot be zero or negative")
        return str(raw)
    if not raw.strip():
        raise InvalidPhoneError(raw, "the number is empty")
    return raw


def _check_region(region: str) -> str:
    code = region.upper() if isinstance(region, str) else ""
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigurationError(f"unknown phone region {region!r}: use an ISO code such as 'BR'")
    return code


# ``raw`` rides along only to put the caller's own value (an int stays an int) in the error;
# it is equal to ``text`` or to ``int(text)``, so it never splits the cache.
@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_cached(text: str, region: str, allow_landlines: bool, raw: object) -> Phone:
    fast = _fast_br_mobile(text, region)
    return fast if fast is not None else _parse_full(text, region, allow_landlines, raw)


def _without_format_marks(text: str) -> str:
    """``text`` without invisible format characters (see ``_FORMAT_CATEGORY``)."""
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return text
    return "".join(ch for ch in text if unicodedata.category(ch) != _FORMAT_CATEGORY)


def _cleaned(text: str, raw: object) -> str:
    """``text`` ready for ``phonenumbers.parse``, or :class:`InvalidPhoneError` for a character
    that is not part of a number (format marks dropped, the ``XX`` carrier placeholder removed)."""
    visible = _without_format_marks(text)
    if not visible.strip():
        raise InvalidPhoneError(raw, "the number is empty")
    cleaned = _CARRIER_PLACEHOLDER.sub(r"\1", visible)
    bad = sorted(
        {ch for ch in cleaned if not (ch.isdecimal() or ch.isspace() or ch in _SEPARATORS)}
    )
    if bad:
        shown = ", ".join(repr(ch) for ch in bad[:5])
        raise InvalidPhoneError(raw, f"contains characters that are not part of a number: {shown}")
    return cleaned


def _parse_full(text: str, region: str, allow_landlines: bool, raw: object) -> Phone:
    """Every form and every error, through phonenumbers (what :func:`_parse_cached` caches)."""
    cleaned = _cleaned(text, raw)
    try:
        number = phonenumbers.parse(cleaned, region)
    except NumberParseException as exc:
        reason = _PARSE_ERRORS.get(exc.error_type, "not a phone number")
        raise InvalidPhoneError(raw, reason) from exc
    country_code = int(number.country_code or 0)  # always set once parse() succeeded
    # One type lookup serves both checks: ``is_valid_number`` is exactly "the type for the
    # number's own region is not UNKNOWN" (that region always has the number's country code),
    # and it would run the same pattern matching again.
    number_kind = phonenumbers.number_type(number)
    if number_kind == PhoneNumberType.UNKNOWN:
        number_region = phonenumbers.region_code_for_country_code(country_code)
        where = f"region {region}" if number_region == region else f"country code +{country_code}"
        raise InvalidPhoneError(raw, f"not a valid number for {where}{_why_invalid(number)}")
    kind = _KINDS.get(number_kind, "unknown")
    if kind not in _MOBILE_KINDS:
        if kind == "fixed_line":
            if not allow_landlines:
                raise InvalidPhoneError(raw, "it is a fixed line number; landlines are not allowed")
        else:
            raise InvalidPhoneError(
                raw, f"it is a {kind.replace('_', ' ')} number, which cannot receive SMS"
            )
    national = phonenumbers.national_significant_number(number)
    return Phone(
        e164=f"+{country_code}{national}",  # what format_number(E164) builds for a valid number
        country_code=country_code,
        national=national,
        region=phonenumbers.region_code_for_number(number) or region,
        kind=kind,
    )


def _fast_br_mobile(text: str, region: str) -> Optional[Phone]:
    """The common Brazilian mobile forms without ``phonenumbers.parse``, or ``None``.

    A bulk send reads every number three times (as typed, as stored E.164, as the gateway echoes
    it) and ``phonenumbers.parse`` is most of that cost. This takes only ``"+55"`` + 11 digits
    (any region) and, with region ``BR``, 11 digits or ``"55"`` + 11 digits, written with
    ASCII digits and ``" -.()"`` only, a ``+`` only in front. The type still comes from
    phonenumbers' own metadata (an expression built from it at import that answers what
    ``number_type`` would, see :func:`_br_mobile_pattern`), and only a mobile is answered here;
    anything else (an unknown DDD, a landline, another shape) goes the full way, so errors and
    every other result are unchanged. tests/test_phone_fast.py checks it equals the full path.
    Invisible format marks are dropped first, as the full path drops them.
    """
    if len(text) > _FAST_MAX_LENGTH:  # phonenumbers refuses inputs over 250 characters
        return None
    if not text.isascii():
        text = _without_format_marks(text)
        if not text.isascii():
            return None
    digits = text.translate(_FAST_SEPARATORS)
    if digits[:1] == "+":
        # phonenumbers reads a "+" only before every digit; "(+55" and "+ 55" are left to it.
        if len(digits) != 14 or digits[1:3] != "55" or text[0] != "+":
            return None
        nsn = digits[3:]
    elif region != "BR" or "+" in digits:
        return None
    elif len(digits) == 11:
        nsn = digits
    elif len(digits) == 13 and digits[:2] == "55":
        # 13 digits are too long for Brazil, so phonenumbers reads the 55 as the country code.
        nsn = digits[2:]
    else:
        return None
    return _br_mobile(nsn)


class _UnexpectedMetadata(Exception):
    """phonenumbers' metadata is not in the shape :func:`_br_mobile_pattern` reads."""


def _desc_pattern(desc: object, length: int) -> Optional[str]:
    """The pattern ``desc`` matches ``length``-digit numbers with, or ``None`` if it matches none.

    As ``phonenumberutil._is_number_matching_desc``: a missing description matches nothing; the
    possible lengths, when listed, are checked first; then the whole number must match the
    pattern, and a missing or empty pattern matches nothing.
    """
    if desc is None:
        return None
    lengths = getattr(desc, "possible_length", None)
    pattern = getattr(desc, "national_number_pattern", "")
    if not isinstance(lengths, (tuple, list)) or not all(type(n) is int for n in lengths):
        raise _UnexpectedMetadata(f"possible lengths {lengths!r}")
    if pattern is not None and not isinstance(pattern, str):
        raise _UnexpectedMetadata(f"pattern {pattern!r}")
    if (lengths and length not in lengths) or not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise _UnexpectedMetadata(f"pattern {pattern!r}: {exc}") from exc
    # Pasted into one expression below, a group could shift a back-reference's number and an
    # inline flag would apply to (or be refused in) the whole: leave such patterns to phonenumbers.
    if compiled.groups or compiled.flags != re.compile("").flags:
        raise _UnexpectedMetadata(f"pattern {pattern!r} has groups or flags")
    return pattern


def _br_mobile_pattern(metadata: object, regions: object) -> Optional[Pattern[str]]:
    """One expression whose ``match`` is ``_FAST_NSN`` and ``number_type == MOBILE``, or ``None``.

    Built from phonenumbers' own metadata for BR (``metadata``; ``regions``, the regions of
    country code 55), so an upgrade of phonenumbers updates it. It applies what
    ``phonenumberutil._number_type_helper`` does to an 11-digit national number: the general
    description must match, none of the descriptions tested before mobile (fixed line included:
    fixed line and mobile together is FIXED_LINE_OR_MOBILE), and then mobile. A national number
    _FAST_NSN takes has no leading zero, so ``national_significant_number`` gives it back as is.
    ``None`` when the metadata is not in the shape read here; the caller then asks number_type.
    """
    try:
        # region_code_for_number picks the only region of a country code without looking further.
        if not isinstance(regions, (tuple, list)) or tuple(regions) != ("BR",) or metadata is None:
            raise _UnexpectedMetadata(f"regions {regions!r} or no metadata")
        same_pattern = getattr(metadata, "same_mobile_and_fixed_line_pattern", None)
        if not isinstance(same_pattern, bool):
            raise _UnexpectedMetadata("same_mobile_and_fixed_line_pattern")
        descs = {}
        for name in ("general_desc", "mobile", *_BR_NOT_MOBILE_DESCS):
            if not hasattr(metadata, name):
                raise _UnexpectedMetadata(f"no {name}")
            descs[name] = _desc_pattern(getattr(metadata, name), _FAST_NSN_LENGTH)
    except _UnexpectedMetadata:
        return None
    general, mobile = descs["general_desc"], descs["mobile"]
    if same_pattern or general is None or mobile is None:
        return re.compile(r"(?!)")  # number_type never says MOBILE for these numbers
    # "(?=(?:P)\Z)" holds exactly when P.fullmatch would: the engine backtracks inside a lookahead.
    parts = [rf"(?={_FAST_NSN.pattern}\Z)", rf"(?=(?:{general})\Z)"]
    parts += [rf"(?!(?:{descs[name]})\Z)" for name in _BR_NOT_MOBILE_DESCS
              if descs[name] is not None]
    parts.append(rf"(?:{mobile})\Z")
    return re.compile("".join(parts))


_BR_MOBILE_NSN = _br_mobile_pattern(phonenumbers.PhoneMetadata.metadata_for_region("BR", None),
                                    phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(55))


def _is_br_mobile(nsn: str) -> bool:
    """Whether ``nsn`` is an 11-digit national number _FAST_NSN takes and BR calls MOBILE."""
    if _BR_MOBILE_NSN is not None:
        return _BR_MOBILE_NSN.match(nsn) is not None
    if not _FAST_NSN.fullmatch(nsn):
        return False
    number = phonenumbers.PhoneNumber(country_code=55, national_number=int(nsn))
    return phonenumbers.number_type(number) == PhoneNumberType.MOBILE


# Keyed by the national number alone: the forms one number is read in during a send ("(11)
# 98765-4321", "+5511987654321", the gateway's "11987654321") share one type look-up.
@functools.lru_cache(maxsize=_CACHE_SIZE)
def _br_mobile(nsn: str) -> Optional[Phone]:
    """The Brazilian mobile whose national significant number is ``nsn``, or ``None``."""
    if not _is_br_mobile(nsn):
        return None
    return Phone(e164="+55" + nsn, country_code=55, national=nsn, region="BR", kind="mobile")


def _with_ninth_digit(number: phonenumbers.PhoneNumber) -> Optional[str]:
    """The national number an old Brazilian mobile became, or ``None`` if ``number`` is not one.

    Brazilian mobiles got a 9 in front of their 8 digits (2012-2016): ``"11 8765-4321"`` is now
    ``"11 98765-4321"``. An old mobile is a 10-digit national number of country code 55 whose
    subscriber part starts with 6 to 9 (landlines start with 2 to 5) and whose 11-digit form
    phonenumbers' metadata calls a mobile (which also checks the DDD).
    """
    if number.country_code != 55:
        return None
    nsn = phonenumbers.national_significant_number(number)
    if len(nsn) != 10 or nsn[2] not in "6789":
        return None
    mobile = nsn[:2] + "9" + nsn[2:]
    return mobile if _is_br_mobile(mobile) else None


def _why_invalid(number: phonenumbers.PhoneNumber) -> str:
    """A hint on why a parsed number is invalid, or ``""``."""
    nsn = phonenumbers.national_significant_number(number)
    if number.country_code == 55 and len(nsn) in (10, 11):
        if not _BR_AREA_CODE.match(nsn):
            return " (missing or unknown area code)"
        if _with_ninth_digit(number) is not None:
            return " (a Brazilian mobile has a 9 before its 8 digits)"
    return _POSSIBILITY.get(phonenumbers.is_possible_number_with_reason(number), "")


def normalize(raw: object, region: str = DEFAULT_REGION, allow_landlines: bool = False) -> str:
    """``raw`` in E.164 (``"+5511987654321"``); the same rules and errors as :meth:`Phone.parse`."""
    return Phone.parse(raw, region, allow_landlines=allow_landlines).e164


def national_digits(e164_or_raw: object, region: str = DEFAULT_REGION, *,
                    country_code: Optional[int] = None) -> str:
    """The national digits (``"11987654321"`` for ``"+5511987654321"``), as Kolmeya takes them.

    The number must be valid; its kind is not checked (landlines pass). With ``country_code``
    (a gateway that reaches one country), a number of another country is an
    :class:`~smskit.errors.InvalidPhoneError` too.
    """
    phone = Phone.parse(e164_or_raw, region, allow_landlines=True)
    if country_code is not None and phone.country_code != country_code:
        raise InvalidPhoneError(e164_or_raw, f"only +{country_code} numbers are allowed here")
    return phone.national


def from_kolmeya(value: Union[int, str]) -> Phone:
    """The phone Kolmeya echoes: national digits without ``55``, as an int or a string.

    ``11987654321``, ``"11987654321"`` and ``5511987654321`` all give ``+5511987654321``. An echo
    is a fact about a number we sent, so landlines are accepted; invalid values still raise
    :class:`~smskit.errors.InvalidPhoneError`.
    """
    return Phone.parse(value, "BR", allow_landlines=True)


def matching_e164(raw: object, region: str = DEFAULT_REGION) -> Optional[str]:
    """The E.164 number a stored value stands for when records are matched, or ``None``.

    That is ``Phone.parse(raw, region, allow_landlines=True).e164`` (any kind of number), except
    that a Brazilian mobile saved before the ninth digit (``"(11) 8765-4321"``, which
    :meth:`Phone.parse` refuses: nothing can be sent to it) stands for the number it became,
    ``"+5511987654321"``. A number valid as written is itself (the numbering plan still has
    8-digit mobiles starting with 7, trunked radio, so ``"(11) 7000-0000"`` stays
    ``"+551170000000"``). A value that is not a number (``None``, ``""``, ``False`` from an empty
    Odoo field, garbage) gives ``None``; this never raises
    :class:`~smskit.errors.InvalidPhoneError`.
    """
    try:
        return Phone.parse(raw, region, allow_landlines=True).e164
    except InvalidPhoneError:
        pass
    # Only failures get here, and they are not cached: read the number again to see whether it
    # is an old mobile (the same cleaning and the same errors as the full path).
    try:
        number = phonenumbers.parse(_cleaned(_as_text(raw), raw), _check_region(region))
    except (InvalidPhoneError, NumberParseException):
        return None
    mobile = _with_ninth_digit(number)
    return None if mobile is None else "+55" + mobile


def blacklist_e164(raw: object, region: str = DEFAULT_REGION) -> str:
    """The E.164 number a blacklist entry for ``raw`` blocks: :func:`matching_e164`, so any
    kind of number, and a Brazilian mobile written before its ninth digit
    (``"(11) 8765-4321"``) blocks the number it became, the one messages go to. A value that
    is no number raises :class:`~smskit.errors.InvalidPhoneError` with the reason."""
    found = matching_e164(raw, region)
    return found if found is not None else Phone.parse(raw, region, allow_landlines=True).e164


def same_number(a: object, b: object, region: str = DEFAULT_REGION) -> bool:
    """Whether ``a`` and ``b`` are the same number once normalised (any kind of number).

    Both are read with :func:`matching_e164`, so a Brazilian mobile saved before the ninth digit
    (``"11 8765-4321"``) is the same as ``"+5511987654321"``. A value that is not a valid number
    (``None``, ``""``, ``False`` from an empty Odoo field, garbage) matches nothing, so this never
    raises :class:`~smskit.errors.InvalidPhoneError`.
    """
    first = matching_e164(a, region)
    return first is not None and first == matching_e164(b, region)


def match_suffix(e164: str) -> str:
    """The last 8 digits of a number, to find candidate records by a ``like`` search.

    Odoo keeps ``phone``/``mobile`` as free text, so a partner is found by searching a
    digits-only column (Odoo's ``phone_sanitized``) for these digits, then comparing the
    candidates with :func:`same_number` (or :func:`matching_e164`). Eight digits, not nine, so
    that records saved before the Brazilian mobile ninth digit (``"11 8765-4321"``) are found
    too; :func:`same_number` then takes them for the number with the 9. A free-text column with
    separators inside the last 8 digits (``"98765-4321"``) will not contain the suffix as such.
    """
    digits = "".join(ch for ch in str(e164) if ch.isdecimal())
    if len(digits) < MATCH_SUFFIX_LENGTH:
        raise InvalidPhoneError(e164, f"needs at least {MATCH_SUFFIX_LENGTH} digits")
    return digits[-MATCH_SUFFIX_LENGTH:]
