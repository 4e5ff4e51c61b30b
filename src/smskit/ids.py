"""Sortable unique ids (ULID layout: 48-bit millisecond time + 80 random bits, Crockford base32).

Our message id doubles as Kolmeya's per-message ``reference`` and our batch id as the request
``reference``, so ids are short (26 characters), URL-safe and sort by creation time.
"""

from __future__ import annotations

import os
import time
from typing import Optional

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two characters per 10 bits: the 130 bits of 26 characters in 13 look-ups instead of a loop of
# 26 shifts (a new id is made for every message of a send).
_PAIRS = tuple(first + second for first in _ALPHABET for second in _ALPHABET)
_SHIFTS = tuple(range(120, -1, -10))


def new_id(now_ms: Optional[int] = None) -> str:
    """Return a new 26-character, time-sortable unique id."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])
