"""Loaded after ``mass_mailing_sms``: the results smskit answered never reach its
post-processing, which would mark their traces ``sent`` (delivered, in Odoo 15's statistics)
only for smskit to write them back to "sent, no report yet" (``sms_smskit.models.sms_sms``)."""

from odoo import models


class SmsSms(models.Model):
    _inherit = "sms.sms"

    def _postprocess_iap_sent_sms(self, iap_results, failure_reason=None, unlink_failed=False,
                                  unlink_sent=True):
        return self._smskit_postprocess(super()._postprocess_iap_sent_sms, iap_results,
                                        failure_reason, unlink_failed, unlink_sent)
