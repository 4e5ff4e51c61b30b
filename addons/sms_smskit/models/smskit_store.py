"""smskit's store in this database (schema ``smskit``): made ready before a kit is built, and
the tools the screens share (the company tag, the user who acted, errors as UserErrors)."""

import contextlib
import logging
import threading

from odoo.exceptions import AccessError, UserError

from odoo import _, api, models

from . import smskit_sql

_logger = logging.getLogger(__name__)

#: (database, store URL) made ready by this process (once: later kits find nothing to do).
_READY = set()
_READY_LOCK = threading.Lock()

USER_GROUP = "sms_smskit.group_smskit_user"
MANAGER_GROUP = "sms_smskit.group_smskit_manager"


class SmskitBridgeStore(models.AbstractModel):
    _inherit = "smskit.bridge"

    @api.model
    def _smskit_in_database(self, settings=None):
        """Whether smskit's store is this database's schema ``smskit`` (what the screens
        show), rather than another database named by ``smskit.odoo_sidecar_url``."""
        settings = settings or self._smskit_settings()
        return settings.get("odoo_sidecar_url") == self._smskit_store_url()

    @api.model
    def _smskit_prepare_store(self, recreate_views=True):
        """smskit's schema in this database made, migrated and numbered for Odoo's ids (once
        per process). A smskit migration drops the screens' views first (PostgreSQL would
        refuse to change a column a view reads); they are made again here, in a transaction of
        their own, unless Odoo is installing the module (its ``init`` makes them)."""
        from smskit_odoo.odoo_db import StoreSchema

        url = self._smskit_store_url()
        key = (self.env.cr.dbname, url)
        if key in _READY:
            return
        with _READY_LOCK:
            if key in _READY:
                return
            schema = StoreSchema(url)
            try:
                dropped = schema.ensure(views=smskit_sql.qualified_views())
            finally:
                schema.close()
            if dropped and recreate_views:
                with self.pool.cursor() as cr:
                    for name in smskit_sql.VIEWS:
                        smskit_sql.create_view(cr, name)
                _logger.info("smskit: store migrated; the screens' views were made again")
            _READY.add(key)

    @contextlib.contextmanager
    def _smskit_kit(self, settings=None):
        self._smskit_prepare_store()
        with super()._smskit_kit(settings) as kit:
            yield kit

    # -- what the screens share ----------------------------------------------------------
    @contextlib.contextmanager
    def _smskit_screen_kit(self):
        """A kit for what a person does on the SMS screens, once Odoo has checked they may
        (access rights, record rules, groups): smskit's Odoo bookkeeping (its SMS records,
        ``phone.blacklist``, chatter notes) is done as the superuser, as Odoo's own SMS does;
        who acted is what smskit records (``operator:<uid>``, the company tag)."""
        with self.sudo()._smskit_kit() as kit:
            yield kit

    @api.model
    def _smskit_company_tag(self, company=None):
        """The tag that gives a message its company on the screens (``company:<id>``)."""
        return f"company:{(company or self.env.company).id}"

    @api.model
    def _smskit_operator(self):
        """How smskit records a person acting in Odoo (blacklist audit: ``operator:<uid>``)."""
        return f"operator:{self.env.uid}"

    @contextlib.contextmanager
    def _smskit_refused(self, message):
        """smskit refusing what a person asked (a ``ValidationError``) as a ``UserError``
        saying ``message % reason``; other errors as :meth:`_smskit_errors` says."""
        from smskit.errors import ValidationError

        with self._smskit_errors():
            try:
                yield
            except ValidationError as exc:
                raise UserError(message % exc) from None

    @api.model
    def _smskit_check_group(self, xmlid):
        """Refuse a user outside the group (the buttons are hidden, the RPC is not)."""
        if not self.env.su and not self.env.user.has_group(xmlid):
            group = self.env.ref(xmlid)
            raise AccessError(_("Only %s may do this.") % group.full_name)

    @api.model
    def smskit_send(self, phone, text, **options):
        """As the bridge's, with the caller's company tag (so the screens show it per
        company)."""
        options["tags"] = [*(options.get("tags") or ()), self._smskit_company_tag()]
        return super().smskit_send(phone, text, **options)

    @api.model
    def smskit_send_many(self, recipients, text, **options):
        """As the bridge's, with the caller's company tag."""
        options["tags"] = [*(options.get("tags") or ()), self._smskit_company_tag()]
        return super().smskit_send_many(recipients, text, **options)
