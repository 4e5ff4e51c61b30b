"""``acrux.chat.conversation`` and its entry point ``new_message(data)``, as strict as the
newest ChatRoom release: ``data['quote_msg_id']`` is read unconditionally (``KeyError`` when
absent), nothing is de-duplicated, a conversation is unique on (number, conv_type,
connector_id), a unique violation while creating one is retried, and the transaction is
committed when a conversation was created."""

import json
import logging

import psycopg2
from psycopg2 import errorcodes

from odoo import api, fields, models

_logger = logging.getLogger(__name__)

#: How often new_message looks for the conversation again after a unique violation.
CREATE_ATTEMPTS = 3


class AcruxChatConversation(models.Model):
    _name = "acrux.chat.conversation"
    _description = "ChatRoom Conversation"
    _order = "last_activity desc, id desc"

    name = fields.Char(required=True)
    number = fields.Char(required=True, index=True)
    conv_type = fields.Selection([("normal", "Normal"), ("private", "Private"),
                                  ("group", "Group")], string="Type", required=True,
                                 default="normal")
    connector_id = fields.Many2one("acrux.chat.connector", string="Connector", required=True,
                                   ondelete="cascade")
    res_partner_id = fields.Many2one("res.partner", string="Client", ondelete="set null")
    status = fields.Selection([("new", "New"), ("current", "Current"), ("done", "Done")],
                              required=True, default="new")
    agent_id = fields.Many2one("res.users", string="Agent", ondelete="set null")
    last_activity = fields.Datetime(default=fields.Datetime.now)
    chat_message_ids = fields.One2many("acrux.chat.message", "contact_id", string="Messages")

    _sql_constraints = [
        ("uniq_number_conv_connector", "unique (number, conv_type, connector_id)",
         "Number in connector has to be unique."),
    ]

    @api.model
    def new_message(self, data):
        """A message arriving from the connector's gateway: find or create the conversation,
        link a partner by number, create the message, notify the bus. Returns the new
        ``acrux.chat.message`` id."""
        connector = self.env["acrux.chat.connector"].browse(int(data["connector_id"]))
        number = data["number"]
        name = data["name"] or number
        text = data["message"]
        ttype = data["ttype"]
        msgid = data["msgid"]
        time = data["time"]
        conv_type = data["conv_type"]
        from_me = data.get("from_me") or False
        metadata = data.get("metadata")
        quote_msg_id = data["quote_msg_id"]  # the newest release: KeyError when absent
        if not self.env.context.get("from_webhook"):
            connector.assert_id(number)
        number = connector.clean_id(number)
        conversation = self._find_or_create(connector, number, name, conv_type)
        quoted = self.env["acrux.chat.message"]
        if quote_msg_id:
            quoted = quoted.search([("msgid", "=", quote_msg_id),
                                    ("contact_id", "=", conversation.id)], limit=1)
        message = self.env["acrux.chat.message"].create({
            "text": text, "contact_id": conversation.id, "ttype": ttype, "msgid": msgid,
            "date_message": time, "from_me": from_me, "quote_msg_id": quoted.id,
            "metadata_json": json.dumps(metadata) if metadata else False,
        })
        conversation.last_activity = fields.Datetime.now()
        self._notify_new_message(conversation, message)
        return message.id

    def send_message(self, msg_data):
        """What the ChatRoom web client calls when an agent sends a message: the message is
        created (from the agent) in this conversation and sent through the connector in the
        same transaction (an error undoes both). Returns the new message's id."""
        self.ensure_one()
        message = self.env["acrux.chat.message"].create(
            dict(msg_data, contact_id=self.id, from_me=True))
        message.message_send()
        self.last_activity = fields.Datetime.now()
        return message.id

    def _find_or_create(self, connector, number, name, conv_type):
        domain = [("number", "=", number), ("conv_type", "=", conv_type),
                  ("connector_id", "=", connector.id)]
        for attempt in range(1, CREATE_ATTEMPTS + 1):  # returns or raises
            conversation = self.search(domain, limit=1)
            if conversation:
                return conversation
            try:
                with self.env.cr.savepoint():
                    conversation = self.create({
                        "name": name, "number": number, "conv_type": conv_type,
                        "connector_id": connector.id,
                        "res_partner_id": self._partner_by_number(number).id,
                    })
            except psycopg2.IntegrityError as exc:
                if exc.pgcode != errorcodes.UNIQUE_VIOLATION or attempt == CREATE_ATTEMPTS:
                    raise
                _logger.info("new_message: conversation %s created meanwhile, looking again",
                             number)
                continue
            # ChatRoom commits once it created a conversation, so the agents see it at once
            self.env.cr.commit()
            return conversation
        return self  # not reached: the last attempt returns or raises

    def _partner_by_number(self, number):
        """The first partner whose phone or mobile has these digits (with or without the
        country code)."""
        tail = number[-8:]
        pattern = "%" + "%".join(tail)
        candidates = self.env["res.partner"].search(
            ["|", ("mobile", "=like", pattern + "%"), ("phone", "=like", pattern + "%")],
            order="id")
        for partner in candidates:
            for value in (partner.mobile, partner.phone):
                digits = "".join(c for c in (value or "") if c.isdigit())
                if digits and (digits == number or number.endswith(digits)
                               or digits.endswith(number)):
                    return partner
        return self.env["res.partner"]

    def _notify_new_message(self, conversation, message):
        """``new_messages`` on the bus: to the agent when the conversation is current, else to
        the connector's channel."""
        if conversation.status == "current" and conversation.agent_id:
            channel = conversation.agent_id.partner_id
        else:
            channel = conversation.connector_id
        self.env["bus.bus"]._sendone(channel, "new_messages", {
            "conversation_id": conversation.id, "message_id": message.id,
            "msgid": message.msgid, "text": message.text})
