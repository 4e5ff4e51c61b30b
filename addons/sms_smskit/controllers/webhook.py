"""Kolmeya's callbacks, received by Odoo itself and checked by smskit's webhook gate.

``POST /smskit/webhooks/<provider>/<kind>?token=<smskit.webhook_secret>`` (kind: ``status``
or ``reply``), with the ``Content-Type: application/json`` Kolmeya sends (see
``webhook_http.py`` for how Odoo 15 is made to route it here). The route is ``auth='none'``
because the gateway has no Odoo session, but it is not open: the secret is checked in constant
time (and the optional IP allow list) before the body is read or anything else is built, and
no webhook is accepted while ``smskit.webhook_secret`` is unset. Only then does smskit run, as
the user named by ``smskit.webhook_user_id`` (default: the superuser, as Odoo's own crons
run), through the same gate as the reference server (``smskit.webhooks``): the same rules, the
same JSON answers (401/403 without the secret, 400 for a malformed body, 503 + Retry-After
when the store or the database failed, the gateway then retries). A 2xx goes out only once
what the callback changed is committed.
"""

import logging
from urllib.parse import urlencode

import psycopg2
from odoo.http import request
from odoo.service import db as db_service

from odoo import SUPERUSER_ID, http

from ..webhook_http import (
    FORM_TYPES,
    RETRY_AFTER,
    database_unavailable,
    json_response,
    unavailable,
)

_logger = logging.getLogger(__name__)


def _no_database():
    """The answer when the request is bound to no database. Served among Odoo's
    no-database routes (the addon loaded server-wide), that happens when the database the
    URL names could not be opened (Odoo logged the request out of it) or PostgreSQL does not
    answer: ``503``, the gateway retries. When no database matches the URL at all
    (``dbfilter``), ``404``."""
    try:
        named = http.db_monodb(request.httprequest)
        db_service.list_dbs(True)
    except psycopg2.Error:
        return unavailable()
    if named:
        return unavailable()
    return json_response(404, {"error": "not found",
                               "detail": "no database serves this URL (dbfilter)"})


def _body(httprequest, hook):
    """``hook`` with the body the gateway posted. A form body Odoo read into its form
    fields before the route (the addon installed, not loaded server-wide:
    ``webhook_http``) is gone from the request, and the gate reads no multipart body
    (PHP's curl posts an array so): then the fields Werkzeug parsed are encoded again, as
    ``application/x-www-form-urlencoded``, which the gate reads as a PHP nested form
    (uploaded files, which no gateway posts, are left out)."""
    import attrs

    body = httprequest.get_data()
    multipart = httprequest.mimetype == "multipart/form-data"
    if (body and not multipart) or httprequest.mimetype not in FORM_TYPES \
            or not httprequest.form:
        return hook.with_body(body)
    headers = {k: v for k, v in hook.headers.items() if k != "content-length"}
    headers["content-type"] = "application/x-www-form-urlencoded; charset=utf-8"
    body = urlencode(list(httprequest.form.items(multi=True))).encode("utf-8")
    return attrs.evolve(hook, headers=headers, body=body)


class SmskitWebhookController(http.Controller):

    @http.route("/smskit/webhooks/<string:provider>/<string:kind>", type="http", auth="none",
                csrf=False, save_session=False)
    def smskit_webhook(self, provider, kind, **query):
        from smskit.errors import ConfigurationError
        from smskit.webhooks import WebhookPolicy, WebhookRequest, authenticate, parse_query

        if not request.db:
            return _no_database()
        try:
            root = request.env(user=SUPERUSER_ID)
            bridge = root["smskit.bridge"]
            settings = bridge._smskit_settings()
        except Exception as exc:
            if database_unavailable(exc):
                return unavailable()
            raise
        httprequest = request.httprequest
        hook = WebhookRequest(
            provider=provider, kind=kind, method=httprequest.method,
            headers=httprequest.headers.items(), query=parse_query(httprequest.query_string),
            client_host=httprequest.remote_addr, url=httprequest.url)
        try:
            policy = WebhookPolicy.from_settings(settings)
        except ConfigurationError as exc:
            _logger.error("smskit webhook: %s", bridge._smskit_names(str(exc)))
            return json_response(503, {"error": "webhook settings invalid"},
                                 [("Retry-After", RETRY_AFTER)])
        result = authenticate(policy, hook)
        if result is None:
            result = bridge._smskit_receive(settings, policy, _body(httprequest, hook))
        return json_response(result.status, result.body, result.headers.items())
