"""The reference webhook server: a Starlette app factory run by uvicorn (``smskit serve``).

::

    from smskit import SmsKit
    from smskit.server import create_app, serve

    kit = SmsKit.from_env()
    app = create_app(kit)            # any ASGI server can run it
    serve(kit, host="0.0.0.0", port=8000)   # or let smskit run uvicorn

Routes:

* ``POST /webhooks/{provider}/{kind}`` (``kind`` is ``status`` or ``reply``): authenticated by
  the webhook secret, JSON only, size-capped; the body goes to the provider plugin's
  ``parse_webhook`` (on the event loop: it only decodes), its status events to the group
  commit of :mod:`smskit.server.batcher` (callbacks arriving together share one store
  transaction, :meth:`smskit.kit.SmsKit.apply_statuses`), its replies to
  :meth:`smskit.kit.SmsKit.receive` in a thread pool; this is what
  :meth:`smskit.kit.SmsKit.handle_webhook` does, request by request. The answer is
  ``200 {"statuses", "applied", "ignored", "unknown", "inbound", "new_inbound"}`` once every
  event of the request is committed; ``503`` when the store failed (the gateway retries).
* ``GET /healthz``: ``200 {"status": "ok", ...}``, or ``503`` when the store does not answer.
* ``GET /metrics``: Prometheus text from the app's own registry.
* ``GET /dashboard``, ``GET /api/stats``, ``GET /l/{code}`` and ``/static/``: the dashboard and
  link tracking (:mod:`smskit.server.dashboard`).

Every error is JSON ``{"error": ..., "detail": ...}`` (an HTML page on the dashboard and short
link routes, which people open in a browser) and never carries a traceback.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Set, Tuple, Union

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smskit.config import Settings
from smskit.errors import ConfigurationError, SmsKitError, ValidationError
from smskit.server.access import TokenRedactingMiddleware, query_token
from smskit.server.batcher import StatusBatcher
from smskit.server.dashboard import dashboard_routes
from smskit.server.metrics import ServerMetrics
from smskit.webhooks.auth import (
    TOKEN_HEADER,
    AuthResult,
    WebhookPolicy,
    presented_tokens,
)

# The framework-neutral handler (used by the example Odoo addon) owns the shared rules.
from smskit.webhooks.gate import _is_json, _short, _store_down_errors, parse_json, summary

if TYPE_CHECKING:
    from smskit.kit import SmsKit, WebhookReport
    from smskit.provider import Provider

__all__ = ["KINDS", "WebhookServer", "create_app", "serve"]

log = logging.getLogger(__name__)

#: The webhook kinds a provider may receive.
KINDS = ("status", "reply")

_UNKNOWN_LABEL = "unknown"
_RETRY_AFTER = "30"
_HIDDEN_HEADERS = frozenset({TOKEN_HEADER, "authorization", "cookie"})


def _error(status: int, error: str, detail: Optional[str] = None,
           headers: Optional[Mapping[str, str]] = None) -> JSONResponse:
    body: Dict[str, str] = {"error": error}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


class _TooLarge(Exception):
    """The body went over the cap while streaming."""


class WebhookServer:
    """The request handlers of one app, bound to one :class:`SmsKit` and its policy."""

    def __init__(self, kit: SmsKit, policy: WebhookPolicy, metrics: ServerMetrics) -> None:
        self.kit = kit
        self.policy = policy
        self.metrics = metrics
        self._store_down = _store_down_errors()
        self._known: Set[str] = set()
        self._providers: Dict[str, Provider] = {}
        #: Group commit of status events (see :mod:`smskit.server.batcher`).
        self.batcher = StatusBatcher(kit.apply_statuses)
        try:
            self._known.update(kit.plugins.providers())
        except SmsKitError as exc:  # a broken plugin must not stop the server from starting
            log.warning("could not list provider plugins: %s", exc)

    # -- /webhooks/{provider}/{kind} ------------------------------------------------------
    async def webhook(self, request: Request) -> Response:
        """Authenticate, bound and parse one provider callback, then store its events."""
        name = str(request.path_params["provider"])
        kind = str(request.path_params["kind"])
        started = time.perf_counter()
        outcome, response = await self._webhook(request, name, kind)
        self.metrics.observe_request(
            name if name in self._known else _UNKNOWN_LABEL,
            kind if kind in KINDS else _UNKNOWN_LABEL,
            outcome, time.perf_counter() - started)
        return response

    async def _webhook(self, request: Request, name: str,
                       kind: str) -> Tuple[str, Response]:
        if kind not in KINDS:
            return "not_found", _error(404, "not found",
                                       f"unknown webhook kind {_short(kind)}; "
                                       "expected 'status' or 'reply'")
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        provider = await self._check_provider(name)
        if isinstance(provider, tuple):  # refused: (outcome, response)
            return provider
        if not _is_json(request.headers.get("content-type", "")):
            return "unsupported_media_type", _error(
                415, "unsupported media type", "the body must be JSON (application/json)")
        body, failure = await self._read_body(request)
        if failure is not None:
            return failure
        try:
            parse_json(body)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, lone surrogates
            return "invalid", _error(400, "malformed JSON", str(exc))
        headers = {k: v for k, v in request.headers.items() if k not in _HIDDEN_HEADERS}
        try:
            report = await self._handle(provider, kind, headers, body)
        except ValidationError as exc:
            return "invalid", _error(400, "invalid payload", str(exc))
        except self._store_down:
            log.exception("webhook %s/%s: the store failed; answering 503", name, kind)
            return "store_error", _error(503, "store unavailable",
                                         "the events were not stored; retry later",
                                         headers={"Retry-After": _RETRY_AFTER})
        except Exception:  # the body never carries the error; the log has the traceback
            log.exception("webhook %s/%s: unexpected error", name, kind)
            return "error", _error(500, "internal error")
        self.metrics.observe_report(name, report)
        return "ok", JSONResponse(summary(report))

    def _authenticate(self, request: Request) -> Optional[Tuple[str, Response]]:
        policy = self.policy
        if policy.mode == "disabled":
            return "not_configured", _error(
                503, "webhook secret not configured",
                "set SMSKIT_WEBHOOK_SECRET (or SMSKIT_ALLOW_INSECURE_WEBHOOKS=true for a "
                "local demo); no webhook is accepted until then")
        host = request.client.host if request.client is not None else None
        if not policy.ip_allowed(host):
            log.warning("webhook refused: client address %s is not in webhook_allow_ips", host)
            return "forbidden", _error(403, "forbidden", "client address not allowed")
        result = policy.check_tokens(presented_tokens(request.headers,
                                                      query_token(request.scope)))
        if result is AuthResult.MISSING:
            return "unauthorized", _error(
                401, "unauthorized",
                "missing webhook token (?token=, X-Smskit-Token or Authorization: Bearer)",
                headers={"WWW-Authenticate": "Bearer"})
        if result is not AuthResult.OK:
            log.warning("webhook refused: wrong token from %s", host)
            return "forbidden", _error(403, "forbidden", "invalid webhook token")
        return None

    async def _handle(self, provider: Provider, kind: str, headers: Mapping[str, str],
                      body: bytes) -> WebhookReport:
        """What :meth:`SmsKit.handle_webhook` does, with the status events group-committed.

        The parse runs on the loop (a provider's ``parse_webhook`` only decodes the body);
        the status events go to the batcher, replies to the thread pool once those are stored.
        """
        from smskit.kit import WebhookReport

        payload = provider.parse_webhook(kind, headers, body)
        statuses = await self.batcher.submit(payload.statuses) if payload.statuses else []
        inbound = (await run_in_threadpool(lambda: [self.kit.receive(i) for i in payload.inbound])
                   if payload.inbound else [])
        return WebhookReport(statuses=statuses, inbound=inbound)

    async def _check_provider(self, name: str) -> Union[Provider, Tuple[str, Response]]:
        provider = self._providers.get(name)
        if provider is None:
            try:
                provider = await run_in_threadpool(self.kit.provider, name)
            except ConfigurationError as exc:
                if name not in self._known:
                    return "not_found", _error(404, "not found",
                                               f"unknown provider {_short(name)}")
                log.error("webhook: provider %s could not be built: %s", name, exc)
                return "provider_error", _error(
                    503, "provider unavailable", f"provider {name!r} is not configured",
                    headers={"Retry-After": _RETRY_AFTER})
            self._known.add(name)
            self._providers[name] = provider  # SmsKit.provider builds each one once too
        if not provider.capabilities.webhooks:
            return "not_found", _error(404, "not found",
                                       f"provider {name!r} does not accept webhooks")
        return provider

    async def _read_body(self, request: Request) -> Tuple[bytes, Optional[Tuple[str, Response]]]:
        limit = self.policy.max_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return b"", ("invalid", _error(400, "bad request",
                                               f"invalid Content-Length {_short(declared)}"))
            if size > limit:
                return b"", ("too_large", _error(
                    413, "payload too large",
                    f"Content-Length {size} exceeds the limit of {limit} bytes"))
        try:
            return await self._stream(request, limit), None
        except _TooLarge:
            return b"", ("too_large", _error(
                413, "payload too large", f"the body exceeds the limit of {limit} bytes"))
        except ClientDisconnect:
            return b"", ("disconnected", _error(400, "bad request", "client disconnected"))

    @staticmethod
    async def _stream(request: Request, limit: int) -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise _TooLarge()
        return bytes(body)

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

    async def metrics_endpoint(self, request: Request) -> Response:
        """The Prometheus text exposition of this app's registry."""
        from prometheus_client import CONTENT_TYPE_LATEST

        body: bytes = await run_in_threadpool(self.metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        error = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "error")
        return _error(exc.status_code, error, exc.detail, headers=exc.headers)
    return _error(500, "internal error")


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _error(500, "internal error")


def create_app(kit: SmsKit, *, settings: Optional[Settings] = None) -> Starlette:
    """The webhook server for ``kit`` (``settings`` default: ``kit.settings``).

    Reads ``webhook_secret``, ``allow_insecure_webhooks``, ``webhook_allow_ips`` and
    ``webhook_max_bytes`` once; a malformed one raises :class:`ConfigurationError` here.
    ``app.state.kit``, ``app.state.metrics`` and ``app.state.registry`` (the app's own Prometheus
    registry, for extra metrics) are set.
    """
    policy = WebhookPolicy.from_settings(settings or kit.settings)
    if policy.mode == "disabled":
        log.warning("webhook secret not configured: every webhook will be refused with 503 "
                    "(set SMSKIT_WEBHOOK_SECRET)")
    elif policy.mode == "insecure":
        log.warning("webhooks accept requests WITHOUT a token (allow_insecure_webhooks=true); "
                    "use this for local demos only")
    metrics = ServerMetrics(kit)
    server = WebhookServer(kit, policy, metrics)
    # Any: Starlette's middleware-factory protocol is typed differently across its versions
    redactor: Any = TokenRedactingMiddleware
    app = Starlette(
        routes=[
            Route("/webhooks/{provider}/{kind}", server.webhook, methods=["POST"]),
            Route("/healthz", server.healthz, methods=["GET"]),
            Route("/metrics", server.metrics_endpoint, methods=["GET"]),
            *dashboard_routes(kit, settings or kit.settings),
        ],
        middleware=[Middleware(redactor)],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.kit = kit
    app.state.server = server
    app.state.metrics = metrics
    app.state.registry = metrics.registry
    return app


def log_config(level: str = "info") -> Dict[str, Any]:
    """uvicorn's logging configuration plus the ``smskit`` loggers on the same handler."""
    from uvicorn.config import LOGGING_CONFIG

    config: Dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["smskit"] = {"handlers": ["default"], "level": level.upper(),
                                   "propagate": False}
    return config


def serve(kit: SmsKit, host: str = "127.0.0.1", port: int = 8000, *,
          settings: Optional[Settings] = None, log_level: str = "info",
          **uvicorn_options: Any) -> None:
    """Run :func:`create_app` under uvicorn until interrupted (what ``smskit serve`` does).

    uvicorn's own access log is off by default: the app logs every request itself to
    ``smskit.server.access`` with the ``token`` query parameter redacted. Extra keyword
    arguments go to :func:`uvicorn.run` (``forwarded_allow_ips``, ``ssl_certfile``...); one
    process serves the app (``workers`` needs an import string: use ``create_app`` in your own
    module and run uvicorn or gunicorn on it).
    """
    import uvicorn

    app = create_app(kit, settings=settings)
    options: Dict[str, Any] = {"access_log": False, "log_config": log_config(log_level)}
    options.update(uvicorn_options)
    uvicorn.run(app, host=host, port=port, log_level=log_level, **options)
