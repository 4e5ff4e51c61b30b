"""SMS notifications (the chatter's SMS icon) show what became of the SMS, as Odoo 16/17 do.

``process`` ("Processing": smskit holds the SMS, quiet hours say) and ``pending`` ("Sent": the
gateway took it, no delivery report yet) are added; ``sent`` then means delivered (the chatter
says "Delivered" for an SMS), ``bounce`` not delivered, with the ``failure_type`` and the
gateway's ``failure_reason``. When smskit changes a status, the chatter is told on the bus as
Odoo does after its own status writes.
"""

from odoo import fields, models

from .sms_sms import DELIVERY_FAILURES

#: The context key smskit_odoo.origins writes notifications with.
CHATTER_CONTEXT = "smskit_origin_sync"


class MailNotification(models.Model):
    _inherit = "mail.notification"

    notification_status = fields.Selection(
        selection_add=[("ready",), ("process", "Processing"),
                       ("pending", "Sent, no delivery report yet")],
        ondelete={"process": "set ready", "pending": "set sent"})
    failure_type = fields.Selection(
        selection_add=[("sms_blacklist", "Blacklisted"), *DELIVERY_FAILURES])

    def write(self, vals):
        result = super().write(vals)
        if self.env.context.get(CHATTER_CONTEXT) and "notification_status" in vals:
            self.mail_message_id._notify_message_notification_update()
        return result
