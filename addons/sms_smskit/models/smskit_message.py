"""SMS messages and their history, as smskit keeps them (read-only SQL views over its store);
cancel and resend go through smskit's API."""

from odoo.exceptions import UserError

from odoo import _, api, fields, models

from . import smskit_sql

STATES = [
    ("draft", "Draft"),
    ("outgoing", "Queued"),
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("error", "Not delivered"),
    ("expired", "Expired"),
    ("rejected", "Rejected"),
    ("canceled", "Canceled"),
]
DIRECTIONS = [("outbound", "Sent to"), ("inbound", "Reply from")]
#: What a person may resend: the messages that did not reach the phone.
RESENDABLE = ("error", "expired", "rejected", "canceled")
CANCELABLE = ("draft", "outgoing")


class SmskitViewModel(models.AbstractModel):
    """A model shown by one of smskit_sql's views: made when the module is installed or
    updated, after smskit's schema is ready; nothing is ever written through the ORM."""

    _name = "smskit.view.mixin"
    _description = "smskit view"

    def init(self):
        if self._abstract:
            return
        self.env["smskit.bridge"]._smskit_prepare_store(recreate_views=False)
        smskit_sql.create_view(self.env.cr, self._table)

    def write(self, vals):
        raise UserError(_("smskit keeps this record; change it with the buttons."))

    def _smskit_bridge(self):
        return self.env["smskit.bridge"]

    def _smskit_odoo_ids(self, table, keys):
        """smskit's ``table`` rows' ids for Odoo (``odoo_seq``), read on a connection of
        their own: a row smskit just committed is not in this transaction's snapshot."""
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        from smskit.store.sql.engine import normalise_url

        keys = [k for k in keys if k]
        if not keys:
            return {}
        column = {"messages": "id", "blacklist": "phone"}[table]
        engine = sa.create_engine(normalise_url(self._smskit_bridge()._smskit_store_url()),
                                  poolclass=NullPool)
        try:
            with engine.connect() as conn:
                # names from this module, never from input
                query = (f"SELECT {column}, odoo_seq FROM {smskit_sql.SCHEMA}.{table} "  # noqa: S608
                         f"WHERE {column} IN :keys")
                rows = conn.execute(sa.text(query).bindparams(
                        sa.bindparam("keys", expanding=True)), {"keys": keys}).all()
        finally:
            engine.dispose()
        return dict(rows)


class SmskitMessage(models.Model):
    _name = "smskit.message"
    _inherit = ["smskit.view.mixin"]
    _description = "SMS message"
    _auto = False
    _order = "id desc"
    _rec_name = "phone"

    smskit_id = fields.Char("smskit id", readonly=True)
    phone = fields.Char("Phone", readonly=True)
    body = fields.Text("Text", readonly=True)
    direction = fields.Selection(DIRECTIONS, string="Direction", readonly=True)
    state = fields.Selection(STATES, string="Status", readonly=True)
    provider = fields.Char("Gateway", readonly=True)
    provider_message_id = fields.Char("Gateway message id", readonly=True)
    provider_request_id = fields.Char("Gateway request id", readonly=True)
    batch_id = fields.Char("Batch", readonly=True)
    encoding = fields.Char("Encoding", readonly=True)
    segments = fields.Integer("Parts", readonly=True)
    cost = fields.Float("Cost", digits=(12, 4), readonly=True)
    created_at = fields.Datetime("Created", readonly=True)
    scheduled_at = fields.Datetime("Not before", readonly=True)
    sent_at = fields.Datetime("Sent at", readonly=True)
    delivered_at = fields.Datetime("Delivered at", readonly=True)
    updated_at = fields.Datetime("Last change", readonly=True)
    error_code = fields.Char("Error code", readonly=True)
    error_text = fields.Text("Reason", readonly=True)
    campaign_ref = fields.Char("Campaign (smskit id)", readonly=True)
    campaign_id = fields.Many2one("smskit.campaign", string="Campaign", readonly=True)
    schedule_ref = fields.Char("Schedule (smskit id)", readonly=True)
    schedule_id = fields.Many2one("smskit.schedule", string="Scheduled send", readonly=True)
    tags = fields.Char("Tags", readonly=True)
    idempotency_key = fields.Char("Idempotency key", readonly=True)
    in_reply_to_ref = fields.Char("Answers (smskit id)", readonly=True)
    in_reply_to_id = fields.Many2one("smskit.message", string="Answers", readonly=True)
    attempts = fields.Integer("Attempts", readonly=True)
    partner_id = fields.Many2one("res.partner", string="Contact", readonly=True)
    odoo_record_id = fields.Integer("Odoo SMS record id", readonly=True)
    company_id = fields.Many2one("res.company", string="Company", readonly=True)
    event_ids = fields.One2many("smskit.message.event", "message_id", string="History",
                                readonly=True)
    reply_ids = fields.One2many("smskit.message", "in_reply_to_id", string="Replies",
                                readonly=True)
    odoo_record = fields.Reference(selection="_selection_odoo_record", string="Odoo SMS record",
                                   compute="_compute_odoo_record")
    can_cancel = fields.Boolean(compute="_compute_can")
    can_resend = fields.Boolean(compute="_compute_can")

    @api.model
    def _selection_odoo_record(self):
        return [(name, self.env[name]._description) for name in ("sms.message", "sms.sms")
                if name in self.env]

    @api.depends_context("uid")
    def _compute_odoo_record(self):
        # the model smskit mirrors into: the setting, else sms.message where it exists
        # (smskit_odoo.schema prefers it), else Odoo's own sms.sms
        wanted = self.env["ir.config_parameter"].sudo().get_param("smskit.odoo_model")
        model = wanted or ("sms.message" if "sms.message" in self.env else "sms.sms")
        readable = self._smskit_readable_ids(model, self.mapped("odoo_record_id"))
        for message in self:
            message.odoo_record = (self.env[model].browse(message.odoo_record_id)
                                   if message.odoo_record_id in readable else False)

    @api.model
    def _smskit_readable_ids(self, model, ids):
        """The ids among ``ids`` of records of ``model`` that exist and the current user may
        read (access rights and record rules).

        The web client asks for a reference's name as the current user (``name_get`` when it
        shows the form): a record the user may not read would be an AccessError on opening
        the message (``sms.sms`` is readable by Settings administrators only). So the link is
        given only to who can follow it; the others see none (the form hides the empty
        field)."""
        ids = sorted({i for i in ids if i})
        if not ids or model not in self.env:
            return set()
        records = self.env[model].browse(ids)
        if not records.check_access_rights("read", raise_exception=False):
            return set()
        return set(records.exists()._filter_access_rules("read").ids)

    @api.depends("state", "direction", "batch_id")
    def _compute_can(self):
        for message in self:
            outbound = message.direction == "outbound"
            message.can_cancel = (outbound and message.state in CANCELABLE
                                  and not message.batch_id)
            message.can_resend = outbound and message.state in RESENDABLE

    # -- actions -------------------------------------------------------------------------
    def action_cancel(self):
        """Cancel queued messages not yet handed to the gateway (smskit refuses the others)."""
        from smskit.models import State

        self.check_access_rule("read")
        bridge = self._smskit_bridge()
        late = []
        who = _("canceled by %s in Odoo") % self.env.user.name
        with bridge._smskit_errors(), bridge._smskit_screen_kit() as kit:
            for message in self:
                if not message.can_cancel:
                    late.append(message.phone)
                    continue
                canceled = kit.cancel(message.smskit_id, reason=who)
                if canceled is None or canceled.state is not State.CANCELED:
                    late.append(message.phone)
                    continue
                kit.store.record_event(message.smskit_id, "canceled", who, provider="odoo")
        if late:
            raise UserError(_("Too late to cancel the SMS to %s: it was already handed to the "
                              "gateway (or is no longer queued).") % ", ".join(late))
        return True

    def action_resend(self):
        """Send again, as a new message, what did not reach the phone (once per message: a
        second click answers the first resend)."""
        self.check_access_rule("read")
        bridge = self._smskit_bridge()
        refused = self.filtered(lambda m: not m.can_resend)
        if refused:
            raise UserError(_("Only an outgoing SMS that was not delivered, expired, was "
                              "rejected or canceled can be resent (%s).")
                            % ", ".join(refused.mapped("phone")))
        new_ids = []
        with bridge._smskit_errors(), bridge._smskit_screen_kit() as kit:
            for message in self:
                outcome = kit.send(
                    message.phone, message.body,
                    tags=(bridge._smskit_company_tag(message.company_id or None),
                          f"resend:{message.smskit_id}"),
                    partner_ref=(f"res.partner,{message.partner_id.id}"
                                 if message.partner_id else None),
                    campaign_id=message.campaign_ref or None,
                    idempotency_key=f"resend:{message.smskit_id}")
                new_ids.append(outcome.message_id)
                if outcome.created:
                    kit.store.record_event(
                        message.smskit_id, "resent",
                        _("resent by %(user)s as %(new)s") % {"user": self.env.user.name,
                                                              "new": outcome.message_id},
                        provider="odoo")
        seqs = self._smskit_odoo_ids("messages", new_ids)
        records = [seqs[i] for i in new_ids if i in seqs]
        action = {"type": "ir.actions.act_window", "res_model": "smskit.message",
                  "name": _("Resent SMS")}
        if len(records) == 1:
            return dict(action, view_mode="form", res_id=records[0])
        return dict(action, view_mode="tree,form", domain=[("id", "in", records)])


class SmskitMessageEvent(models.Model):
    _name = "smskit.message.event"
    _inherit = ["smskit.view.mixin"]
    _description = "SMS history line"
    _auto = False
    _order = "id"
    _rec_name = "kind"

    message_id = fields.Many2one("smskit.message", string="SMS", readonly=True)
    message_ref = fields.Char("SMS (smskit id)", readonly=True)
    provider = fields.Char("From", readonly=True)
    kind = fields.Char("Event", readonly=True)
    old_state = fields.Selection(STATES, string="From status", readonly=True)
    new_state = fields.Selection(STATES, string="To status", readonly=True)
    applied = fields.Boolean("Applied", readonly=True)
    detail = fields.Text("Detail", readonly=True)
    provider_message_id = fields.Char("Gateway message id", readonly=True)
    created_at = fields.Datetime("When", readonly=True)
