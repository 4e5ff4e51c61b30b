"""The SMS app's screens over smskit's store: messages with their history (cancel, resend), the
dashboard's figures (those of smskit's own dashboard), scheduled sends and campaigns run by
smskit, the blacklist both ways with its audit, the journal's retry, the settings, the groups
and the per-company rules."""

import datetime as dt
import random

from odoo.exceptions import AccessError, UserError
from odoo.tests.common import tagged

from .common import SmskitLiveCase


def new_phone():
    """A São Paulo mobile no other test uses (the store outlives the tests)."""
    return f"+55119{random.randint(10_000_000, 99_999_999)}"


@tagged("post_install", "-at_install")
class TestScreens(SmskitLiveCase):

    def setUp(self):
        super().setUp()
        self.params(provider="loopback", webhook_secret="addon-test-secret")
        self.bridge = self.live["smskit.bridge"]

    def message(self, smskit_id):
        return self.fresh()["smskit.message"].search([("smskit_id", "=", smskit_id)])

    # -- the app ---------------------------------------------------------------------------
    def test_an_application_with_its_menu_groups_and_views(self):
        module = self.live["ir.module.module"].search([("name", "=", "sms_smskit")])
        self.assertTrue(module.application)
        root = self.live.ref("sms_smskit.menu_smskit_root")
        self.assertEqual(root.web_icon, "sms_smskit,static/description/icon.png")
        manager = self.live.ref("sms_smskit.group_smskit_manager")
        self.assertIn(self.live.ref("sms_smskit.group_smskit_user"), manager.implied_ids)
        self.assertIn(self.live.ref("base.user_admin"), manager.users)
        self.live_cr.execute("SELECT viewname FROM pg_views WHERE viewname LIKE 'smskit_%%'")
        views = {row[0] for row in self.live_cr.fetchall()}
        self.assertEqual(views, {"smskit_message", "smskit_message_event", "smskit_stats",
                                 "smskit_blacklist", "smskit_blacklist_audit",
                                 "smskit_journal"})
        self.assertTrue(self.bridge._smskit_in_database(), "the store is this database")

    # -- messages --------------------------------------------------------------------------
    def test_a_message_its_status_history_and_company(self):
        from smskit.models import State, StatusEvent

        phone = new_phone()
        sent = self.bridge.smskit_send(phone, "Olá, tudo bem?")
        message = self.message(sent["message_id"])
        self.assertEqual(len(message), 1)
        self.assertEqual((message.phone, message.state, message.direction, message.segments),
                         (phone, "sent", "outbound", 1))
        self.assertAlmostEqual(message.cost, 0.08)
        self.assertEqual(message.company_id, self.live.company)
        self.assertEqual(message.odoo_record._name, "sms.message")
        self.assertEqual(message.odoo_record.provider_reference, sent["message_id"])
        with self.kit() as kit:
            kit.apply_status(StatusEvent(provider="loopback", message_id=sent["message_id"],
                                         state=State.DELIVERED))
        message = self.message(sent["message_id"])
        self.assertEqual(message.state, "delivered")
        self.assertTrue(message.delivered_at)
        self.assertEqual([(e.new_state, e.applied) for e in message.event_ids],
                         [("delivered", True)])

    def test_cancel_a_queued_message_then_resend_it_once(self):
        queued = self.bridge.smskit_send(new_phone(), "Mais tarde", dispatch=False)
        message = self.message(queued["message_id"])
        self.assertTrue(message.can_cancel)
        self.assertFalse(message.can_resend)
        message.action_cancel()
        message = self.message(queued["message_id"])
        self.assertEqual(message.state, "canceled")
        self.assertEqual(message.event_ids.mapped("kind"), ["canceled"])
        self.assertIn("canceled by", message.error_text)
        with self.assertRaises(UserError):
            message.action_cancel()

        action = message.action_resend()
        again = self.fresh()["smskit.message"].browse(action["res_id"])
        self.assertEqual((again.phone, again.body, again.state),
                         (message.phone, "Mais tarde", "sent"))
        self.assertIn("resend:" + message.smskit_id, again.tags)
        self.assertEqual(self.message(queued["message_id"]).event_ids.mapped("kind"),
                         ["canceled", "resent"])
        self.assertEqual(message.action_resend()["res_id"], again.id, "resent once")
        with self.assertRaises(UserError):
            again.action_resend()  # it was sent: nothing to resend

    # -- the dashboard ---------------------------------------------------------------------
    def test_the_dashboard_counts_what_smskit_counts(self):
        from smskit.models import State, StatusEvent
        from smskit.timeutil import zone

        first = self.bridge.smskit_send(new_phone(), "Um")
        self.bridge.smskit_send_many([new_phone(), "12ab"], "Dois")  # one is rejected
        with self.kit() as kit:
            kit.apply_status(StatusEvent(provider="loopback", message_id=first["message_id"],
                                         state=State.DELIVERED))
            tz = kit.settings.timezone
            today = dt.datetime.now(dt.timezone.utc).astimezone(zone(tz)).date()
            report = kit.store.dashboard_stats(today, today)
        env = self.fresh()
        [row] = env["smskit.stats"].read_group(
            [("day", "=", today), ("provider", "=", "loopback")],
            ["sent:sum", "delivered:sum", "failed:sum", "rejected:sum", "cost:sum", "rate:avg"],
            ["provider"])
        day = next(d for d in report.days if d.provider == "loopback")
        self.assertEqual((row["sent"], row["delivered"], row["failed"], row["rejected"]),
                         (day.sent, day.delivered, day.failed, day.rejected))
        self.assertAlmostEqual(row["cost"], float(day.cost))
        self.assertAlmostEqual(row["rate"], round(day.delivered * 100.0 / day.sent, 2))
        self.assertEqual(set(env["smskit.stats"].search([("day", "=", today)]).mapped("is_today")),
                         {True})

    # -- scheduled sends -------------------------------------------------------------------
    def tagged_partners(self, count):
        tag = self.live["res.partner.category"].create({"name": "VIP " + self.tag})
        partners = self.live["res.partner"].create([
            {"name": f"Cliente {n} {self.tag}", "mobile": new_phone(),
             "category_id": [(6, 0, tag.ids)]} for n in range(count)])
        self.live_cr.commit()
        return tag, partners

    def test_a_weekly_send_to_a_tag(self):
        tag, partners = self.tagged_partners(3)
        schedule = self.live["smskit.schedule"].create({
            "name": "Semanal " + self.tag, "frequency": "weekly", "on_mo": True, "on_th": True,
            "start_at": dt.datetime.now() + dt.timedelta(days=1), "audience_type": "tag",
            "tag_ids": [(6, 0, tag.ids)], "body": "Oi {{ name }}", "timezone": "America/Recife"})
        self.assertEqual(schedule.audience_count, 3)
        self.assertIn("FREQ=WEEKLY;BYDAY=MO,TH;", schedule.rule)
        self.assertEqual(len(schedule.upcoming.splitlines()), 5, "next sends of a draft")
        schedule.action_activate()
        schedule = self.fresh()["smskit.schedule"].browse(schedule.id)
        self.assertEqual((schedule.state, schedule.status), ("active", "active"))
        self.assertTrue(schedule.smskit_id and schedule.next_run_at)
        self.assertTrue(all(line.endswith("-03") for line in schedule.upcoming.splitlines()))
        with self.assertRaises(UserError):
            schedule.write({"body": "outro"})
        schedule.action_run_now()
        schedule = self.fresh()["smskit.schedule"].browse(schedule.id)
        self.assertEqual(schedule.message_count, 3)
        sent = self.live["smskit.message"].search([("schedule_id", "=", schedule.id)])
        self.assertEqual(sorted(sent.mapped("phone")), sorted(partners.mapped("mobile")))
        self.assertEqual(set(sent.mapped("company_id")), {schedule.company_id})
        self.assertIn("Oi Cliente", sent[0].body)
        schedule.action_cancel()
        schedule = self.fresh()["smskit.schedule"].browse(schedule.id)
        self.assertEqual(schedule.status, "canceled")
        with self.kit() as kit:
            self.assertIsNone(kit.store.get_schedule(schedule.smskit_id))
        schedule.action_draft()
        schedule.write({"body": "outro"})

    def test_what_smskit_refuses_in_a_schedule_is_said(self):
        tag, _partners = self.tagged_partners(1)
        common = {"name": "x " + self.tag, "audience_type": "tag", "tag_ids": [(6, 0, tag.ids)],
                  "start_at": dt.datetime.now() + dt.timedelta(days=1)}
        bad_rule = self.live["smskit.schedule"].create(
            dict(common, frequency="custom", rrule="FREQ=SOMETIMES", body="Oi"))
        with self.assertRaises(UserError):
            bad_rule.action_activate()
        code = self.live["smskit.schedule"].create(
            dict(common, audience_type="domain", domain="[('user_id', '=', uid)]", body="Oi"))
        self.assertIn("never run as code", code.audience_error)
        with self.assertRaises(UserError):
            code.action_activate()
        missing = self.live["smskit.schedule"].create(dict(common, body="Vence {{ fatura }}"))
        with self.assertRaises(UserError) as caught:
            missing.action_activate()
        self.assertIn("fatura", str(caught.exception))
        self.assertFalse((bad_rule | code | missing).filtered("smskit_id"))

    # -- campaigns -------------------------------------------------------------------------
    def test_a_campaign_started_paused_resumed_and_done(self):
        _tag, partners = self.tagged_partners(4)
        campaign = self.live["smskit.campaign"].create({
            "name": "Promo " + self.tag, "audience_type": "partners",
            "partner_ids": [(6, 0, partners.ids)], "body": "Promo {{ name }}"})
        self.assertEqual((campaign.status, campaign.audience_count), ("draft", 4))
        campaign.action_start()
        campaign = self.fresh()["smskit.campaign"].browse(campaign.id)
        self.assertEqual(campaign.status, "running")
        campaign.action_pause()
        self.assertEqual(self.fresh()["smskit.campaign"].browse(campaign.id).status, "paused")
        self.assertIn(campaign, self.live["smskit.campaign"].search([("status", "=", "paused")]))
        campaign.action_resume()
        self.live["smskit.bridge"]._cron_run()  # the campaign step, then dispatch
        self.live["smskit.bridge"]._cron_run()  # finished once nothing is queued
        campaign = self.fresh()["smskit.campaign"].browse(campaign.id)
        self.assertEqual((campaign.status, campaign.total, campaign.sent, campaign.queued),
                         ("done", 4, 4, 0))
        self.assertEqual(campaign.progress, 100.0)
        self.assertAlmostEqual(campaign.cost, 0.32)
        messages = self.live["smskit.message"].search([("campaign_id", "=", campaign.id)])
        self.assertEqual(len(messages), 4)
        self.assertEqual(set(messages.mapped("company_id")), {campaign.company_id})
        with self.assertRaises(UserError):
            campaign.write({"body": "outra"})

    # -- the blacklist ---------------------------------------------------------------------
    def test_the_blacklist_both_ways_with_its_audit(self):
        phone = new_phone()
        national = f"({phone[3:5]}) {phone[5:10]}-{phone[10:]}"
        entry = self.live["smskit.blacklist"].create({"phone": national, "reason": "pediu"})
        entry = self.fresh()["smskit.blacklist"].browse(entry.id)
        self.assertEqual((entry.phone, entry.origin, entry.reason), (phone, "operator", "pediu"))
        self.assertEqual(entry.user_id, self.live.user)
        self.assertTrue(entry.in_phone_blacklist, "in Odoo's phone.blacklist too")
        self.assertEqual(entry.audit_ids.mapped("action"), ["add"])
        entry.action_remove()
        env = self.fresh()
        self.assertFalse(env["smskit.blacklist"].search([("phone", "=", phone)]))
        changes = env["smskit.blacklist.audit"].search([("phone", "=", phone)])
        self.assertEqual(changes.mapped("action"), ["remove", "add"])
        self.assertFalse(env["phone.blacklist"].with_context(active_test=False).search(
            [("number", "=", phone)]).active)

        other = new_phone()
        env["phone.blacklist"].create({"number": other})
        self.live_cr.commit()  # the addon brings Odoo's change to smskit once committed
        found = self.fresh()["smskit.blacklist"].search([("phone", "=", other)])
        self.assertEqual(found.origin, "odoo")

    # -- the journal -----------------------------------------------------------------------
    def test_a_refused_odoo_write_is_retried(self):
        phone = new_phone()
        with self.kit() as kit:
            journal = kit.store.journal
            journal.enqueue("blacklist", {"phone": phone, "active": True},
                            key=f"test:{self.tag}")
            [op] = [o for o in journal.lease(["blacklist"], "test") if o.payload["phone"] == phone]
            journal.attempt([op.id], "Odoo refused it", give_up=True)
        env = self.fresh()
        row = env["smskit.journal"].browse(op.id)
        self.assertEqual((row.kind, row.status, row.last_error),
                         ("blacklist", "failed", "Odoo refused it"))
        answer = row.action_retry()
        self.assertEqual(answer["tag"], "display_notification")
        env = self.fresh()
        self.assertFalse(env["smskit.journal"].search([("id", "=", op.id)]))
        self.assertTrue(env["phone.blacklist"].search([("number", "=", phone)]))

    # -- settings --------------------------------------------------------------------------
    def test_settings_keep_the_token_out_of_sight(self):
        self.params(kolmeya_token=None, public_url=None)
        settings = self.live["res.config.settings"].create({
            "smskit_kolmeya_token": "tok-" + self.tag,
            "smskit_public_url": "https://odoo.example.com/smskit",
            "smskit_webhook_secret": "s e/cret"})
        settings.execute()
        icp = self.live["ir.config_parameter"].sudo()
        self.assertEqual(icp.get_param("smskit.kolmeya_token"), "tok-" + self.tag)
        self.assertFalse(settings.read(["smskit_kolmeya_token"])[0]["smskit_kolmeya_token"])
        shown = self.live["res.config.settings"].create({})
        self.assertFalse(shown.smskit_kolmeya_token)
        self.assertTrue(shown.smskit_kolmeya_token_set)
        self.assertEqual(shown.smskit_status_url, "https://odoo.example.com/smskit/webhooks/"
                                                  "kolmeya/status?token=s%20e%2Fcret")
        self.assertTrue(shown.smskit_reply_url.endswith("/webhooks/kolmeya/reply?token=s%20e%2Fcret"))
        with self.assertRaises(UserError):
            self.live["res.config.settings"].create({"smskit_quiet_hours": "noite"}).execute()

    def test_test_connection_reports_the_balance(self):
        answer = self.live["res.config.settings"].create({}).action_smskit_test_connection()
        self.assertEqual(answer["params"]["type"], "success")
        self.assertIn("100.00", answer["params"]["message"])
        self.params(provider="kolmeya", kolmeya_token="tok",
                    kolmeya_base_url="http://127.0.0.1:9/api/v1")
        answer = self.live["res.config.settings"].create({}).action_smskit_test_connection()
        self.assertEqual(answer["params"]["type"], "danger")
        self.assertIn("could not connect", answer["params"]["message"])

    # -- who may do what -------------------------------------------------------------------
    def user(self, login, *groups, company=None):
        company = company or self.live.company
        user = self.live["res.users"].create({
            "name": login, "login": f"{login}-{self.tag}", "company_id": company.id,
            "company_ids": [(6, 0, company.ids)],
            "groups_id": [(6, 0, [self.live.ref(g).id for g in ("base.group_user", *groups)])]})
        self.live_cr.commit()
        return user

    def test_sms_users_see_and_send_managers_change(self):
        user = self.user("sms-user", "sms_smskit.group_smskit_user")
        queued = self.bridge.smskit_send(new_phone(), "Oi", dispatch=False)
        message = self.message(queued["message_id"]).with_user(user)
        self.assertEqual(message.state, "outgoing")
        message.action_cancel()  # an SMS user may cancel and resend
        message.action_resend()
        tag, _partners = self.tagged_partners(1)
        schedule = self.live["smskit.schedule"].create({
            "name": "s " + self.tag, "audience_type": "tag", "tag_ids": [(6, 0, tag.ids)],
            "body": "Oi", "start_at": dt.datetime.now() + dt.timedelta(days=1)})
        self.live_cr.commit()
        self.assertEqual(schedule.with_user(user).status, "draft")  # sees it
        with self.assertRaises(AccessError):
            schedule.with_user(user).action_activate()
        env = self.live(user=user)
        entry = env["smskit.blacklist"].create({"phone": new_phone()})  # adding is allowed
        self.assertEqual(self.fresh()["smskit.blacklist"].browse(entry.id).user_id, user)
        with self.assertRaises(AccessError):
            entry.with_user(user).action_remove()
        with self.assertRaises(AccessError):
            env["smskit.journal"].search([])
        with self.assertRaises(AccessError):
            env["res.config.settings"].create({"smskit_public_url": "https://x"})

    def test_every_sms_role_opens_a_message_linked_to_an_sms_sms(self):
        # the form shows the message's Odoo record, whose name the web client then asks of
        # its model as the person who opened it: Odoo's sms.sms is readable by Settings
        # administrators only, which SMS users and managers need not be
        self.params(odoo_model="sms.sms")
        sent = self.bridge.smskit_send(new_phone(), "Oi")
        message = self.message(sent["message_id"])
        self.assertEqual(message.odoo_record._name, "sms.sms")
        form = list(message.fields_view_get(view_type="form")["fields"])
        for login, group in (("sms-agent", "sms_smskit.group_smskit_user"),
                             ("sms-manager", "sms_smskit.group_smskit_manager")):
            user = self.user(login, group)
            [shown] = message.with_user(user).read(form)  # what the form reads to show it
            self.assertEqual((shown["phone"], shown["odoo_record"]), (message.phone, False))
        admin = self.user("sms-admin", "sms_smskit.group_smskit_manager", "base.group_system")
        [shown] = message.with_user(admin).read(["odoo_record"])
        model, res_id = shown["odoo_record"].split(",")
        [(found, _name)] = self.live[model].with_user(admin).browse(int(res_id)).name_get()
        self.assertEqual((model, found), ("sms.sms", message.odoo_record.id), "they follow it")

    def test_an_administrator_outside_the_sms_managers_cannot_change_sms_settings(self):
        self.params(public_url="https://odoo.example.com/smskit")
        admin = self.user("settings-admin", "base.group_system")
        settings = self.live["res.config.settings"].with_user(admin)
        arch = settings.fields_view_get(view_type="form")["arch"]
        self.assertRegex(arch, r'data-key="sms_smskit"[^>]*invisible="1"',
                         "the SMS block is the SMS managers'")
        record = settings.create({"smskit_public_url": "https://elsewhere.example.com/smskit",
                                  "smskit_kolmeya_token": "not-theirs"})
        self.live_cr.commit()
        # a new request, as the web client's save is: nothing of the record in the cache
        self.live.clear()
        record.with_user(admin).execute()  # their other settings are saved; these are not
        icp = self.live["ir.config_parameter"].sudo()
        self.assertEqual(icp.get_param("smskit.public_url"), "https://odoo.example.com/smskit")
        self.assertNotEqual(icp.get_param("smskit.kolmeya_token"), "not-theirs")

    def test_each_company_sees_its_messages(self):
        other = self.live["res.company"].create({"name": "Filial " + self.tag})
        theirs = self.user("filial", "sms_smskit.group_smskit_user", company=other)
        mine = self.bridge.smskit_send(new_phone(), "Da matriz")
        shared = self.bridge.with_context(allowed_company_ids=[other.id]).smskit_send(
            new_phone(), "Da filial")
        env = self.fresh()(user=theirs)
        visible = env["smskit.message"].search([("smskit_id", "in", [mine["message_id"],
                                                                     shared["message_id"]])])
        self.assertEqual(visible.mapped("smskit_id"), [shared["message_id"]])
