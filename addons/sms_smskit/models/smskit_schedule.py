"""Scheduled and recurring SMS: once, daily, weekly, monthly or by a custom RRULE, on the wall
clock of a time zone (the company's by default), to contacts, a tag or a filter.

The definition is an Odoo record (a person drafts and edits it); activating it hands it to
smskit's scheduler (``smskit.outreach.scheduler``), which runs every occurrence exactly once
from the cron, reading the audience afresh each time. The next runs, the runs so far and the
last run are read from smskit, never copied."""

import datetime as dt
import logging

from odoo.addons.base.models.res_partner import _tz_get
from odoo.exceptions import UserError

from odoo import _, api, fields, models

_logger = logging.getLogger(__name__)

FREQUENCIES = [
    ("once", "Once"),
    ("daily", "Every day"),
    ("weekly", "Every week"),
    ("monthly", "Every month"),
    ("custom", "Custom rule (RRULE)"),
]
WEEKDAYS = [("mo", "MO"), ("tu", "TU"), ("we", "WE"), ("th", "TH"), ("fr", "FR"),
            ("sa", "SA"), ("su", "SU")]
#: Fields that define what smskit runs: changing them means activating again.
DEFINITION = {"name", "frequency", "start_at", "end_at", "rrule", "month_day", "timezone",
              "audience_type", "partner_ids", "tag_ids", "domain", "phone_field", "body",
              "company_id", *(f"on_{day}" for day, _code in WEEKDAYS)}
UPCOMING = 5


def _default_tz(env):
    return (env.company.partner_id.tz or env.user.tz
            or env["ir.config_parameter"].sudo().get_param("smskit.timezone")
            or "America/Sao_Paulo")


def _aware(value):
    """Odoo's naive UTC datetime as an aware one."""
    return value.replace(tzinfo=dt.timezone.utc) if value else None


def _naive(value):
    """An aware datetime as Odoo's naive UTC."""
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value else False


class SmskitSchedule(models.Model):
    _name = "smskit.schedule"
    _inherit = ["smskit.audience.mixin"]
    _description = "Scheduled SMS"
    _order = "id desc"

    name = fields.Char("Name", required=True)
    state = fields.Selection([("draft", "Draft"), ("active", "Active"),
                              ("canceled", "Canceled")], string="State", required=True,
                             default="draft", readonly=True, copy=False)
    frequency = fields.Selection(FREQUENCIES, string="Repeat", required=True, default="once")
    start_at = fields.Datetime(
        "First send", required=True,
        default=lambda self: (fields.Datetime.now() + dt.timedelta(hours=1)).replace(
            minute=0, second=0, microsecond=0),
        help="When it sends first; a recurring send keeps this time of day (in its time zone).")
    end_at = fields.Datetime("Until", help="A recurring send stops after this moment.")
    on_mo = fields.Boolean("Monday")
    on_tu = fields.Boolean("Tuesday")
    on_we = fields.Boolean("Wednesday")
    on_th = fields.Boolean("Thursday")
    on_fr = fields.Boolean("Friday")
    on_sa = fields.Boolean("Saturday")
    on_su = fields.Boolean("Sunday")
    month_day = fields.Integer("Day of the month",
                               help="Empty: the day of the first send. 31 skips shorter months.")
    rrule = fields.Char("RRULE", help="An RFC 5545 rule on the wall clock of the time zone, "
                                      "e.g. FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=9;BYMINUTE=30")
    timezone = fields.Selection(_tz_get, string="Time zone", required=True,
                                default=lambda self: _default_tz(self.env))
    smskit_id = fields.Char("smskit schedule", readonly=True, copy=False, index=True)
    rule = fields.Char("Rule", compute="_compute_rule")
    status = fields.Selection([("draft", "Draft"), ("active", "Active"),
                               ("finished", "Finished"), ("canceled", "Canceled")],
                              string="Status", compute="_compute_smskit")
    next_run_at = fields.Datetime("Next send", compute="_compute_smskit")
    last_run_at = fields.Datetime("Last send", compute="_compute_smskit")
    runs = fields.Integer("Sends so far", compute="_compute_smskit")
    upcoming = fields.Text("Next sends", compute="_compute_smskit")
    message_count = fields.Integer("SMS", compute="_compute_message_count")

    # -- the rule ------------------------------------------------------------------------
    def _local_start(self):
        from smskit.timeutil import zone

        return _aware(self.start_at.replace(second=0, microsecond=0)).astimezone(
            zone(self.timezone))

    def _smskit_rule(self):
        """The RRULE smskit evaluates (``None`` for a one-shot send)."""
        self.ensure_one()
        if self.frequency == "once":
            return None
        if self.frequency == "custom":
            if not (self.rrule or "").strip():
                raise UserError(_("Type the custom rule (RRULE)."))
            return self.rrule.strip()
        local = self._local_start()
        parts = [f"FREQ={self.frequency.upper()}"]
        if self.frequency == "weekly":
            days = [code for day, code in WEEKDAYS if self["on_" + day]]
            parts.append("BYDAY=" + ",".join(days or [WEEKDAYS[local.weekday()][1]]))
        elif self.frequency == "monthly":
            day = self.month_day or local.day
            if not 1 <= day <= 31:
                raise UserError(_("The day of the month is between 1 and 31."))
            parts.append(f"BYMONTHDAY={day}")
        parts.append(f"BYHOUR={local.hour};BYMINUTE={local.minute};BYSECOND=0")
        if self.end_at:
            parts.append("UNTIL=" + self.end_at.strftime("%Y%m%dT%H%M%SZ"))
        return ";".join(parts)

    @api.depends("frequency", "start_at", "end_at", "rrule", "month_day", "timezone",
                 *(f"on_{day}" for day, _code in WEEKDAYS))
    def _compute_rule(self):
        for schedule in self:
            try:
                schedule.rule = (schedule._smskit_rule() or _("once")) if schedule.start_at \
                    else False
            except UserError:
                schedule.rule = False

    def _preview(self, now):
        """A draft's occurrences as smskit would compute them (nothing stored)."""
        from smskit.outreach.scheduler import upcoming
        from smskit.store.base import Schedule

        start = _aware(self.start_at.replace(second=0, microsecond=0))
        rule = self._smskit_rule()
        probe = Schedule(id="preview", name=self.name or "-", request={}, next_run_at=None,
                         timezone=self.timezone, rrule=rule, dtstart=start, created_at=now)
        if rule is None:
            return [start] if start >= now else []
        return upcoming(probe, UPCOMING, after=max(now, start) - dt.timedelta(seconds=1))

    def _format_runs(self, moments):
        from smskit.timeutil import zone

        tz = zone(self.timezone)
        return "\n".join(m.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") for m in moments)

    # -- what smskit says ------------------------------------------------------------------
    def _compute_smskit(self):
        from smskit.errors import SmsKitError
        from smskit.outreach.scheduler import upcoming

        now = dt.datetime.now(dt.timezone.utc)
        stored = {}
        linked = self.filtered("smskit_id")
        if linked:
            try:
                with self.env["smskit.bridge"]._smskit_screen_kit() as kit:
                    stored = {s.id: s for s in kit.store.list_schedules()}
            except SmsKitError as exc:
                _logger.warning("smskit: schedules not read: %s", exc)
        for schedule in self:
            schedule.next_run_at = schedule.last_run_at = False
            schedule.runs, schedule.upcoming = 0, False
            found = stored.get(schedule.smskit_id) if schedule.smskit_id else None
            if schedule.state == "canceled":
                schedule.status = "canceled"
            elif found is None:
                schedule.status = "draft" if schedule.state == "draft" else "finished"
                if schedule.state == "draft" and schedule.start_at:
                    try:
                        schedule.upcoming = schedule._format_runs(schedule._preview(now))
                    except (UserError, SmsKitError) as exc:
                        schedule.upcoming = str(exc.args[0] if exc.args else exc)
            else:
                schedule.status = "active" if found.next_run_at else "finished"
                schedule.next_run_at = _naive(found.next_run_at)
                schedule.last_run_at = _naive(found.last_run_at)
                schedule.runs = found.runs
                schedule.upcoming = schedule._format_runs(upcoming(found, UPCOMING))

    def _compute_message_count(self):
        counts = {}
        if self.ids:
            for group in self.env["smskit.message"].read_group(
                    [("schedule_id", "in", self.ids)], ["schedule_id"], ["schedule_id"]):
                counts[group["schedule_id"][0]] = group["schedule_id_count"]
        for schedule in self:
            schedule.message_count = counts.get(schedule.id, 0)

    # -- life cycle ------------------------------------------------------------------------
    def write(self, vals):
        if DEFINITION & set(vals) and self.filtered(lambda s: s.state == "active"):
            raise UserError(_("An active scheduled send cannot be changed: cancel it, put it "
                              "back to draft, change it and activate it again."))
        return super().write(vals)

    def unlink(self):
        if self.filtered(lambda s: s.state == "active"):
            raise UserError(_("Cancel an active scheduled send before deleting it."))
        return super().unlink()

    def action_activate(self):
        """Hand the schedule to smskit: checked there (rule, time zone, audience, text), then
        run by the cron at every occurrence."""
        from smskit.outreach.scheduler import add_schedule

        self.check_access_rights("write")
        bridge = self.env["smskit.bridge"]
        for schedule in self:
            if schedule.state != "draft":
                raise UserError(_("Only a draft can be activated."))
            request = {"text": schedule.body, "audience": schedule._smskit_audience(),
                       "tags": [bridge._smskit_company_tag(schedule.company_id)]}
            start = _aware(schedule.start_at.replace(second=0, microsecond=0))
            rule = schedule._smskit_rule()
            with bridge._smskit_refused(_("smskit refused the scheduled send: %s")), \
                    bridge._smskit_screen_kit() as kit:
                if rule is None:
                    stored = add_schedule(kit, schedule.name, request, at=start,
                                          tz=schedule.timezone)
                else:
                    stored = add_schedule(kit, schedule.name, request, rrule=rule,
                                          tz=schedule.timezone, dtstart=start)
            super(SmskitSchedule, schedule).write({"smskit_id": stored.id, "state": "active"})
        return True

    def action_run_now(self):
        """Send to the audience once now (the recurrence is not moved)."""
        from smskit.outreach.scheduler import run_now

        self.check_access_rights("write")
        bridge = self.env["smskit.bridge"]
        created = duplicates = 0
        with bridge._smskit_errors(), bridge._smskit_screen_kit() as kit:
            for schedule in self:
                if schedule.state != "active" or not schedule.smskit_id:
                    raise UserError(_("Activate the scheduled send first."))
                run = run_now(kit, schedule.smskit_id)
                created += run.created
                duplicates += run.duplicates
            kit.dispatch()
        return {"type": "ir.actions.client", "tag": "display_notification", "params": {
            "title": _("Sent now"), "type": "success",
            "message": _("%(created)d SMS queued and handed to the gateway; %(dup)d were "
                         "there already.") % {"created": created, "dup": duplicates},
            "next": {"type": "ir.actions.act_window_close"}}}

    def action_cancel(self):
        """Stop it: smskit forgets the schedule (SMS already queued still go)."""
        self.check_access_rights("write")
        bridge = self.env["smskit.bridge"]
        with bridge._smskit_errors(), bridge._smskit_screen_kit() as kit:
            for schedule in self.filtered("smskit_id"):
                kit.store.remove_schedule(schedule.smskit_id)
        super().write({"state": "canceled"})
        return True

    def action_draft(self):
        """Back to draft, to change it and activate it again."""
        self.check_access_rights("write")
        if self.filtered(lambda s: s.state == "active"):
            raise UserError(_("Cancel it first."))
        super().write({"state": "draft", "smskit_id": False})
        return True

    def action_view_messages(self):
        self.ensure_one()
        return {"type": "ir.actions.act_window", "res_model": "smskit.message",
                "name": _("SMS of %s") % self.name, "view_mode": "tree,form",
                "domain": [("schedule_id", "=", self.id)]}
