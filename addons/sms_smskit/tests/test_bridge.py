"""The bridge inside Odoo: settings from system parameters, sends from code and over RPC
(marshallable answers, string dates, idempotency keys, UserErrors in the user's language),
the cron (quiet until configured), one note per message next to sms_base_sr's own, and the
kit built once. (An agent's ChatRoom reply: sms_smskit_chatroom's tests.)"""

import logging
import os

from odoo.exceptions import UserError
from odoo.tests.common import tagged
from odoo.tools.translate import trans_load

from .common import SmskitCase, set_params

PHONE = "+5511987654321"


def _no_none(value):
    """Whether ``value`` holds no ``None`` anywhere (XML-RPC cannot marshal it)."""
    if value is None:
        return False
    if isinstance(value, dict):
        return all(_no_none(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_no_none(v) for v in value)
    return True


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
        # smskit's store is this database, in its schema smskit, reached as Odoo reaches it
        store = settings.get("odoo_sidecar_url")
        self.assertIn(f"/{self.env.cr.dbname}?", store)
        self.assertIn("search_path%3Dsmskit", store)
        self.assertTrue(store.startswith("postgresql+psycopg2://"))
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
        self.assertTrue(_no_none(result), result)
        row = self.env["sms.message"].search([("provider_reference", "=",
                                               result["message_id"])])
        self.assertEqual(len(row), 1)
        self.assertEqual((row.state, row.partner_id, row.body), ("sent", partner, "Olá Ana"))

    def test_one_note_per_message_next_to_sms_base_sr(self):
        partner = self.env["res.partner"].create({"name": "Bia", "mobile": PHONE})
        self.bridge.smskit_send(PHONE, "Uma nota só")
        notes = self.env["mail.message"].search([
            ("model", "=", "res.partner"), ("res_id", "=", partner.id),
            ("message_type", "=", "comment")])
        about = notes.filtered(lambda m: "Uma nota só" in (m.body or ""))
        self.assertEqual(len(about), 1, about.mapped("body"))

    def test_the_cron_sends_what_is_queued(self):
        queued = self.bridge.smskit_send(PHONE, "Mais tarde", dispatch=False)
        self.assertEqual(queued["state"], "outgoing")
        self.bridge._cron_run()
        row = self.env["sms.message"].search([("provider_reference", "=",
                                               queued["message_id"])])
        self.assertEqual(row.state, "sent")

    def test_dates_as_strings_and_idempotency_keys(self):
        later = self.bridge.smskit_send(PHONE, "Lembrete", at="2030-01-01 12:00:00",
                                        idempotency_key="lembrete-1")
        self.assertEqual(later["state"], "outgoing")
        self.assertTrue(later["created"])
        again = self.bridge.smskit_send(PHONE, "Lembrete", at="2030-01-01T09:00:00-03:00",
                                        idempotency_key="lembrete-1")
        self.assertEqual((again["message_id"], again["created"]),
                         (later["message_id"], False))
        with self.assertRaises(UserError):
            self.bridge.smskit_send(PHONE, "Lembrete", at="amanhã")
        with self.assertRaises(UserError):
            self.bridge.smskit_send(PHONE, "Oi", when="2030-01-01 12:00:00")

    def test_send_many(self):
        summary = self.bridge.smskit_send_many(
            [PHONE, {"phone": "+5511987654322", "name": "Caio"}, "12ab"], "Oi {{ name }}",
            variables={"name": "cliente"})
        self.assertEqual((summary["total"], summary["sent"], summary["rejected"]), (3, 2, 1))
        self.assertTrue(_no_none(summary))

    def test_user_errors_in_the_users_language(self):
        with self.assertRaises(UserError) as caught:
            self.bridge.smskit_send("12ab", "Oi")
        self.assertIn("is not a valid mobile number", str(caught.exception))
        self.env["res.lang"].with_context(active_test=False).search(
            [("code", "=", "pt_BR")]).active = True
        trans_load(self.env.cr, os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                             "i18n", "pt_BR.po"), "pt_BR", verbose=False)
        with self.assertRaises(UserError) as caught:
            self.bridge.with_context(lang="pt_BR").smskit_send("12ab", "Oi")
        self.assertIn("não é um número de celular válido", str(caught.exception))

    def test_errors_name_the_system_parameters(self):
        set_params(self.env, provider="kolmeya", kolmeya_token=None)
        with self.assertRaises(UserError) as caught:
            self.bridge.smskit_send(PHONE, "Oi")
        self.assertIn("smskit.kolmeya_token", str(caught.exception))
        self.assertNotIn("SMSKIT_", str(caught.exception))

    def test_the_cron_is_quiet_until_configured(self):
        set_params(self.env, provider="kolmeya", kolmeya_token=None)
        with self.assertLogs("odoo.addons.sms_smskit", level=logging.INFO) as logs:
            self.bridge._cron_run()
        self.assertEqual(len(logs.records), 1, logs.output)
        self.assertEqual(logs.records[0].levelno, logging.INFO)
        self.assertIn("smskit.kolmeya_token", logs.output[0])

    def test_the_kit_is_built_once(self):
        from odoo.addons.sms_smskit.models.smskit_bridge import kit_pool

        self.bridge.smskit_send(PHONE, "Um")
        built = kit_pool().built
        self.bridge.smskit_send("+5511987654322", "Dois")
        self.bridge.smskit_send("+5511987654323", "Três")
        self.assertEqual(kit_pool().built, built, "a kit was built again for the same settings")
        set_params(self.env, default_region="PT")  # other settings: another kit
        self.bridge.smskit_send("+351912345678", "Olá")
        self.assertEqual(kit_pool().built, built + 1)

    def test_the_screens_speak_portuguese(self):
        self.env["res.lang"].with_context(active_test=False).search(
            [("code", "=", "pt_BR")]).active = True
        trans_load(self.env.cr, os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                             "i18n", "pt_BR.po"), "pt_BR", verbose=False)
        pt = self.env(context=dict(self.env.context, lang="pt_BR"))
        self.assertEqual(pt.ref("sms_smskit.menu_smskit_messages").name, "Mensagens")
        self.assertEqual(pt.ref("sms_smskit.menu_smskit_schedules").name, "SMS agendados")
        labels = pt["smskit.message"].fields_get(["segments", "state"])
        self.assertEqual(labels["segments"]["string"], "Partes")
        self.assertIn(("error", "Não entregue"), labels["state"]["selection"])
        arch = pt["smskit.campaign"].fields_view_get(view_type="form")["arch"]
        self.assertIn("Pausar", arch)
        self.assertIn("Retomar", arch)
