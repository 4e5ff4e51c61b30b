"""Sortable unique ids (ULID layout: 48-bit millisecond time + 80 random bits, Crockford base32).

Our message id doubles as Kolmeya's per-message ``reference`` and our batch id as the request
``reference``, so ids are short (26 characters), URL-safe and sort by creation time.

The random bits come from ``os.urandom``, read 4 KiB at a time per thread rather than 10 bytes
per id: a bulk send makes an id per message, and each read is a system call that also lets
another thread take the interpreter. A process made by ``fork`` starts with none of its
parent's unread bytes, so parent and child never share an id.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two characters per 10 bits: the 130 bits of 26 characters in 13 look-ups instead of a loop of
# 26 shifts (a new id is made for every message of a send).
_PAIRS = tuple(first + second for first in _ALPHABET for second in _ALPHABET)
_SHIFTS = tuple(range(120, -1, -10))
#: Random bytes read at once (409 ids' worth).
_POOL_BYTES = 4096
_RANDOM_BYTES = 10


class _Pool(threading.local):
    """This thread's unread random bytes."""

    data: bytes = b""
    offset: int = 0


_pool = _Pool()


def _forget_pool() -> None:
    """In a child made by ``fork``: drop the parent's unread bytes."""
    global _pool
    _pool = _Pool()


if hasattr(os, "register_at_fork"):  # pragma: no branch - not on Windows
    os.register_at_fork(after_in_child=_forget_pool)


def _random80() -> int:
    pool = _pool
    start = pool.offset
    end = start + _RANDOM_BYTES
    if end > len(pool.data):
        pool.data, start, end = os.urandom(_POOL_BYTES), 0, _RANDOM_BYTES
    pool.offset = end
    return int.from_bytes(pool.data[start:end], "big")


def new_id(now_ms: Optional[int] = None) -> str:
    """Return a new 26-character, time-sortable unique id."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | _random80()
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])
