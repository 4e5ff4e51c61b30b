"""``acrux.chat.message``: one message of a conversation."""

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
