"""Kolmeya's callbacks, received by Odoo itself and checked by smskit's webhook gate.

``POST /smskit/webhooks/<provider>/<kind>?token=<smskit.webhook_secret>`` (kind: ``status``
or ``reply``). The route is ``auth='none'`` because the gateway has no Odoo session, but it
is not open: the secret is checked in constant time (and the optional IP allow list) before
the body is read or anything else is built, and no webhook is accepted while
``smskit.webhook_secret`` is unset. Only then does smskit run, as the user named by
``smskit.webhook_user_id`` (default: the superuser, as Odoo's own crons run), through the same
gate as the reference server (``smskit.webhooks``): the same rules, the same JSON answers
(401/403 without the secret, 503 retried by the gateway when the store failed).
"""

import json
import logging

from odoo.http import request

from odoo import SUPERUSER_ID, api, http

_logger = logging.getLogger(__name__)


class SmskitWebhookController(http.Controller):

    @http.route("/smskit/webhooks/<string:provider>/<string:kind>", type="http", auth="none",
                methods=["POST"], csrf=False)
    def smskit_webhook(self, provider, kind, **query):
        from smskit.webhooks import (
            WebhookPolicy,
            WebhookRequest,
            authenticate,
            parse_query,
            receive,
        )

        root = api.Environment(request.cr, SUPERUSER_ID, {})
        settings = root["smskit.bridge"]._smskit_settings()
        httprequest = request.httprequest
        hook = WebhookRequest(
            provider=provider, kind=kind, method=httprequest.method,
            headers=httprequest.headers.items(), query=parse_query(httprequest.query_string),
            client_host=httprequest.remote_addr, url=httprequest.url)
        policy = WebhookPolicy.from_settings(settings)
        result = authenticate(policy, hook)
        if result is None:
            uid = int(settings.get("webhook_user_id") or SUPERUSER_ID)
            env = api.Environment(request.cr, uid, {})
            with env["smskit.bridge"]._smskit_kit(settings) as kit:
                hook = hook.with_body(httprequest.get_data())
                result = receive(kit, hook, policy=policy)
        response = request.make_response(
            json.dumps(result.body),
            headers=[("Content-Type", "application/json"), *result.headers.items()])
        response.status_code = result.status
        return response
