"""``sms.sms`` rows sent through smskit: kept, and kept in step with their message.

Odoo unlinks an ``sms.sms`` once IAP accepted it (``unlink_sent``). The rows smskit sends are
kept instead: ``mail.notification.sms_id`` is set null when its row goes, and the delivery
report that turns the chatter's SMS icon "delivered" or "failed" comes minutes or hours
later; on a database without ``sms.message`` the row is also the only record of the SMS in
Odoo (Technical > SMS). ``smskit_odoo.origins`` moves the row, its notification and its
mailing trace with the message: ``process`` while smskit holds it (quiet hours, a gateway
retry), ``sent``, then ``error`` or ``canceled`` with the reason; ``smskit_state`` says
``delivered`` (Odoo 15's ``sms.sms`` has no such state).
"""

from odoo.addons.sms.models.sms_sms import SmsSms as StockSms

from odoo import _, fields, models

#: smskit's states, shown on the row (``smskit_state``).
SMSKIT_STATES = [
    ("outgoing", "Queued in smskit"),
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("error", "Not delivered"),
    ("expired", "Expired"),
    ("rejected", "Rejected"),
    ("canceled", "Canceled"),
]
#: Failure types Odoo 16/17 added for delivery reports (``sms_blacklist`` exists already).
DELIVERY_FAILURES = [
    ("sms_not_delivered", "Not Delivered"),
    ("sms_expired", "Expired"),
    ("sms_rejected", "Rejected"),
]


class SmsSms(models.Model):
    _inherit = "sms.sms"

    # the two states smskit answers beyond IAP's (smskit.bridge._smskit_send_odoo_sms)
    IAP_TO_SMS_STATE = dict(StockSms.IAP_TO_SMS_STATE, blacklisted="sms_blacklist",
                            rejected="sms_rejected")

    state = fields.Selection(selection_add=[("process", "Processing")],
                             ondelete={"process": "set canceled"})
    failure_type = fields.Selection(selection_add=DELIVERY_FAILURES)
    smskit_message_id = fields.Char("smskit message", index=True, readonly=True, copy=False,
                                    help="smskit's id of the message sent for this row.")
    smskit_state = fields.Selection(SMSKIT_STATES, "Delivery", readonly=True, copy=False)
    smskit_reason = fields.Char("Failure reason", readonly=True, copy=False)

    def _postprocess_iap_sent_sms(self, iap_results, failure_reason=None, unlink_failed=False,
                                  unlink_sent=True):
        return self._smskit_postprocess(super()._postprocess_iap_sent_sms, iap_results,
                                        failure_reason, unlink_failed, unlink_sent)

    def _smskit_postprocess(self, parent, iap_results, failure_reason, unlink_failed,
                            unlink_sent):
        """Odoo's post-processing (``parent``) of the results smskit did not answer; those it
        did are kept and take their message's state. An override loaded after another
        module's (``sms_smskit_mass_mailing``, after ``mass_mailing_sms``) calls this too,
        so that module never writes what smskit writes anyway."""
        ours = [r for r in iap_results if r.get("smskit_id")]
        # held until the commit (smskit_odoo_sms): the row stays outgoing, its notification
        # ready, until smskit has it
        held = [r for r in iap_results if r.get("smskit_held")]
        others = [r for r in iap_results if not (r.get("smskit_id") or r.get("smskit_held"))]
        result = None
        if others or not (ours or held):
            result = parent(others, failure_reason=failure_reason,
                            unlink_failed=unlink_failed, unlink_sent=unlink_sent)
        if ours:
            # Not unlinked (see the module docs); the rows, their notifications and traces
            # take their message's state (whatever another module wrote on them before).
            self.env["smskit.bridge"]._smskit_sync_odoo_sms([r["smskit_id"] for r in ours])
        return result

    def _smskit_send_held(self, sms_ids):
        """Send the rows held until their transaction committed (``smskit_odoo_sms``): those
        smskit does not have yet (a row sent meanwhile by Odoo's queue is skipped) and those
        in error (Odoo's "Retry", ``resend_failed``: a new SMS for a failed one), in Odoo's
        batches, a commit after each. Called with ``smskit_send_now`` in the context, so
        they go now."""
        rows = self.sudo().browse(sms_ids).exists().filtered(
            lambda sms: sms.state == "error" or (
                sms.state == "outgoing" and not sms.smskit_message_id))
        if rows:  # sent as the transaction that held them would have (its user, sudo or not)
            self.browse(rows.ids).send(unlink_failed=False, unlink_sent=True,
                                       auto_commit=True, raise_exception=False)

    def resend_failed(self):
        """Odoo's "Retry" (Technical > SMS): each selected row in error gets a new SMS, handed
        to smskit once this transaction commits. Odoo counts the rows it could unlink as
        resent, and smskit keeps them: the answer says how many go out again instead."""
        if not self.env["smskit.bridge"]._smskit_sends_odoo_sms():
            return super().resend_failed()
        failed = self.filtered(lambda sms: sms.state == "error")
        if failed:
            failed.send()
            title, kind = _("Success"), "success"
            message = _("%(count)s of the %(selected)s selected SMS go out again; their "
                        "state follows.", count=len(failed), selected=len(self))
        else:
            title, kind = _("Warning"), "danger"
            message = _("None of the selected SMS failed: there is nothing to send again.")
        return {"type": "ir.actions.client", "tag": "display_notification",
                "params": {"title": title, "message": message, "type": kind}}
