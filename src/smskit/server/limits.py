"""How long a client may take and how many may be connected: the server's limits.

uvicorn closes a kept-alive connection that stays idle after a response, but nothing else: a
client that connects and never sends a request, or sends its head one byte at a time, keeps
its socket (and a file descriptor) forever, and about a thousand of them exhaust a default
``ulimit -n``. :func:`smskit.server.serve` therefore runs uvicorn with these limits:

* ``server_header_timeout`` (default 10 s): a connection must deliver a complete request head
  this long after it opened, or after its previous response; otherwise it is closed
  (:mod:`smskit.server.protocol`);
* ``server_body_timeout`` (default 10 s): a webhook's body must arrive this long after its
  head, or the answer is ``408`` and the connection is closed (the app's streaming read);
* ``server_keep_alive`` (default 5 s): how long a kept-alive connection may sit idle between
  requests (uvicorn's ``timeout_keep_alive``);
* ``server_max_connections`` (default 4096, and never more than the process's file
  descriptor limit allows): at the cap, a new connection closes the one that has waited
  longest for a request head, so idle or slow clients cannot lock the others out; when every
  connection is busy with a request, the new one is closed;
* a request head is at most :data:`MAX_HEAD_BYTES` (h11's ``max_incomplete_event_size``).

Each timeout closes a connection at a random moment between three quarters of it and all of it
(:func:`spread`): connections opened together, as an attacker's are, then do not all come to
their end in the same instant, and the server's work of closing them (and of answering the
reconnections) is spread out instead of stalling everything else at once.

With these, 2,000 idle or slow clients connected leave ``/healthz`` answering within a second
and webhooks flowing (``benchmarks/bench_webhooks.py`` measures it).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Dict, Optional

import attrs

from smskit.config import Settings

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "FD_RESERVE",
    "MAX_HEAD_BYTES",
    "ServerLimits",
    "raise_fd_limit",
    "spread",
]

log = logging.getLogger(__name__)

#: Default cap on open connections.
DEFAULT_MAX_CONNECTIONS = 4096
#: File descriptors kept free for everything but client sockets (database, logs, threads).
FD_RESERVE = 128
#: The largest request head (request line and headers) accepted, in bytes.
MAX_HEAD_BYTES = 16 * 1024


def spread(timeout: float) -> float:
    """A moment between three quarters of ``timeout`` and ``timeout``, at random."""
    return timeout * (1.0 - 0.25 * random.random())  # noqa: S311 - spreading, not a secret


@attrs.frozen(kw_only=True)
class ServerLimits:
    """The limits of one server (see the module); read them with :meth:`from_settings`."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keep_alive: float = 5.0
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        """``server_header_timeout``, ``server_body_timeout``, ``server_keep_alive`` (seconds)
        and ``server_max_connections``; a malformed one raises ``ConfigurationError``."""
        return cls(
            header_timeout=settings.number("server_header_timeout", 10.0, minimum=0.1),
            body_timeout=settings.number("server_body_timeout", 10.0, minimum=0.1),
            keep_alive=settings.number("server_keep_alive", 5.0, minimum=0.1),
            max_connections=int(settings.number("server_max_connections",
                                                DEFAULT_MAX_CONNECTIONS, minimum=1,
                                                integer=True)),
        )

    def within_fd_limit(self, soft_limit: Optional[int]) -> ServerLimits:
        """These limits with ``max_connections`` lowered to fit ``soft_limit`` file
        descriptors (``None``: unknown, unchanged)."""
        if soft_limit is None or soft_limit - FD_RESERVE >= self.max_connections:
            return self
        fitted = max(1, soft_limit - FD_RESERVE)
        log.warning("server_max_connections lowered from %d to %d: the process may open %d "
                    "files (ulimit -n); raise it to allow more", self.max_connections, fitted,
                    soft_limit)
        return attrs.evolve(self, max_connections=fitted)

    def uvicorn_options(self) -> Dict[str, Any]:
        """The keyword arguments that give a ``uvicorn.Config`` (or ``uvicorn.run``) these
        limits: the guarded HTTP protocol, the keep-alive timeout and the head size cap."""
        from smskit.server.protocol import guarded_protocol

        return {"http": guarded_protocol(self), "timeout_keep_alive": self.keep_alive,
                "h11_max_incomplete_event_size": MAX_HEAD_BYTES}


def raise_fd_limit(wanted: int) -> Optional[int]:
    """Raise this process's soft limit on open files towards ``wanted`` (never above the hard
    limit) and return the soft limit now in force; ``None`` where there is no such limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # not allowed here: keep the limit we have
            log.warning("could not raise the open-file limit to %d: %s", target, exc)
    return None if soft == resource.RLIM_INFINITY else int(soft)
