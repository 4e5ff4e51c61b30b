"""Kolmeya's callbacks at ``/smskit/webhooks/kolmeya/<kind>``, posted over HTTP to the test
server: refused without or with a wrong secret, applied with it.

Bodies are sent as ``application/vnd.kolmeya+json`` here: a plain ``application/json`` POST is
answered by Odoo's JSON-RPC dispatcher before the addon runs (issue 12), which smskit's
``real_odoo`` tests reproduce against a served Odoo until the addon copes with it.
"""

import json

from odoo.tests.common import tagged

from .common import SmskitHttpCase, set_params

SECRET = "addon-test-secret"
URL = "/smskit/webhooks/kolmeya/%s"
JSON = "application/vnd.kolmeya+json"


@tagged("post_install", "-at_install")
class TestWebhook(SmskitHttpCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        set_params(cls.env, provider="kolmeya", kolmeya_token="addon-test-token",
                   kolmeya_base_url="http://127.0.0.1:9/api/v1", webhook_secret=SECRET)
        cls.connector = cls.env["acrux.chat.connector"].create(
            {"name": "SMS", "connector_type": "sms"})

    def post(self, kind, body, token=None, content_type=JSON):
        url = URL % kind + (f"?token={token}" if token is not None else "")
        return self.url_open(url, data=json.dumps(body).encode(),
                             headers={"Content-Type": content_type})

    def test_without_the_secret_401(self):
        response = self.post("status", {"id": "x"})
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json()["error"], "unauthorized")
        self.assertEqual(response.headers.get("WWW-Authenticate"), "Bearer")

    def test_with_a_wrong_secret_403(self):
        response = self.post("status", {"id": "x"}, token="wrong")
        self.assertEqual(response.status_code, 403)
        self.assertEqual(response.json()["error"], "forbidden")

    def test_a_reply_reaches_the_chatroom(self):
        reply = {"reply": {"id": 4242, "reply": "Quero saber mais",
                           "received_at": "04/12/2026 10:00:00",
                           "message": {"id": "m-4242", "reference": None,
                                       "phone": "11987654329", "content": "Oferta"}}}
        response = self.post("reply", reply, token=SECRET)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json()["inbound"], 1)
        messages = self.env["acrux.chat.message"].search(
            [("contact_id.connector_id", "=", self.connector.id)])
        self.assertEqual(messages.mapped("text"), ["Quero saber mais"])
        self.assertEqual(messages.contact_id.number, "5511987654329")
