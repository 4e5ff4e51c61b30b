"""``sms.message`` as the users' ``sms_base_sr`` defines it, with its habit of posting a note
on the partner's chatter for every message it creates."""

from markupsafe import Markup

from odoo import api, fields, models

STATES = [
    ("draft", "Draft"),
    ("outgoing", "Outgoing"),
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("error", "Error"),
    ("canceled", "Canceled"),
    ("expired", "Expired"),
    ("rejected", "Rejected"),
]


class SmsMessage(models.Model):
    _name = "sms.message"
    _description = "SMS Message"
    _inherit = ["mail.thread"]
    _rec_name = "phone"
    _order = "create_date desc, id desc"

    partner_id = fields.Many2one("res.partner", string="Contact", ondelete="set null",
                                 index=True, tracking=True)
    user_id = fields.Many2one("res.users", string="Sent by",
                              default=lambda self: self.env.user)
    provider_id = fields.Many2one("sms.provider", string="SMS Provider")
    campaign_id = fields.Many2one("sms.campaign", string="Campaign", index=True)
    parent_id = fields.Many2one("sms.message", string="Reply to", ondelete="set null")
    phone = fields.Char("Phone Number", required=True)
    body = fields.Text("Message", required=True)
    direction = fields.Selection([("outgoing", "Outgoing"), ("incoming", "Incoming")],
                                 required=True, default="outgoing")
    state = fields.Selection(STATES, string="Status", default="draft", tracking=True,
                             index=True)
    provider_message_id = fields.Char("Provider Message ID", index=True)
    provider_reference = fields.Char(
        "Provider Reference", index=True, help="The custom reference sent to the provider.")
    provider_job_id = fields.Char("Provider Job ID")
    scheduled_date = fields.Datetime("Scheduled")
    sent_date = fields.Datetime("Sent")
    delivered_date = fields.Datetime("Delivered")
    char_count = fields.Integer("Characters", compute="_compute_counts", store=True)
    sms_count = fields.Integer("Segments", compute="_compute_counts", store=True)
    cost = fields.Float("Cost")
    error_message = fields.Text("Error")
    retry_count = fields.Integer("Retry Count", default=0)

    @api.depends("body")
    def _compute_counts(self):
        for message in self:
            length = len(message.body or "")
            message.char_count = length
            message.sms_count = max(1, -(-length // 153)) if length > 160 else 1

    @api.model_create_multi
    def create(self, vals_list):
        messages = super().create(vals_list)
        for message in messages.filtered("partner_id"):
            # the users' module: one note on the partner for every new message
            message.partner_id.message_post(
                body=Markup("SMS %s<br/>%s") % (message.direction, (message.body or "")[:100]),
                message_type="comment", subtype_xmlid="mail.mt_note")
        return messages
