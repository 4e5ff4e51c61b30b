"""A fake Odoo 15 holding the models smskit reads and writes (``docs/odoo.md``, ``docs/acrux.md``).

``FakeOdoo(variant="sms_base_sr")`` installs one of the three message schemas
(``sms_base_sr``, ``sms_core_unified``, ``stock``), the partner, mail and blacklist models, and,
with ``acrux=True``, the ChatRoom models with their real quirks: the conversation is unique on
(number, conv_type, connector_id), ``new_message`` reads ``data['quote_msg_id']``
unconditionally (``KeyError``) and does not de-duplicate. :meth:`FakeOdoo.execute_kw` is what
the JSON-RPC server (:mod:`smskit_odoo.testing.server`) and the in-process fake ``env`` call.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Set, Tuple

from smskit_odoo.testing.orm import FakeError, Field, Model, Orm, Record

__all__ = ["FakeOdoo", "MESSAGE_STATES"]

MESSAGE_STATES = [("draft", "Draft"), ("outgoing", "In Queue"), ("sent", "Sent"),
                  ("delivered", "Delivered"), ("error", "Error"), ("canceled", "Canceled"),
                  ("expired", "Expired"), ("rejected", "Rejected")]
_STOCK_STATES = [("outgoing", "In Queue"), ("sent", "Sent"), ("error", "Error"),
                 ("canceled", "Canceled")]
_STOCK_ERRORS = [("sms_number_missing", "Missing Number"), ("sms_number_format", "Wrong Number"),
                 ("sms_credit", "Insufficient Credit"), ("sms_server", "Server Error"),
                 ("sms_acc", "Unregistered Account"), ("sms_blacklist", "Blacklisted"),
                 ("sms_duplicate", "Duplicate")]
_VARIANTS = ("sms_base_sr", "sms_core_unified", "stock", "none")
ADMIN_UID = 2


def _digits(text: Any) -> str:
    return re.sub(r"\D", "", str(text or ""))


def _sr_phone_check(record: Record) -> Optional[str]:
    """sms_base_sr's ``_check_phone``: digits only (after separators), 10 to 15 of them."""
    phone = record.get("phone")
    if not phone:
        return None
    clean = re.sub(r"[+ \-()]", "", str(phone))
    if not clean.isdigit():
        return "Phone number must contain only digits."
    if not 10 <= len(clean) <= 15:
        return "Phone number must be between 10 and 15 digits."
    return None


class FakeOdoo:
    """The fake server's state: the ORM, users, installed modules, requests and bus."""

    def __init__(self, variant: str = "sms_base_sr", *, database: str = "smskit",
                 acrux: bool = True, smskit_fields: bool = False, sms_connector: bool = True,
                 blacklist: bool = True) -> None:
        if variant not in _VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; one of {_VARIANTS}")
        self.variant = variant
        self.database = database
        self.orm = Orm()
        self.users: Dict[str, Tuple[str, int]] = {"admin": ("admin", ADMIN_UID)}
        self.requests: List[Dict[str, Any]] = []
        self.bus: List[Tuple[str, Dict[str, Any]]] = []
        self.down = False
        self.bad_phones: Set[str] = set()
        self.sessions: Dict[str, int] = {}
        self._modules: List[str] = ["base", "web", "bus", "mail"]
        self._base()
        if blacklist:
            self._blacklist()
        if variant == "sms_base_sr":
            self._sms_message(unified=False, smskit_fields=smskit_fields)
        elif variant == "sms_core_unified":
            self._sms_message(unified=True, smskit_fields=smskit_fields)
        elif variant == "stock":
            self._stock_sms(smskit_fields)
        if acrux:
            self._acrux(sms_connector)
        self._ir()

    # -- helpers for tests ---------------------------------------------------------------------
    def add_user(self, login: str, password: str) -> int:
        """A user who can log in; deny it operations with :meth:`deny`."""
        uid = self.orm.create_record(1, self.orm.model("res.users"),
                                     {"login": login, "name": login})
        self.users[login] = (password, uid)
        return uid

    def deny(self, uid: int, model: str, operation: str) -> None:
        """Refuse ``operation`` on ``model`` to ``uid`` (AccessError)."""
        self.orm.deny(uid, model, operation)

    def records(self, model: str) -> List[Record]:
        """The raw records of a model, by id."""
        with self.orm.lock:
            return [dict(r) for _, r in sorted(self.orm.model(model).records.items())]

    def add(self, model: str, vals: Dict[str, Any]) -> int:
        """Create a record directly (as the system), for test set-up."""
        with self.orm.lock:
            return self.orm.create_record(1, self.orm.model(model), vals)

    def calls(self, model: Optional[str] = None, method: Optional[str] = None) -> List[Any]:
        """The ``execute_kw`` requests made so far, filtered."""
        return [r for r in self.requests if r.get("model")
                and (model is None or r["model"] == model)
                and (method is None or r["method"] == method)]

    # -- the RPC entry points --------------------------------------------------------------------
    def login(self, database: str, login: str, password: str) -> Any:
        """``common.login``: the uid, or ``False``."""
        if database != self.database:
            raise FakeError("psycopg2.OperationalError",
                            f'FATAL:  database "{database}" does not exist')
        found = self.users.get(login)
        return found[1] if found and found[0] == password else False

    def check_password(self, database: str, uid: int, password: str) -> None:
        """What ``object.execute_kw`` checks first."""
        if database != self.database:
            raise FakeError("psycopg2.OperationalError",
                            f'FATAL:  database "{database}" does not exist')
        if not any(u == uid and p == password for p, u in self.users.values()):
            raise FakeError("odoo.exceptions.AccessDenied", "Access Denied")

    def execute_kw(self, uid: int, model: str, method: str, args: List[Any],
                   kwargs: Dict[str, Any]) -> Any:
        """Run one ORM call as ``uid`` (one transaction)."""
        return self.orm.call(uid, model, method, args, kwargs)

    def session_info(self, uid: int) -> Dict[str, Any]:
        """What ``/web/session/authenticate`` answers."""
        user = self.orm.model("res.users").records[uid]
        return {"uid": uid, "db": self.database, "username": user["login"],
                "server_version": "15.0", "server_version_info": [15, 0, 0, "final", 0, ""],
                "user_context": {"lang": "pt_BR", "tz": self.orm.user_tz, "uid": uid},
                "partner_id": user.get("partner_id") or False, "company_id": 1}

    # -- models -----------------------------------------------------------------------------------
    def _base(self) -> None:
        orm = self.orm
        partner = orm.add_model("res.partner", "Contact", {
            "name": Field("char", "Name", required=True), "phone": Field("char", "Phone"),
            "mobile": Field("char", "Mobile"), "email": Field("char", "Email"),
            "active": Field("boolean", "Active"), "comment": Field("text", "Notes"),
        })
        users = orm.add_model("res.users", "User", {
            "login": Field("char", "Login", required=True), "name": Field("char", "Name"),
            "partner_id": Field("many2one", "Partner", relation="res.partner"),
        })
        users.methods["context_get"] = lambda o, m, uid, a, k: {
            "lang": "pt_BR", "tz": o.user_tz, "uid": uid}
        orm.add_model("ir.module.module", "Module", {
            "name": Field("char", "Name"), "state": Field("selection", "Status", selection=[
                ("installed", "Installed"), ("uninstalled", "Not Installed")])})
        orm.add_model("ir.model", "Models", {"model": Field("char", "Model"),
                                             "name": Field("char", "Name")}, rec_name="model")
        orm.add_model("ir.config_parameter", "System Parameter", {
            "key": Field("char", "Key", required=True), "value": Field("text", "Value")},
            rec_name="key", unique=[("key_uniq", ("key",), "Key must be unique.")])
        orm.add_model("ir.model.data", "Model Data", {
            "module": Field("char", "Module"), "name": Field("char", "Name"),
            "model": Field("char", "Model"), "res_id": Field("integer", "Record ID")})
        orm.add_model("mail.message.subtype", "Message subtypes",
                      {"name": Field("char", "Name"), "internal": Field("boolean", "Internal")})
        orm.add_model("mail.message", "Message", {
            "model": Field("char", "Related Document Model"),
            "res_id": Field("integer", "Related Document ID"),
            "body": Field("html", "Contents"),
            "message_type": Field("selection", "Type", selection=[
                ("email", "Email"), ("comment", "Comment"), ("notification", "System"),
                ("user_notification", "User Specific Notification")], required=True),
            "subtype_id": Field("many2one", "Subtype", relation="mail.message.subtype"),
            "author_id": Field("many2one", "Author", relation="res.partner"),
        }, rec_name="body")
        orm.create_record(1, partner, {"name": "OdooBot"})
        orm.create_record(1, partner, {"name": "My Company"})
        admin_partner = orm.create_record(1, partner, {"name": "Mitchell Admin"})
        orm.create_record(1, users, {"login": "__system__", "name": "OdooBot"})
        orm.create_record(1, users, {"login": "admin", "name": "Mitchell Admin",
                                     "partner_id": admin_partner})
        note = orm.create_record(1, orm.model("mail.message.subtype"),
                                 {"name": "Note", "internal": True})
        self._xmlid("mail", "mt_note", "mail.message.subtype", note)
        partner.methods["message_post"] = self._message_post

    def _message_post(self, orm: Orm, model: Model, uid: int, args: List[Any],
                      kwargs: Dict[str, Any]) -> int:
        ids = args[0] if args else kwargs.pop("ids")
        if len(ids) != 1:
            raise ValueError(f"Expected singleton: {model.name}{tuple(ids)}")
        orm.check(uid, model, "read")
        if ids[0] not in model.records:
            raise FakeError("odoo.exceptions.MissingError", "Record does not exist or has "
                            "been deleted.")
        subtype = kwargs.get("subtype_xmlid") or "mail.mt_comment"
        module, _, name = subtype.partition(".")
        ref = [r for r in orm.model("ir.model.data").records.values()
               if (r["module"], r["name"]) == (module, name)]
        author = orm.model("res.users").records[uid].get("partner_id") or False
        return orm.create_record(uid, orm.model("mail.message"), {
            "model": model.name, "res_id": ids[0], "body": kwargs.get("body") or "",
            "message_type": kwargs.get("message_type") or "notification",
            "subtype_id": ref[0]["res_id"] if ref else False, "author_id": author})

    def _xmlid(self, module: str, name: str, model: str, res_id: int) -> None:
        self.orm.create_record(1, self.orm.model("ir.model.data"),
                               {"module": module, "name": name, "model": model,
                                "res_id": res_id})

    def _blacklist(self) -> None:
        self._modules.append("phone_validation")
        model = self.orm.add_model("phone.blacklist", "Phone Blacklist", {
            "number": Field("char", "Phone Number", required=True),
            "active": Field("boolean", "Active"),
        }, rec_name="number", unique=[("unique_number", ("number",), "Number already exists")])

        def create(orm: Orm, m: Model, uid: int, args: List[Any], kwargs: Dict[str, Any]) -> Any:
            values = args[0] if args else kwargs["vals_list"]
            many = isinstance(values, list)
            ids = []
            for vals in (values if many else [values]):
                number = "+" + _digits(vals.get("number"))
                existing = [r for r in m.records.values() if r["number"] == number]
                if existing:
                    orm.write_records(uid, m, [existing[0]["id"]], {"active": True})
                    ids.append(existing[0]["id"])
                else:
                    ids.append(orm.create_record(uid, m, dict(vals, number=number)))
            return ids if many else ids[0]

        model.methods["create"] = create

    def _sms_message(self, *, unified: bool, smskit_fields: bool) -> None:
        orm = self.orm
        self._modules += ["sms", "sms_core_unified"] if unified else ["sms", "sms_base_sr",
                                                                       "sms_kolmeya"]
        orm.add_model("sms.provider", "SMS Provider", {"name": Field("char", "Name")})
        orm.add_model("sms.campaign", "SMS Campaign", {"name": Field("char", "Name")})
        fields: Dict[str, Field] = {
            "partner_id": Field("many2one", "Contact", relation="res.partner"),
            "user_id": Field("many2one", "User", relation="res.users"),
            "provider_id": Field("many2one", "Provider", relation="sms.provider"),
            "campaign_id": Field("many2one", "Campaign", relation="sms.campaign"),
            "parent_id": Field("many2one", "Reply to", relation="sms.message"),
            "phone": Field("char", "Phone", required=True),
            "body": Field("text", "Message", required=True),
            "state": Field("selection", "Status", selection=list(MESSAGE_STATES),
                           default="draft"),
            "scheduled_date": Field("datetime", "Scheduled"),
            "sent_date": Field("datetime", "Sent"),
            "char_count": Field("integer", "Characters"),
            "sms_count": Field("integer", "Segments"),
            "cost": Field("float", "Cost"),
            "error_message": Field("text", "Error"),
            "provider_job_id": Field("char", "Job"),
        }
        if unified:
            fields["external_id"] = Field("char", "External ID")
            fields["delivery_date"] = Field("datetime", "Delivered")
        else:
            fields["direction"] = Field("selection", "Direction", selection=[
                ("outgoing", "Outgoing"), ("incoming", "Incoming")], default="outgoing",
                required=True)
            fields["provider_message_id"] = Field("char", "Provider Message ID")
            fields["provider_reference"] = Field("char", "Provider Reference")
            fields["retry_count"] = Field("integer", "Retry Count", default=0)
            fields["delivered_date"] = Field("datetime", "Delivered")
        if smskit_fields:
            fields["x_smskit_id"] = Field("char", "smskit id")
            fields["x_smskit_batch_id"] = Field("char", "smskit batch")
        model = orm.add_model("sms.message", "SMS Message", fields, rec_name="phone",
                              constraints=[self._phone_constraint("phone"), _sr_phone_check])
        if not unified:
            model.on_create = self._sr_create_note

    def _sr_create_note(self, orm: Orm, record: Record) -> None:
        """sms_base_sr's own ``create``: a note on the partner for every new message."""
        if record.get("partner_id"):
            orm.create_record(1, orm.model("mail.message"), {
                "model": "res.partner", "res_id": record["partner_id"],
                "body": f"SMS {record.get('direction')}<br/>{str(record.get('body'))[:100]}",
                "message_type": "comment", "subtype_id": False})

    def _phone_constraint(self, field: str) -> Any:
        def check(record: Record) -> Optional[str]:
            if record.get(field) in self.bad_phones:
                return f"Invalid phone number for SMS: {record.get(field)}"
            return None
        return check

    def _stock_sms(self, smskit_fields: bool) -> None:
        self._modules.append("sms")
        fields: Dict[str, Field] = {
            "number": Field("char", "Number"),
            "body": Field("text", "Body"),
            "partner_id": Field("many2one", "Customer", relation="res.partner"),
            "mail_message_id": Field("many2one", "Mail Message", relation="mail.message"),
            "state": Field("selection", "SMS Status", selection=list(_STOCK_STATES),
                           default="outgoing", required=True),
            "error_code": Field("selection", "Error Code", selection=list(_STOCK_ERRORS)),
            "to_delete": Field("boolean", "Marked for deletion"),
        }
        if smskit_fields:
            fields["x_smskit_id"] = Field("char", "smskit id")
        self.orm.add_model("sms.sms", "Outgoing SMS", fields, rec_name="number",
                           constraints=[self._phone_constraint("number")])

    def _acrux(self, sms_connector: bool) -> None:
        orm = self.orm
        self._modules += ["sales_team", "product", "whatsapp_connector"]
        types = [("not_set", "Not set"), ("apichat.io", "ApiChat.io"), ("chatapi", "ChatApi"),
                 ("gupshup", "GupShup")]
        if sms_connector:
            types.append(("sms", "SMS"))
        orm.add_model("acrux.chat.connector", "Connector", {
            "name": Field("char", "Name", required=True),
            "connector_type": Field("selection", "Type", selection=types, default="not_set"),
        })
        orm.add_model("acrux.chat.conversation", "Chat Conversation", {
            "name": Field("char", "Name", required=True),
            "number": Field("char", "Number", required=True),
            "conv_type": Field("selection", "Type", selection=[
                ("normal", "Normal"), ("private", "Private"), ("group", "Group")],
                default="normal"),
            "connector_id": Field("many2one", "Connector", relation="acrux.chat.connector",
                                  required=True),
            "res_partner_id": Field("many2one", "Client", relation="res.partner"),
            "status": Field("selection", "Status", selection=[
                ("new", "New"), ("current", "Current"), ("done", "Done")], default="new"),
            "agent_id": Field("many2one", "Agent", relation="res.users"),
            "chat_message_ids": Field("one2many", "Messages", relation="acrux.chat.message",
                                      default="contact_id"),
        }, unique=[("uniq_number_conv_connector", ("number", "conv_type", "connector_id"),
                    "Number in connector has to be unique.")])
        orm.add_model("acrux.chat.message", "Chat Message", {
            "text": Field("text", "Message"),
            "contact_id": Field("many2one", "Contact", relation="acrux.chat.conversation",
                                required=True),
            "ttype": Field("selection", "Type", selection=[
                ("text", "Text"), ("image", "Image"), ("audio", "Audio"), ("file", "File")],
                default="text"),
            "msgid": Field("char", "Message Id"),
            "date_message": Field("datetime", "Date"),
            "from_me": Field("boolean", "Message From Me"),
        }, rec_name="text")
        orm.model("acrux.chat.conversation").methods["new_message"] = self._new_message

    def _new_message(self, orm: Orm, model: Model, uid: int, args: List[Any],
                     kwargs: Dict[str, Any]) -> int:
        """ChatRoom's ``new_message(data)``: reads the keys as the contract lists them,
        ``quote_msg_id`` unconditionally; finds or creates the conversation; never
        de-duplicates."""
        context = kwargs.get("context") or {}
        data = args[0] if args else kwargs["data"]
        connector_id = data["connector_id"]
        number = data["number"]
        name = data["name"] or number
        text = data["message"]
        ttype = data["ttype"]
        msgid = data["msgid"]
        time = data["time"]
        conv_type = data["conv_type"]
        from_me = data.get("from_me") or False
        quote = data["quote_msg_id"]  # the newer release: KeyError when absent
        del quote
        if not context.get("from_webhook") and not str(number).isdigit():
            raise FakeError("odoo.exceptions.ValidationError",
                            f"Invalid number {number!r} for this connector")
        found = orm.search_ids(uid, model, [("number", "=", number), ("conv_type", "=", conv_type),
                                            ("connector_id", "=", connector_id)], context)
        if found:
            conv_id = found[0]
        else:
            partners = [p for p in orm.model("res.partner").records.values() if p.get("active")
                        and number in (_digits(p.get("mobile")), _digits(p.get("phone")))]
            conv_id = orm.create_record(uid, model, {
                "name": name, "number": number, "conv_type": conv_type,
                "connector_id": connector_id,
                "res_partner_id": partners[0]["id"] if partners else False})
        message_id = orm.create_record(uid, orm.model("acrux.chat.message"), {
            "text": text, "contact_id": conv_id, "ttype": ttype, "msgid": msgid,
            "date_message": time, "from_me": from_me})
        conv = model.records[conv_id]
        channel = (f"res.partner/{conv['agent_id']}" if conv.get("status") == "current"
                   and conv.get("agent_id") else f"acrux.chat.connector/{connector_id}")
        self.bus.append((channel, {"type": "new_messages", "conversation": conv_id,
                                   "message": message_id}))
        return message_id

    def _ir(self) -> None:
        orm = self.orm
        for name in self._modules:
            orm.create_record(1, orm.model("ir.module.module"), {"name": name,
                                                                 "state": "installed"})
        orm.create_record(1, orm.model("ir.module.module"), {"name": "website",
                                                             "state": "uninstalled"})
        for name, model in sorted(orm.models.items()):
            orm.create_record(1, orm.model("ir.model"), {"model": name,
                                                         "name": model.description})
