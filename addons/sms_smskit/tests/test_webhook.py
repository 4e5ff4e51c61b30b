"""Kolmeya's callbacks at ``/smskit/webhooks/kolmeya/<kind>``, posted over HTTP to the test
server exactly as Kolmeya sends them (``Content-Type: application/json``, the token in the
query): Odoo 15 would take them for JSON-RPC; the addon's ``ir.http`` hands them to the
``type="http"`` route, whose answers are smskit's webhook gate's."""

import json

from odoo.tests.common import tagged

from .common import SmskitHttpCase, set_params

SECRET = "addon-test-secret"
URL = "/smskit/webhooks/kolmeya/%s"


@tagged("post_install", "-at_install")
class TestWebhook(SmskitHttpCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        set_params(cls.env, provider="kolmeya", kolmeya_token="addon-test-token",
                   kolmeya_base_url="http://127.0.0.1:9/api/v1", webhook_secret=SECRET)
        cls.connector = cls.env["acrux.chat.connector"].create(
            {"name": "SMS", "connector_type": "sms"})

    def post(self, kind, body, token=None, content_type="application/json"):
        url = URL % kind + (f"?token={token}" if token is not None else "")
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.url_open(url, data=data, headers={"Content-Type": content_type})

    def answer(self, response):
        body = response.json()
        self.assertNotIn("jsonrpc", body, "Odoo's JSON-RPC dispatcher answered")
        return body

    def test_without_the_secret_401(self):
        response = self.post("status", {"id": "x"})
        self.assertEqual(response.status_code, 401)
        self.assertEqual(self.answer(response)["error"], "unauthorized")
        self.assertEqual(response.headers.get("WWW-Authenticate"), "Bearer")

    def test_with_a_wrong_secret_403(self):
        response = self.post("status", {"id": "x"}, token="wrong")
        self.assertEqual(response.status_code, 403)
        self.assertEqual(self.answer(response)["error"], "forbidden")

    def test_a_body_kolmeya_would_never_send_is_400(self):
        for body in ({}, {"messages": "none"}):
            response = self.post("status", body, token=SECRET)
            self.assertEqual(response.status_code, 400, response.text)
            self.assertEqual(self.answer(response)["error"], "invalid payload")

    def test_no_http_session_is_kept_per_callback(self):
        response = self.post("status", {"id": "x"})
        self.assertNotIn("session_id", response.cookies)

    def test_a_reply_reaches_the_chatroom(self):
        reply = {"reply": {"id": 4242, "reply": "Quero saber mais",
                           "received_at": "04/12/2026 10:00:00",
                           "message": {"id": "m-4242", "reference": None,
                                       "phone": "11987654329", "content": "Oferta"}}}
        response = self.post("reply", reply, token=SECRET)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(self.answer(response)["inbound"], 1)
        messages = self.env["acrux.chat.message"].search(
            [("contact_id.connector_id", "=", self.connector.id)])
        self.assertEqual(messages.mapped("text"), ["Quero saber mais"])
        self.assertEqual(messages.contact_id.number, "5511987654329")
        again = self.post("reply", reply, token=SECRET)
        self.assertEqual((again.status_code, self.answer(again)["new_inbound"]), (200, 0))
        self.assertEqual(len(self.env["acrux.chat.message"].search(
            [("contact_id.connector_id", "=", self.connector.id)])), 1)
