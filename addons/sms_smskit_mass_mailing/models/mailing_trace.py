"""SMS mailing traces with delivery reports, as Odoo 16/17 keep them.

Odoo 15 counts a trace ``sent`` as delivered (``mailing.mailing._compute_statistics``:
"delivered" is ``sent``, ``open`` or ``reply``; "sent" is every trace with a
``sent_datetime``; "bounced" is ``bounce``). smskit's origins (``smskit_odoo.origins``) write
``process`` while smskit holds an SMS (quiet hours), ``pending`` once Kolmeya took it (counted
as sent, not yet as delivered), ``sent`` when Kolmeya reports it delivered, and ``bounce`` with
the ``failure_type`` when it reports it not delivered, expired or rejected: the mailing's
"Received" and "Bounced" figures are Kolmeya's.
"""

from odoo.addons.sms_smskit.models.sms_sms import DELIVERY_FAILURES

from odoo import fields, models


class MailingTrace(models.Model):
    _inherit = "mailing.trace"

    trace_status = fields.Selection(
        selection_add=[("outgoing",), ("process", "Processing"),
                       ("pending", "Sent, no delivery report yet")],
        ondelete={"process": "set outgoing", "pending": "set sent"})
    failure_type = fields.Selection(selection_add=DELIVERY_FAILURES)
