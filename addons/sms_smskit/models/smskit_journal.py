"""Odoo writes smskit has not done yet (its journal, a SQL view): pending ones wait for Odoo or
a fix; failed ones were refused by Odoo and wait for a person to retry them."""

from odoo import _, fields, models

from .smskit_store import MANAGER_GROUP

KINDS = [
    ("mirror", "SMS record"),
    ("note", "Chatter note"),
    ("acrux", "ChatRoom message"),
    ("blacklist", "Odoo blacklist"),
]


class SmskitJournal(models.Model):
    _name = "smskit.journal"
    _inherit = ["smskit.view.mixin"]
    _description = "Pending Odoo write"
    _auto = False
    _order = "id desc"
    _rec_name = "kind"

    kind = fields.Selection(KINDS, string="Write", readonly=True)
    key = fields.Char("Key", readonly=True)
    message_ref = fields.Char("SMS (smskit id)", readonly=True)
    message_id = fields.Many2one("smskit.message", string="SMS", readonly=True)
    payload = fields.Text("Data", readonly=True)
    status = fields.Selection([("pending", "Waiting"), ("failed", "Refused by Odoo")],
                              string="Status", readonly=True)
    attempts = fields.Integer("Attempts", readonly=True)
    last_error = fields.Text("Last error", readonly=True)
    created_at = fields.Datetime("Queued at", readonly=True)
    lease_until = fields.Datetime("Being written until", readonly=True)

    def action_retry(self):
        """Put the refused writes back in the queue and write everything pending now; the
        answer says what is still waiting, and why."""
        bridge = self._smskit_bridge()
        bridge._smskit_check_group(MANAGER_GROUP)
        self.check_access_rights("read")
        failed = self.filtered(lambda op: op.status == "failed")
        with bridge._smskit_errors(), bridge._smskit_screen_kit() as kit:
            retried = kit.store.journal.retry(failed.ids) if failed else 0
            report = kit.store.flush()
            waiting = kit.store.journal.count()
            refused = kit.store.journal.count("failed")
        message = _("%(retried)d write(s) put back in the queue; %(waiting)d still waiting, "
                    "%(refused)d refused by Odoo.") % {
                        "retried": retried, "waiting": waiting, "refused": refused}
        if report.error:
            message += " " + bridge._smskit_names(report.error)
        return {"type": "ir.actions.client", "tag": "display_notification", "params": {
            "title": _("Odoo writes"), "message": message, "sticky": bool(report.error),
            "type": "warning" if (waiting or refused) else "success",
            "next": {"type": "ir.actions.act_window_close"}}}
