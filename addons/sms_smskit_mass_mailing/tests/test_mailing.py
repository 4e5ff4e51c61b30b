"""An SMS mailing sent through smskit: its traces go pending, then delivered or bounced as
the reports come, and the mailing's statistics count them."""

from odoo.addons.sms_smskit.tests.common import SmskitCase, set_params
from odoo.tests.common import tagged


@tagged("post_install", "-at_install")
class TestMailing(SmskitCase):

    def setUp(self):
        super().setUp()
        set_params(self.env, provider="loopback", webhook_secret="addon-test-secret",
                   quiet_hours=None)
        self.partners = self.env["res.partner"].create([
            {"name": f"Cliente {i}", "mobile": f"+55119876500{i:02d}"} for i in range(5)])

    def test_statistics_count_delivered_and_bounced(self):
        from smskit.models import State, StatusEvent

        mailing = self.env["mailing.mailing"].create({
            "name": "Promoção", "subject": "Promoção", "mailing_type": "sms",
            "body_plaintext": "Promoção de junho", "mailing_model_id":
                self.env.ref("base.model_res_partner").id,
            "mailing_domain": repr([("id", "in", self.partners.ids)]),
            "sms_force_send": True, "keep_archives": False})
        mailing.action_send_sms()
        traces = mailing.mailing_trace_ids
        self.assertEqual(len(traces), 5)
        self.assertEqual(set(traces.mapped("trace_status")), {"pending"})
        self.assertTrue(all(traces.mapped("sent_datetime")))
        mailing.invalidate_cache()
        self.assertEqual((mailing.sent, mailing.delivered), (5, 0))
        sms = self.env["sms.sms"].browse(traces.mapped("sms_sms_id_int"))
        outcomes = [State.DELIVERED, State.DELIVERED, State.DELIVERED, State.ERROR,
                    State.EXPIRED]
        with self.env["smskit.bridge"]._smskit_kit() as kit:
            for row, state in zip(sms, outcomes):
                kit.apply_status(StatusEvent(provider="loopback", state=state,
                                             message_id=row.smskit_message_id))
        traces.invalidate_cache()
        mailing.invalidate_cache()
        self.assertEqual(sorted(traces.mapped("trace_status")),
                         ["bounce", "bounce", "sent", "sent", "sent"])
        self.assertEqual(sorted(t for t in traces.mapped("failure_type") if t),
                         ["sms_expired", "sms_not_delivered"])
        self.assertEqual((mailing.sent, mailing.delivered, mailing.bounced), (5, 3, 2))

    def test_every_test_sms_of_a_mailing_is_sent(self):
        # the test wizard passes the number as res_id (no sms.sms row): a second test to the
        # same number is a new SMS, never the first one's answer again
        phone = "+5511987650099"
        mailing = self.env["mailing.mailing"].create({
            "name": "Teste", "subject": "Teste", "mailing_type": "sms",
            "body_plaintext": "Promoção de julho",
            "mailing_model_id": self.env.ref("base.model_res_partner").id})
        with self.env["smskit.bridge"]._smskit_kit() as kit:
            before = len(kit.provider().sent)
        for body in ("Promoção de julho", "Promoção de julho", "Promoção de julho: 10% off"):
            mailing.body_plaintext = body
            self.env["mailing.sms.test"].create(
                {"mailing_id": mailing.id, "numbers": phone}).action_send_sms()
        with self.env["smskit.bridge"]._smskit_kit() as kit:
            sent = kit.provider().sent[before:]
        self.assertEqual([(s.phone, s.body) for s in sent], [
            (phone, "Promoção de julho"), (phone, "Promoção de julho"),
            (phone, "Promoção de julho: 10% off")])
        logged = self.env["mail.message"].search([
            ("model", "=", "mailing.mailing"), ("res_id", "=", mailing.id),
            ("body", "ilike", "Test SMS successfully sent to " + phone)])
        self.assertEqual(len(logged), 3)
        answer = self.env["sms.api"]._send_sms_batch(
            [{"res_id": phone, "number": phone, "content": "Oi"}])
        self.assertEqual(answer[0]["res_id"], phone, "Odoo matches the answer by it")
        self.assertEqual(answer[0]["state"], "success")
