"""The webhook request handler without a web framework: what an Odoo controller calls.

:func:`handle_webhook_request` applies the same rules as the reference server
(:mod:`smskit.server.app`) to a request already read by some other framework: the webhook
kind, the secret token (constant time) and the IP allow list first, then the provider, JSON
only, the size cap, and :meth:`smskit.kit.SmsKit.handle_webhook`. It answers
``(status, body, headers)`` with the same JSON bodies as the server; nothing but the token
check touches the kit's store before the caller is authenticated. It imports no Starlette.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Dict, Mapping, NamedTuple, Optional, Tuple, Type

from smskit.config import Settings
from smskit.errors import ConfigurationError, StoreError, ValidationError
from smskit.webhooks.auth import (
    TOKEN_HEADER,
    TOKEN_PARAM,
    AuthResult,
    WebhookPolicy,
    presented_tokens,
)

if TYPE_CHECKING:
    from smskit.kit import SmsKit, WebhookReport

__all__ = ["KINDS", "WebhookResponse", "authenticate", "handle_webhook_request", "summary"]

log = logging.getLogger(__name__)

#: The webhook kinds a provider may receive.
KINDS = ("status", "reply")
_RETRY_AFTER = "30"
_HIDDEN_HEADERS = frozenset({TOKEN_HEADER, "authorization", "cookie"})


class WebhookResponse(NamedTuple):
    """What to answer: HTTP status, JSON body, extra headers."""

    status: int
    body: Dict[str, Any]
    headers: Dict[str, str]


def _error(status: int, error: str, detail: Optional[str] = None,
           headers: Optional[Mapping[str, str]] = None) -> WebhookResponse:
    body: Dict[str, Any] = {"error": error}
    if detail is not None:
        body["detail"] = detail
    return WebhookResponse(status, body, dict(headers or {}))


def _short(value: str, limit: int = 64) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def _store_down_errors() -> Tuple[Type[BaseException], ...]:
    errors: Tuple[Type[BaseException], ...] = (StoreError, OSError)
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # pragma: no cover - SQLAlchemy is a core dependency
        return errors
    return (*errors, OperationalError)


def parse_json(body: bytes) -> Any:
    """The JSON of a webhook body, or ``ValueError`` for malformed JSON, including text that is
    not Unicode (a lone surrogate escape such as ``"\\ud800"`` decodes, but could never be
    stored: it must be a 400, not a failed write)."""
    data = json.loads(body)
    if b"\\ud" in body or b"\\uD" in body:  # only escapes can smuggle a lone surrogate in
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"the body holds text that is not valid Unicode: {exc.reason} "
                             f"(a lone surrogate escape)") from exc
    return data


def summary(report: WebhookReport) -> Dict[str, int]:
    """The counts the server answers with."""
    statuses = len(report.statuses)
    applied = sum(1 for s in report.statuses if s.applied)
    unknown = sum(1 for s in report.statuses if s.message is None)
    return {
        "statuses": statuses,
        "applied": applied,
        "ignored": statuses - applied - unknown,
        "unknown": unknown,
        "inbound": len(report.inbound),
        "new_inbound": sum(1 for i in report.inbound if i.created),
    }


def authenticate(policy: WebhookPolicy, headers: Mapping[str, str], query: Mapping[str, str],
                 client_host: Optional[str] = None) -> Optional[WebhookResponse]:
    """The refusal for a caller without the webhook secret (or from a refused address), or
    ``None`` when the request may go on. Call it before building anything for the request."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if policy.mode == "disabled":
        return _error(503, "webhook secret not configured",
                      "set SMSKIT_WEBHOOK_SECRET (or SMSKIT_ALLOW_INSECURE_WEBHOOKS=true for a "
                      "local demo); no webhook is accepted until then")
    if not policy.ip_allowed(client_host):
        log.warning("webhook refused: client address %s is not in webhook_allow_ips",
                    client_host)
        return _error(403, "forbidden", "client address not allowed")
    result = policy.check_tokens(presented_tokens(lowered, query.get(TOKEN_PARAM)))
    if result is AuthResult.MISSING:
        return _error(401, "unauthorized",
                      "missing webhook token (?token=, X-Smskit-Token or Authorization: Bearer)",
                      headers={"WWW-Authenticate": "Bearer"})
    if result is not AuthResult.OK:
        log.warning("webhook refused: wrong token from %s", client_host)
        return _error(403, "forbidden", "invalid webhook token")
    return None


def handle_webhook_request(
    kit: SmsKit,
    settings: Optional[Settings],
    provider: str,
    kind: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    *,
    client_host: Optional[str] = None,
    policy: Optional[WebhookPolicy] = None,
) -> WebhookResponse:
    """Check and apply one provider callback; the response to send.

    ``settings`` default to ``kit.settings``; ``headers`` may have any case; ``query`` holds
    the query parameters (``token`` among them); ``client_host`` is checked against
    ``webhook_allow_ips``.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if kind not in KINDS:
        return _error(404, "not found",
                      f"unknown webhook kind {_short(kind)}; expected 'status' or 'reply'")
    policy = policy or WebhookPolicy.from_settings(settings or kit.settings)
    refused = authenticate(policy, lowered, query, client_host)
    if refused is not None:
        return refused
    try:
        known = set(kit.plugins.providers())
    except ConfigurationError:
        known = set()
    try:
        gateway = kit.provider(provider)
    except ConfigurationError as exc:
        if provider not in known:
            return _error(404, "not found", f"unknown provider {_short(provider)}")
        log.error("webhook: provider %s could not be built: %s", provider, exc)
        return _error(503, "provider unavailable", f"provider {provider!r} is not configured",
                      headers={"Retry-After": _RETRY_AFTER})
    if not gateway.capabilities.webhooks:
        return _error(404, "not found", f"provider {provider!r} does not accept webhooks")
    if not _is_json(lowered.get("content-type", "")):
        return _error(415, "unsupported media type", "the body must be JSON (application/json)")
    if len(body) > policy.max_bytes:
        return _error(413, "payload too large",
                      f"the body exceeds the limit of {policy.max_bytes} bytes")
    try:
        parse_json(body)
    except ValueError as exc:
        return _error(400, "malformed JSON", str(exc))
    visible = {k: v for k, v in lowered.items() if k not in _HIDDEN_HEADERS}
    try:
        report = kit.handle_webhook(provider, kind, visible, body)
    except ValidationError as exc:
        return _error(400, "invalid payload", str(exc))
    except _store_down_errors():
        log.exception("webhook %s/%s: the store failed; answering 503", provider, kind)
        return _error(503, "store unavailable", "the events were not stored; retry later",
                      headers={"Retry-After": _RETRY_AFTER})
    except Exception:  # the body never carries the error; the log has the traceback
        log.exception("webhook %s/%s: unexpected error", provider, kind)
        return _error(500, "internal error")
    return WebhookResponse(200, dict(summary(report)), {})
