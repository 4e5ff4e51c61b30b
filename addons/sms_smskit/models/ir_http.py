"""Webhook URLs are served as plain HTTP whatever the body's ``Content-Type`` (see
``webhook_http.py``): Odoo 15 made a JSON POST a JSON-RPC request before routing; here, once
the database is known, it becomes a ``type="http"`` request again."""

from odoo.http import request

from odoo import models

from ..webhook_http import WebhookHttpRequest, is_webhook_path


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    @classmethod
    def _dispatch(cls):
        if not is_webhook_path(request.httprequest.path) or getattr(
                request, "smskit_webhook", False):  # not ours, or plain HTTP from the start
            return super()._dispatch()
        replacement = WebhookHttpRequest(request.httprequest)
        # pushed on Odoo's request stack: inside the block `request` is the plain HTTP
        # request, whose cursor is committed when the block ends, before the response is sent
        with replacement:
            response = super()._dispatch()
        # back to the request Odoo made: it decides whether to save the HTTP session from its
        # endpoint, and the webhook route says not to (a session file per callback otherwise)
        request.endpoint = replacement.endpoint
        return response
