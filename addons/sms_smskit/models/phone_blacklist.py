"""``phone.blacklist`` changes made in Odoo reach smskit's own list.

smskit refuses a number on either list (its own, or an active ``phone.blacklist`` row, asked
afresh before each send), and mirrors its own opt-outs ("SAIR" replies) into
``phone.blacklist``. The other way is here: a row added (or reactivated) in Odoo is added to
smskit's list, a row archived or deleted is removed from it, so an operator lifting a block in
Odoo lifts smskit's too. The change is applied once Odoo committed it (a post-commit hook: a
rolled-back edit changes nothing), in a transaction of its own. Writes smskit makes itself
carry the context ``smskit_blacklist_sync`` and are not echoed back.
"""

import logging

from odoo import SUPERUSER_ID, api, models

_logger = logging.getLogger(__name__)

_DATA_KEY = "smskit.blacklist"


class PhoneBlacklist(models.Model):
    _inherit = "phone.blacklist"

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        self._smskit_follow([(r.number, "add") for r in records if r.active])
        return records

    def write(self, vals):
        if self.env.context.get("smskit_blacklist_sync") or not (
                {"active", "number"} & set(vals)):
            return super().write(vals)
        before = {r.id: (r.number, r.active) for r in self}
        result = super().write(vals)
        changes = []
        for record in self:
            number, active = before[record.id]
            if active and (not record.active or record.number != number):
                changes.append((number, "remove"))
            if record.active and (not active or record.number != number):
                changes.append((record.number, "add"))
        self._smskit_follow(changes)
        return result

    def unlink(self):
        changes = [(r.number, "remove") for r in self if r.active]
        result = super().unlink()
        self._smskit_follow(changes)
        return result

    def _smskit_follow(self, changes):
        """Queue ``(number, action)`` for smskit, applied after the commit (all changes of
        one transaction in one call)."""
        if not changes or self.env.context.get("smskit_blacklist_sync"):
            return
        callbacks = self.env.cr.postcommit
        queued = callbacks.data.setdefault(_DATA_KEY, [])
        if not queued:
            dbname = self.env.cr.dbname
            callbacks.add(lambda: _apply(dbname, callbacks.data.get(_DATA_KEY) or []))
        queued.extend(changes)


def _apply(dbname, changes):
    """Bring committed ``phone.blacklist`` changes into smskit (never raises: Odoo has
    committed, and smskit still refuses a number that is on either list)."""
    from odoo.modules.registry import Registry

    try:
        with Registry(dbname).cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["smskit.bridge"]._smskit_blacklist_from_odoo(list(changes))
    except Exception:  # logged: the caller's commit is done and must not fail
        _logger.exception("smskit: bringing %d phone.blacklist change(s) into smskit failed",
                          len(changes))
