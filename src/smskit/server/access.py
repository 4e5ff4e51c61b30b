"""An ASGI middleware that takes the webhook token out of the URL before anything logs it.

uvicorn's access log prints the query string, and Kolmeya calls ``...?token=<secret>``. This
middleware runs first: it keeps the query string as sent in ``scope["smskit.query_string"]``
(read back with :func:`original_query`, for the webhook gate only), rewrites
``scope["query_string"]`` in place with every ``token`` value replaced by ``********`` (so
uvicorn's access log, Starlette's ``request.url`` and every error log see the redacted form),
and writes its own access log line to the ``smskit.server.access`` logger (when that logger
takes INFO lines: otherwise the response is neither watched nor timed).
"""

from __future__ import annotations

import logging
import time
from typing import List

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smskit.webhooks.auth import split_query_token

__all__ = ["ORIGINAL_QUERY_KEY", "TokenRedactingMiddleware", "original_query"]

#: The scope key holding the query string as sent, ``token`` included.
ORIGINAL_QUERY_KEY = "smskit.query_string"

access_log = logging.getLogger("smskit.server.access")


def original_query(scope: Scope) -> bytes:
    """The query string of this request as sent (the scope's own is redacted)."""
    value = scope.get(ORIGINAL_QUERY_KEY)
    return value if isinstance(value, bytes) else bytes(scope.get("query_string", b""))


class TokenRedactingMiddleware:
    """Redact ``?token=`` in the scope and log each request (method, path, status, time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        original = scope.get("query_string", b"")
        _, redacted = split_query_token(original)
        # the same dict uvicorn holds: its access log now sees the redacted query string
        scope["query_string"] = redacted
        scope[ORIGINAL_QUERY_KEY] = original
        if not access_log.isEnabledFor(logging.INFO):  # no line to write: nothing to watch
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: List[int] = [500]

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            client = scope.get("client")
            query = redacted.decode("latin-1")
            access_log.info(
                '%s - "%s %s%s" %d %.1fms',
                f"{client[0]}:{client[1]}" if client else "-",
                scope.get("method", "-"),
                scope.get("path", ""),
                f"?{query}" if query else "",
                status[0],
                (time.perf_counter() - started) * 1000.0,
            )
