"""Agents' replies in an SMS ChatRoom conversation go out through smskit.

ChatRoom sends a message typed by an agent through its connector: ``acrux.chat.message.
message_send()`` calls ``acrux.chat.connector.ca_request('send', data)`` with ``data`` =
``{"type": "text", "text", "to": <number>, "id": <the acrux.chat.message id>}`` and writes
the answer's ``msg_id`` on the message (ChatRoom BASE 15.0.42 and later). For a connector of
type ``sms`` that call is answered here, by smskit, instead of the WhatsApp gateway; every
other connector and request goes on unchanged. If your ChatRoom release names the send path
differently, override that method the same way: the body is one call to
``smskit.bridge._send_chatroom_reply(connector, data)``.

The connector also counts, for the SMS connector, the messages agents sent, the ones that
failed, and the replies received (``smskit_sent_count``, ``smskit_failed_count``,
``smskit_received_count``).
"""

from odoo import fields, models


class AcruxChatConnector(models.Model):
    _inherit = "acrux.chat.connector"

    smskit_sent_count = fields.Integer("SMS sent", compute="_compute_smskit_counts")
    smskit_failed_count = fields.Integer("SMS failed", compute="_compute_smskit_counts")
    smskit_received_count = fields.Integer("SMS received", compute="_compute_smskit_counts")

    def ca_request(self, path, data=None, *args, **kwargs):
        if path == "send" and len(self) == 1 and self.connector_type == "sms":
            return self.env["smskit.bridge"]._send_chatroom_reply(self, data or {})
        return super().ca_request(path, data, *args, **kwargs)

    def _compute_smskit_counts(self):
        counts = {}
        if self.ids:
            groups = self.env["acrux.chat.message"].sudo().read_group(
                [("connector_id", "in", self.ids)], ["connector_id"],
                ["connector_id", "from_me", "smskit_state"], lazy=False)
            for group in groups:
                connector = group["connector_id"] and group["connector_id"][0]
                sent, failed, received = counts.get(connector, (0, 0, 0))
                if not group["from_me"]:
                    received += group["__count"]
                elif group["smskit_state"] in ("error", "expired", "rejected", "canceled"):
                    failed += group["__count"]
                elif group["smskit_state"]:
                    sent += group["__count"]
                counts[connector] = (sent, failed, received)
        for connector in self:
            sent, failed, received = counts.get(connector.id, (0, 0, 0))
            connector.smskit_sent_count = sent
            connector.smskit_failed_count = failed
            connector.smskit_received_count = received
