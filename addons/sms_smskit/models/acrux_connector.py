"""Agents' replies in an SMS ChatRoom conversation go out through smskit.

ChatRoom sends a message typed by an agent through its connector
(``acrux.chat.connector.ca_request('send', data, ...)`` in ChatRoom BASE 15.0.42). For a
connector of type ``sms`` that call is answered here, by smskit, instead of the WhatsApp
gateway; every other connector and request goes on unchanged. If your ChatRoom release names
the send path differently, override that method the same way: the body is one call to
``smskit.bridge._send_chatroom_reply(connector, data)``.
"""

from odoo import models


class AcruxChatConnector(models.Model):
    _inherit = "acrux.chat.connector"

    def ca_request(self, path, data=None, *args, **kwargs):
        if path == "send" and len(self) == 1 and self.connector_type == "sms":
            return self.env["smskit.bridge"]._send_chatroom_reply(self, data or {})
        return super().ca_request(path, data, *args, **kwargs)
