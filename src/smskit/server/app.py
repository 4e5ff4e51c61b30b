"""The reference webhook server: a Starlette app factory run by uvicorn (``smskit serve``).

::

    from smskit import SmsKit
    from smskit.server import create_app, serve

    kit = SmsKit.from_env()
    app = create_app(kit)            # any ASGI server can run it
    serve(kit, host="0.0.0.0", port=8000)   # or let smskit run uvicorn

Routes:

* ``POST /webhooks/{provider}/{kind}`` (``kind`` is ``status`` or ``reply``): a thin adapter
  over the webhook gate (:mod:`smskit.webhooks.gate`, which holds every rule and every answer):
  it asks the gate about the request head, streams the body under ``webhook_max_bytes``, has
  the gate finish with the body (the head is checked once), and applies the accepted events:
  status events through the group commit of :mod:`smskit.server.batcher` (callbacks arriving
  together share one store transaction), replies through :meth:`smskit.kit.SmsKit.receive` in
  a thread pool. The gate (decoding and the provider's parser) runs on the event loop; a
  provider is built on first use. The answer is ``200 {"statuses", "applied", "ignored",
  "unknown", "inbound", "new_inbound"}`` once every event of the request is committed; ``503``
  when the store failed (the gateway retries).
  The body must arrive within ``server_body_timeout`` seconds of the head (``408`` and the
  connection closed otherwise).
* ``GET /healthz``: ``200 {"status": "ok", ...}``, or ``503`` when the store does not answer.
* ``GET /metrics``: Prometheus text from the app's own registry (:mod:`smskit.server.metrics`:
  store figures cached, text rendered at most once a second). It needs ``metrics_token``
  (Bearer, or the Basic password); without one it is open only when the server is bound to a
  loopback address (``bind_host``), and ``503`` otherwise (:mod:`smskit.server.credentials`).
* ``GET /dashboard``, ``GET /api/stats``, ``GET /l/{code}`` and ``/static/``: the dashboard and
  link tracking (:mod:`smskit.server.dashboard`).

Every error is JSON ``{"error": ..., "detail": ...}`` (an HTML page on the dashboard and short
link routes, which people open in a browser) and never carries a traceback. The connection
limits (request-head timeout, idle keep-alive, cap on connections) are uvicorn's side:
:func:`serve` applies :mod:`smskit.server.limits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from smskit.config import Settings
from smskit.server.access import TokenRedactingMiddleware, original_query
from smskit.server.batcher import StatusBatcher
from smskit.server.credentials import Credential, is_loopback
from smskit.server.dashboard import Dashboard
from smskit.server.limits import FD_RESERVE, ServerLimits, raise_fd_limit, spread
from smskit.server.metrics import (
    DEFAULT_CACHE_SECONDS,
    DEFAULT_MAX_PER_SECOND,
    ServerMetrics,
)
from smskit.webhooks.apply import WebhookReport
from smskit.webhooks.auth import WebhookPolicy
from smskit.webhooks.gate import (
    KINDS,
    Accepted,
    WebhookGate,
    WebhookResponse,
    answer,
    client_disconnected,
    failure,
    http_error,
    internal_error,
    request_timeout,
)
from smskit.webhooks.request import WebhookRequest, parse_query
from smskit.webhooks.throttle import REFUSALS

if TYPE_CHECKING:
    from smskit.kit import SmsKit

__all__ = ["WebhookServer", "create_app", "serve"]

log = logging.getLogger(__name__)

_UNKNOWN_LABEL = "unknown"


def _json(response: WebhookResponse) -> JSONResponse:
    return JSONResponse(response.body, status_code=response.status, headers=response.headers)


#: JSONResponse's encoding, built once (``json.dumps`` with options builds an encoder a call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None,
                            separators=(",", ":"))


async def _send_json(send: Send, response: WebhookResponse) -> None:
    """Send ``response`` as :class:`JSONResponse` would (same body bytes and headers), without
    building a response object."""
    body = _ENCODER.encode(response.body).encode("utf-8")
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
               for k, v in response.headers.items()]
    headers.append((b"content-length", str(len(body)).encode("latin-1")))
    headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _webhook_request(scope: Scope) -> WebhookRequest:
    """The gate's view of a request, without its body; the query and URL as sent (the
    middleware redacted the scope's copy)."""
    query = original_query(scope)
    params = scope["path_params"]
    client = scope.get("client")
    return WebhookRequest(
        provider=str(params["provider"]), kind=str(params["kind"]), method=scope["method"],
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
        query=parse_query(query), client_host=client[0] if client else None,
        url=str(URL(scope={**scope, "query_string": query})))


class _Disconnected(Exception):
    """The caller went away before its body arrived."""


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The body, or its first bytes once it went over ``limit`` (the gate refuses it then)."""
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        return bytes(message.get("body", b""))  # all of it at once: the usual callback
    body = bytearray()
    while True:
        if message["type"] == "http.disconnect":
            raise _Disconnected
        if message["type"] == "http.request":
            body.extend(message.get("body", b""))
            if len(body) > limit or not message.get("more_body", False):
                return bytes(body)
        message = await receive()


if sys.version_info >= (3, 11):
    async def _read_body_within(receive: Receive, limit: int, seconds: float) -> bytes:
        """:func:`_read_body` within ``seconds`` (``asyncio.TimeoutError`` otherwise): a
        timer on the running task, where ``wait_for`` (before 3.12) makes a task per call."""
        async with asyncio.timeout(seconds):
            return await _read_body(receive, limit)
else:  # pragma: no cover - Python 3.8 to 3.10
    async def _read_body_within(receive: Receive, limit: int, seconds: float) -> bytes:
        """:func:`_read_body` within ``seconds`` (``asyncio.TimeoutError`` otherwise)."""
        return await asyncio.wait_for(_read_body(receive, limit), seconds)


class _AsgiRoute:
    """An ASGI callable that Starlette's ``Route`` mounts as it is (a function or method would
    be wrapped in its Request/Response adapter, which the webhook route does without)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        await self.app(scope, receive, send)


class WebhookServer:
    """The request handlers of one app, bound to one :class:`SmsKit` and its policy.

    ``metrics_token`` guards ``/metrics``; without one, ``metrics_open`` says whether it is
    open (the server is bound to loopback).
    """

    def __init__(self, kit: SmsKit, policy: WebhookPolicy, metrics: ServerMetrics, *,
                 limits: Optional[ServerLimits] = None,
                 metrics_token: Optional[Credential] = None,
                 metrics_open: bool = False) -> None:
        self.kit = kit
        self.policy = policy
        self.metrics = metrics
        self.limits = limits or ServerLimits()
        self.metrics_token = metrics_token or Credential(None, setting="metrics_token")
        self.metrics_open = metrics_open and not self.metrics_token.configured
        self.gate = WebhookGate.for_kit(kit, policy=policy)
        #: Group commit of status events (see :mod:`smskit.server.batcher`).
        self.batcher = StatusBatcher(kit.apply_statuses)

    # -- /webhooks/{provider}/{kind} ------------------------------------------------------
    async def webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one provider callback with the gate, then store its events (an ASGI app:
        the hottest route goes without Starlette's Request and Response objects)."""
        started = time.perf_counter()
        head = _webhook_request(scope)
        response = await self._webhook(head, receive)
        self.metrics.observe_request(
            head.provider if self.gate.is_known(head.provider) else _UNKNOWN_LABEL,
            head.kind if head.kind in KINDS else _UNKNOWN_LABEL,
            response.outcome, time.perf_counter() - started)
        await _send_json(send, response)

    async def _webhook(self, head: WebhookRequest, receive: Receive) -> WebhookResponse:
        admission = self.gate.begin(head)  # no body read for a refused caller
        if isinstance(admission, WebhookResponse):
            return admission
        timeout = self.limits.body_timeout
        try:
            body = await _read_body_within(receive, self.policy.max_bytes, spread(timeout))
        except _Disconnected:
            return client_disconnected()
        except asyncio.TimeoutError:
            return request_timeout(timeout)
        decision = self.gate.finish(admission, body)
        if isinstance(decision, WebhookResponse):
            return decision
        try:
            report = await self._apply(decision)
        except Exception as exc:  # mapped (and logged) by the gate
            return failure(exc, decision.provider, decision.kind)
        self.metrics.observe_report(decision.provider, report)
        return answer(report)

    async def _apply(self, accepted: Accepted) -> WebhookReport:
        """:func:`smskit.webhooks.apply.apply_payload` with the status events group-committed
        with those of concurrent requests, replies in the thread pool once those are stored."""
        payload = accepted.payload
        statuses = await self.batcher.submit(payload.statuses) if payload.statuses else []
        inbound = (await run_in_threadpool(lambda: [self.kit.receive(i) for i in payload.inbound])
                   if payload.inbound else [])
        return WebhookReport(statuses=statuses, inbound=inbound)

    # -- /healthz and /metrics -------------------------------------------------------------
    def _ping_store(self) -> None:
        self.kit.store.ping()

    async def healthz(self, request: Request) -> Response:
        """``200`` when the store answers, ``503`` otherwise; says how webhooks are guarded."""
        try:
            await run_in_threadpool(self._ping_store)
        except Exception as exc:  # any failure of the store means "not healthy"
            log.warning("healthz: the store did not answer: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "store": "unreachable",
                                 "webhooks": self.policy.mode}, status_code=503)
        return JSONResponse({"status": "ok", "store": "ok", "webhooks": self.policy.mode})

    def _metrics_denied(self, request: Request) -> Optional[Response]:
        """The refusal of a scrape without the metrics token, or ``None``."""
        credential = self.metrics_token
        if credential.configured:
            if credential.allows(request.headers):
                return None
            if "authorization" in request.headers:
                client = request.client.host if request.client is not None else None
                REFUSALS.warning(log, "metrics", client,
                                 "metrics refused: wrong credentials from %s", client)
            return JSONResponse({"error": "unauthorized", "detail": "send the metrics token as "
                                 "Authorization: Bearer <token> (or the Basic password)"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if self.metrics_open:
            return None
        return JSONResponse({"error": "metrics not configured", "detail": (
            f"set {credential.variable} (a token of its own, not the webhook secret), or bind "
            "the server to 127.0.0.1 to leave /metrics open to this machine")},
            status_code=503)

    async def metrics_endpoint(self, request: Request) -> Response:
        """The Prometheus text exposition of this app's registry."""
        from prometheus_client import CONTENT_TYPE_LATEST

        denied = self._metrics_denied(request)
        if denied is not None:
            return denied
        body = await self.metrics.scrape()
        return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _json(http_error(exc.status_code, exc.detail, exc.headers))
    return _json(internal_error())


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _json(internal_error())


def create_app(kit: SmsKit, *, settings: Optional[Settings] = None,
               bind_host: Optional[str] = None, close_kit: bool = False) -> Starlette:
    """The webhook server for ``kit`` (``settings`` default: ``kit.settings``).

    Reads ``webhook_secret``, ``webhook_secrets_previous``, ``allow_insecure_webhooks``,
    ``webhook_allow_ips``, ``webhook_max_bytes``, ``dashboard_token``, ``metrics_token``,
    ``metrics_cache_seconds``, ``metrics_max_per_second`` and the ``server_*`` limits once; a
    malformed one raises :class:`ConfigurationError` here. ``bind_host`` is the address the
    server listens on, when the caller knows it (:func:`serve` passes it): without
    ``metrics_token``, ``/metrics`` is open only when it is a loopback address.
    ``app.state.kit``, ``app.state.metrics``, ``app.state.dashboard`` and
    ``app.state.registry`` (the app's own Prometheus registry, for extra metrics) are set.
    ``close_kit``: the app owns ``kit`` and closes it when it shuts down (a worker process of
    ``smskit serve --workers N``).
    """
    settings = settings or kit.settings
    policy = WebhookPolicy.from_settings(settings)
    if policy.mode == "disabled":
        log.warning("webhook secret not configured: every webhook will be refused with 503 "
                    "(set SMSKIT_WEBHOOK_SECRET)")
    elif policy.mode == "insecure":
        log.warning("webhooks accept requests WITHOUT a token (allow_insecure_webhooks=true); "
                    "use this for local demos only")
    limits = ServerLimits.from_settings(settings)
    metrics = ServerMetrics(
        kit, cache_seconds=settings.number("metrics_cache_seconds", DEFAULT_CACHE_SECONDS),
        max_per_second=settings.number("metrics_max_per_second", DEFAULT_MAX_PER_SECOND))
    metrics_token = Credential.from_settings(settings, "metrics_token")
    server = WebhookServer(kit, policy, metrics, limits=limits, metrics_token=metrics_token,
                           metrics_open=is_loopback(bind_host))
    if not metrics_token.configured and not server.metrics_open:
        log.warning("/metrics answers 503: set SMSKIT_METRICS_TOKEN, or bind the server to "
                    "127.0.0.1")
    dashboard = Dashboard(kit, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:  # clicks still waiting are written before the process goes
            await dashboard.close()
            if close_kit:
                kit.close()

    # Any: Starlette's middleware-factory protocol is typed differently across its versions
    redactor: Any = TokenRedactingMiddleware
    app = Starlette(
        routes=[
            Route("/webhooks/{provider}/{kind}", _AsgiRoute(server.webhook), methods=["POST"]),
            Route("/healthz", server.healthz, methods=["GET"]),
            Route("/metrics", server.metrics_endpoint, methods=["GET"]),
            *dashboard.routes(),
        ],
        middleware=[Middleware(redactor)],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.kit = kit
    app.state.server = server
    app.state.dashboard = dashboard
    app.state.metrics = metrics
    app.state.registry = metrics.registry
    return app


def log_config(level: str = "info", *, with_pid: bool = False) -> Dict[str, Any]:
    """uvicorn's logging configuration plus the ``smskit`` loggers on the same handler;
    ``with_pid``: each line says which process wrote it (several workers share the output)."""
    from uvicorn.config import LOGGING_CONFIG

    config: Dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    if with_pid:
        config["formatters"]["default"]["fmt"] = "%(levelprefix)s [%(process)d] %(message)s"
    config["loggers"]["smskit"] = {"handlers": ["default"], "level": level.upper(),
                                   "propagate": False}
    return config


def serve(kit: SmsKit, host: str = "127.0.0.1", port: int = 8000, *,
          settings: Optional[Settings] = None, log_level: str = "info",
          **uvicorn_options: Any) -> None:
    """Run :func:`create_app` under uvicorn until interrupted (what ``smskit serve`` does).

    uvicorn's own access log is off by default: the app logs every request itself to
    ``smskit.server.access`` with the token query parameters redacted. The server's limits
    (:mod:`smskit.server.limits`: request-head and body timeouts, idle keep-alive, a cap on
    open connections) come from the settings, and the process's open-file limit is raised
    towards what the cap needs. Extra keyword arguments go to :func:`uvicorn.run`
    (``forwarded_allow_ips``, ``ssl_certfile``...); one process serves the app (for several,
    ``smskit serve --workers N``: :func:`smskit.server.workers.serve_workers`).
    """
    import uvicorn

    settings = settings or kit.settings
    limits = ServerLimits.from_settings(settings)
    limits = limits.within_fd_limit(raise_fd_limit(limits.max_connections + FD_RESERVE))
    app = create_app(kit, settings=settings, bind_host=host)
    options: Dict[str, Any] = {"access_log": False, "log_config": log_config(log_level),
                               **limits.uvicorn_options()}
    options.update(uvicorn_options)
    uvicorn.run(app, host=host, port=port, log_level=log_level, **options)
