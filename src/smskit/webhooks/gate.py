"""The webhook gate: every rule a provider callback must pass, in one place, with no web framework.

A receiver (the Starlette app of :mod:`smskit.server.app`, an Odoo controller, a Flask view...)
builds a :class:`~smskit.webhooks.request.WebhookRequest` and asks :meth:`WebhookGate.check`,
which answers a :data:`Decision`: either a :class:`WebhookResponse` to send as it is (a
refusal), or :class:`Accepted`, the parsed events to apply (synchronously with
:func:`smskit.webhooks.apply.respond`, or through the server's group commit), after which
:func:`answer` builds the ``200`` and :func:`failure` maps what went wrong. The rules, in order:

1. the method is ``POST`` (405) and the kind one of :data:`KINDS` (404), before anything else;
2. :func:`authenticate`: the webhook secret (503 while none is set), the IP allow list (403),
   the token in constant time (401 missing, 403 wrong: every token presented must be the
   current secret or a previous one, see :mod:`smskit.webhooks.auth`). Nothing else is looked
   at, and no provider is built, for a caller that fails it; the WARNING a refusal logs is
   rate-limited per client address (:mod:`smskit.webhooks.throttle`);
3. the provider exists (404), can be built (503 + ``Retry-After``) and takes webhooks (404);
4. the ``Content-Type`` is one the provider declares (415, see :mod:`smskit.webhooks.media`;
   a request without one is read as the provider's first media type, and a provider
   declaring :data:`~smskit.webhooks.media.ANY` takes any); a ``Content-Length`` is a number
   (400) within ``webhook_max_bytes`` (413);
5. the body is within the cap (413) and decodes (400 ``malformed JSON``), once, here;
6. the provider's own check of the request, when it has one (``verify_webhook``: 401/403),
   over the text as sent;
7. the provider's ``parse_webhook`` (400 ``invalid payload`` for a
   :class:`~smskit.errors.ValidationError`), given the text with the NUL rule applied (U+0000
   becomes U+FFFD, :mod:`smskit.webhooks.media`).

Steps 1 to 4 need no body (:meth:`WebhookGate.check_head`), so a receiver that streams can
refuse before reading it; :meth:`WebhookGate.begin` runs them once and hands back an
:class:`Admission` that :meth:`WebhookGate.finish` completes with the body (so the head is not
checked twice). Errors after acceptance: a store outage is ``503`` with
``Retry-After`` (the gateway retries), anything unexpected ``500`` without detail (the traceback
goes to the log only). Every answer is JSON ``{"error", "detail"}``.

The provider side of the contract (``webhook_media_types``, ``verify_webhook``,
``parse_webhook``) is described in :mod:`smskit.provider`.
"""

from __future__ import annotations

import logging
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Mapping,
    Optional,
    Set,
    Tuple,
    Type,
    Union,
)

import attrs

from smskit.config import Settings
from smskit.errors import ConfigurationError, SmsKitError, StoreError, ValidationError
from smskit.webhooks import media
from smskit.webhooks.auth import (
    TOKEN_HEADER,
    AuthResult,
    WebhookPolicy,
    is_token_param,
    presented_tokens,
    query_tokens,
)
from smskit.webhooks.request import WebhookRequest
from smskit.webhooks.throttle import REFUSALS

if TYPE_CHECKING:
    from smskit.kitbase import BaseKit
    from smskit.provider import Provider, WebhookPayload
    from smskit.webhooks.apply import WebhookReport

__all__ = [
    "KINDS",
    "RETRY_AFTER",
    "Accepted",
    "Admission",
    "Decision",
    "WebhookGate",
    "WebhookResponse",
    "answer",
    "authenticate",
    "client_disconnected",
    "failure",
    "http_error",
    "internal_error",
    "media_types",
    "read_payload",
    "request_timeout",
]

log = logging.getLogger(__name__)

#: The webhook kinds a provider may receive.
KINDS = ("status", "reply")
#: Seconds a gateway is asked to wait before retrying a 503.
RETRY_AFTER = "30"
#: Request headers a provider never sees (they carry the smskit secret or the caller's session).
_HIDDEN_HEADERS = frozenset({TOKEN_HEADER, "authorization", "cookie"})
_METHOD = "POST"


@attrs.frozen(kw_only=True)
class WebhookResponse:
    """What to answer: HTTP status, JSON body, extra headers, and ``outcome``, the label the
    server's metrics count it under (``ok``, ``unauthorized``, ``too_large``...)."""

    status: int
    body: Dict[str, Any]
    headers: Dict[str, str] = attrs.field(factory=dict)
    outcome: str = "ok"


@attrs.frozen(kw_only=True)
class Accepted:
    """A callback that passed every check: the events ``provider`` parsed, to apply."""

    provider: str
    kind: str
    payload: WebhookPayload


#: What :meth:`WebhookGate.check` answers.
Decision = Union[WebhookResponse, Accepted]


@attrs.frozen
class Admission:
    """A request whose head passed steps 1 to 4 (:meth:`WebhookGate.begin`): the provider that
    will read its body, and the media type the body is decoded as. Finish it with the body
    (:meth:`WebhookGate.finish`)."""

    request: WebhookRequest
    provider: Provider
    media_type: str


def _refuse(status: int, error: str, detail: Optional[str] = None, *, outcome: str,
            headers: Optional[Mapping[str, str]] = None) -> WebhookResponse:
    body: Dict[str, Any] = {"error": error}
    if detail is not None:
        body["detail"] = detail
    return WebhookResponse(status=status, body=body, headers=dict(headers or {}),
                           outcome=outcome)


def _short(value: str, limit: int = 64) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def http_error(status: int, detail: Optional[str] = None,
               headers: Optional[Mapping[str, str]] = None) -> WebhookResponse:
    """The JSON answer to a routing error (a path that names no route, a method it refuses)."""
    error, outcome = {404: ("not found", "not_found"),
                      405: ("method not allowed", "not_allowed")}.get(status, ("error", "error"))
    return _refuse(status, error, detail, outcome=outcome, headers=headers)


def internal_error() -> WebhookResponse:
    """``500 {"error": "internal error"}``: never a detail, the log has the traceback."""
    return _refuse(500, "internal error", outcome="error")


def client_disconnected() -> WebhookResponse:
    """The answer (nobody reads it) when the caller went away while sending the body."""
    return _refuse(400, "bad request", "client disconnected", outcome="disconnected")


def request_timeout(seconds: float) -> WebhookResponse:
    """``408``: the body did not arrive within ``seconds``; the connection is closed (a slow
    client must not hold it)."""
    return _refuse(408, "request timeout", f"the body did not arrive within {seconds:g} s",
                   outcome="timeout", headers={"Connection": "close"})


def answer(report: WebhookReport) -> WebhookResponse:
    """The ``200`` of an applied callback: what its events changed."""
    statuses = len(report.statuses)
    applied = sum(1 for s in report.statuses if s.applied)
    unknown = sum(1 for s in report.statuses if s.message is None)
    return WebhookResponse(status=200, body={
        "statuses": statuses,
        "applied": applied,
        "ignored": statuses - applied - unknown,
        "unknown": unknown,
        "inbound": len(report.inbound),
        "new_inbound": sum(1 for i in report.inbound if i.created),
    })


def _store_down_errors() -> Tuple[Type[BaseException], ...]:
    errors: Tuple[Type[BaseException], ...] = (StoreError, OSError)
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # pragma: no cover - SQLAlchemy is a core dependency
        return errors
    return (*errors, OperationalError)


def failure(exc: Exception, provider: str, kind: str) -> WebhookResponse:
    """The answer to an error raised while parsing or applying a callback (logged here)."""
    if isinstance(exc, ValidationError):
        return _refuse(400, "invalid payload", str(exc), outcome="invalid")
    if isinstance(exc, _store_down_errors()):
        log.error("webhook %s/%s: the store failed; answering 503", provider, kind,
                  exc_info=exc)
        return _refuse(503, "store unavailable", "the events were not stored; retry later",
                       outcome="store_error", headers={"Retry-After": RETRY_AFTER})
    log.error("webhook %s/%s: unexpected error", provider, kind, exc_info=exc)
    return internal_error()


def authenticate(policy: WebhookPolicy, request: WebhookRequest) -> Optional[WebhookResponse]:
    """Steps 1 and 2: the refusal for a request that names no webhook or whose caller lacks the
    secret (or comes from a refused address), or ``None``. It needs no provider and no store,
    so a receiver may call it before building anything; :meth:`WebhookGate.check` calls it
    again anyway."""
    if request.method.upper() != _METHOD:
        return http_error(405, "Method Not Allowed", {"Allow": _METHOD})
    if request.kind not in KINDS:
        return _refuse(404, "not found",
                       f"unknown webhook kind {_short(request.kind)}; expected 'status' or "
                       "'reply'", outcome="not_found")
    if policy.mode == "disabled":
        return _refuse(503, "webhook secret not configured",
                       "set SMSKIT_WEBHOOK_SECRET (or SMSKIT_ALLOW_INSECURE_WEBHOOKS=true for a "
                       "local demo); no webhook is accepted until then", outcome="not_configured")
    host = request.client_host
    if not policy.ip_allowed(host):
        REFUSALS.warning(log, "webhook address", host,
                         "webhook refused: client address %s is not in webhook_allow_ips", host)
        return _refuse(403, "forbidden", "client address not allowed", outcome="forbidden")
    result = policy.check_tokens(presented_tokens(request.headers, query_tokens(request.query)))
    if result is AuthResult.MISSING:
        return _refuse(401, "unauthorized",
                       "missing webhook token (?token=, X-Smskit-Token or Authorization: Bearer)",
                       outcome="unauthorized", headers={"WWW-Authenticate": "Bearer"})
    if result is not AuthResult.OK:
        REFUSALS.warning(log, "webhook token", host, "webhook refused: wrong token from %s", host)
        return _refuse(403, "forbidden", "invalid webhook token", outcome="forbidden")
    return None


def media_types(provider: Provider) -> Tuple[str, ...]:
    """The media types ``provider`` takes webhooks in (``webhook_media_types``, default JSON);
    :class:`ConfigurationError` when it names one the gate cannot decode."""
    declared = tuple(provider.webhook_media_types)
    unknown = [m for m in declared if m not in media.MEDIA_TYPES]
    if unknown or not declared:
        raise ConfigurationError(
            f"provider {provider.name!r}: webhook_media_types must name some of "
            f"{', '.join(media.MEDIA_TYPES)}, got {declared!r}")
    return declared


def _for_provider(request: WebhookRequest, data: Any,
                  body: Optional[bytes] = None) -> WebhookRequest:
    """The request a provider sees: its body (``body``, default the request's) and what it
    decodes to, and no smskit token or session."""
    return attrs.evolve(
        request, data=data, body=request.body if body is None else body,
        headers={k: v for k, v in request.headers.items() if k not in _HIDDEN_HEADERS},
        query=tuple((k, v) for k, v in request.query if not is_token_param(k)))


def _nul_free(request: WebhookRequest) -> WebhookRequest:
    """The request the parser sees: its decoded body with the NUL rule applied (after the
    provider's own check, which covers the text as sent; see :mod:`smskit.webhooks.media`)."""
    if not media.may_hold_nul(request.body):
        return request
    return attrs.evolve(request, data=media.without_nul(request.data))


def _verify(provider: Provider, request: WebhookRequest) -> Optional[WebhookResponse]:
    """Step 6: the provider's own check (a signature), when it declares one."""
    result = provider.verify_webhook(request)
    if result is AuthResult.OK:
        return None
    name = request.provider
    if result is AuthResult.MISSING:
        return _refuse(401, "unauthorized", f"missing the {name!r} webhook signature",
                       outcome="unauthorized")
    REFUSALS.warning(log, "webhook signature", request.client_host,
                     "webhook refused: the %s signature check failed for %s", name,
                     request.client_host)
    return _refuse(403, "forbidden", f"invalid {name!r} webhook signature", outcome="forbidden")


def read_payload(provider: Provider, request: WebhookRequest) -> WebhookPayload:
    """Decode and parse a callback without the gate's checks, for a caller that trusts it
    (:meth:`smskit.kit.SmsKit.handle_webhook`), reading its ``Content-Type`` as the gate does
    (:func:`smskit.webhooks.media.match`: without one, the provider's first media type). A
    body of another media type, one that does not decode or one the provider does not
    recognise raises :class:`ValidationError`."""
    accepted = media_types(provider)
    media_type = media.match(accepted, request.headers.get("content-type", ""))
    if media_type is None:
        raise ValidationError(media.expectation(accepted))
    try:
        data = media.decode(media_type, request.body)
    except ValueError as exc:
        raise ValidationError(f"{media.malformed(media_type)}: {exc}") from exc
    return provider.parse_webhook(_nul_free(_for_provider(request, data)))


class WebhookGate:
    """The rules of the module, bound to a policy and a way to find providers.

    ``providers(name)`` builds or returns the provider called ``name``, raising
    :class:`ConfigurationError` when it cannot; ``known`` are the provider names that exist
    (a name outside them is a 404, a known one that fails to build a 503). Build it with
    :meth:`for_kit`.
    """

    def __init__(self, policy: WebhookPolicy, providers: Callable[[str], Provider],
                 known: Iterable[str] = ()) -> None:
        self.policy = policy
        self._providers = providers
        self._known: Set[str] = set(known)

    @classmethod
    def for_kit(cls, kit: BaseKit, *, settings: Optional[Settings] = None,
                policy: Optional[WebhookPolicy] = None) -> WebhookGate:
        """The gate of ``kit``: its providers, and ``policy`` (default: read from ``settings``,
        default ``kit.settings``; a malformed setting raises :class:`ConfigurationError`)."""
        policy = policy or WebhookPolicy.from_settings(settings or kit.settings)
        try:
            known: Iterable[str] = kit.plugins.providers()
        except SmsKitError as exc:  # a broken plugin must not stop the receiver from starting
            log.warning("could not list provider plugins: %s", exc)
            known = ()
        return cls(policy, kit.provider, known)

    def is_known(self, name: str) -> bool:
        """Whether ``name`` is a provider (safe to use as a metrics label)."""
        return name in self._known

    def begin(self, request: WebhookRequest) -> Union[WebhookResponse, Admission]:
        """Steps 1 to 4, which need no body: the refusal, or the :class:`Admission` to
        :meth:`finish` once the body is read (at most ``policy.max_bytes`` plus one byte of
        it)."""
        refused = authenticate(self.policy, request)
        if refused is not None:
            return refused
        name = request.provider
        try:
            if not name:  # never the kit's default provider
                raise ConfigurationError("a webhook names no provider")
            provider = self._providers(name)
            accepted = media_types(provider)
        except ConfigurationError as exc:
            if name not in self._known:
                return _refuse(404, "not found", f"unknown provider {_short(name)}",
                               outcome="not_found")
            log.error("webhook: provider %s could not be built: %s", name, exc)
            return _refuse(503, "provider unavailable", f"provider {name!r} is not configured",
                           outcome="provider_error", headers={"Retry-After": RETRY_AFTER})
        self._known.add(name)
        if not provider.capabilities.webhooks:
            return _refuse(404, "not found", f"provider {name!r} does not accept webhooks",
                           outcome="not_found")
        media_type = media.match(accepted, request.headers.get("content-type", ""))
        if media_type is None:
            return _refuse(415, "unsupported media type", media.expectation(accepted),
                           outcome="unsupported_media_type")
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return _refuse(400, "bad request", f"invalid Content-Length {_short(declared)}",
                               outcome="invalid")
            if size > self.policy.max_bytes:
                return _refuse(413, "payload too large", f"Content-Length {size} exceeds the "
                               f"limit of {self.policy.max_bytes} bytes", outcome="too_large")
        return Admission(request, provider, media_type)

    def check_head(self, request: WebhookRequest) -> Optional[WebhookResponse]:
        """Steps 1 to 4, which need no body: the refusal, or ``None`` (then read the body, at
        most ``policy.max_bytes`` plus one byte of it, and call :meth:`check`)."""
        head = self.begin(request)
        return head if isinstance(head, WebhookResponse) else None

    def check(self, request: WebhookRequest) -> Decision:
        """Every step: the refusal to send, or the accepted events to apply."""
        head = self.begin(request)
        if isinstance(head, WebhookResponse):
            return head
        return self.finish(head, request.body)

    def finish(self, admission: Admission, body: bytes) -> Decision:
        """Steps 5 to 7 for a request :meth:`begin` admitted, with its ``body``: the refusal to
        send, or the accepted events to apply."""
        request, provider, media_type = (admission.request, admission.provider,
                                         admission.media_type)
        limit = self.policy.max_bytes
        if len(body) > limit:
            return _refuse(413, "payload too large", f"the body exceeds the limit of {limit} "
                           "bytes", outcome="too_large")
        try:
            data = media.decode(media_type, body)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, lone surrogates
            return _refuse(400, media.malformed(media_type), str(exc), outcome="invalid")
        seen = _for_provider(request, data, body)
        try:
            refused = _verify(provider, seen)
            if refused is not None:
                return refused
            payload = provider.parse_webhook(_nul_free(seen))
        except Exception as exc:  # mapped (and logged) in one place
            return failure(exc, request.provider, request.kind)
        return Accepted(provider=request.provider, kind=request.kind, payload=payload)
