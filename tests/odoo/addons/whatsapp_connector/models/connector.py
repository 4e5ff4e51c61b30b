"""``acrux.chat.connector``: one channel (a WhatsApp number, or SMS) of the ChatRoom."""

import re

from odoo.exceptions import UserError, ValidationError

from odoo import _, fields, models

CONNECTOR_TYPES = [
    ("not_set", "Not set"),
    ("apichat.io", "ApiChat.io"),
    ("chatapi", "ChatApi"),
    ("gupshup", "GupShup"),
    # The users' SMS module adds this type; the stand-in offers it so both set-ups can run
    # (smskit picks the only 'sms' connector, or the one named in smskit.acrux_connector_id).
    ("sms", "SMS"),
]


class AcruxChatConnector(models.Model):
    _name = "acrux.chat.connector"
    _description = "ChatRoom Connector"

    name = fields.Char(required=True)
    connector_type = fields.Selection(CONNECTOR_TYPES, string="Type", required=True,
                                      default="not_set")
    conversation_ids = fields.One2many("acrux.chat.conversation", "connector_id",
                                       string="Conversations")

    def clean_id(self, key):
        """A number in the connector's clean form: digits only, with the country code."""
        self.ensure_one()
        return re.sub(r"\D", "", str(key or ""))

    def assert_id(self, key):
        """Refuse a number that is not already in the clean form (ChatRoom does this unless
        the call comes from its webhook: context ``from_webhook``)."""
        self.ensure_one()
        if not key or str(key) != self.clean_id(key) or not 8 <= len(str(key)) <= 15:
            raise ValidationError(_("Invalid number: %s") % (key,))
        return True

    def ca_request(self, path, data=None, params=None, timeout=False):
        """The connector's call to its gateway (``'send'`` for an agent's message). The
        stand-in has no gateway: SMS connectors are answered by an addon overriding this."""
        self.ensure_one()
        raise UserError(_("ChatRoom stand-in: connector %s (%s) has no gateway for %r.")
                        % (self.name, self.connector_type, path))
