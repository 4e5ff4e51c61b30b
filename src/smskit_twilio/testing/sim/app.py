"""The Twilio simulator as a Starlette ASGI app: Twilio's Messages API under ``/2010-04-01``
(with the fault switches) and, when ``control=True``, the ``/_sim/`` endpoints that drive it from
another process.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Dict
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smskit.errors import ConfigurationError
from smskit_twilio.testing.sim.api import Answer, endpoint_of, handle
from smskit_twilio.testing.sim.core import TwilioApiError, TwilioSimulator

__all__ = ["create_app"]

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _respond(answer: Answer) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


async def _hang(request: Request, sim: TwilioSimulator, seconds: float) -> None:
    """Hold the answer for ``seconds``, giving up early once the client has gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline and not sim.closed:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))


def _fault(status: int, code: int, message: str, headers: Dict[str, str]) -> Answer:
    return Answer(status, TwilioApiError(status, code, message).body(), headers)


async def _api(request: Request, sim: TwilioSimulator) -> Answer:
    cfg = sim.config
    try:
        raw = await request.body()
    except ClientDisconnect:
        return Answer(400, None)  # nobody will read it
    form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if cfg.slow_seconds:
        await asyncio.sleep(cfg.slow_seconds)
    path = request.url.path
    endpoint = endpoint_of(request.method, path)
    faulty = endpoint is not None and (not cfg.fault_endpoints or endpoint in cfg.fault_endpoints)
    if faulty and endpoint == "messages.create" and cfg.fault_numbers:
        faulty = form.get("To", "") in cfg.fault_numbers
    if faulty and sim.roll(cfg.fail_429_rate):
        headers = {} if cfg.retry_after is None else {"Retry-After": str(cfg.retry_after)}
        return _fault(429, 20429, "Too Many Requests", headers)
    if faulty and sim.roll(cfg.fail_500_rate):
        return _fault(500, 20500, "Internal Server Error", {})
    answer = handle(sim, request.method, path, dict(request.query_params), form,
                    request.headers.get("authorization", ""))
    if faulty and endpoint == "messages.create" and answer.status == 201:
        if sim.roll(cfg.timeout_after_accept_rate):
            await _hang(request, sim, cfg.hang_seconds)
        elif sim.roll(cfg.error_after_accept_rate):
            return _fault(500, 20500, "Internal Server Error", {})
    return answer


async def _control(request: Request, sim: TwilioSimulator, action: str) -> Answer:
    method = request.method
    body: Any = {}
    if method == "POST":
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
    if not isinstance(body, dict):
        return Answer(422, {"error": "expected a JSON object"})
    try:
        if action == "stats" and method == "GET":
            return Answer(200, sim.stats())
        if action == "config" and method == "GET":
            return Answer(200, sim.config.as_json())
        if action == "config" and method == "POST":
            return Answer(200, sim.configure(**body).as_json())
        if action == "advance" and method == "POST":
            changed: int = await run_in_threadpool(sim.advance)
            return Answer(200, {"changed": changed})
        if action == "inbound" and method == "POST":
            sender, text = body.get("from"), body.get("body")
            if not isinstance(sender, str) or not isinstance(text, str):
                return Answer(422, {"error": "give 'from' (E.164) and 'body'"})
            resource: Dict[str, Any] = await run_in_threadpool(
                lambda: sim.add_inbound(sender, text, to=body.get("to")))
            return Answer(200, resource)
        if action == "reset" and method == "POST":
            sim.reset()
            return Answer(200, {"reset": True})
    except ConfigurationError as exc:
        return Answer(422, {"error": str(exc)})
    except TwilioApiError as exc:
        return Answer(exc.status, exc.body())
    return Answer(404, {"error": "not found"})


def create_app(simulator: TwilioSimulator, *, control: bool = True) -> Starlette:
    """The ASGI app serving ``simulator``: Twilio's API at ``/2010-04-01/...`` (clients use the
    server's root as ``base_url``); ``/_sim/...`` when ``control``."""

    async def dispatch(request: Request) -> Response:
        path = request.url.path
        if control and path.startswith("/_sim/"):
            return _respond(await _control(request, simulator, path[len("/_sim/"):].strip("/")))
        return _respond(await _api(request, simulator))

    endpoint: Callable[[Request], Awaitable[Response]] = dispatch
    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])
