"""``sms.provider`` (the users' abstract gateway; ``sms_kolmeya`` adds the Kolmeya type) and
``sms.campaign``. The users' ``sms.template`` is left out: smskit does not read it, and a
second model of that name would replace stock ``sms``'s, which the tests install alongside."""

from odoo.exceptions import UserError

from odoo import _, fields, models


class SmsProvider(models.Model):
    _name = "sms.provider"
    _description = "SMS Provider"

    name = fields.Char(required=True)
    provider_type = fields.Selection([("kolmeya", "Kolmeya")], string="Provider Type",
                                     required=True, default="kolmeya")
    api_url = fields.Char("API URL")
    api_key = fields.Char("API Key")
    active = fields.Boolean(default=True)

    def send_sms(self, phone, message, reference=None):
        """The users' send path; smskit never calls it (it sends through its own kit)."""
        self.ensure_one()
        raise UserError(_("SMS stand-in: provider %s does not send.") % self.name)


class SmsCampaign(models.Model):
    _name = "sms.campaign"
    _description = "SMS Campaign"

    name = fields.Char(required=True)

