"""uvicorn's h11 protocol with a request-head timeout and a cap on open connections.

uvicorn arms its keep-alive timer only after a response, and cancels it on the first byte of
the next request: a connection that never sends a request, or sends its head a byte at a time,
is never closed. :func:`guarded_protocol` builds a subclass of uvicorn's ``H11Protocol`` that:

* closes a connection whose request head is not complete ``header_timeout`` seconds after it
  opened, or after its previous response (a kept-alive connection waiting for its next
  request), at a random moment of the timeout's last quarter
  (:func:`smskit.server.limits.spread`);
* at ``max_connections`` open connections, closes the one that has waited longest for a request
  head to make room for the new one; if every connection is busy with a request, it closes the
  new one instead.

The body of a request is the app's to time (``server_body_timeout``,
:mod:`smskit.server.app`). Everything else is uvicorn's own behaviour. Used by
:func:`smskit.server.serve` through :meth:`smskit.server.limits.ServerLimits.uvicorn_options`.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any, Optional, Type

from uvicorn.protocols.http.h11_impl import H11Protocol

from smskit.server.limits import spread

if TYPE_CHECKING:
    from smskit.server.limits import ServerLimits

__all__ = ["GuardedH11Protocol", "guarded_protocol"]


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` with the guards of the module; subclass it with :func:`guarded_protocol`
    (which sets the limits and the server's shared list of waiting connections)."""

    header_timeout: float = 10.0
    max_connections: int = 4096
    #: Connections waiting for a request head, the longest-waiting first (one per server).
    waiting: collections.OrderedDict[GuardedH11Protocol, None] = collections.OrderedDict()

    _head_timer: Optional[asyncio.TimerHandle] = None
    _seen_cycle: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection; at the cap, make room (or refuse it); wait for a head."""
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._make_room():
            self.transport.close()  # every other connection is busy with a request
            return
        self._await_head()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request head."""
        for other in self.waiting:
            if other is not self:
                other._close_waiting()
                return True
        return False

    def _await_head(self) -> None:
        self._cancel_timer()
        self.waiting[self] = None
        self.waiting.move_to_end(self)
        self._head_timer = self.loop.call_later(spread(self.header_timeout),
                                                self._close_waiting)

    def _head_arrived(self) -> None:
        self._cancel_timer()
        self.waiting.pop(self, None)

    def _cancel_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _close_waiting(self) -> None:
        """The head did not come in time (or room is needed): close without an answer."""
        self._head_timer = None
        self.waiting.pop(self, None)
        if not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        """uvicorn's event handling; a new request cycle means its head arrived."""
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle
            self._head_arrived()

    def on_response_complete(self) -> None:
        """After a response, a kept-alive connection waits for its next head (unless a
        pipelined request already started)."""
        super().on_response_complete()
        cycle = self.cycle
        if not self.transport.is_closing() and (cycle is None or cycle.response_complete):
            self._await_head()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        """Forget the connection."""
        self._head_arrived()
        super().connection_lost(exc)


def guarded_protocol(limits: ServerLimits) -> Type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass for one server, with ``limits``' header timeout
    and connection cap (pass it as uvicorn's ``http``)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "header_timeout": limits.header_timeout,
        "max_connections": limits.max_connections,
        "waiting": collections.OrderedDict(),
    })
