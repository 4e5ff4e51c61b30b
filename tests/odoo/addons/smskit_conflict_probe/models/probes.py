"""Two faults on Odoo's SMS path, each armed by a system parameter set to ``1`` and disarmed
by its first use (the parameter is read and written in SQL: no ORM cache in the way).

* ``smskit_probe.conflict``: after ``sms.sms._send`` (the SMS handed to ``sms.api``, its
  results post-processed), the composer's numbers mode (``_action_send_sms_numbers``, no
  ``sms.sms`` row) or ChatRoom's ``acrux.chat.message.message_send`` (an agent's reply
  handed to its connector), another transaction updates a row this one then updates
  too: a real PostgreSQL serialization failure, on which Odoo rolls the request back and
  runs it again (``odoo.service.model.check``), as when a delivery report or the
  customer's next SMS races the send; ``smskit.bridge.smskit_probe_send_then_write`` is
  your own code calling ``smskit_send`` and then meeting such an update.
* ``smskit_probe.die_after_commit``: the callbacks registered to run after this
  transaction's commit are dropped, as if the process died right after committing.
"""

from odoo import api, models

CONFLICT = "smskit_probe.conflict"
DIE_AFTER_COMMIT = "smskit_probe.die_after_commit"


def _armed(cr, key):
    cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", [key])
    row = cr.fetchone()
    return bool(row) and row[0] == "1"


def _conflict(env):
    cr = env.cr
    if _armed(cr, CONFLICT):  # this read fixes this transaction's snapshot
        with env.registry.cursor() as other:  # a concurrent request, committed
            other.execute("UPDATE ir_config_parameter SET value = '0' WHERE key = %s",
                          [CONFLICT])
        # the row changed after our snapshot: "could not serialize access"
        cr.execute("UPDATE ir_config_parameter SET value = '0' WHERE key = %s", [CONFLICT])


class SmskitBridge(models.AbstractModel):
    _inherit = "smskit.bridge"

    @api.model
    def smskit_probe_send_then_write(self, phone, text):
        """Your own code: ``smskit_send``, then a write a concurrent transaction got to
        first (when ``smskit_probe.conflict`` is armed)."""
        answer = self.smskit_send(phone, text)
        _conflict(self.env)
        return answer


class SmsComposer(models.TransientModel):
    _inherit = "sms.composer"

    def _action_send_sms_numbers(self):
        result = super()._action_send_sms_numbers()
        _conflict(self.env)
        return result


class AcruxChatMessage(models.Model):
    _inherit = "acrux.chat.message"

    def message_send(self):
        result = super().message_send()
        _conflict(self.env)
        return result


class SmsSms(models.Model):
    _inherit = "sms.sms"

    def _send(self, unlink_failed=False, unlink_sent=True, raise_exception=False):
        result = super()._send(unlink_failed=unlink_failed, unlink_sent=unlink_sent,
                               raise_exception=raise_exception)
        _conflict(self.env)
        cr = self.env.cr
        if _armed(cr, DIE_AFTER_COMMIT):
            cr.execute("UPDATE ir_config_parameter SET value = '0' WHERE key = %s",
                       [DIE_AFTER_COMMIT])
            cr.postcommit.clear()
        return result
