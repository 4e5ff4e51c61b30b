"""The bridge between this Odoo database and smskit, used by the cron, the webhook controller,
Odoo's own SMS (``sms.api``), ``phone.blacklist``, the ChatRoom part (``sms_smskit_chatroom``)
and your own code (``smskit_send``).

Configuration is made in Settings > SMS and kept in system parameters named
``smskit.<setting>``: ``smskit.kolmeya_token``, ``smskit.webhook_secret``,
``smskit.public_url``, ``smskit.acrux_connector_id``... (any smskit setting, without the
``SMSKIT_`` prefix; the environment is never read). smskit's own store (messages and their
history, batches, schedules, campaigns, the blacklist audit, the journal of pending Odoo writes)
lives in this very database, in the schema ``smskit`` (``smskit_odoo.odoo_db``), where the
addon's screens read it; ``smskit.odoo_sidecar_url`` may name another database instead (the
screens then show nothing).

The kit is built once per database, registry and settings (a pool, ``smskit_odoo.embedded``),
not per request: each caller borrows one, bound to its own cursor.
"""

import contextlib
import datetime as dt
import logging
import re
import threading
import time

from odoo.exceptions import UserError

from odoo import SUPERUSER_ID, _, api, models

_logger = logging.getLogger(__name__)

#: Sends of a transaction rolled back after the SMS went: ``[(when, signature, value)]`` per
#: thread (see ``SmskitBridge._smskit_rerun_memory``).
_ROLLED_BACK = threading.local()
#: How long such a send is remembered (Odoo's five re-runs of a request wait 31 s at most).
REMEMBERED_SECONDS = 120
PARAM_PREFIX = "smskit."
#: Options ``smskit_send`` / ``smskit_send_many`` take (and what the RPC caller may send).
SEND_OPTIONS = ("variables", "at", "idempotency_key", "tags", "campaign_id", "partner_id",
                "record", "provider", "dispatch")
MANY_OPTIONS = ("variables", "at", "idempotency_prefix", "tags", "campaign_id", "provider",
                "dispatch", "phone_field")
_ENV_NAME = re.compile(r"SMSKIT_([A-Z0-9_]+)(?: \(([a-z0-9_]+)\))?")

_POOL = None


def kit_pool():
    """The kits of this Odoo process (``smskit_odoo.embedded.KitPool``), made on first use."""
    global _POOL
    if _POOL is None:
        from smskit_odoo.embedded import KitPool

        _POOL = KitPool(build=_build_kit)
    return _POOL


def _build_kit(settings, env):
    """A kit whose store is this database (through the ORM) plus the sidecar, with the Odoo
    and ChatRoom hooks attached; its adapter is bound to each borrower's environment."""
    import smskit_acrux
    import smskit_odoo
    from smskit.kit import SmsKit
    from smskit.store.sql import SqlStore
    from smskit_odoo.adapter import EnvAdapter
    from smskit_odoo.journal import Journal
    from smskit_odoo.session import OdooSession
    from smskit_odoo.store import OdooStore, track_sent

    url = settings.get("odoo_sidecar_url")
    sidecar = SqlStore(url)  # its migration is checked here, once per kit
    try:
        # autocommit: the sms.message row is committed before Kolmeya is called, and what
        # smskit wrote stays written whatever happens to the transaction later
        adapter = EnvAdapter(env, autocommit=True)
        session = OdooSession(
            adapter, Journal(url), region=settings.default_region,
            model=settings.get("odoo_model"), id_field=settings.get("odoo_id_field"))
        store = OdooStore(session, sidecar,
                          create_partners=settings.get("odoo_create_partners") or "inbound",
                          notes=settings.get("odoo_notes") or "auto",
                          track_sent=track_sent(settings))
        kit = SmsKit(settings, store=store)
        smskit_odoo.attach(kit)
        if "acrux.chat.conversation" in env:  # replies go to the ChatRoom where there is one
            smskit_acrux.attach(kit)
    except BaseException:
        sidecar.close()
        raise
    return kit, adapter


def parameter_names(text):
    """``text`` with smskit's environment variable names (``SMSKIT_KOLMEYA_TOKEN
    (kolmeya_token)``) replaced by the system parameters the addon reads
    (``smskit.kolmeya_token``)."""
    return _ENV_NAME.sub(lambda m: PARAM_PREFIX + (m.group(2) or m.group(1).lower()), text)


def _marshal(value):
    """What XML-RPC can carry: ``None`` as ``False`` (Odoo's convention), datetimes as
    Odoo's UTC strings."""
    if value is None:
        return False
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        return {str(k): _marshal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_marshal(v) for v in value]
    return value


class SmskitBridge(models.AbstractModel):
    _name = "smskit.bridge"
    _description = "smskit bridge"

    # -- settings and the kit ----------------------------------------------------------------
    @api.model
    def _smskit_values(self):
        """The ``smskit.*`` system parameters, without the prefix (set ones only)."""
        rows = self.env["ir.config_parameter"].sudo().search_read(
            [("key", "=like", PARAM_PREFIX + "%")], ["key", "value"])
        values = {row["key"][len(PARAM_PREFIX):]: row["value"] for row in rows
                  if row["value"]}
        if "odoo_sidecar_url" not in values:
            values["odoo_sidecar_url"] = self._smskit_store_url()
        values.pop("allow_insecure_webhooks", None)  # the addon always wants the secret
        return values

    @api.model
    def _smskit_store_url(self):
        """smskit's store in this database, schema ``smskit``, reached as Odoo reaches it."""
        from odoo.sql_db import connection_info_for

        from smskit_odoo.odoo_db import store_url

        return store_url(connection_info_for(self.env.cr.dbname)[1])

    @api.model
    def _smskit_settings(self):
        """smskit settings from the ``smskit.*`` system parameters (never the environment)."""
        from smskit.config import Settings

        return Settings.load(environ={}, **self._smskit_values())

    @contextlib.contextmanager
    def _smskit_kit(self, settings=None):
        """A kit of this database, bound to this environment's cursor for the block (built
        once per registry and settings, then lent again)."""
        from smskit_odoo.embedded import fingerprint

        settings = settings or self._smskit_settings()
        with kit_pool().borrow(self.env, settings, fingerprint(settings.values)) as kit:
            try:
                yield kit
            finally:
                # pending ORM writes of this environment reach the transaction now, while the
                # environment is alive (an environment dropped before the commit loses them)
                self.env["base"].flush()

    @api.model
    def _smskit_names(self, text):
        """``text`` naming the system parameters instead of environment variables."""
        return parameter_names(text)

    @api.model
    def _smskit_unconfigured(self, settings):
        """Why smskit cannot send yet (its provider cannot be built), or ``None``."""
        from smskit.errors import ConfigurationError
        from smskit.plugins import Plugins

        try:
            provider = Plugins(settings).create_provider(settings.provider)
        except ConfigurationError as exc:
            return parameter_names(str(exc))
        provider.close()
        return None

    # -- the cron ---------------------------------------------------------------------------
    @api.model
    def _cron_run(self):
        """The cron: smskit's worker cycle (reconcile, due schedules via ``run_due``,
        dispatch, reply polling when no webhook can reach us), then the pending Odoo writes.
        Until smskit is configured it does nothing but say so (one INFO line)."""
        from smskit.errors import ConfigurationError
        from smskit.worker import Worker

        settings = self._smskit_settings()
        problem = self._smskit_unconfigured(settings)
        if problem:
            _logger.info("smskit: not configured yet, nothing to do: %s (Settings > SMS)",
                         problem)
            return
        try:
            with self._smskit_kit(settings) as kit:
                report = Worker(kit).run_once()
                flushed = kit.store.flush()
        except ConfigurationError as exc:
            _logger.warning("smskit: %s", parameter_names(str(exc)))
            return
        if not report.empty:
            _logger.info("smskit: %s", report.describe())
        if flushed.error:
            _logger.warning("smskit: Odoo writes kept for later: %s",
                            parameter_names(flushed.error))

    # -- webhooks ---------------------------------------------------------------------------
    @api.model
    def _smskit_receive(self, settings, policy, hook):
        """Apply an authenticated callback through smskit's gate, as the webhook user."""
        from smskit.webhooks import receive

        uid = int(settings.get("webhook_user_id") or SUPERUSER_ID)
        with self.with_user(uid)._smskit_kit(settings) as kit:
            result = receive(kit, hook, policy=policy)
        if result.status >= 500:
            # nothing half-done may be committed with the request (smskit's own writes are
            # committed already), and the cursor must be usable for Odoo's final commit
            self.env.cr.rollback()
        return result

    # -- Odoo running a request again -----------------------------------------------------
    @api.model
    def _smskit_rerun_memory(self, signature):
        """What :meth:`_smskit_remember_for_rerun` kept for ``signature`` on this thread, taken
        (once), or ``None``.

        Odoo runs a request again, on the same thread within seconds, when PostgreSQL
        reports a concurrent update (``odoo.service.model.check``), after rolling it back;
        smskit's store is not part of that transaction, so an SMS the first run sent stays
        sent. Each send inside a request remembers what it sent should its transaction be
        rolled back, and the same send (the same ``signature``) within
        ``REMEMBERED_SECONDS`` takes it instead of sending again."""
        memory = getattr(_ROLLED_BACK, "sends", None)
        if not memory:
            return None
        now = time.monotonic()
        memory[:] = [entry for entry in memory if now - entry[0] < REMEMBERED_SECONDS]
        for index, (_when, remembered, value) in enumerate(memory):
            if remembered == signature:
                del memory[index]
                return value
        return None

    @api.model
    def _smskit_remember_for_rerun(self, signature, value):
        """Keep ``value`` for ``signature`` on this thread if this transaction is rolled
        back (see :meth:`_smskit_rerun_memory`)."""
        def remember():
            memory = getattr(_ROLLED_BACK, "sends", None)
            if memory is None:
                memory = _ROLLED_BACK.sends = []
            memory.append((time.monotonic(), signature, value))

        self.env.cr.postrollback.add(remember)

    @api.model
    def _smskit_once_per_run(self, signature, send):
        """``send()``'s answer; on Odoo's re-run of this request the first run's instead
        (:meth:`_smskit_rerun_memory`). ``signature`` ``None``: always ``send()`` (a key of
        the caller's makes repetitions safe already)."""
        if signature is None:
            return send()
        answer = self._smskit_rerun_memory(signature)
        if answer is None:
            answer = send()
            self._smskit_remember_for_rerun(signature, answer)
        return answer

    # -- sending ----------------------------------------------------------------------------
    @api.model
    def smskit_send(self, phone, text, **options):
        """Send one SMS now, or at ``at``. Callable over XML-RPC and JSON-RPC.

        ``options``: ``variables`` (dict), ``at`` (a datetime, or a string: ``YYYY-MM-DD
        HH:MM:SS`` in UTC as Odoo writes them, or ISO 8601 with an offset),
        ``idempotency_key`` (a repeated call with the same key sends nothing and answers the
        first message), ``tags`` (list), ``campaign_id``, ``partner_id`` (the
        ``res.partner`` id, for the note and ``{{ partner.name }}``), ``record``
        (``"account.move,42"``: ``{{ object.name }}``), ``provider``, ``dispatch`` (default
        true: hand it to the gateway before answering).

        Returns ``{"message_id", "state", "reason", "deferred_until", "created"}`` (``False``
        where there is nothing: never ``None``). Invalid input, or smskit not configured, is
        a ``UserError`` and nothing is sent. When Odoo runs the calling request again after
        a concurrent update, the same call (on that thread, within two minutes of the
        rollback) answers what the first run sent instead of sending again; a key of your
        own (``invoice-reminder:<id>``) makes any repetition safe, at any time.
        """
        kwargs = self._smskit_options(options, SEND_OPTIONS)

        def send():
            with self._smskit_errors(), self._smskit_kit() as kit:
                outcome = kit.send(phone, text, **kwargs)
            return _marshal({"message_id": outcome.message_id, "state": outcome.state.value,
                             "reason": outcome.reason, "deferred_until": outcome.deferred_until,
                             "created": outcome.created})

        signature = None if kwargs.get("idempotency_key") else (
            "smskit_send", repr(phone), repr(text), repr(sorted(kwargs.items())))
        return self._smskit_once_per_run(signature, send)

    @api.model
    def smskit_send_many(self, recipients, text, **options):
        """Send ``text`` to every recipient (phones, or dicts with ``phone`` and template
        variables), in batches: one ``create`` and one gateway request per batch. Options:
        those of :meth:`smskit_send` except ``idempotency_key``/``partner_id``/``record``,
        plus ``idempotency_prefix`` (a re-run skips the recipients stored already) and
        ``phone_field``. Odoo running the calling request again: as :meth:`smskit_send`.
        Returns the counts (``total``, ``queued``, ``sent``, ``rejected``,
        ``canceled``, ``deferred``, ``duplicates``, ``failed_dispatch``)."""
        kwargs = self._smskit_options(options, MANY_OPTIONS)
        recipients = list(recipients or [])

        def send():
            with self._smskit_errors(), self._smskit_kit() as kit:
                summary = kit.send_many(recipients, text, **kwargs)
            return _marshal({name: getattr(summary, name) for name in (
                "total", "queued", "sent", "rejected", "canceled", "deferred", "duplicates",
                "failed_dispatch")})

        signature = None if kwargs.get("idempotency_prefix") else (
            "smskit_send_many", repr(recipients), repr(text), repr(sorted(kwargs.items())))
        return self._smskit_once_per_run(signature, send)

    @api.model
    def _smskit_options(self, options, allowed):
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise UserError(_("smskit does not know the option(s) %(unknown)s; it takes: "
                              "%(allowed)s.") % {"unknown": ", ".join(unknown),
                                                 "allowed": ", ".join(allowed)})
        kwargs = dict(options)
        if kwargs.get("at"):
            kwargs["at"] = self._smskit_datetime(kwargs["at"])
        else:
            kwargs.pop("at", None)
        partner = kwargs.pop("partner_id", None)
        if partner:
            kwargs["partner_ref"] = f"res.partner,{int(partner)}"
        record = kwargs.pop("record", None)
        if record:
            kwargs["variables"] = dict(kwargs.get("variables") or {}, odoo_record=record)
        if "tags" in kwargs:
            kwargs["tags"] = tuple(kwargs["tags"] or ())
        return kwargs

    @api.model
    def _smskit_datetime(self, value):
        """An aware UTC datetime from what an RPC caller sends (naive means UTC, as in
        Odoo)."""
        if isinstance(value, dt.datetime):
            moment = value
        elif isinstance(value, str):
            try:
                moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise UserError(_("Invalid date %s: use YYYY-MM-DD HH:MM:SS (UTC) or ISO 8601 "
                                  "with an offset.") % value) from None
        else:
            raise UserError(_("Invalid date %s: use YYYY-MM-DD HH:MM:SS (UTC) or ISO 8601 "
                              "with an offset.") % (value,))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return moment

    @contextlib.contextmanager
    def _smskit_errors(self):
        """smskit's refusals of what a person or an integration asked, as ``UserError`` s in
        the user's language; a configuration problem names the system parameter to set."""
        from smskit.errors import (
            ConfigurationError,
            InvalidPhoneError,
            MissingVariableError,
            ValidationError,
        )

        try:
            yield
        except InvalidPhoneError as exc:
            raise UserError(_("%s is not a valid mobile number: type it with the area code, "
                              "for example (11) 98765-4321 or +55 11 98765-4321.")
                            % (exc.raw,)) from None
        except MissingVariableError as exc:
            raise UserError(_("The message uses {{ %s }}, which has no value for this "
                              "recipient.") % exc.variable) from None
        except ValidationError as exc:
            raise UserError(_("SMS not sent: %s") % exc) from None
        except ConfigurationError as exc:
            raise UserError(_("smskit is not configured: %s. Set it in Settings > SMS.")
                            % parameter_names(str(exc))) from None

    # -- phone.blacklist --------------------------------------------------------------------
    @api.model
    def _smskit_blacklist_from_odoo(self, changes):
        """``[(E.164 number, "add" | "remove")]`` made in ``phone.blacklist``, brought into
        smskit's own list (called once they are committed)."""
        from smskit.errors import InvalidPhoneError
        from smskit.phone import Phone

        if not changes:
            return
        with self._smskit_kit() as kit:
            for number, action in changes:
                try:
                    phone = Phone.parse(number, kit.settings.default_region,
                                        allow_landlines=True).e164
                except InvalidPhoneError:
                    continue
                kit.store.blacklist_from_odoo(
                    phone, action, reason=f"phone.blacklist {action} in Odoo",
                    source=f"odoo:{self.env.uid}")
