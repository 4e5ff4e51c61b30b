"""Put SMS replies into acrux ChatRoom conversations, once each.

Every reply becomes an op in the Odoo journal (key ``acrux:<msgid>``), so a reply that
arrives while Odoo is down is routed when it is back. Writing one:

1. look for ``acrux.chat.message`` with this ``msgid`` on our connector (ChatRoom's
   ``new_message`` does not de-duplicate);
2. find or create the partner by phone;
3. ``acrux.chat.conversation.new_message(data)`` with context ``from_webhook=True`` and the
   keys ChatRoom reads: ``connector_id``, ``number`` (digits with the country code), ``name``,
   ``message``, ``ttype`` ``'text'``, ``msgid``, ``time`` (UTC), ``conv_type`` ``'normal'``,
   ``from_me`` ``False`` and ``quote_msg_id`` ``False`` (newer releases read it
   unconditionally);
4. read the message back by ``msgid`` and link the conversation to the partner when ChatRoom
   did not.

The ``msgid`` is stable: ``<provider>:<reply id>`` from the gateway (``kolmeya:R-1``), so a
repeated webhook, a retried flush or a second process finds the first message.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Optional

from smskit.errors import ConfigurationError
from smskit.models import Message
from smskit_odoo.adapter import to_odoo_datetime
from smskit_odoo.errors import OdooAccessError, OdooRpcError, OdooUnavailableError
from smskit_odoo.journal import Op
from smskit_odoo.session import HandlerResult, OdooSession

__all__ = ["CONNECTOR_MODEL", "CONVERSATION_MODEL", "MESSAGE_MODEL", "ChatRoomRouter"]

log = logging.getLogger(__name__)

CONNECTOR_MODEL = "acrux.chat.connector"
CONVERSATION_MODEL = "acrux.chat.conversation"
MESSAGE_MODEL = "acrux.chat.message"


class ChatRoomRouter:
    """Routes inbound messages into the conversations of one SMS connector.

    The connector is ``connector_id``, else the one named ``connector_name``, else the only
    connector of type ``sms``. ``reply_ref(message_id)`` gives ``"<provider>:<reply id>"``
    (the Odoo store knows it); without one the msgid is ``smskit:<our id>``.
    """

    def __init__(self, session: OdooSession, *, connector_id: Optional[int] = None,
                 connector_name: Optional[str] = None,
                 reply_ref: Optional[Callable[[str], Optional[str]]] = None,
                 create_partners: bool = True) -> None:
        self.session = session
        self.connector_id = connector_id
        self.connector_name = connector_name
        self.reply_ref = reply_ref
        self.create_partners = create_partners
        self.routed: Dict[str, int] = {}
        self._connector: Optional[int] = None
        self._lock = threading.Lock()
        session.register("acrux", self._handle)

    def __repr__(self) -> str:
        return f"ChatRoomRouter(connector={self._connector or self.connector_id!r})"

    # -- configuration --------------------------------------------------------------------
    def forget(self) -> None:
        """Look the connector up again next time, and forget where replies went (a router
        kept across Odoo requests: the connector may have been replaced meanwhile)."""
        with self._lock:
            self._connector = None
        self.routed.clear()

    def connector(self) -> int:
        """The SMS connector's id (looked up once)."""
        with self._lock:
            if self._connector is None:
                self._connector = self._find_connector()
            return self._connector

    def _find_connector(self) -> int:
        adapter = self.session.adapter
        if self.connector_id:
            rows = adapter.execute(CONNECTOR_MODEL, "search_read",
                                   [("id", "=", int(self.connector_id))], fields=["name"])
            if not rows:
                raise ConfigurationError(f"acrux_connector_id {self.connector_id}: no such "
                                         f"{CONNECTOR_MODEL} record")
            return int(rows[0]["id"])
        if self.connector_name:
            domain: List[Any] = [("name", "=", self.connector_name)]
            what = f"named {self.connector_name!r}"
        else:
            kinds = adapter.execute(CONNECTOR_MODEL, "fields_get", ["connector_type"],
                                    attributes=["selection"])
            offered = [s[0] for s in kinds.get("connector_type", {}).get("selection") or []]
            if "sms" not in offered:
                raise ConfigurationError(
                    "no ChatRoom connector type 'sms' in this database: create a connector "
                    "for SMS and set acrux_connector_id (or acrux_connector_name)")
            domain = [("connector_type", "=", "sms")]
            what = "of type 'sms'"
        rows = adapter.execute(CONNECTOR_MODEL, "search_read", domain, fields=["name"])
        if len(rows) != 1:
            raise ConfigurationError(
                f"expected one ChatRoom connector {what}, found {len(rows)}: set "
                "acrux_connector_id")
        return int(rows[0]["id"])

    def msgid(self, message: Message) -> str:
        """The stable ChatRoom msgid of an inbound message."""
        ref = self.reply_ref(message.id) if self.reply_ref is not None else None
        return ref or f"smskit:{message.id}"

    # -- routing ----------------------------------------------------------------------------
    def route(self, message: Message) -> str:
        """Queue the reply for the ChatRoom and write it now if Odoo answers; where it went
        (``acrux.chat.conversation,<id>``, or that it is queued)."""
        msgid = self.msgid(message)
        payload = {"msgid": msgid, "phone": message.phone, "body": message.body,
                   "time": to_odoo_datetime(message.created_at)}
        self.session.journal.enqueue("acrux", payload, key=f"acrux:{msgid}",
                                     message_id=message.id)
        report = self.session.flush(kinds=["acrux"])
        conversation = self.routed.get(msgid)
        if conversation is not None:
            return f"{CONVERSATION_MODEL},{conversation}"
        why = report.error or "not written yet"
        return f"{CONVERSATION_MODEL} (queued: {why})"

    def _handle(self, ops: List[Op]) -> HandlerResult:
        adapter = self.session.adapter
        result = HandlerResult()
        connector = self.connector()
        by_msgid = {str(op.payload["msgid"]): op for op in ops}
        known = self._read_back(list(by_msgid), connector)
        for msgid in known:
            result.keep.append(by_msgid[msgid].id)
        todo = [op for msgid, op in by_msgid.items() if msgid not in known]
        if not todo:
            return result
        phones = [str(op.payload["phone"]) for op in todo]
        directory = self.session.partners
        partners = (directory.find_or_create(phones) if self.create_partners
                    else directory.find(phones))
        names = self._names(sorted(set(partners.values())))
        sent: List[Op] = []
        for op in todo:
            phone = str(op.payload["phone"])
            partner = partners.get(phone)
            data = {
                "connector_id": connector,
                "number": phone.lstrip("+"),
                "name": names.get(partner or 0) or phone.lstrip("+"),
                "message": op.payload["body"],
                "ttype": "text",
                "msgid": op.payload["msgid"],
                "time": op.payload["time"],
                "conv_type": "normal",
                "from_me": False,
                "quote_msg_id": False,
            }
            try:
                adapter.execute(CONVERSATION_MODEL, "new_message", data,
                                context={"from_webhook": True})
            except (OdooUnavailableError, OdooAccessError):
                if sent:
                    break  # keep what was written; the rest waits for the next flush
                raise
            except OdooRpcError as exc:
                result.failed[op.id] = exc.odoo_message or str(exc)
                continue
            sent.append(op)
        written = self._read_back([str(op.payload["msgid"]) for op in sent], connector)
        self._link_partners(written, {str(op.payload["msgid"]): partners.get(
            str(op.payload["phone"])) for op in sent})
        result.keep.extend(op.id for op in sent)
        return result

    def _read_back(self, msgids: List[str], connector: int) -> Dict[str, int]:
        """msgid -> conversation id of the ChatRoom messages already there."""
        if not msgids:
            return {}
        rows = self.session.adapter.execute(
            MESSAGE_MODEL, "search_read",
            [("msgid", "in", msgids), ("contact_id.connector_id", "=", connector)],
            fields=["msgid", "contact_id"])
        found: Dict[str, int] = {}
        for row in rows:
            contact = row.get("contact_id")
            if contact:
                found.setdefault(str(row["msgid"]), int(contact[0]))
        self.routed.update(found)
        return found

    def _names(self, partner_ids: List[int]) -> Dict[int, str]:
        if not partner_ids:
            return {}
        rows = self.session.adapter.execute("res.partner", "search_read",
                                            [("id", "in", partner_ids)], fields=["name"])
        return {int(r["id"]): str(r["name"]) for r in rows if r.get("name")}

    def _link_partners(self, written: Dict[str, int], partners: Dict[str, Optional[int]]
                       ) -> None:
        """Set the conversation's partner where ChatRoom left it empty."""
        wanted = {conv: partners.get(msgid) for msgid, conv in written.items()
                  if partners.get(msgid)}
        if not wanted:
            return
        rows = self.session.adapter.execute(CONVERSATION_MODEL, "read", sorted(wanted),
                                            ["res_partner_id"])
        by_partner: Dict[int, List[int]] = {}
        for row in rows:
            partner = wanted.get(int(row["id"]))
            if partner and not row.get("res_partner_id"):
                by_partner.setdefault(partner, []).append(int(row["id"]))
        for partner, conversations in by_partner.items():
            self.session.adapter.execute(CONVERSATION_MODEL, "write", conversations,
                                         {"res_partner_id": partner})
