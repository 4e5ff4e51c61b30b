"""Campaigns: one text to an audience (contacts, a tag or a filter), started, paused, resumed
and canceled by a person, sent by smskit's campaign step in the cron (a page of the audience at
a time, exactly once per contact, within the quiet hours).

The definition is an Odoo record; starting it creates smskit's campaign
(``smskit.outreach.campaigns``). Its status, progress and totals are read from smskit (one
aggregate query for every campaign shown), never copied."""

import datetime as dt
import logging

from odoo.exceptions import UserError

from odoo import _, api, fields, models

_logger = logging.getLogger(__name__)

STATUSES = [
    ("draft", "Draft"),
    ("scheduled", "Scheduled"),
    ("running", "Running"),
    ("paused", "Paused"),
    ("done", "Done"),
    ("canceled", "Canceled"),
]
#: Fields that define what smskit sends: fixed once the campaign is started.
DEFINITION = {"name", "body", "start_at", "audience_type", "partner_ids", "tag_ids", "domain",
              "phone_field", "company_id"}


def _naive(value):
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value else False


class SmskitCampaign(models.Model):
    _name = "smskit.campaign"
    _inherit = ["smskit.audience.mixin"]
    _description = "SMS campaign"
    _order = "id desc"

    name = fields.Char("Name", required=True)
    start_at = fields.Datetime("Start at", help="Empty: as soon as it is started.")
    smskit_id = fields.Char("smskit campaign", readonly=True, copy=False, index=True)
    status = fields.Selection(STATUSES, string="Status", compute="_compute_smskit",
                              search="_search_status")
    last_error = fields.Text("Why it stopped", compute="_compute_smskit")
    started_at = fields.Datetime("Started", compute="_compute_smskit")
    finished_at = fields.Datetime("Finished", compute="_compute_smskit")
    total = fields.Integer("SMS stored", compute="_compute_smskit")
    queued = fields.Integer("Queued", compute="_compute_smskit")
    sent = fields.Integer("Sent", compute="_compute_smskit")
    delivered = fields.Integer("Delivered", compute="_compute_smskit")
    failed = fields.Integer("Failed", compute="_compute_smskit")
    rejected = fields.Integer("Rejected", compute="_compute_smskit")
    canceled = fields.Integer("Canceled", compute="_compute_smskit")
    replies = fields.Integer("Replies", compute="_compute_smskit")
    optouts = fields.Integer("Opt-outs", compute="_compute_smskit")
    cost = fields.Float("Cost", digits=(12, 2), compute="_compute_smskit")
    rate = fields.Float("Delivery rate (%)", digits=(5, 2), compute="_compute_smskit")
    progress = fields.Float("Progress (%)", digits=(5, 1), compute="_compute_smskit")
    quiet_hours = fields.Char("Quiet hours", compute="_compute_quiet_hours",
                              help="No SMS goes out then (Settings > SMS); what falls in them "
                                   "waits for the next allowed moment.")

    # -- what smskit says ------------------------------------------------------------------
    def _compute_smskit(self):
        from smskit.errors import SmsKitError
        from smskit.outreach.campaigns import Campaigns

        found, totals = {}, {}
        linked = [c.smskit_id for c in self if c.smskit_id]
        if linked:
            try:
                with self.env["smskit.bridge"]._smskit_screen_kit() as kit:
                    campaigns = Campaigns(kit)
                    found = {c.id: c for c in campaigns.list_campaigns()}
                    totals = campaigns.totals([i for i in linked if i in found])
            except SmsKitError as exc:
                _logger.warning("smskit: campaigns not read: %s", exc)
        for record in self:
            smskit = found.get(record.smskit_id)
            counts = totals.get(record.smskit_id)
            record.status = smskit.status if smskit else "draft"
            record.last_error = (smskit.last_error or False) if smskit else False
            record.started_at = _naive(smskit.started_at) if smskit else False
            record.finished_at = _naive(smskit.finished_at) if smskit else False
            for name in ("total", "queued", "sent", "delivered", "failed", "rejected",
                         "canceled", "replies", "optouts"):
                record[name] = getattr(counts, name) if counts else 0
            record.cost = float(counts.cost) if counts else 0.0
            record.rate = (round(counts.delivered * 100.0 / counts.sent, 2)
                           if counts and counts.sent else 0.0)
            record.progress = record._progress(smskit, counts)

    def _progress(self, smskit, counts):
        """How much of the audience has been handled (stored and no longer queued)."""
        if smskit is None or counts is None:
            return 0.0
        if smskit.status == "done":
            return 100.0
        handled = counts.total - counts.queued
        whole = counts.total + smskit.skipped if smskit.materialised \
            else max(counts.total, self.audience_count)
        return round(handled * 100.0 / whole, 1) if whole else 0.0

    def _search_status(self, operator, value):
        if operator not in ("=", "!=", "in", "not in"):
            raise UserError(_("Search the status with =, !=, in or not in."))
        wanted = {value} if isinstance(value, str) else set(value or ())
        with self.env["smskit.bridge"]._smskit_screen_kit() as kit:
            from smskit.outreach.campaigns import Campaigns

            ids = [c.id for c in Campaigns(kit).list_campaigns(
                [s for s in wanted if s != "draft"])] if wanted - {"draft"} else []
        domain = ["|", ("smskit_id", "in", ids), ("smskit_id", "=", False)] \
            if "draft" in wanted else [("smskit_id", "in", ids)]
        return ["!", *domain] if operator in ("!=", "not in") else domain

    def _compute_quiet_hours(self):
        params = self.env["ir.config_parameter"].sudo()
        window = params.get_param("smskit.quiet_hours")
        days = params.get_param("smskit.quiet_days")
        tz = params.get_param("smskit.timezone") or "America/Sao_Paulo"
        text = ", ".join(filter(None, [window, days])) + f" ({tz})" if window or days \
            else _("none")
        for record in self:
            record.quiet_hours = text

    # -- life cycle ------------------------------------------------------------------------
    def write(self, vals):
        if DEFINITION & set(vals) and self.filtered("smskit_id"):
            raise UserError(_("A started campaign cannot be changed; duplicate it to send "
                              "another."))
        return super().write(vals)

    def unlink(self):
        if self.filtered("smskit_id"):
            raise UserError(_("A started campaign is kept (its SMS are); cancel it instead."))
        return super().unlink()

    def _smskit(self, verb):
        if not self.smskit_id:
            raise UserError(_("Start the campaign first."))
        with self.env["smskit.bridge"]._smskit_refused(_("smskit refused: %s")), \
                self.env["smskit.bridge"]._smskit_screen_kit() as kit:
            from smskit.outreach.campaigns import Campaigns

            return getattr(Campaigns(kit), verb)(self.smskit_id)

    def action_start(self):
        """Create the campaign in smskit (audience and text checked there) and start it: the
        cron stores and sends its SMS from now (or from its start time)."""
        from smskit.outreach.campaigns import Campaigns

        self.check_access_rights("write")
        bridge = self.env["smskit.bridge"]
        for record in self:
            if record.smskit_id:
                raise UserError(_("The campaign %s is started already.") % record.name)
            at = record.start_at.replace(tzinfo=dt.timezone.utc) if record.start_at else None
            with bridge._smskit_refused(_("smskit refused the campaign: %s")), \
                    bridge._smskit_screen_kit() as kit:
                campaigns = Campaigns(kit)
                created = campaigns.create(record.name, record.body,
                                           record._smskit_audience(), at=at)
                campaigns.start(created.id)
            super(SmskitCampaign, record).write({"smskit_id": created.id})
        return True

    def action_pause(self):
        """Hold it: nothing more of it is stored or sent until it is resumed."""
        self.check_access_rights("write")
        for record in self:
            record._smskit("pause")
        return True

    def action_resume(self):
        self.check_access_rights("write")
        for record in self:
            record._smskit("resume")
        return True

    def action_cancel(self):
        """Stop it for good: its SMS not yet handed to the gateway are canceled."""
        self.check_access_rights("write")
        for record in self:
            record._smskit("cancel")
        return True

    def action_view_messages(self):
        self.ensure_one()
        return {"type": "ir.actions.act_window", "res_model": "smskit.message",
                "name": _("SMS of %s") % self.name, "view_mode": "tree,form",
                "domain": [("campaign_id", "=", self.id)]}

    @api.returns("self", lambda value: value.id)
    def copy(self, default=None):
        default = dict(default or {}, name=_("%s (copy)") % self.name)
        return super().copy(default)
