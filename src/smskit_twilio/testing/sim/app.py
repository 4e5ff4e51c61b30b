"""The Twilio simulator as a Starlette ASGI app: Twilio's Messages API under ``/2010-04-01``
(with the fault switches) and, when ``control=True``, the ``/_sim/`` endpoints that drive it from
another process.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from smskit.errors import ConfigurationError
from smskit.testing.sim.serving import (
    Answer,
    catch_all_app,
    common_control,
    hang,
    json_body,
    respond,
)
from smskit_twilio.testing.sim.api import endpoint_of, handle
from smskit_twilio.testing.sim.core import TwilioApiError, TwilioSimulator

__all__ = ["create_app"]


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
            await hang(request, sim, cfg.hang_seconds)
        elif sim.roll(cfg.error_after_accept_rate):
            return _fault(500, 20500, "Internal Server Error", {})
    return answer


async def _control(request: Request, sim: TwilioSimulator, action: str) -> Answer:
    method = request.method
    body: Any = await json_body(request) if method == "POST" else {}
    if not isinstance(body, dict):
        return Answer(422, {"error": "expected a JSON object"})
    try:
        common = await common_control(sim, action, method, body)
        if common is not None:
            return common
        if action == "inbound" and method == "POST":
            sender, text = body.get("from"), body.get("body")
            if not isinstance(sender, str) or not isinstance(text, str):
                return Answer(422, {"error": "give 'from' (E.164) and 'body'"})
            resource: Dict[str, Any] = await run_in_threadpool(
                lambda: sim.add_inbound(sender, text, to=body.get("to")))
            return Answer(200, resource)
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
            return respond(await _control(request, simulator, path[len("/_sim/"):].strip("/")))
        return respond(await _api(request, simulator))

    return catch_all_app(dispatch)
