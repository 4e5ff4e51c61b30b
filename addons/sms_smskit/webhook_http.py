"""How a gateway's POST reaches the webhook route in Odoo 15, whatever its ``Content-Type``.

Odoo 15 types a request by its body, not by its route: ``odoo.http.Root.get_request`` makes
every ``application/json`` request a ``JsonRequest`` (JSON-RPC 2.0) before any routing, so a
``type="http"`` route never sees Kolmeya's callbacks and the caller gets ``200`` with a
JSON-RPC error body. Two measures, both limited to paths under ``/smskit/webhooks/``:

1. ``ir.http._dispatch`` (``models/ir_http.py``, always active once the addon is installed):
   the request is switched to :class:`WebhookHttpRequest`, a plain ``HttpRequest``, and Odoo's
   own dispatch goes on. The ``type="http"`` route then runs as any other: inside Odoo's retry
   on serialization failures (``odoo.service.model.check``), its answer sent only after the
   request's transaction is committed. What it cannot help: a body ``JsonRequest`` refuses
   while being built, before any dispatch (not UTF-8, JSON that is not an object, ``params``
   that is not an object: Odoo answers ``500``; invalid JSON: Werkzeug's HTML ``400``), and a
   database that does not answer (Odoo answers ``404`` through its no-database routes).
2. :func:`install` (active when the addon is loaded server-wide: ``server_wide_modules =
   base,web,sms_smskit``): ``Root.get_request`` makes webhook requests
   :class:`WebhookHttpRequest` from the start, so no body is parsed before the webhook gate
   sees it (every malformed body is the gate's ``400``), and the route is among Odoo's
   no-database routes, so a database that does not answer is ``503`` with ``Retry-After``.

:class:`WebhookHttpRequest` answers any error in JSON, never with a traceback or a JSON-RPC
envelope: ``404``/``405`` for routing errors, ``503`` + ``Retry-After`` when the database is
unavailable, ``500`` otherwise (logged).
"""

import json
import logging

import psycopg2
import psycopg2.pool
import werkzeug.exceptions

import odoo
from odoo import http

_logger = logging.getLogger(__name__)

#: Paths the two measures apply to (the webhook controller's route).
WEBHOOK_PREFIX = "/smskit/webhooks/"
#: Seconds a gateway is asked to wait before retrying a 503 (smskit's gate says the same).
RETRY_AFTER = "30"
MODULE = "sms_smskit"
#: The bodies Werkzeug reads into form fields (and Odoo 15 with them, before any route).
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def is_webhook_path(path):
    """Whether ``path`` is one of the addon's webhook URLs."""
    return bool(path) and path.startswith(WEBHOOK_PREFIX)


def json_response(status, body, headers=()):
    """A JSON answer as smskit's webhook gate gives it."""
    response = http.Response(json.dumps(body), status=status,
                             headers=[("Content-Type", "application/json"), *headers])
    return response


def database_unavailable(exception):
    """Whether ``exception`` says the database cannot be reached (down, refusing
    connections, Odoo's connection pool full)."""
    return isinstance(exception, (psycopg2.OperationalError, psycopg2.InterfaceError,
                                  psycopg2.pool.PoolError))


def unavailable():
    """``503`` + ``Retry-After``: the gateway tries again later."""
    return json_response(503, {"error": "database unavailable",
                               "detail": "the callback was not stored; retry later"},
                         [("Retry-After", RETRY_AFTER)])


def error_response(exception):
    """The JSON answer to an error raised while a webhook request was served."""
    if isinstance(exception, werkzeug.exceptions.NotFound):
        return json_response(404, {"error": "not found"})
    if isinstance(exception, werkzeug.exceptions.MethodNotAllowed):
        return json_response(405, {"error": "method not allowed"}, [("Allow", "POST")])
    if isinstance(exception, werkzeug.exceptions.HTTPException):
        code = exception.code or 400
        return json_response(code, {"error": (exception.name or "error").lower()})
    if database_unavailable(exception):
        _logger.warning("smskit webhook: the database is unavailable (%s); answering 503",
                        exception)
        return unavailable()
    _logger.error("smskit webhook: unexpected error", exc_info=exception)
    return json_response(500, {"error": "internal error"})


class WebhookHttpRequest(http.HttpRequest):
    """A ``type="http"`` request for a webhook URL, whatever the body's ``Content-Type``,
    answering errors in JSON (see the module docs)."""

    #: How ``ir.http`` tells this request from the one Odoo 15 made (through Odoo's
    #: ``request`` proxy).
    smskit_webhook = True

    def __init__(self, httprequest):
        if httprequest.mimetype in FORM_TYPES and "form" not in httprequest.__dict__:
            # Odoo reads a form body into its form fields here (HttpRequest.__init__), which
            # leaves nothing for the gate: keep the bytes first (Werkzeug then parses its
            # form from them). Other bodies are read by the controller only, once the
            # secret is checked. Made server-wide, this runs before Odoo touches the body;
            # otherwise too late, and the controller encodes the form fields again.
            httprequest.get_data(cache=True)
        super().__init__(httprequest)

    def _handle_exception(self, exception):
        self._failed = exception  # nothing of this request is committed
        return error_response(exception)


_original_get_request = http.Root.get_request


def _get_request(self, httprequest):
    if is_webhook_path(httprequest.path):
        return WebhookHttpRequest(httprequest)
    return _original_get_request(self, httprequest)


def install():
    """Patch ``Root.get_request`` when the addon is loaded server-wide (see the module docs);
    otherwise leave Odoo as it is, so what a deployment gets does not depend on whether a
    registry happened to be loaded in the process."""
    if MODULE not in odoo.conf.server_wide_modules:
        return False
    if http.Root.get_request is not _get_request:
        http.Root.get_request = _get_request
        _logger.info("smskit: webhook requests under %s are plain HTTP from the start "
                     "(%s is loaded server-wide)", WEBHOOK_PREFIX, MODULE)
    return True
