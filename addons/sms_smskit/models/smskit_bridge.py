"""The bridge between this Odoo database and smskit, used by the cron, the webhook controller
and the ChatRoom override.

Configuration lives in system parameters (Settings > Technical > System Parameters) named
``smskit.<setting>``: ``smskit.kolmeya_token``, ``smskit.webhook_secret``,
``smskit.public_url``, ``smskit.acrux_connector_id``... (any smskit setting, without the
``SMSKIT_`` prefix). smskit's own state (batches, history, schedules, the journal of pending
Odoo writes) lives in a sidecar SQLite file under Odoo's data directory, unless
``smskit.odoo_sidecar_url`` names another database (PostgreSQL for several Odoo workers on
several hosts).
"""

import contextlib
import logging
import os

from odoo.exceptions import UserError

from odoo import _, api, models, tools

_logger = logging.getLogger(__name__)

PARAM_PREFIX = "smskit."


class SmskitBridge(models.AbstractModel):
    _name = "smskit.bridge"
    _description = "smskit bridge"

    @api.model
    def _smskit_settings(self):
        """smskit settings from the ``smskit.*`` system parameters (never the environment)."""
        from smskit.config import Settings

        rows = self.env["ir.config_parameter"].sudo().search_read(
            [("key", "=like", PARAM_PREFIX + "%")], ["key", "value"])
        values = {row["key"][len(PARAM_PREFIX):]: row["value"] for row in rows
                  if row["value"]}
        if "odoo_sidecar_url" not in values:
            folder = os.path.join(tools.config["data_dir"], "smskit")
            os.makedirs(folder, exist_ok=True)
            values["odoo_sidecar_url"] = "sqlite:///" + os.path.join(
                folder, f"{self.env.cr.dbname}.db")
        values.pop("allow_insecure_webhooks", None)  # the addon always wants the secret
        return Settings.load(environ={}, **values)

    @contextlib.contextmanager
    def _smskit_kit(self, settings=None):
        """An ``SmsKit`` whose store is this database (through the ORM) plus the sidecar,
        with the Odoo and ChatRoom hooks attached; closed when the block ends."""
        import smskit_acrux
        import smskit_odoo
        from smskit.kit import SmsKit
        from smskit.store.sql import SqlStore
        from smskit_odoo.adapter import EnvAdapter
        from smskit_odoo.journal import Journal
        from smskit_odoo.session import OdooSession
        from smskit_odoo.store import OdooStore

        settings = settings or self._smskit_settings()
        url = settings.get("odoo_sidecar_url")
        sidecar = SqlStore(url)
        session = OdooSession(
            # autocommit: the sms.message row is committed before Kolmeya is called, and
            # what smskit wrote stays written whatever happens to this transaction later
            EnvAdapter(self.env, autocommit=True), Journal(url),
            region=settings.default_region, model=settings.get("odoo_model"),
            id_field=settings.get("odoo_id_field"))
        store = OdooStore(session, sidecar,
                          create_partners=settings.get("odoo_create_partners") or "inbound")
        kit = SmsKit(settings, store=store)
        try:
            smskit_odoo.attach(kit)
            smskit_acrux.attach(kit)
            yield kit
        finally:
            kit.close()

    @api.model
    def _cron_run(self):
        """The cron: smskit's worker cycle (reconcile, due schedules via ``run_due``,
        dispatch, reply polling when no webhook can reach us), then the pending Odoo writes."""
        from smskit.worker import Worker

        with self._smskit_kit() as kit:
            report = Worker(kit).run_once()
            flushed = kit.store.flush()
        if not report.empty:
            _logger.info("smskit: %s", report.describe())
        if flushed.error:
            _logger.warning("smskit: Odoo writes kept for later: %s", flushed.error)

    @api.model
    def smskit_send(self, phone, text, **options):
        """Send one SMS now (``options``: ``variables``, ``idempotency_key``, ``tags``...).
        Returns ``{"message_id", "state", "reason"}``."""
        with self._smskit_kit() as kit:
            outcome = kit.send(phone, text, **options)
        return {"message_id": outcome.message_id, "state": outcome.state.value,
                "reason": outcome.reason}

    @api.model
    def _send_chatroom_reply(self, connector, data):
        """An agent's reply typed in an SMS ChatRoom conversation, sent through smskit."""
        from smskit.models import State

        number = str(data.get("number") or data.get("to") or "").strip()
        text = data.get("text") or data.get("message") or ""
        if not number or not text:
            raise UserError(_("smskit: an SMS reply needs a number and a text."))
        msgid = data.get("msgid") or data.get("id")
        with self._smskit_kit() as kit:
            outcome = kit.send(
                "+" + number.lstrip("+"), text, tags=("chatroom",),
                # a retried send of the same ChatRoom message is not sent twice
                idempotency_key=f"chatroom:{connector.id}:{msgid}" if msgid else None)
        if outcome.state in (State.REJECTED, State.CANCELED):
            # translated first, then formatted: Odoo's idiom for _()
            raise UserError(_("SMS not sent: %s") % (
                outcome.reason or outcome.state.value))
        return {"msg_id": outcome.message_id}
