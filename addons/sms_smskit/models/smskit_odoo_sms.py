"""The bridge's side of Odoo's own SMS: ``sms.api._send_sms_batch`` sends here.

Each ``sms.sms`` of the batch is one smskit message keyed ``odoo:<database uuid>:sms.sms:<id>``
(``smskit_odoo.origins.origin_key``): a batch Odoo retries (a cron run after a crash, a second
``send()``) finds its messages and sends nothing twice. Only a ``res_id`` that is an ``sms.sms``
id (an int naming a row, as ``sms.sms._send`` passes) is keyed so; Odoo also sends without a
row: the composer's "numbers" mode passes ``0`` and a mailing's test SMS
(``mailing.sms.test``) the number itself, ``"+5511987654321"``. Each of those is a new message
(a second test to the same number is sent again), and its ``res_id`` is answered back as it
came, which is how Odoo matches the answers. The batch goes through
``SmsKit.send_many`` (the blacklist, Odoo's ``phone.blacklist`` included, quiet hours,
segments and cost, one gateway request), then each message's state is answered in IAP's
words: queued (quiet hours, the gateway unavailable for a moment) and sent are ``success``
for Odoo, and their delivery or failure comes back later through the origins
(``smskit_odoo.origins``), to the row, its notification and its mailing trace.

============================================  ==========================
smskit                                        Odoo is answered
============================================  ==========================
queued, sent, delivered (a retried batch)     ``success``
an invalid number                             ``wrong_number_format``
refused for lack of balance                   ``insufficient_credit``
on the blacklist (smskit's, Odoo's, Kolmeya's)  ``blacklisted``
refused otherwise (a policy, the gateway)     ``rejected``
failed before reaching the gateway            ``server_error``
smskit not configured                         ``unregistered``
============================================  ==========================

**The gateway is called after Odoo's commit** (design decision 37). Odoo runs each request in
one transaction and runs the whole request again when PostgreSQL reports a concurrent update
(``odoo.service.model.check``, up to 5 times): an SMS sent from inside that transaction would
be sent again by the re-run, under new ``sms.sms`` ids, with a second chatter message. So the
rows a batch names are *held*: answered ``success`` with ``smskit_held`` (the row stays
``outgoing``, its notification ``ready``), and handed to smskit by a post-commit callback
(``cr.postcommit``) of that very transaction, in a cursor of its own, before the request
answers. A transaction rolled back (and re-run) drops its callback, so nothing was sent; a
process that dies between the commit and the callback leaves the rows ``outgoing``, and
smskit's cron sends them once they have waited ``STRANDED_MINUTES`` (Odoo's own SMS queue, an
hourly cron, would too), each once (the key).
Messages without a row (numbers mode, a mailing's test SMS) are sent at once: their caller
reads the answer, and there is no row to key them by; a run rolled back after sending them
leaves its answers to the same thread's re-run, which takes them instead of sending again.
In Odoo's own tests (the cursor never commits, and drops post-commit callbacks) everything is
sent at once, as ``sms.sms.send`` skips its commits there.
"""

import logging
import threading

from odoo import api, models

_logger = logging.getLogger(__name__)

#: ``smskit.odoo_sms``: ``smskit`` (the default) sends Odoo's own SMS through smskit, ``iap``
#: leaves them to Odoo's IAP service.
ODOO_SMS_PARAM = "smskit.odoo_sms"
TEMPLATE = "{{ content | keep_blank }}"
#: ``cr.postcommit.data`` key of the ``sms.sms`` ids held until the transaction commits.
HELD = "smskit.odoo_sms.held"
#: Context key: send now, the rows are committed already (the held rows' own send).
SEND_NOW = "smskit_send_now"
#: Minutes after which smskit's cron sends an ``sms.sms`` still outgoing and not smskit's
#: (its hand-over after the commit never ran) instead of leaving it to Odoo's hourly queue.
STRANDED_MINUTES = 10
_IAP_FAILURES = {"sms_number_format": "wrong_number_format", "sms_credit": "insufficient_credit",
                 "sms_blacklist": "blacklisted", "sms_server": "server_error"}


def iap_state(message):
    """What Odoo's SMS code is answered for ``message`` (a ``smskit.models.Message``)."""
    from smskit.models import State
    from smskit_odoo.origins import failure_type

    if message is None:
        return "server_error"
    if message.state in (State.OUTGOING, State.SENT, State.DELIVERED) or (
            message.state.is_final and message.sent_at is not None):
        return "success"  # queued or taken by the gateway: what follows comes back later
    return _IAP_FAILURES.get(failure_type(message) or "", "rejected")


def _sms_id(res_id):
    """``res_id`` when it can be an ``sms.sms`` id (a positive int), else None: a mailing's test
    SMS passes the number, ``"+5511987654321"``, which ``int()`` would take for one."""
    if isinstance(res_id, int) and not isinstance(res_id, bool) and res_id > 0:
        return res_id
    return None


class SmskitBridgeOdooSms(models.AbstractModel):
    _inherit = "smskit.bridge"

    @api.model
    def _smskit_sends_odoo_sms(self):
        """Whether Odoo's own SMS go through smskit (``smskit.odoo_sms`` is not ``iap``)."""
        value = self.env["ir.config_parameter"].sudo().get_param(ODOO_SMS_PARAM) or "smskit"
        return value.strip().lower() != "iap"

    @api.model
    def _smskit_send_odoo_sms(self, messages):
        """``sms.api._send_sms_batch`` through smskit: the messages with an ``sms.sms`` row
        held until the commit, the others sent now (see the module docs)."""
        settings = self._smskit_settings()
        problem = self._smskit_unconfigured(settings)
        if problem:
            _logger.warning("smskit is not configured: %d SMS of Odoo not sent: %s",
                            len(messages), problem)
            return [{"res_id": m.get("res_id"), "state": "unregistered"} for m in messages]
        rows = self._smskit_sms_rows(messages)
        if not self._smskit_defers():
            return self._smskit_send_now(settings, messages, rows)
        held = [m for m in messages if _sms_id(m.get("res_id")) in rows]
        now = [m for m in messages if _sms_id(m.get("res_id")) not in rows]
        self._smskit_hold([m["res_id"] for m in held])
        answers = {id(m): {"res_id": m["res_id"], "state": "success", "smskit_held": True}
                   for m in held}
        if now:
            # no row to key them by: Odoo running this request again takes the first run's
            # answers instead of sending again (smskit.bridge._smskit_rerun_memory)
            signature = ("odoo_sms", tuple(
                (repr(m.get("res_id")), m.get("number"), m.get("content")) for m in now))
            sent = self._smskit_once_per_run(
                signature, lambda: self._smskit_send_now(settings, now, {}))
            answers.update(zip(map(id, now), sent))
        return [answers[id(m)] for m in messages]

    @api.model
    def _cron_run(self):
        self._smskit_send_stranded_odoo_sms()
        return super()._cron_run()

    @api.model
    def _smskit_send_stranded_odoo_sms(self):
        """Send the ``sms.sms`` rows still outgoing and not smskit's after
        ``STRANDED_MINUTES`` (held for a commit whose hand-over never ran, or queued by Odoo
        for its hourly SMS queue): now, each once. Returns how many."""
        if not self._smskit_sends_odoo_sms():
            return 0
        self.env["sms.sms"].flush(["state", "smskit_message_id"])
        # smskit_message_id is indexed, and few rows lack it: the look-up stays cheap while
        # the kept rows grow
        self.env.cr.execute(
            "SELECT id FROM sms_sms WHERE smskit_message_id IS NULL AND state = 'outgoing'"
            " AND create_date < (now() AT TIME ZONE 'UTC') - make_interval(mins => %s)"
            " ORDER BY id LIMIT 10000", [STRANDED_MINUTES])
        ids = [row[0] for row in self.env.cr.fetchall()]
        if ids:
            _logger.info("smskit: %d SMS of Odoo waited more than %d minutes for the gateway: "
                         "sent now (sms.sms %s)", len(ids), STRANDED_MINUTES, ids[:20])
            self.env["sms.sms"].sudo().with_context(**{SEND_NOW: True})._smskit_send_held(ids)
        return len(ids)

    @api.model
    def _smskit_defers(self):
        """Whether the gateway waits for this transaction's commit: not when the rows are
        committed already (``smskit_send_now`` in the context), nor in Odoo's tests."""
        if self.env.context.get(SEND_NOW):
            return False
        testing = getattr(threading.current_thread(), "testing", False)
        return not (testing or self.env.registry.in_test_mode())

    @api.model
    def _smskit_hold(self, sms_ids):
        """Hand these ``sms.sms`` rows to smskit once this transaction has committed (one
        callback per transaction, however many batches it holds)."""
        if not sms_ids:
            return
        cr = self.env.cr
        held = cr.postcommit.data.get(HELD)
        if held is not None:
            held.extend(sms_ids)
            return
        held = cr.postcommit.data[HELD] = list(sms_ids)
        registry, uid, su = self.env.registry, self.env.uid, self.env.su
        context = dict(self.env.context, **{SEND_NOW: True})

        @cr.postcommit.add
        def send_held():
            # the request has committed: whatever goes wrong here is logged, never raised into
            # its answer, and leaves the rows outgoing for smskit's cron
            try:
                with registry.cursor() as own:
                    env = api.Environment(own, uid, context, su=su)
                    env["sms.sms"]._smskit_send_held(held)
            except Exception:
                _logger.exception("smskit: %d SMS of Odoo were not handed over after the "
                                  "commit; smskit's cron sends them (sms.sms %s)",
                                  len(held), held[:20])

    @api.model
    def _smskit_send_now(self, settings, messages, rows):
        """Send these messages through smskit now; their answers in IAP's words.
        ``rows``: :meth:`_smskit_sms_rows` of the messages (those are keyed)."""
        from smskit_odoo.origins import origin_key

        uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid") or \
            self.env.cr.dbname
        recipients = []
        for message in messages:
            row = {"phone": message.get("number") or "", "content": message.get("content") or ""}
            res_id = message.get("res_id")
            if _sms_id(res_id) in rows:
                partner, failed = rows[res_id]
                row["key"] = origin_key(uuid, "sms.sms", res_id)
                if failed:  # Odoo's "Retry" of a row whose SMS failed: a new SMS, once
                    row["key"] += f":after-{failed}"
                if partner:
                    row["partner"] = f"res.partner,{partner}"
            recipients.append(row)
        outcomes = {}
        # with sudo, as Odoo's own SMS go (its flows send sudo'd rows, and its
        # post-processing writes the rows and notifications with sudo): an administrator's
        # "Retry" may not write another user's notification otherwise
        with self.sudo()._smskit_kit(settings) as kit:
            kit.send_many(recipients, TEMPLATE, track_links=False, tags=("odoo-sms",),
                          recipient_fields={"idempotency_key": "key", "partner_ref": "partner"},
                          on_outcome=lambda o: outcomes.__setitem__(o.index, o.message_id))
            current = {m.id: m for m in kit.store.get_many(
                [mid for mid in outcomes.values() if mid])}
        results = []
        for index, message in enumerate(messages):
            sent = current.get(outcomes.get(index))
            result = {"res_id": message.get("res_id"), "state": iap_state(sent)}
            if sent is not None:
                result.update(smskit_id=sent.id, credit=sent.segments)
            results.append(result)
        self._smskit_link_rows([(r["res_id"], r["smskit_id"]) for r in results
                                if _sms_id(r["res_id"]) in rows and r.get("smskit_id")])
        return results

    @api.model
    def _smskit_sms_rows(self, messages):
        """``{sms.sms id: (partner id or None, failed)}`` of the messages whose ``res_id``
        names an ``sms.sms`` row (the others have none: see the module docs). ``failed``:
        the smskit message of a row in error that smskit had sent (or refused) already,
        which Odoo sends again only when asked to retry it (``resend_failed``)."""
        ids = {_sms_id(m.get("res_id")) for m in messages} - {None}
        if not ids:
            return {}
        self.env["sms.sms"].flush(["state", "smskit_message_id"])
        self.env.cr.execute("SELECT id, partner_id, state, smskit_message_id FROM sms_sms "
                            "WHERE id IN %s", [tuple(ids)])
        return {row_id: (partner, mid if state == "error" and mid else None)
                for row_id, partner, state, mid in self.env.cr.fetchall()}

    @api.model
    def _smskit_link_rows(self, pairs):
        """``sms.sms.smskit_message_id`` of many rows in one statement."""
        if not pairs:
            return
        Sms = self.env["sms.sms"]
        Sms.flush(["smskit_message_id"])
        values = ", ".join(["(%s, %s)"] * len(pairs))
        self.env.cr.execute(
            "UPDATE sms_sms AS s SET smskit_message_id = v.mid FROM (VALUES " + values +  # noqa: S608
            ") AS v(id, mid) WHERE s.id = v.id AND s.smskit_message_id IS DISTINCT FROM v.mid",
            [x for pair in pairs for x in (int(pair[0]), pair[1])])
        Sms.invalidate_cache(["smskit_message_id"], [int(p[0]) for p in pairs])

    @api.model
    def _smskit_sync_odoo_sms(self, message_ids):
        """Bring the ``sms.sms`` rows, notifications and traces of these smskit messages up to
        their state (after Odoo's own post-processing of a batch)."""
        if not message_ids:
            return
        # as Odoo's own post-processing writes them: with sudo (a notification is the
        # recipient's, and record rules keep even an administrator from writing it)
        with self.sudo()._smskit_kit() as kit:
            store = kit.store
            store.origins.sync(store.get_many(list(message_ids)))
