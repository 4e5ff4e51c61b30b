"""Messages Odoo itself asked smskit to send, and the Odoo records that follow them.

Inside Odoo, the addon sends two kinds of Odoo records through smskit: Odoo's own SMS (an
``sms.sms`` row: the partner "Send SMS" composer, SMS templates, SMS in chatter, mass SMS
mailings, marketing actions) and an agent's reply in a ChatRoom conversation (an
``acrux.chat.message``). Such a message carries its record in its idempotency key,
``odoo:<database uuid>:<model>:<id>`` (:func:`origin_key`): the same record sent again (a
retried batch) is the same message, never a second SMS, and the key names the record to keep
in step. :class:`Origins` brings those records up to date whenever the message changes state
(the mirror calls it for every batch of changes it writes, so a change is written once,
through the journal, and tried again when a concurrent transaction gets in the way):

================  ===========  ======================  ==================  ==================
smskit state      ``sms.sms``  ``mail.notification``   ``mailing.trace``   ChatRoom message
================  ===========  ======================  ==================  ==================
outgoing (queued, ``process``    ``process``             ``process``         ``smskit_state``
quiet hours)
sent              ``sent``     ``pending`` ("Sent")    ``pending``         ``smskit_state``
delivered         ``sent``     ``sent`` ("Delivered")  ``sent``            ``smskit_state``
error, expired    ``error``    ``bounce``              ``bounce``          ``error_msg`` too
rejected          ``error``    ``bounce`` once sent,   ``bounce`` once     ``error_msg`` too
                               else ``exception``      sent, else
                                                       ``error``
canceled          ``canceled`` ``exception``           ``cancel``          ``error_msg`` too
================  ===========  ======================  ==================  ==================

``process`` and ``pending`` are the statuses Odoo 16 and 17 added for this ("Processing",
"Sent": handed to the gateway, no delivery report yet), with ``sent`` then meaning delivered;
the addon adds them to Odoo 15's selections. Where a selection lacks a value (the addon's
``mailing.trace`` part not installed, say), the nearest Odoo 15 value is written instead
(``sent`` for ``pending``; ``process`` is then left out). Failures carry a ``failure_type``
(``sms_not_delivered``, ``sms_expired``, ``sms_rejected``, ``sms_blacklist``,
``sms_number_format``, ``sms_credit``, else ``sms_server``) and, where the model has one, the
reason in ``failure_reason`` (``smskit_reason`` on ``sms.sms``). A trace a recipient already
opened or answered (``open``, ``reply``) is left as it is. Writes are grouped by value: a
batch of 500 SMS costs one read and a few writes per model.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from smskit.models import Message, State
from smskit_odoo.adapter import OdooAdapter, to_odoo_datetime
from smskit_odoo.errors import OdooAccessError, OdooMissingModelError, OdooValidationError

__all__ = ["CHATTER_CONTEXT", "ODOO_SMS", "Origins", "failure_type", "origin_key",
           "origin_of"]

log = logging.getLogger(__name__)

#: Odoo's own outgoing SMS model: a message from it is shown by Odoo's chatter already.
ODOO_SMS = "sms.sms"
CHAT_MESSAGE = "acrux.chat.message"
NOTIFICATION = "mail.notification"
TRACE = "mailing.trace"
#: Context key of the ``mail.notification`` writes made here: the addon then tells the chatter
#: of the change on the bus, as Odoo does after its own status writes.
CHATTER_CONTEXT = "smskit_origin_sync"
_PREFIX = "odoo"
#: Fields read (and written) per model, when the model has them.
_FIELDS: Mapping[str, Tuple[str, ...]] = {
    ODOO_SMS: ("state", "failure_type", "smskit_state", "smskit_reason"),
    NOTIFICATION: ("sms_id", "notification_status", "failure_type", "failure_reason"),
    TRACE: ("sms_sms_id_int", "trace_status", "failure_type", "sent_datetime"),
    CHAT_MESSAGE: ("smskit_state", "error_msg", "msgid"),
}
_FINAL_FAILURES = (State.ERROR, State.EXPIRED, State.REJECTED, State.CANCELED)
_CREDIT_WORDS = ("saldo", "balance", "credit", "crédito", "credito")


def origin_key(database_uuid: str, model: str, record_id: int) -> str:
    """The idempotency key of a message sent for an Odoo record."""
    return f"{_PREFIX}:{database_uuid}:{model}:{int(record_id)}"


def origin_of(message: Message) -> Optional[Tuple[str, int]]:
    """``(model, id)`` of the Odoo record ``message`` was sent for, or ``None`` (a key
    ``odoo:<uuid>:<model>:<id>``, with any suffix: ``…:after-<message id>`` for a retry of a
    failed one, ``…:rejected`` for a refused recipient)."""
    key = message.idempotency_key
    if not key or not key.startswith(_PREFIX + ":"):
        return None
    parts = key.split(":")
    if len(parts) < 4 or not parts[3].isdigit():
        return None
    return parts[2], int(parts[3])


def failure_type(message: Message) -> Optional[str]:
    """Odoo's ``failure_type`` for a failed or canceled message (``None`` otherwise)."""
    state = message.state
    if state not in _FINAL_FAILURES:
        return None
    code = (message.error_code or "").lower()
    text = (message.error_text or "").lower()
    if code in ("invalid_phone", "invalid"):
        return "sms_number_format"
    if state is State.CANCELED or code in ("blacklisted", "blacklist", "not_disturb"):
        blacklisted = code in ("blacklisted", "blacklist", "not_disturb") or "blacklist" in text
        return "sms_blacklist" if blacklisted else "sms_rejected"
    if any(word in text for word in _CREDIT_WORDS):
        return "sms_credit"
    if state is State.EXPIRED:
        return "sms_expired"
    if state is State.ERROR:
        return "sms_not_delivered" if message.sent_at else "sms_server"
    return "sms_rejected"


def _was_sent(message: Message) -> bool:
    return message.sent_at is not None or message.provider_message_id is not None


class Origins:
    """Keeps the Odoo records of messages sent for them in step (see the module docs).

    The models and their selections are read once (``ir.model`` and one ``fields_get`` per
    model); a kit is rebuilt when Odoo's modules change, and this with it.
    """

    def __init__(self, adapter_of: Any) -> None:
        #: ``adapter_of()`` -> the adapter to call (the session's, bound per borrower).
        self._adapter_of = adapter_of
        self._lock = threading.Lock()
        self._fields: Optional[Dict[str, Dict[str, FrozenSet[str]]]] = None

    def __repr__(self) -> str:
        return f"Origins(models={sorted(self._fields or {})})"

    @property
    def adapter(self) -> OdooAdapter:
        """The adapter Odoo is called through."""
        adapter: OdooAdapter = self._adapter_of()
        return adapter

    # -- what the database has ------------------------------------------------------------
    def fields(self) -> Dict[str, Dict[str, FrozenSet[str]]]:
        """Model -> field -> its selection values (empty for other types), for the models and
        fields this database has."""
        with self._lock:
            if self._fields is None:
                self._fields = self._detect()
            return self._fields

    def _detect(self) -> Dict[str, Dict[str, FrozenSet[str]]]:
        rows = self.adapter.execute("ir.model", "search_read",
                                    [("model", "in", sorted(_FIELDS))], fields=["model"])
        found: Dict[str, Dict[str, FrozenSet[str]]] = {}
        for model in sorted(str(r["model"]) for r in rows):
            info: Mapping[str, Mapping[str, Any]] = self.adapter.execute(
                model, "fields_get", list(_FIELDS[model]), attributes=["type", "selection"])
            found[model] = {name: frozenset(str(s[0]) for s in spec.get("selection") or [])
                            for name, spec in info.items() if name in _FIELDS[model]}
        return found

    def _value(self, model: str, field: str, *wanted: Optional[str]) -> Any:
        """The first of ``wanted`` the selection offers (``False`` for ``None``); ``None``
        when it offers none of them (leave the field alone)."""
        offered = self.fields().get(model, {}).get(field, frozenset())
        for value in wanted:
            if value is None:
                return False
            if value in offered:
                return value
        return None

    # -- keeping records in step ----------------------------------------------------------
    def sync(self, messages: Sequence[Message]) -> None:
        """Bring the Odoo records of ``messages`` (those with an origin) up to their state.

        A record Odoo refuses to write (deleted meanwhile) is logged and skipped: it must not
        hold back the mirror's writes. A concurrent transaction raises
        :class:`~smskit_odoo.errors.OdooTransientError` (the journal tries again)."""
        by_model: Dict[str, Dict[int, Message]] = {}
        for message in messages:
            origin = origin_of(message)
            if origin is not None:
                by_model.setdefault(origin[0], {})[origin[1]] = message
        if not by_model:
            return
        try:
            present = self.fields()
        except OdooAccessError as exc:  # a user who may not read ir.model: the next one may
            log.warning("the Odoo records of %d smskit message(s) not updated: %s",
                        len(messages), exc)
            return
        sms = by_model.get(ODOO_SMS)
        if sms:
            for model, step in ((ODOO_SMS, self._sms_rows), (NOTIFICATION, self._notifications),
                                (TRACE, self._traces)):
                if model in present:
                    self._guard(model, step, sms)
        chat = by_model.get(CHAT_MESSAGE)
        if chat and CHAT_MESSAGE in present:
            self._guard(CHAT_MESSAGE, self._chat_messages, chat)

    def _guard(self, model: str, step: Any, messages: Dict[int, Message]) -> None:
        try:
            step(messages)
        except (OdooValidationError, OdooMissingModelError) as exc:
            log.warning("%s records of %d smskit message(s) not updated: %s", model,
                        len(messages), exc)

    def _read(self, model: str, domain: List[Any]) -> List[Dict[str, Any]]:
        names = [f for f in _FIELDS[model] if f in self.fields().get(model, {})]
        rows: List[Dict[str, Any]] = self.adapter.execute(model, "search_read", domain,
                                                          fields=names)
        return rows

    def _write(self, model: str, changes: List[Tuple[int, Dict[str, Any]]],
               context: Optional[Dict[str, Any]] = None) -> None:
        """One ``write`` per distinct set of values."""
        groups: Dict[Tuple[Tuple[str, Any], ...], List[int]] = {}
        for record_id, values in changes:
            groups.setdefault(tuple(sorted(values.items())), []).append(record_id)
        extra = {"context": context} if context else {}
        for items, ids in groups.items():
            self.adapter.execute(model, "write", sorted(ids), dict(items), **extra)

    @staticmethod
    def _diff(row: Mapping[str, Any], wanted: Mapping[str, Any]) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for field, value in wanted.items():
            if value is None or field not in row:
                continue
            have = row.get(field)
            if isinstance(have, (list, tuple)):
                have = have[0] if have else False
            if (have or False) != (value or False):
                out[field] = value
        return out

    def _sms_rows(self, messages: Dict[int, Message]) -> None:
        changes = []
        for row in self._read(ODOO_SMS, [("id", "in", sorted(messages))]):
            message = messages[int(row["id"])]
            state = message.state
            if state is State.OUTGOING:
                odoo_state = self._value(ODOO_SMS, "state", "process")
            elif state in (State.SENT, State.DELIVERED):
                odoo_state = "sent"
            elif state is State.CANCELED:
                odoo_state = "canceled"
            elif state.is_final:
                odoo_state = "error"
            else:
                odoo_state = None
            wanted = {
                "state": odoo_state,
                "failure_type": self._value(ODOO_SMS, "failure_type", failure_type(message),
                                            "sms_server"),
                "smskit_state": self._value(ODOO_SMS, "smskit_state", state.value),
                "smskit_reason": (message.error_text or False)
                if state in _FINAL_FAILURES else False,
            }
            diff = self._diff(row, wanted)
            if diff:
                changes.append((int(row["id"]), diff))
        self._write(ODOO_SMS, changes)

    def _notifications(self, messages: Dict[int, Message]) -> None:
        rows = self._read(NOTIFICATION, [("sms_id", "in", sorted(messages)),
                                         ("notification_type", "=", "sms")])
        changes = []
        for row in rows:
            sms = row.get("sms_id")
            message = messages.get(int((sms[0] if isinstance(sms, (list, tuple)) else sms) or 0))
            if message is None:
                continue
            status, failure = self._notification_status(message)
            wanted: Dict[str, Any] = {"notification_status": status,
                                      "failure_type": failure if status else None}
            if status in ("bounce", "exception"):
                wanted["failure_reason"] = message.error_text or False
            elif status:
                wanted["failure_reason"] = False
            diff = self._diff(row, wanted)
            if diff:
                changes.append((int(row["id"]), diff))
        self._write(NOTIFICATION, changes, context={CHATTER_CONTEXT: True})

    def _notification_status(self, message: Message) -> Tuple[Optional[str], Any]:
        state = message.state
        field = "notification_status"
        if state is State.OUTGOING:
            return self._value(NOTIFICATION, field, "process"), False
        if state is State.SENT:
            return self._value(NOTIFICATION, field, "pending", "sent"), False
        if state is State.DELIVERED:
            return "sent", False
        if state not in _FINAL_FAILURES:
            return None, None
        failure = self._value(NOTIFICATION, "failure_type", failure_type(message),
                              "sms_server", "unknown")
        bounced = state in (State.ERROR, State.EXPIRED) or (
            state is State.REJECTED and _was_sent(message))
        return ("bounce" if bounced else "exception"), failure

    def _traces(self, messages: Dict[int, Message]) -> None:
        rows = self._read(TRACE, [("sms_sms_id_int", "in", sorted(messages)),
                                  ("trace_type", "=", "sms")])
        changes = []
        for row in rows:
            message = messages.get(int(row.get("sms_sms_id_int") or 0))
            if message is None or row.get("trace_status") in ("open", "reply"):
                continue  # opened (a link clicked) or answered: delivered, whatever comes
            diff = self._diff(row, self._trace_values(message, row))
            if diff:
                changes.append((int(row["id"]), diff))
        self._write(TRACE, changes)

    def _trace_values(self, message: Message, row: Mapping[str, Any]) -> Dict[str, Any]:
        state = message.state
        field = "trace_status"
        sent_at = message.sent_at or message.delivered_at
        sent = {"sent_datetime": row.get("sent_datetime") or (
            to_odoo_datetime(sent_at.replace(microsecond=0)) if sent_at else None)}
        if state is State.OUTGOING:
            status = self._value(TRACE, field, "process")
            return {field: status, "failure_type": False,
                    "sent_datetime": False} if status else {}
        if state is State.SENT:
            return {field: self._value(TRACE, field, "pending", "sent"), "failure_type": False,
                    **sent}
        if state is State.DELIVERED:
            return {field: "sent", "failure_type": False, **sent}
        if state not in _FINAL_FAILURES:
            return {}
        failure = self._value(TRACE, "failure_type", failure_type(message), "sms_server",
                              "unknown")
        if state is State.CANCELED:
            return {field: "cancel", "failure_type": failure}
        if state in (State.ERROR, State.EXPIRED) or _was_sent(message):
            return {field: "bounce", "failure_type": failure, **sent}
        return {field: "error", "failure_type": failure}

    def _chat_messages(self, messages: Dict[int, Message]) -> None:
        # the record the key names, and any ChatRoom message that took the SMS's id as its
        # msgid: Odoo ran the agent's request again after a conflict, and its second run's
        # message got the SMS the first run had sent (the addon's sms_smskit_chatroom)
        by_msgid = {m.id: m for m in messages.values()}
        domain: List[Any] = [("id", "in", sorted(messages))]
        if "msgid" in self.fields().get(CHAT_MESSAGE, {}):
            domain = ["|", *domain, ("msgid", "in", sorted(by_msgid))]
        changes = []
        for row in self._read(CHAT_MESSAGE, domain):
            message = messages.get(int(row["id"])) or by_msgid.get(str(row.get("msgid")))
            if message is None:
                continue
            failed = message.state in _FINAL_FAILURES
            wanted = {
                "smskit_state": self._value(CHAT_MESSAGE, "smskit_state", message.state.value),
                "error_msg": (message.error_text or message.state.value) if failed else False,
            }
            diff = self._diff(row, wanted)
            if diff:
                changes.append((int(row["id"]), diff))
        self._write(CHAT_MESSAGE, changes)
