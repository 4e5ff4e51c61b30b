"""Sample data and small tools the store checks share (usable in a store's own tests too)."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Callable, List

from smskit.models import Message, State
from smskit.store.base import Schedule
from smskit.timeutil import zone

__all__ = ["NOW", "SP", "UTC", "add", "outgoing", "run_threads", "schedule"]

UTC = dt.timezone.utc
#: The installation's usual time zone (UTC-3, with DST until 2019).
SP = zone("America/Sao_Paulo")
#: The fixed "now" of every check.
NOW = dt.datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


def outgoing(n: int = 0, **fields: Any) -> Message:
    """An ``outgoing`` kolmeya message to ``+55119876<n>`` created ``100 - n`` minutes before
    :data:`NOW` (so a higher ``n`` is newer); ``fields`` override any of that."""
    fields.setdefault("state", State.OUTGOING)
    fields.setdefault("provider", "kolmeya")
    fields.setdefault("created_at", NOW - dt.timedelta(minutes=100 - n))
    phone = fields.pop("phone", f"+55119876{n:05d}")
    return Message.new(phone, fields.pop("body", f"Olá {n}"), **fields)


def add(store: Any, *messages: Message) -> List[Message]:
    """Store ``messages`` (all new) and return them as stored."""
    outcomes = store.add_messages(messages)
    if not all(o.created for o in outcomes):
        raise AssertionError("add_messages did not create every new message")
    return [o.message for o in outcomes]


def schedule(sid: str, next_run: Any, **fields: Any) -> Schedule:
    """A schedule ``sid`` sending one templated message, next due at ``next_run``."""
    return Schedule(id=sid, name=f"campaign {sid}", request={"phones": ["+5511987654321"],
                    "template": "Olá {{ nome }}", "context": {"nome": "Ana"}},
                    next_run_at=next_run, created_at=NOW, **fields)


def run_threads(count: int, target: Callable[[int], Any]) -> List[Any]:
    """Run ``target(i)`` in ``count`` threads released together; their results, in order.

    The first exception raised in a thread is raised again here.
    """
    barrier = threading.Barrier(count)
    results: List[Any] = [None] * count
    errors: List[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = target(i)
        except BaseException as exc:  # re-raised below, in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise AssertionError(f"a thread of {count} did not finish within 60 s")
    return results
