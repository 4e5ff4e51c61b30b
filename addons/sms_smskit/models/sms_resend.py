"""The "Sending Failures" dialog (the red SMS icon in chatter) shows the gateway's reason too."""

from odoo import fields, models


class SmsResendRecipient(models.TransientModel):
    _inherit = "sms.resend.recipient"

    failure_reason = fields.Text(related="notification_id.failure_reason", related_sudo=True,
                                 readonly=True)
