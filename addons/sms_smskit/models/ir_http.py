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
        if not is_webhook_path(request.httprequest.path):
            return super()._dispatch()
        current = request._get_current_object()
        if isinstance(current, WebhookHttpRequest):  # made so from the start (server-wide)
            return super()._dispatch()
        replacement = WebhookHttpRequest(current.httprequest)
        # pushed on Odoo's request stack: from here `request` is the plain HTTP request,
        # whose cursor is committed when the block ends, before the response is sent
        with replacement:
            response = super()._dispatch()
        # Odoo decides whether to save the HTTP session from the outer request's endpoint:
        # the webhook route says not to (one session file per callback otherwise)
        current.endpoint = replacement.endpoint
        return response
