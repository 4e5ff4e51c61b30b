"""An agent's reply in an SMS ChatRoom conversation: sent through smskit once however often
ChatRoom sends it, refused before anything is kept when the number is blacklisted or invalid
(in the agent's language), deferred by quiet hours with a word to the agent, its delivery
state on the message when the report comes, and the connector's counts."""

import os

from odoo.addons.sms_smskit.tests.common import SmskitCase, set_params
from odoo.exceptions import UserError
from odoo.tests.common import tagged
from odoo.tools.translate import trans_load

NUMBER = "5511987654322"


@tagged("post_install", "-at_install")
class TestChatRoom(SmskitCase):

    def setUp(self):
        super().setUp()
        set_params(self.env, provider="loopback", webhook_secret="addon-test-secret",
                   quiet_hours=None)
        self.connector = self.env["acrux.chat.connector"].create(
            {"name": "SMS", "connector_type": "sms"})
        self.conversation = self.env["acrux.chat.conversation"].create(
            {"name": "Ana", "number": NUMBER, "connector_id": self.connector.id,
             "status": "current", "agent_id": self.env.uid})

    def _reply(self, text="Seu pedido saiu"):
        """What the ChatRoom web client does when the agent presses Send."""
        return self.env["acrux.chat.message"].browse(
            self.conversation.send_message({"text": text, "ttype": "text"}))

    def _sent(self):
        with self.env["smskit.bridge"]._smskit_kit() as kit:
            return list(kit.provider().sent)

    def test_an_agent_reply_goes_out_through_smskit(self):
        before = len(self._sent())
        message = self._reply()
        self.assertTrue(message.msgid)
        self.assertEqual(message.smskit_state, "sent")
        self.assertFalse(message.error_msg)
        sent = self._sent()[before:]
        self.assertEqual([(s.phone, s.body) for s in sent], [("+" + NUMBER, "Seu pedido saiu")])
        # ChatRoom sending the same message again sends nothing
        again = self.connector.ca_request("send", {"type": "text", "text": message.text,
                                                   "to": NUMBER, "id": str(message.id)})
        self.assertEqual(again["msg_id"], message.msgid)
        self.assertEqual(len(self._sent()), before + 1)

    def test_the_delivery_report_reaches_the_message(self):
        from smskit.models import State, StatusEvent

        delivered, lost = self._reply("Um"), self._reply("Dois")
        with self.env["smskit.bridge"]._smskit_kit() as kit:
            kit.apply_status(StatusEvent(provider="loopback", state=State.DELIVERED,
                                         message_id=delivered.msgid))
            kit.apply_status(StatusEvent(provider="loopback", state=State.ERROR,
                                         message_id=lost.msgid, status_text="não entregue"))
        self.assertEqual((delivered.smskit_state, delivered.error_msg), ("delivered", False))
        self.assertEqual((lost.smskit_state, lost.error_msg), ("error", "não entregue"))
        self.env["acrux.chat.message"].create({"contact_id": self.conversation.id,
                                               "text": "Obrigado", "from_me": False})
        self.assertEqual((self.connector.smskit_sent_count, self.connector.smskit_failed_count,
                          self.connector.smskit_received_count), (1, 1, 1))

    def test_a_blacklisted_number_is_refused_before_anything_is_kept(self):
        self.env["phone.blacklist"].create({"number": "+" + NUMBER})
        before = len(self._sent())
        with self.assertRaises(UserError) as caught:
            self._reply()
        self.assertIn("is on the blacklist", str(caught.exception))
        self.assertEqual(len(self._sent()), before)
        self.env["res.lang"].with_context(active_test=False).search(
            [("code", "=", "pt_BR")]).active = True
        trans_load(self.env.cr, os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                             "i18n", "pt_BR.po"), "pt_BR", verbose=False)
        with self.assertRaises(UserError) as caught:
            self.conversation.with_context(lang="pt_BR").send_message(
                {"text": "Oi", "ttype": "text"})
        self.assertIn("está na lista negra", str(caught.exception))

    def test_an_invalid_number_is_refused(self):
        self.conversation.number = "12345"
        with self.assertRaises(UserError) as caught:
            self._reply()
        self.assertIn("is not a valid mobile number", str(caught.exception))

    def test_quiet_hours_defer_the_reply_and_tell_the_agent(self):
        set_params(self.env, quiet_hours="00:00-23:59")
        channel = self.env.user.partner_id
        before = self.env["bus.bus"].search_count([])
        message = self._reply()
        self.assertEqual(message.smskit_state, "outgoing")
        notes = self.env["bus.bus"].search([], order="id desc",
                                           limit=self.env["bus.bus"].search_count([]) - before)
        self.assertTrue(any("simple_notification" in n.message and "Quiet hours" in n.message
                            for n in notes), [n.message for n in notes])
        self.assertTrue(channel)

    def test_other_connectors_keep_their_own_send_path(self):
        connector = self.env["acrux.chat.connector"].create(
            {"name": "WhatsApp", "connector_type": "not_set"})
        with self.assertRaises(UserError):
            connector.ca_request("send", {"number": "5511987654322", "text": "Oi"})
