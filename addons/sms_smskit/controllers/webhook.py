"""Kolmeya's callbacks, received by Odoo itself and handled by smskit's shared handler.

``POST /smskit/webhooks/<provider>/<kind>?token=<smskit.webhook_secret>`` (kind: ``status``
or ``reply``). The route is ``auth='none'`` because the gateway has no Odoo session, but it
is not open: the secret is checked in constant time (and the optional IP allow list) before
anything else is built, and no webhook is accepted while ``smskit.webhook_secret`` is unset.
Only then does smskit run, as the user named by ``smskit.webhook_user_id`` (default: the
superuser, as Odoo's own crons run). The answers are the reference server's: JSON, 401/403
without the secret, 503 (retried by the gateway) when the store failed.
"""

import json
import logging

from odoo import SUPERUSER_ID, api, http
from odoo.http import request

_logger = logging.getLogger(__name__)


class SmskitWebhookController(http.Controller):

    @http.route("/smskit/webhooks/<string:provider>/<string:kind>", type="http", auth="none",
                methods=["POST"], csrf=False)
    def smskit_webhook(self, provider, kind, **query):
        from smskit.webhooks.auth import WebhookPolicy
        from smskit.webhooks.gate import authenticate, handle_webhook_request

        root = api.Environment(request.cr, SUPERUSER_ID, {})
        settings = root["smskit.bridge"]._smskit_settings()
        httprequest = request.httprequest
        headers = {k.lower(): v for k, v in httprequest.headers.items()}
        args = dict(httprequest.args.items())
        client = httprequest.remote_addr
        policy = WebhookPolicy.from_settings(settings)
        result = authenticate(policy, headers, args, client)
        if result is None:
            uid = int(settings.get("webhook_user_id") or SUPERUSER_ID)
            env = api.Environment(request.cr, uid, {})
            with env["smskit.bridge"]._smskit_kit(settings) as kit:
                result = handle_webhook_request(kit, settings, provider, kind, headers, args,
                                                httprequest.get_data(), client_host=client,
                                                policy=policy)
        response = request.make_response(
            json.dumps(result.body),
            headers=[("Content-Type", "application/json"), *result.headers.items()])
        response.status_code = result.status
        return response
