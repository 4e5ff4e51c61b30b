"""Run an ASGI app under a real uvicorn server on 127.0.0.1, in a background thread.

Used by smskit's own tests, the demo and the benchmarks, and usable by plugin authors::

    with serve_in_thread(app) as base_url:
        httpx.get(f"{base_url}/healthz")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Iterator, Optional

__all__ = ["ServerHandle", "serve_in_thread"]


class ServerHandle:
    """A running uvicorn server: its ``base_url`` and a ``stop()``."""

    def __init__(self, server: Any, thread: threading.Thread, base_url: str) -> None:
        self.server = server
        self.thread = thread
        self.base_url = base_url

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to shut down and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout)


def start_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    startup_timeout: float = 15.0,
    **uvicorn_options: Any,
) -> ServerHandle:
    """Start ``app`` under uvicorn on ``host:port`` (0 = a free port) and wait until it listens."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, Nagle + delayed ACK add ~40 ms to every
    # request after the first on a kept-alive loopback connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    actual_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, lifespan="auto", **uvicorn_options)
    server = uvicorn.Server(config)
    # uvicorn installs signal handlers only in the main thread; this server's owner stops it.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on {host}:{actual_port}")
        time.sleep(0.01)
    return ServerHandle(server, thread, f"http://{host}:{actual_port}")


@contextlib.contextmanager
def serve_in_thread(app: Any, *, port: int = 0, **options: Any) -> Iterator[str]:
    """Context manager: run ``app`` under uvicorn on loopback and yield its base URL."""
    handle: Optional[ServerHandle] = None
    try:
        handle = start_server(app, port=port, **options)
        yield handle.base_url
    finally:
        if handle is not None:
            handle.stop()
