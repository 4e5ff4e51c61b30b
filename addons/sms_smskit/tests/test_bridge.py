"""The bridge inside Odoo: settings from system parameters, a send mirrored into
``sms.message``, the cron, and an agent's ChatRoom reply sent through smskit."""

import os

from odoo.exceptions import UserError
from odoo.tests.common import tagged

from .common import SmskitCase, set_params

PHONE = "+5511987654321"


@tagged("post_install", "-at_install")
class TestBridge(SmskitCase):

    def setUp(self):
        super().setUp()
        set_params(self.env, provider="loopback", webhook_secret="addon-test-secret")
        self.bridge = self.env["smskit.bridge"]

    def test_settings_come_from_system_parameters(self):
        settings = self.bridge._smskit_settings()
        self.assertEqual(settings.get("provider"), "loopback")
        self.assertEqual(settings.get("default_region"), "BR")  # the addon's default
        self.assertTrue(settings.get("odoo_sidecar_url").endswith(
            os.path.join("smskit", self.env.cr.dbname + ".db")))
        set_params(self.env, allow_insecure_webhooks="true")
        self.assertIsNone(self.bridge._smskit_settings().get("allow_insecure_webhooks"),
                          "the addon always wants the webhook secret")

    def test_the_cron_is_installed(self):
        cron = self.env.ref("sms_smskit.ir_cron_smskit_run")
        self.assertTrue(cron.active)
        self.assertEqual(cron.model_id.model, "smskit.bridge")
        self.assertEqual(cron.code.strip(), "model._cron_run()")

    def test_a_send_is_mirrored_into_sms_message(self):
        partner = self.env["res.partner"].create({"name": "Ana", "mobile": PHONE})
        result = self.bridge.smskit_send(PHONE, "Olá {{ partner.name }}")
        self.assertEqual(result["state"], "sent")
        row = self.env["sms.message"].search([("provider_reference", "=",
                                               result["message_id"])])
        self.assertEqual(len(row), 1)
        self.assertEqual((row.state, row.partner_id, row.body), ("sent", partner, "Olá Ana"))

    def test_the_cron_sends_what_is_queued(self):
        queued = self.bridge.smskit_send(PHONE, "Mais tarde", dispatch=False)
        self.assertEqual(queued["state"], "outgoing")
        self.bridge._cron_run()
        row = self.env["sms.message"].search([("provider_reference", "=",
                                               queued["message_id"])])
        self.assertEqual(row.state, "sent")

    def test_an_agent_reply_goes_out_through_smskit(self):
        connector = self.env["acrux.chat.connector"].create(
            {"name": "SMS", "connector_type": "sms"})
        sent = connector.ca_request("send", {"number": "5511987654322", "text": "Oi",
                                             "msgid": "agent-1"})
        self.assertTrue(sent["msg_id"])
        again = connector.ca_request("send", {"number": "5511987654322", "text": "Oi",
                                              "msgid": "agent-1"})
        self.assertEqual(again["msg_id"], sent["msg_id"], "a retried reply is not sent twice")
        rows = self.env["sms.message"].search([("phone", "like", "987654322")])
        self.assertEqual(len(rows), 1)

    def test_other_connectors_keep_their_own_send_path(self):
        connector = self.env["acrux.chat.connector"].create(
            {"name": "WhatsApp", "connector_type": "not_set"})
        with self.assertRaises(UserError):
            connector.ca_request("send", {"number": "5511987654322", "text": "Oi"})
