"""Small pure rules of the simulated gateway: phone numbers, content, segments, money, dates."""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, List, Optional

from smskit.segments import count_segments as _count_segments

__all__ = [
    "brazilian",
    "count_segments",
    "format_balance",
    "format_br",
    "has_link_or_0800",
    "is_br_mobile",
    "national_digits",
]

_DIGITS = re.compile(r"^[0-9]+$")
_LINK = re.compile(
    r"(https?://|www\.|\b[a-z0-9-]+\.(com|net|org|br|ly|io|me|co|info|app|site)\b)", re.IGNORECASE
)
_FREE_PHONE = re.compile(r"\b0[\s.-]?800")


def national_digits(phone: Any) -> Optional[str]:
    """The number as national digits (a leading ``55`` dropped from 12/13 digits).

    ``phone`` may be an int or a digit string, as Kolmeya accepts both; anything else
    (``+``, spaces, letters, bools) gives ``None``.
    """
    if isinstance(phone, bool):
        return None
    text = str(phone) if isinstance(phone, int) else phone
    if not isinstance(text, str) or not _DIGITS.match(text):
        return None
    if len(text) in (12, 13) and text.startswith("55"):
        text = text[2:]
    return text


def is_br_mobile(national: str, *, allow_ten_digits: bool = False) -> bool:
    """DDD (two digits, no zero) + a 9-digit mobile starting with 9 (or 8 digits if allowed)."""
    if len(national) == 11:
        return national[0] != "0" and national[1] != "0" and national[2] == "9"
    if len(national) == 10 and allow_ten_digits:
        return national[0] != "0" and national[1] != "0" and national[2] in "6789"
    return False


def has_link_or_0800(text: str) -> bool:
    """True when ``text`` holds a link or a 0800 number (forbidden by ``sms/store-token``)."""
    return bool(_LINK.search(text) or _FREE_PHONE.search(text))


def count_segments(text: str) -> int:
    """Segments billed for ``text`` (:func:`smskit.segments.count_segments`, at least 1)."""
    return max(1, _count_segments(text).segments)


def format_br(value: Decimal) -> str:
    """``Decimal("9397.3")`` -> ``"9.397,30"``."""
    quantised = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if quantised < 0 else ""
    whole, _, cents = f"{abs(quantised):f}".partition(".")
    groups: List[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return f"{sign}{'.'.join(groups)},{cents}"


def format_balance(value: Decimal, style: str) -> str:
    """The balance as Kolmeya shows it: ``"R$9.397,30"`` (``brl``) or ``"9397.30"`` (``plain``)."""
    if style == "plain":
        return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"
    text = format_br(value)
    return f"-R${text[1:]}" if text.startswith("-") else f"R${text}"


def brazilian(moment: dt.datetime, tz: dt.tzinfo, *, seconds: bool = True) -> str:
    """``dd/mm/yyyy HH:MM[:SS]`` in ``tz``."""
    return moment.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S" if seconds else "%d/%m/%Y %H:%M")

