"""``acrux.chat.message``: one message of a conversation, and how ChatRoom sends an agent's."""

from odoo.exceptions import ValidationError

from odoo import fields, models


class AcruxChatMessage(models.Model):
    _name = "acrux.chat.message"
    _description = "ChatRoom Message"
    _rec_name = "text"
    _order = "date_message desc, id desc"

    text = fields.Text("Message")
    contact_id = fields.Many2one("acrux.chat.conversation", string="Contact", required=True,
                                 ondelete="cascade", index=True)
    connector_id = fields.Many2one(related="contact_id.connector_id", store=True)
    ttype = fields.Selection([("text", "Text"), ("image", "Image"), ("audio", "Audio"),
                              ("video", "Video"), ("file", "File"), ("location", "Location"),
                              ("info", "Info")], string="Type", required=True, default="text")
    msgid = fields.Char("Message Id", index=True)
    date_message = fields.Datetime("Date", required=True, default=fields.Datetime.now)
    from_me = fields.Boolean("Message From Me")
    metadata_json = fields.Text("Metadata")
    quote_msg_id = fields.Many2one("acrux.chat.message", string="Quoted", ondelete="set null")
    # ChatRoom shows it under a message its gateway refused (the real addon has the field)
    error_msg = fields.Char("Error Message", readonly=True)

    def message_send(self):
        """ChatRoom's send of an agent's message: the connector's ``ca_request('send', data)``
        with ``data`` = ``{"type", "text", "to", "id"}`` (the number in the connector's clean
        form, the message's id as a string); the answer's ``msg_id`` becomes the message's
        ``msgid``, and an answer without one is an error."""
        self.ensure_one()
        data = {"type": "text", "text": self.text, "to": self.contact_id.number,
                "id": str(self.id)}
        result = self.contact_id.connector_id.ca_request("send", data) or {}
        if not result.get("msg_id"):
            raise ValidationError("Server error.")
        self.msgid = result["msg_id"]
        return self.msgid
