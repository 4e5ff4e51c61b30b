"""Odoo's own SMS goes out through smskit.

Everything Odoo 15 sends by SMS (the partner's "Send SMS" button and composer, single and
mass, SMS templates, SMS in chatter, ``mass_mailing_sms`` mailings and marketing actions) ends
in one method, ``sms.api._send_sms_batch(messages)``: a list of ``{"res_id": <sms.sms id>,
"number", "content"}``, answered with one ``{"res_id", "state"}`` per message in IAP's words
(``success``, ``wrong_number_format``, ``insufficient_credit``, ``server_error``,
``unregistered``). Here it sends through smskit and Kolmeya instead of Odoo's paid IAP service
(``smskit.bridge._smskit_send_odoo_sms``): blacklist, quiet hours, segments and cost, one
gateway request per batch, and one message per ``sms.sms`` however often the batch is retried.
``smskit.odoo_sms = iap`` (a system parameter) leaves Odoo's SMS to IAP.
"""

from odoo import _, api, models


class SmsApi(models.AbstractModel):
    _inherit = "sms.api"

    @api.model
    def _send_sms_batch(self, messages):
        bridge = self.env["smskit.bridge"]
        if not bridge._smskit_sends_odoo_sms():
            return super()._send_sms_batch(messages)
        return bridge._smskit_send_odoo_sms(messages)

    @api.model
    def _get_sms_api_error_messages(self):
        messages = super()._get_sms_api_error_messages()
        if self.env["smskit.bridge"]._smskit_sends_odoo_sms():
            messages.update({
                "unregistered": _("smskit is not configured: set the Kolmeya token in "
                                  "Settings > SMS."),
                "insufficient_credit": _("Not enough balance on the Kolmeya account."),
                "blacklisted": _("The number is on the blacklist: the SMS was not sent."),
                "rejected": _("The SMS gateway refused the message."),
            })
        return messages
