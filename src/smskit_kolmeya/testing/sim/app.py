"""The simulator as a Starlette ASGI app: the Kolmeya API under ``/api/v1`` (with the fault
switches) and, when ``control=True``, the ``/_sim/`` endpoints that drive it from another process.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any, Awaitable, Callable

import attrs
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smskit.errors import ConfigurationError, NotFoundError, ValidationError
from smskit_kolmeya.testing.sim.api import (
    NOT_FOUND,
    SEND_ENDPOINTS,
    Answer,
    Handler,
    call,
    resolve,
)
from smskit_kolmeya.testing.sim.core import KolmeyaSimulator

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_BAD_JSON = object()


def _respond(answer: Answer) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return _BAD_JSON


async def _hang(request: Request, sim: KolmeyaSimulator, seconds: float) -> None:
    """Hold the answer for ``seconds``, giving up early once the client has gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline and not sim.closed:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))


def _authorised(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


async def _api(request: Request, sim: KolmeyaSimulator, endpoint: str) -> Answer:
    cfg = sim.config
    try:
        body = await _json_body(request)
    except ClientDisconnect:
        return Answer(400, {"errors": ["Client closed the request."]})  # nobody will read it
    if cfg.slow_seconds:
        await asyncio.sleep(cfg.slow_seconds)
    handler = resolve(endpoint)
    if handler is None or request.method != "POST":
        return Answer(404, NOT_FOUND)
    if not _authorised(request, cfg.token):
        return Answer(401, {"errors": ["Unauthenticated."]})
    allowed, limits = sim.take_rate()
    if not allowed:
        return Answer(429, {"errors": ["Too Many Attempts."]}, limits)
    answer = await _answer(request, sim, endpoint, handler, body)
    return attrs.evolve(answer, headers={**answer.headers, **limits}) if limits else answer


async def _answer(request: Request, sim: KolmeyaSimulator, endpoint: str, handler: Handler,
                  body: Any) -> Answer:
    """The answer of an authorised request within the rate limit (the fault switches, then
    the endpoint)."""
    cfg = sim.config
    faulty = not cfg.fault_endpoints or endpoint in cfg.fault_endpoints
    if faulty and sim.roll(cfg.fail_429_rate):
        return Answer(429, {"errors": ["Too Many Attempts."]},
                      {"Retry-After": str(cfg.retry_after)})
    if faulty and sim.roll(cfg.fail_500_rate):
        return Answer(500, {"errors": ["Server Error"]})
    if body is _BAD_JSON:
        return Answer(422, {"errors": ["The given data was invalid."]})
    base = str(request.base_url).rstrip("/") + API_PREFIX
    answer = call(handler, sim, body, f"{base}/{endpoint}")
    if answer.status == 200 and faulty and endpoint in SEND_ENDPOINTS:
        if sim.roll(cfg.timeout_after_accept_rate):
            await _hang(request, sim, cfg.hang_seconds)
        elif sim.roll(cfg.error_after_accept_rate):
            return Answer(500, {"errors": ["Server Error"]})
    return answer


async def _control(request: Request, sim: KolmeyaSimulator, action: str) -> Answer:
    method = request.method
    body = await _json_body(request) if method == "POST" else {}
    if body is _BAD_JSON or not isinstance(body, dict):
        return Answer(422, {"errors": ["Expected a JSON object."]})
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
        if action == "reply" and method == "POST":
            target = body.get("message_id") or body.get("phone")
            text = body.get("text")
            if target is None or not isinstance(text, str):
                return Answer(422, {"errors": ["Give phone or message_id, and text."]})
            return Answer(200, sim.add_reply(target, text))
        if action == "web-reply" and method == "POST":
            phone, text = body.get("phone"), body.get("text")
            if phone is None or not isinstance(text, str):
                return Answer(422, {"errors": ["Give phone and text."]})
            return Answer(200, sim.add_web_reply(phone, text))
        if action == "reset" and method == "POST":
            sim.reset()
            return Answer(200, {"reset": True})
    except ConfigurationError as exc:
        return Answer(422, {"errors": [str(exc)]})
    except NotFoundError as exc:
        return Answer(404, {"errors": [str(exc)]})
    except ValidationError as exc:
        return Answer(422, {"errors": [str(exc)]})
    return Answer(404, NOT_FOUND)


def create_app(simulator: KolmeyaSimulator, *, control: bool = True) -> Starlette:
    """The ASGI app serving ``simulator``: Kolmeya under ``/api/v1``; ``/_sim/`` when ``control``.

    Clients use ``base_url = f"{server}/api/v1"``. Every other path answers 404
    ``{"errors": ["Not found."]}``, as Kolmeya does.
    """

    async def dispatch(request: Request) -> Response:
        path = request.url.path
        if path.startswith(API_PREFIX + "/"):
            return _respond(await _api(request, simulator, path[len(API_PREFIX) + 1:]))
        if control and path.startswith("/_sim/"):
            return _respond(await _control(request, simulator, path[len("/_sim/"):].strip("/")))
        return _respond(Answer(404, NOT_FOUND))

    endpoint: Callable[[Request], Awaitable[Response]] = dispatch
    routes = [Route("/{path:path}", endpoint, methods=_METHODS)]
    return Starlette(routes=routes)

