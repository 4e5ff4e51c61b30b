"""The simulator's one seeded RNG: every draw (outcomes, faults, callback chaos) goes through it,
so a run with the same ``seed`` and the same calls repeats itself."""

from __future__ import annotations

import random
import threading
from typing import Any, List, Mapping, Optional, TypeVar

from typing_extensions import Protocol

__all__ = ["Chance"]


class _Ordered(Protocol):
    def __lt__(self, other: Any) -> bool: ...


_Key = TypeVar("_Key", bound=_Ordered)


class Chance:
    """A seeded :class:`random.Random` shared by threads (HTTP handlers, the progress thread,
    test code), each draw under one lock."""

    def __init__(self, seed: Optional[int]) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not security
        self._lock = threading.Lock()

    def reseed(self, seed: Optional[int]) -> None:
        """Start the sequence again from ``seed``."""
        with self._lock:
            self._rng.seed(seed)

    def roll(self, rate: float) -> bool:
        """True with probability ``rate``; draws nothing when ``rate`` is 0 (so a switched-off
        fault does not disturb the other draws)."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def pick(self, weights: Mapping[_Key, float]) -> _Key:
        """One key of ``weights``, drawn in proportion to its weight (keys in sorted order, so
        the draw does not depend on the mapping's order)."""
        keys = sorted(weights)
        with self._lock:
            return self._rng.choices(keys, weights=[weights[k] for k in keys])[0]

    def shuffle(self, items: List[Any]) -> None:
        """Shuffle ``items`` in place."""
        with self._lock:
            self._rng.shuffle(items)
