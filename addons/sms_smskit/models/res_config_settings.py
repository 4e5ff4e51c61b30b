"""Settings > SMS: what smskit needs, kept in the ``smskit.*`` system parameters underneath.

Only SMS managers see them (the block is theirs) and change them: what anyone else sends for
these fields is put back when the settings are saved (and, as for every settings page of Odoo
15, only administrators can save at all). The fields themselves carry no group: Odoo 15 refuses
to read a field of a group the user is not in, which would stop an administrator outside the
SMS managers from saving any other settings. The Kolmeya token is never sent back to the
browser: the form shows whether one is set, and a token typed there replaces it."""

import secrets
from urllib.parse import urlsplit

from odoo.addons.base.models.res_partner import _tz_get
from odoo.exceptions import UserError

from odoo import _, api, fields, models

MANAGER = "sms_smskit.group_smskit_manager"
TOKEN = "smskit.kolmeya_token"  # noqa: S105 - a parameter's name, not a secret


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    smskit_kolmeya_token = fields.Char(
        "Kolmeya token",
        help="The API token of Kolmeya (Bearer). Typed here it replaces the one kept; it is "
             "never shown again.")
    smskit_kolmeya_token_set = fields.Boolean("A Kolmeya token is set", readonly=True)
    smskit_webhook_secret = fields.Char(
        "Webhook secret", config_parameter="smskit.webhook_secret",
        help="Kolmeya does not sign its callbacks: this secret, in the callback URLs, is what "
             "tells them from anyone else's.")
    smskit_public_url = fields.Char(
        "Public URL", config_parameter="smskit.public_url",
        help="How Kolmeya reaches this Odoo, followed by /smskit, e.g. "
             "https://odoo.example.com/smskit")
    smskit_status_url = fields.Char("Delivery callback URL",
                                    compute="_compute_smskit_urls")
    smskit_reply_url = fields.Char("Reply callback URL",
                                   compute="_compute_smskit_urls")
    smskit_acrux_connector_id = fields.Selection(
        "_smskit_connectors", string="ChatRoom connector",
        config_parameter="smskit.acrux_connector_id",
        help="Where replies arrive. Empty: the one ChatRoom connector of type SMS.")
    smskit_quiet_hours = fields.Char(
        "Quiet hours", config_parameter="smskit.quiet_hours",
        help="No SMS goes out in this daily window, e.g. 21:00-08:00; what falls in it waits.")
    smskit_quiet_days = fields.Char(
        "Quiet days", config_parameter="smskit.quiet_days",
        help="Whole days without SMS, e.g. sun or sat,sun.")
    smskit_timezone = fields.Selection(
        _tz_get, string="SMS time zone", config_parameter="smskit.timezone",
        default="America/Sao_Paulo",
        help="Of the quiet hours and of the dashboard's days.")
    smskit_balance_low_threshold = fields.Float(
        "Low balance alert below", config_parameter="smskit.balance_low_threshold",
        help="The cron reads the balance and warns once when it falls below "
                             "this (0: no alert).")
    smskit_odoo_track_sent = fields.Boolean(
        "Track the move to Sent", config_parameter="smskit.odoo_track_sent",
        help="Odoo's field tracking logs the move of each SMS record from Outgoing to Sent "
             "(one chatter message per SMS). Off: that move is not logged, as for an SMS "
             "created and sent in one transaction; later changes are logged either way.")
    smskit_store_here = fields.Boolean("smskit's store is in this database", readonly=True)

    @api.model
    def _smskit_connectors(self):
        if "acrux.chat.connector" not in self.env:
            return []
        return [(str(c.id), c.display_name)
                for c in self.env["acrux.chat.connector"].sudo().search([])]

    @api.model
    def get_values(self):
        """What the form shows besides the parameters: whether a token is kept (never the
        token), and whether smskit's store is this database."""
        values = super().get_values()
        values["smskit_kolmeya_token_set"] = bool(
            self.env["ir.config_parameter"].sudo().get_param(TOKEN))
        values["smskit_store_here"] = self.env["smskit.bridge"]._smskit_in_database()
        return values

    @api.depends("smskit_public_url", "smskit_webhook_secret")
    def _compute_smskit_urls(self):
        from urllib.parse import quote

        for record in self:
            base = (record.smskit_public_url or "").strip().rstrip("/")
            secret = (record.smskit_webhook_secret or "").strip()
            if base and secret:
                token = quote(secret, safe="")
                record.smskit_status_url = f"{base}/webhooks/kolmeya/status?token={token}"
                record.smskit_reply_url = f"{base}/webhooks/kolmeya/reply?token={token}"
            else:
                record.smskit_status_url = record.smskit_reply_url = False

    # -- saving -----------------------------------------------------------------------------
    def _smskit_check(self):
        """What smskit would refuse later, refused now with the field named."""
        from smskit.errors import ConfigurationError
        from smskit.policy import QuietHours

        self.ensure_one()
        url = (self.smskit_public_url or "").strip()
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise UserError(_("The public URL must start with https:// (or http://)."))
        if url and not (self.smskit_webhook_secret or "").strip():
            raise UserError(_("Set a webhook secret: Kolmeya's callbacks are refused without "
                              "it."))
        try:
            QuietHours.parse(self.smskit_quiet_hours or None,
                             days=[d for d in (self.smskit_quiet_days or "").split(",")
                                   if d.strip()],
                             tz=self.smskit_timezone or "America/Sao_Paulo")
        except ConfigurationError as exc:
            raise UserError(_("Write the quiet hours as HH:MM-HH:MM (e.g. 21:00-08:00) and the "
                              "quiet days as mon..sun or seg..dom, separated by commas (%s).")
                            % exc) from None
        if self.smskit_balance_low_threshold < 0:
            raise UserError(_("The low balance threshold cannot be negative."))

    def _smskit_params(self):
        return [field.config_parameter for name, field in self._fields.items()
                if name.startswith("smskit_") and getattr(field, "config_parameter", None)]

    def set_values(self):
        manager = self.env.su or self.env.user.has_group(MANAGER)
        params = self.env["ir.config_parameter"].sudo()
        if manager:
            self._smskit_check()
            kept = {}
        else:
            # what someone outside the SMS managers sent for these fields is put back
            kept = {key: params.get_param(key) for key in self._smskit_params()}
        super().set_values()
        for key, value in kept.items():
            if params.get_param(key) != value:
                params.set_param(key, value or False)
        token = (self.smskit_kolmeya_token or "").strip() if manager else ""
        if token:
            params.set_param(TOKEN, token)
            # not kept on the settings record either (transient rows live a while)
            super(ResConfigSettings, self.sudo()).write({"smskit_kolmeya_token": False})

    # -- buttons ---------------------------------------------------------------------------
    def action_smskit_generate_secret(self):
        """A new random webhook secret (paste the new callback URLs into Kolmeya's panel)."""
        self.ensure_one()
        self.smskit_webhook_secret = secrets.token_urlsafe(32)
        return {"type": "ir.actions.act_window", "res_model": self._name, "res_id": self.id,
                "view_mode": "form", "target": "inline",
                "context": {"module": "sms_smskit"}}

    def action_smskit_test_connection(self):
        """Ask the gateway for the balance with these settings (the token typed here, else
        the one kept), trying once: the balance, or the exact error. A balance read with the
        kept settings is what the dashboard shows next."""
        import datetime as dt
        from decimal import Decimal

        from smskit.config import Settings
        from smskit.errors import SmsKitError
        from smskit.outreach.balance import STATE_PREFIX, BalanceReading
        from smskit.plugins import Plugins

        self.ensure_one()
        bridge = self.env["smskit.bridge"]
        bridge._smskit_check_group(MANAGER)
        values = dict(bridge._smskit_values())
        typed = (self.smskit_kolmeya_token or "").strip()
        if typed:
            values["kolmeya_token"] = typed
        name = values.get("provider") or "kolmeya"
        try:
            settings = Settings.load(environ={}, **dict(values, kolmeya_max_attempts="1"))
            provider = Plugins(settings).create_provider(settings.provider)
            try:
                balance = provider.balance()
            finally:
                provider.close()
        except SmsKitError as exc:
            message = _("%(provider)s: %(error)s") % {
                "provider": name, "error": bridge._smskit_names(str(exc))}
            kind = "danger"
        else:
            message = _("%(provider)s answered: the balance is %(balance)s.") % {
                "provider": name, "balance": balance}
            kind = "success"
            if not typed:
                raw = values.get("balance_low_threshold")
                threshold = Decimal(raw) if raw else None
                reading = BalanceReading(
                    provider=name, balance=balance, checked_at=dt.datetime.now(dt.timezone.utc),
                    threshold=threshold, low=threshold is not None and balance < threshold)
                with bridge._smskit_errors(), bridge._smskit_screen_kit() as kit:
                    kit.store.set_state(STATE_PREFIX + name, reading.to_json())
        return {"type": "ir.actions.client", "tag": "display_notification", "params": {
            "title": _("Test connection"), "message": message, "type": kind, "sticky": True}}
