"""Odoo's own SMS through smskit: the stock composer on a partner, the state Odoo's records
take (the sms.sms kept, the chatter notification, what _send_sms_batch answers), a retried
batch sent once, the blacklist and quiet hours, and the IAP path left alone when asked."""

import datetime as dt
from unittest.mock import patch

from odoo.tests.common import tagged

from .common import SmskitCase, set_params

PHONE = "+5511987654321"


@tagged("post_install", "-at_install")
class TestOdooSms(SmskitCase):

    def setUp(self):
        super().setUp()
        set_params(self.env, provider="loopback", webhook_secret="addon-test-secret",
                   quiet_hours=None)
        self.bridge = self.env["smskit.bridge"]
        self.partner = self.env["res.partner"].create({"name": "Ana", "mobile": PHONE})

    def _compose(self, partner=None, body="Seu pedido saiu"):
        """What the partner's "Send SMS" button does."""
        partner = partner or self.partner
        composer = self.env["sms.composer"].with_context(
            active_model="res.partner", active_id=partner.id).create({"body": body})
        message = composer._action_send_sms()
        notification = self.env["mail.notification"].search(
            [("mail_message_id", "in", message.ids), ("notification_type", "=", "sms")])
        return message, notification

    def _kit_message(self, sms):
        with self.bridge._smskit_kit() as kit:
            return kit.get(sms.smskit_message_id)

    def _report(self, sms, state, text=None):
        """Kolmeya's delivery report for the SMS of ``sms``, through smskit."""
        from smskit.models import State, StatusEvent

        with self.bridge._smskit_kit() as kit:
            kit.apply_status(StatusEvent(provider="loopback", state=State(state),
                                         message_id=sms.smskit_message_id, status_text=text))

    def test_the_partner_composer_sends_through_smskit(self):
        message, notification = self._compose()
        self.assertEqual(message.message_type, "sms")
        sms = notification.sms_id
        self.assertTrue(sms, "the sms.sms row is kept (its notification needs it)")
        self.assertEqual((sms.state, sms.smskit_state), ("sent", "sent"))
        self.assertEqual(notification.notification_status, "pending")
        sent = self._kit_message(sms)
        self.assertEqual((sent.phone, sent.body), (PHONE, "Seu pedido saiu"))
        self.assertEqual(sent.partner_ref, f"res.partner,{self.partner.id}")
        # the users' sms.message shows it too, without a second note on the partner
        row = self.env["sms.message"].search([("provider_reference", "=", sent.id)])
        self.assertEqual((row.state, row.partner_id), ("sent", self.partner))
        posted = self.env["mail.message"].search([
            ("model", "=", "res.partner"), ("res_id", "=", self.partner.id),
            ("message_type", "in", ("sms", "comment"))])
        self.assertEqual(posted.mapped("message_type"), ["sms"], posted.mapped("body"))

    def test_delivered_and_failed_come_back_to_the_chatter(self):
        _, delivered = self._compose()
        other = self.env["res.partner"].create({"name": "Bia", "mobile": "+5511987654322"})
        _, lost = self._compose(other)
        self._report(delivered.sms_id, "delivered")
        self._report(lost.sms_id, "error", "não entregue")
        self.assertEqual((delivered.notification_status, delivered.failure_type),
                         ("sent", False))
        self.assertEqual((lost.notification_status, lost.failure_type, lost.failure_reason),
                         ("bounce", "sms_not_delivered", "não entregue"))
        self.assertEqual((lost.sms_id.state, lost.sms_id.smskit_state,
                          lost.sms_id.smskit_reason), ("error", "error", "não entregue"))
        self.assertEqual(delivered.sms_id.smskit_state, "delivered")
        # the "Sending Failures" dialog shows the reason
        resend = self.env["sms.resend"].with_context(
            default_mail_message_id=lost.mail_message_id.id).create({})
        self.assertEqual(resend.recipient_ids.failure_reason, "não entregue")

    def test_a_retried_batch_is_not_sent_twice(self):
        _, notification = self._compose()
        sms = notification.sms_id
        with self.bridge._smskit_kit() as kit:
            sent_before = len(kit.provider().sent)
        data = [{"res_id": sms.id, "number": sms.number, "content": sms.body}]
        again = self.env["sms.api"]._send_sms_batch(data)
        sms.send()  # Odoo's own resend of the row: the same message
        with self.bridge._smskit_kit() as kit:
            self.assertEqual(len(kit.provider().sent), sent_before)
        self.assertEqual(again[0]["state"], "success")
        self.assertEqual(again[0]["smskit_id"], sms.smskit_message_id)
        self.assertEqual(notification.notification_status, "pending")

    def test_outside_tests_the_gateway_waits_for_the_commit(self):
        # Odoo's tests never commit, so the addon sends at once there; outside them the rows
        # are held until the transaction commits (a rolled back run of the request, which
        # Odoo runs again, must not have sent anything)
        bridge = type(self.bridge)
        with patch.object(bridge, "_smskit_defers",
                          lambda self: not self.env.context.get("smskit_send_now")):
            answer = self.env["sms.api"]._send_sms_batch(
                [{"res_id": 0, "number": "12ab", "content": "Teste"}])
            self.assertEqual(answer[0]["state"], "wrong_number_format")  # no row: at once
            with self.bridge._smskit_kit() as kit:
                before = len(kit.provider().sent)
            _, notification = self._compose()
            sms = notification.sms_id
            self.assertEqual((sms.state, sms.smskit_message_id), ("outgoing", False))
            self.assertEqual(notification.notification_status, "ready")
            with self.bridge._smskit_kit() as kit:
                self.assertEqual(len(kit.provider().sent), before, "sent before the commit")
            self.env.cr.postcommit.run()  # what the commit runs
            self.env.cache.invalidate()
            self.assertEqual((sms.state, sms.smskit_state), ("sent", "sent"))
            self.assertEqual(notification.notification_status, "pending")
            with self.bridge._smskit_kit() as kit:
                self.assertEqual(len(kit.provider().sent), before + 1)
            sent = self._kit_message(sms)
            self.assertEqual((sent.phone, sent.body), (PHONE, "Seu pedido saiu"))

    def test_retrying_a_failed_sms_sends_a_new_one_once(self):
        # Technical > SMS > Retry: a row whose SMS failed goes out again as a new SMS (it
        # used to answer the failed one, under the row's key, and send nothing)
        _, notification = self._compose()
        sms = notification.sms_id
        failed = sms.smskit_message_id
        self._report(sms, "error", "não entregue")
        self.assertEqual(sms.state, "error")
        with self.bridge._smskit_kit() as kit:
            before = len(kit.provider().sent)
        answer = sms.resend_failed()
        self.assertEqual(answer["params"]["type"], "success")
        self.assertEqual((sms.state, notification.notification_status), ("sent", "pending"))
        self.assertNotEqual(sms.smskit_message_id, failed)
        self.assertEqual(self._kit_message(sms).body, "Seu pedido saiu")
        again = sms.resend_failed()  # it did not fail this time: nothing to send
        self.assertEqual(again["params"]["type"], "danger")
        sms.send()  # Odoo sending the row again: the new SMS, not a third one
        with self.bridge._smskit_kit() as kit:
            self.assertEqual(len(kit.provider().sent), before + 1)

    def test_the_blacklist_is_honoured_and_said(self):
        self.env["phone.blacklist"].create({"number": PHONE})
        _, notification = self._compose()
        self.assertEqual((notification.notification_status, notification.failure_type),
                         ("exception", "sms_blacklist"))
        self.assertEqual(notification.sms_id.state, "canceled")
        answer = self.env["sms.api"]._send_sms_batch(
            [{"res_id": 0, "number": PHONE, "content": "Teste"}])
        self.assertEqual(answer[0]["state"], "blacklisted")
        self.assertIn("blacklisted", self.env["sms.api"]._get_sms_api_error_messages())

    def test_an_invalid_number_is_wrong_number_format(self):
        answer = self.env["sms.api"]._send_sms_batch(
            [{"res_id": 0, "number": "12ab", "content": "Teste"}])
        self.assertEqual(answer[0]["state"], "wrong_number_format")

    def test_quiet_hours_hold_it_processing_then_it_goes(self):
        set_params(self.env, quiet_hours="00:00-23:59")
        _, notification = self._compose()
        sms = notification.sms_id
        self.assertEqual((sms.state, sms.smskit_state), ("process", "outgoing"))
        self.assertEqual(notification.notification_status, "process")
        queued = self._kit_message(sms)
        self.assertTrue(queued.scheduled_at)
        set_params(self.env, quiet_hours=None)
        with self.bridge._smskit_kit() as kit:
            kit.dispatch(now=queued.scheduled_at + dt.timedelta(minutes=1))
        self.assertEqual((sms.state, notification.notification_status), ("sent", "pending"))

    def test_unconfigured_is_unregistered_and_iap_is_left_alone_when_asked(self):
        set_params(self.env, provider="kolmeya", kolmeya_token=None)
        _, notification = self._compose()
        self.assertEqual((notification.notification_status, notification.failure_type),
                         ("exception", "sms_acc"))
        self.env["ir.config_parameter"].sudo().set_param("smskit.odoo_sms", "iap")
        calls = []

        def contact_iap(_self, endpoint, params):
            calls.append(endpoint)
            return [{"res_id": m["res_id"], "state": "success", "credit": 1}
                    for m in params["messages"]]

        with patch.object(type(self.env["sms.api"]), "_contact_iap", contact_iap):
            _, through_iap = self._compose()
        self.assertEqual(calls, ["/iap/sms/2/send"])
        self.assertEqual(through_iap.notification_status, "sent")
        self.assertFalse(through_iap.sms_id, "Odoo's own path unlinks the row")
