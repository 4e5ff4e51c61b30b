"""smskit's blacklist and its audit (who, when, why), as smskit keeps them (SQL views); a
number added or removed here goes through smskit (audited, synced to the gateway and to Odoo's
``phone.blacklist``)."""

from odoo.exceptions import UserError

from odoo import _, api, fields, models

from .smskit_store import MANAGER_GROUP

ORIGINS = [
    ("keyword", "Keyword reply"),
    ("gateway", "Gateway"),
    ("odoo", "Odoo blacklist"),
    ("operator", "Operator"),
]


class SmskitBlacklist(models.Model):
    _name = "smskit.blacklist"
    _inherit = ["smskit.view.mixin"]
    _description = "Blacklisted number"
    _auto = False
    _order = "created_at desc, id desc"
    _rec_name = "phone"

    phone = fields.Char("Number", required=True)
    reason = fields.Text("Why")
    source = fields.Char("Source", readonly=True)
    origin = fields.Selection(ORIGINS, string="Origin", readonly=True)
    user_id = fields.Many2one("res.users", string="By", readonly=True)
    created_at = fields.Datetime("Since", readonly=True)
    phone_blacklist_id = fields.Many2one("phone.blacklist", string="Odoo blacklist entry",
                                         readonly=True)
    in_phone_blacklist = fields.Boolean("In Odoo's blacklist", readonly=True)
    audit_ids = fields.One2many("smskit.blacklist.audit", "blacklist_id", string="Changes",
                                readonly=True)

    @api.model_create_multi
    def create(self, vals_list):
        """Put numbers on smskit's list (audited as this user, synced to the gateway and to
        ``phone.blacklist``); a number already there is left as it is."""
        from smskit.phone import Phone

        self.check_access_rights("create")
        bridge = self._smskit_bridge()
        phones = []
        with bridge._smskit_errors(), bridge._smskit_screen_kit() as kit:
            for vals in vals_list:
                raw = (vals.get("phone") or "").strip()
                if not raw:
                    raise UserError(_("Type the number to blacklist."))
                phone = Phone.parse(raw, kit.settings.default_region, allow_landlines=True).e164
                reason = (vals.get("reason") or "").strip() or _("added by %s in Odoo") % (
                    self.env.user.name)
                kit.blacklist_add(phone, reason=reason, source=bridge._smskit_operator())
                phones.append(phone)
        seqs = self._smskit_odoo_ids("blacklist", phones)
        return self.browse([seqs[p] for p in phones if p in seqs])

    def unlink(self):
        """Take the numbers off smskit's list (audited, synced; their ``phone.blacklist`` rows
        archived). SMS managers only."""
        self.action_remove()
        return True

    def action_remove(self):
        """Take the numbers off the list (SMS managers only)."""
        bridge = self._smskit_bridge()
        bridge._smskit_check_group(MANAGER_GROUP)
        self.check_access_rights("unlink")
        reason = _("removed by %s in Odoo") % self.env.user.name
        with bridge._smskit_errors(), bridge._smskit_screen_kit() as kit:
            for entry in self:
                kit.blacklist_remove(entry.phone, reason=reason,
                                     source=bridge._smskit_operator())
        return {"type": "ir.actions.act_window", "res_model": "smskit.blacklist",
                "name": _("Blacklist"), "view_mode": "tree,form", "target": "main"}


class SmskitBlacklistAudit(models.Model):
    _name = "smskit.blacklist.audit"
    _inherit = ["smskit.view.mixin"]
    _description = "Blacklist change"
    _auto = False
    _order = "id desc"
    _rec_name = "phone"

    phone = fields.Char("Number", readonly=True)
    action = fields.Selection([("add", "Added"), ("remove", "Removed")], string="Change",
                              readonly=True)
    source = fields.Char("Source", readonly=True)
    origin = fields.Selection(ORIGINS, string="Origin", readonly=True)
    user_id = fields.Many2one("res.users", string="By", readonly=True)
    reason = fields.Text("Why", readonly=True)
    campaign_ref = fields.Char("Campaign (smskit id)", readonly=True)
    campaign_id = fields.Many2one("smskit.campaign", string="Campaign", readonly=True)
    created_at = fields.Datetime("When", readonly=True)
    blacklist_id = fields.Many2one("smskit.blacklist", string="Entry", readonly=True)
