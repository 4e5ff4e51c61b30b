"""The simulator as a Starlette ASGI app: the Kolmeya API under ``/api/v1`` (with the fault
switches) and, when ``control=True``, the ``/_sim/`` endpoints that drive it from another process.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from smskit.errors import ConfigurationError, NotFoundError, ValidationError
from smskit.testing.sim.serving import (
    BAD_JSON,
    Answer,
    catch_all_app,
    common_control,
    hang,
    json_body,
    respond,
)
from smskit_kolmeya.testing.sim.api import NOT_FOUND, SEND_ENDPOINTS, Handler, call, resolve
from smskit_kolmeya.testing.sim.core import KolmeyaSimulator

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"


def _authorised(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


async def _api(request: Request, sim: KolmeyaSimulator, endpoint: str) -> Answer:
    cfg = sim.config
    try:
        body = await json_body(request)
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
    if body is BAD_JSON:
        return Answer(422, {"errors": ["The given data was invalid."]})
    base = str(request.base_url).rstrip("/") + API_PREFIX
    answer = call(handler, sim, body, f"{base}/{endpoint}")
    if answer.status == 200 and faulty and endpoint in SEND_ENDPOINTS:
        if sim.roll(cfg.timeout_after_accept_rate):
            await hang(request, sim, cfg.hang_seconds)
        elif sim.roll(cfg.error_after_accept_rate):
            return Answer(500, {"errors": ["Server Error"]})
    return answer


async def _control(request: Request, sim: KolmeyaSimulator, action: str) -> Answer:
    method = request.method
    body = await json_body(request) if method == "POST" else {}
    if not isinstance(body, dict):
        return Answer(422, {"errors": ["Expected a JSON object."]})
    try:
        common = await common_control(sim, action, method, body)
        if common is not None:
            return common
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
            return respond(await _api(request, simulator, path[len(API_PREFIX) + 1:]))
        if control and path.startswith("/_sim/"):
            return respond(await _control(request, simulator, path[len("/_sim/"):].strip("/")))
        return respond(Answer(404, NOT_FOUND))

    return catch_all_app(dispatch)

