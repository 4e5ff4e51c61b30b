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
"""

import logging

from odoo import api, models

_logger = logging.getLogger(__name__)

#: ``smskit.odoo_sms``: ``smskit`` (the default) sends Odoo's own SMS through smskit, ``iap``
#: leaves them to Odoo's IAP service.
ODOO_SMS_PARAM = "smskit.odoo_sms"
TEMPLATE = "{{ content | keep_blank }}"
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
        """``sms.api._send_sms_batch`` through smskit (see the module docs)."""
        from smskit_odoo.origins import origin_key

        settings = self._smskit_settings()
        problem = self._smskit_unconfigured(settings)
        if problem:
            _logger.warning("smskit is not configured: %d SMS of Odoo not sent: %s",
                            len(messages), problem)
            return [{"res_id": m.get("res_id"), "state": "unregistered"} for m in messages]
        uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid") or \
            self.env.cr.dbname
        partners = self._smskit_sms_rows(messages)
        recipients = []
        for message in messages:
            row = {"phone": message.get("number") or "", "content": message.get("content") or ""}
            res_id = message.get("res_id")
            if _sms_id(res_id) in partners:
                row["key"] = origin_key(uuid, "sms.sms", res_id)
                if partners[res_id]:
                    row["partner"] = f"res.partner,{partners[res_id]}"
            recipients.append(row)
        outcomes = {}
        with self._smskit_kit(settings) as kit:
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
                                if _sms_id(r["res_id"]) in partners and r.get("smskit_id")])
        return results

    @api.model
    def _smskit_sms_rows(self, messages):
        """``{sms.sms id: partner id or None}`` of the messages whose ``res_id`` names an
        ``sms.sms`` row (the others have none: see the module docs)."""
        ids = {_sms_id(m.get("res_id")) for m in messages} - {None}
        if not ids:
            return {}
        self.env.cr.execute("SELECT id, partner_id FROM sms_sms WHERE id IN %s",
                            [tuple(ids)])
        return dict(self.env.cr.fetchall())

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
        with self._smskit_kit() as kit:
            store = kit.store
            store.origins.sync(store.get_many(list(message_ids)))
