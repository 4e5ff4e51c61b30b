"""An agent's reply in an SMS ChatRoom conversation, sent through smskit, and what the agent
is told.

* The number is checked first, and the blacklist (smskit's own and Odoo's ``phone.blacklist``)
  before anything is stored or committed: a refusal is a ``UserError`` in the agent's language
  (Portuguese or English) and ChatRoom keeps nothing of the message, as with its own checks.
* Quiet hours defer the SMS: it is queued, the agent gets a notification saying when it goes
  out, and the message's ``smskit_state`` reads "Queued" until then.
* The message is keyed ``odoo:<database uuid>:acrux.chat.message:<id>``: ChatRoom sending the
  same message again sends nothing twice, and ``smskit_odoo.origins`` writes its delivery
  state (``smskit_state``, and ChatRoom's ``error_msg`` with the reason on a failure) when
  Kolmeya's callback arrives.
* Refused by the gateway or smskit's policy once stored: a ``UserError`` too (the message
  keeps its ``error_msg``).
* Odoo runs the agent's request again when PostgreSQL reports a concurrent update (the
  customer's next SMS landing in the same conversation, say), with a new ChatRoom message,
  hence a new key: the SMS the first run sent must not go out again. A reply sent by a
  transaction that is then rolled back is remembered by the thread (Odoo's re-run comes on
  the same thread, within seconds); the next reply of the same text to the same number on
  the same connector within two minutes takes that SMS instead of sending another, and the
  first run's ChatRoom message, if smskit's own commit kept it, is removed. Its delivery
  state reaches the message that took the SMS's id (``smskit_odoo.origins``).
"""

from odoo.exceptions import UserError

from odoo import _, api, models


class SmskitBridgeChatRoom(models.AbstractModel):
    _inherit = "smskit.bridge"

    @api.model
    def _send_chatroom_reply(self, connector, data):
        """``ca_request('send', data)`` of an SMS connector: returns ``{"msg_id": ...}``."""
        from smskit.models import State
        from smskit.phone import Phone
        from smskit_odoo.origins import origin_key

        number = str(data.get("to") or data.get("number") or "").strip()
        text = data.get("text") or data.get("message") or ""
        if not number or not text:
            raise UserError(_("An SMS reply needs a number and a text."))
        record = str(data.get("id") or "")
        msgid = data.get("msgid")
        key = None
        if record.isdigit():
            uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid") or \
                self.env.cr.dbname
            key = origin_key(uuid, "acrux.chat.message", int(record))
        elif msgid:
            key = f"chatroom:{connector.id}:{msgid}"
        settings = self._smskit_settings()
        with self._smskit_errors(), self._smskit_kit(settings) as kit:
            phone = Phone.parse("+" + number.lstrip("+"), settings.default_region,
                                allow_landlines=settings.allow_landlines).e164
            signature = ("chatroom", connector.id, phone, text)
            earlier = key and self._smskit_rerun_memory(signature)
            if earlier:
                self._smskit_drop_rolled_back_reply(earlier, key, text)
                key = earlier
            known = key and kit.store.journal.by_keys([key])
            if not known and kit.store.is_blacklisted(phone):
                raise UserError(_("%s is on the blacklist (the customer asked not to receive "
                                  "SMS, or an operator blocked the number): the reply was not "
                                  "sent.") % number)
            outcome = kit.send(phone, text, tags=("chatroom",), idempotency_key=key)
        if outcome.state in (State.REJECTED, State.CANCELED):
            # translated first, then formatted: Odoo's idiom for _()
            raise UserError(_("SMS not sent: %s") % (outcome.reason or outcome.state.value))
        if key:  # sent or queued: a re-run of this request must not send it again
            self._smskit_remember_for_rerun(signature, key)
        if outcome.deferred_until is not None and outcome.created:
            self._smskit_tell_agent_deferred(outcome.deferred_until, settings.timezone)
        return {"msg_id": outcome.message_id}

    @api.model
    def _smskit_drop_rolled_back_reply(self, earlier, key, text):
        """The ChatRoom message of a run rolled back after its SMS went (``earlier`` names
        it), if smskit's own commit kept it: without the SMS's id, it would show the reply
        twice. Only that message, only while it has no ``msgid``."""
        from smskit_odoo.origins import CHAT_MESSAGE

        parts = earlier.split(":")
        if earlier == key or len(parts) != 4 or parts[2] != CHAT_MESSAGE \
                or not parts[3].isdigit():
            return
        ghost = self.env[CHAT_MESSAGE].sudo().browse(int(parts[3])).exists()
        if ghost and not ghost.msgid and ghost.from_me and ghost.text == text:
            ghost.unlink()

    @api.model
    def _smskit_tell_agent_deferred(self, when, tz):
        """A notification to the agent: quiet hours hold the SMS until ``when`` (shown in
        the agent's time zone, else smskit's)."""
        from smskit.timeutil import zone

        local = when.astimezone(zone(self.env.user.tz or tz))
        self.env["bus.bus"]._sendone(self.env.user.partner_id, "simple_notification", {
            "title": _("SMS scheduled"),
            "message": _("Quiet hours: this SMS goes out on %s.")
            % local.strftime("%d/%m/%Y %H:%M"),
            "sticky": False,
            "warning": True,
        })
