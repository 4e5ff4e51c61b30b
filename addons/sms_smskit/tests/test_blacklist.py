"""``phone.blacklist`` and smskit's own list, both ways: smskit's opt-outs land in
``phone.blacklist``; a row added, archived or deleted in Odoo reaches smskit's list once
committed."""

from odoo.tests.common import tagged

from .common import SmskitCase, set_params


@tagged("post_install", "-at_install")
class TestBlacklist(SmskitCase):

    def setUp(self):
        super().setUp()
        set_params(self.env, provider="loopback", webhook_secret="addon-test-secret")
        self.bridge = self.env["smskit.bridge"]

    def commit(self):
        """What Odoo's commit does: run the post-commit hooks (the test cursor skips them)."""
        self.env["base"].flush()
        self.env.cr.postcommit.run()

    def smskit_lists(self, phone):
        with self.bridge._smskit_kit() as kit:
            return kit.store.sidecar.is_blacklisted(phone)

    def test_odoo_changes_reach_smskit(self):
        phone = "+5511987654398"  # one number per test: the sidecar outlives it
        row = self.env["phone.blacklist"].create({"number": phone})
        self.assertFalse(self.smskit_lists(phone), "nothing before the commit")
        self.commit()
        self.assertTrue(self.smskit_lists(phone))
        row.action_archive()
        self.commit()
        self.assertFalse(self.smskit_lists(phone))
        self.assertEqual(self.bridge.smskit_send(phone, "Oi")["state"], "sent")
        row.action_unarchive()
        self.commit()
        self.assertTrue(self.smskit_lists(phone))
        row.unlink()
        self.commit()
        self.assertFalse(self.smskit_lists(phone))

    def test_smskit_changes_reach_odoo_without_an_echo(self):
        phone = "+5511987654399"  # one number per test: the sidecar outlives it
        with self.bridge._smskit_kit() as kit:
            kit.blacklist_add(phone, reason="SAIR", source="test")
        self.commit()
        rows = self.env["phone.blacklist"].search([("number", "=", phone)])
        self.assertEqual(len(rows), 1)
        with self.bridge._smskit_kit() as kit:
            kit.blacklist_remove(phone, source="test")
        self.commit()
        rows.invalidate_cache()
        self.assertFalse(rows.active)
        with self.bridge._smskit_kit() as kit:
            kit.blacklist_add(phone, reason="SAIR de novo", source="test")
        self.commit()
        rows.invalidate_cache()
        self.assertTrue(rows.active, "an archived row is reactivated, not left archived")
        self.assertEqual(self.bridge.smskit_send(phone, "Oi")["state"], "canceled")
