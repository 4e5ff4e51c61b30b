"""Serving a simulator over HTTP: the pieces every simulator's Starlette app and ``main`` share.

Needs the ``server`` extra (Starlette, uvicorn). A provider's app routes its own API and answers
in its own error shapes; what is the same everywhere is here: :class:`Answer` (what an endpoint
handler returns, free of HTTP plumbing) and :func:`respond`, :func:`json_body`, :func:`hang`
(the "accepted, then the answer never comes" fault), :func:`common_control` (the ``/_sim/``
actions every simulator has), :func:`catch_all_app` and :func:`run_simulator`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Dict, List, Optional

import attrs
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smskit.testing.sim.base import SimulatorBase

__all__ = ["BAD_JSON", "METHODS", "Answer", "catch_all_app", "common_control", "hang",
           "json_body", "respond", "run_simulator"]

#: Every method a catch-all route accepts (a simulator answers unknown ones itself).
METHODS: List[str] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: What :func:`json_body` returns for a body that is not JSON.
BAD_JSON: Any = object()


@attrs.frozen
class Answer:
    """An HTTP answer: status, JSON body (``None``: empty body) and extra headers."""

    status: int
    body: Any = None
    headers: Dict[str, str] = attrs.field(factory=dict)


def respond(answer: Answer) -> Response:
    """The Starlette response of ``answer`` (JSON, or empty when its body is ``None``)."""
    if answer.body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


async def json_body(request: Request) -> Any:
    """The request's JSON body: ``{}`` when empty, :data:`BAD_JSON` when it does not parse."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return BAD_JSON


async def hang(request: Request, sim: SimulatorBase[Any], seconds: float) -> None:
    """Hold the answer for ``seconds``, giving up early once the client has gone (or the
    simulator is closed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline and not sim.closed:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))


async def common_control(sim: SimulatorBase[Any], action: str, method: str,
                         body: Dict[str, Any]) -> Optional[Answer]:
    """The ``/_sim/<action>`` endpoints every simulator has; ``None`` for any other.

    ``GET stats``, ``GET config`` (``as_json``), ``POST config`` (``body`` holds the settings to
    change; a bad one raises :class:`smskit.errors.ConfigurationError`, which the caller answers
    in its own error shape), ``POST advance`` (``{"changed": n}``) and ``POST reset``.
    """
    if action == "stats" and method == "GET":
        return Answer(200, sim.stats())
    if action == "config" and method == "GET":
        return Answer(200, sim.config.as_json())
    if action == "config" and method == "POST":
        return Answer(200, sim.configure(**body).as_json())
    if action == "advance" and method == "POST":
        changed: int = await run_in_threadpool(sim.advance)
        return Answer(200, {"changed": changed})
    if action == "reset" and method == "POST":
        sim.reset()
        return Answer(200, {"reset": True})
    return None


def catch_all_app(dispatch: Callable[[Request], Awaitable[Response]]) -> Starlette:
    """A Starlette app sending every path and method to ``dispatch`` (a simulator routes
    itself, so that unknown paths answer as the real gateway does)."""
    return Starlette(routes=[Route("/{path:path}", dispatch, methods=METHODS)])


def run_simulator(simulator: SimulatorBase[Any], create_app: Callable[..., Any], *,
                  host: str, port: int, log_level: str = "info", control: bool = True) -> None:
    """Serve ``create_app(simulator, control=control)`` under uvicorn until interrupted, then
    close ``simulator`` (what a simulator's ``main`` does)."""
    try:
        import uvicorn

        uvicorn.run(create_app(simulator, control=control), host=host, port=port,
                    log_level=log_level)
    finally:
        simulator.close()
