"""SMS replies into acrux ChatRoom conversations: the contract's keys, once per reply, linked
to the partner, opt-outs first, and none lost while Odoo is down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import smskit_acrux
import smskit_odoo
from odoo_fake import OdooServer, fake_odoo, make_store, odoo_server  # noqa: F401
from smskit.config import Settings
from smskit.errors import ConfigurationError
from smskit.kit import SmsKit
from smskit.plugins import Plugins
from smskit.providers.loopback import LoopbackProvider
from smskit.store.memory import MemoryStore
from smskit_acrux.router import ChatRoomRouter
from smskit_odoo.store import OdooStore
from smskit_odoo.testing import FakeError, FakeOdoo

PHONE = "+5511987654321"
CONTRACT_KEYS = {"connector_id", "number", "name", "message", "ttype", "msgid", "time",
                 "conv_type", "from_me", "quote_msg_id"}


@pytest.fixture
def connector(fake_odoo: FakeOdoo) -> int:  # noqa: F811
    fake_odoo.add("acrux.chat.connector", {"name": "WhatsApp", "connector_type": "apichat.io"})
    return fake_odoo.add("acrux.chat.connector", {"name": "SMS Kolmeya",
                                                  "connector_type": "sms"})


@pytest.fixture
def store(odoo_server: OdooServer, fake_odoo: FakeOdoo,  # noqa: F811
          tmp_path: Path) -> Iterator[OdooStore]:
    made = make_store(odoo_server, tmp_path)
    yield made
    made.close()


@pytest.fixture
def kit(store: OdooStore, connector: int) -> SmsKit:
    k = SmsKit(Settings.load(environ={}), store=store, provider=LoopbackProvider())
    assert smskit_acrux.attach(k) is not None
    return k


def reply(kit: SmsKit, reply_id: str, text: str, phone: str = PHONE) -> Any:
    body = json.dumps({"id": reply_id, "phone": phone, "text": text}).encode()
    return kit.handle_webhook("loopback", "reply", {}, body)


def chat_messages(fake: FakeOdoo) -> List[Dict[str, Any]]:
    return fake.records("acrux.chat.message")


def test_a_reply_lands_in_the_sms_conversation_with_the_contract_keys(
        kit: SmsKit, fake_odoo: FakeOdoo, connector: int) -> None:  # noqa: F811
    report = reply(kit, "R-1", "Quero saber mais")
    [inbound] = report.inbound
    [message] = chat_messages(fake_odoo)
    [conversation] = fake_odoo.records("acrux.chat.conversation")
    assert (message["text"], message["msgid"], message["ttype"], message["from_me"]) == (
        "Quero saber mais", "loopback:R-1", "text", False)
    assert message["contact_id"] == conversation["id"]
    assert (conversation["number"], conversation["conv_type"], conversation["connector_id"]) == (
        "5511987654321", "normal", connector)
    assert message["date_message"] == inbound.message.created_at.strftime("%Y-%m-%d %H:%M:%S")
    [call] = fake_odoo.calls("acrux.chat.conversation", "new_message")
    assert call["path"] == "/jsonrpc"
    history = kit.history(inbound.message.id)
    assert [(e.kind, e.detail) for e in history] == [
        ("routed", f"acrux.chat.conversation,{conversation['id']}")]
    # linked to a partner, created for the number
    partner = [p for p in fake_odoo.records("res.partner") if p.get("mobile") == PHONE]
    assert [p["id"] for p in partner] == [conversation["res_partner_id"]]
    assert fake_odoo.bus == [(f"acrux.chat.connector/{connector}", {
        "type": "new_messages", "conversation": conversation["id"], "message": message["id"]})]


def test_new_message_gets_exactly_the_keys_and_context_of_the_contract(
        store: OdooStore, connector: int, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    seen: List[Any] = []
    original = fake_odoo.orm.model("acrux.chat.conversation").methods["new_message"]

    def spy(orm: Any, model: Any, uid: int, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        seen.append((dict(args[0]), dict(kwargs.get("context") or {})))
        return original(orm, model, uid, args, kwargs)

    fake_odoo.orm.model("acrux.chat.conversation").methods["new_message"] = spy
    kit = SmsKit(Settings.load(environ={}), store=store, provider=LoopbackProvider())
    smskit_acrux.attach(kit)
    reply(kit, "R-7", "oi")
    [(data, context)] = seen
    assert set(data) == CONTRACT_KEYS
    assert (data["connector_id"], data["number"], data["ttype"], data["conv_type"],
            data["from_me"], data["quote_msg_id"]) == (connector, "5511987654321", "text",
                                                       "normal", False, False)
    assert context.get("from_webhook") is True


def test_chatroom_reads_quote_msg_id_unconditionally(fake_odoo: FakeOdoo,  # noqa: F811
                                                     connector: int) -> None:
    data = {"connector_id": connector, "number": "5511987654321", "name": "x",
            "message": "m", "ttype": "text", "msgid": "x:1", "time": "2024-05-10 12:00:00",
            "conv_type": "normal", "from_me": False}
    with pytest.raises(FakeError, match="quote_msg_id") as caught:
        fake_odoo.execute_kw(2, "acrux.chat.conversation", "new_message", [data],
                             {"context": {"from_webhook": True}})
    assert caught.value.name == "builtins.KeyError"
    data["quote_msg_id"] = False
    fake_odoo.execute_kw(2, "acrux.chat.conversation", "new_message", [data], {"context": {}})
    fake_odoo.execute_kw(2, "acrux.chat.conversation", "new_message", [data], {"context": {}})
    assert len(chat_messages(fake_odoo)) == 2  # ChatRoom itself does not de-duplicate


def test_a_repeated_reply_is_routed_once(kit: SmsKit, fake_odoo: FakeOdoo,  # noqa: F811
                                         store: OdooStore, odoo_server: OdooServer,  # noqa: F811
                                         tmp_path: Path) -> None:
    first = reply(kit, "R-1", "oi")
    again = reply(kit, "R-1", "oi")
    assert [i.created for i in first.inbound + again.inbound] == [True, False]
    assert len(chat_messages(fake_odoo)) == 1
    # another smskit (another sidecar) receiving the same webhook finds it by msgid
    (tmp_path / "other").mkdir()
    other_store = make_store(odoo_server, tmp_path / "other")
    other = SmsKit(Settings.load(environ={}), store=other_store, provider=LoopbackProvider())
    smskit_acrux.attach(other)
    try:
        [inbound] = reply(other, "R-1", "oi").inbound
        assert inbound.created
        assert len(chat_messages(fake_odoo)) == 1
        conversation = fake_odoo.records("acrux.chat.conversation")[0]["id"]
        assert other.history(inbound.message.id)[-1].detail == (
            f"acrux.chat.conversation,{conversation}")
    finally:
        other.close()
    # a second reply goes to the same conversation
    reply(kit, "R-2", "e o preço?")
    assert len(fake_odoo.records("acrux.chat.conversation")) == 1
    assert [m["msgid"] for m in chat_messages(fake_odoo)] == ["loopback:R-1", "loopback:R-2"]


def test_opt_out_is_handled_by_the_core_before_routing(
        kit: SmsKit, fake_odoo: FakeOdoo, store: OdooStore) -> None:  # noqa: F811
    [inbound] = reply(kit, "R-9", "SAIR").inbound
    assert store.is_blacklisted(PHONE)
    assert [(r["number"], r["active"]) for r in fake_odoo.records("phone.blacklist")] == [
        (PHONE, True)]
    assert [e.kind for e in kit.history(inbound.message.id)] == ["optout", "routed"]
    assert [m["text"] for m in chat_messages(fake_odoo)] == ["SAIR"]


def test_a_reply_while_odoo_is_down_is_routed_once_it_is_back(
        kit: SmsKit, fake_odoo: FakeOdoo, store: OdooStore) -> None:  # noqa: F811
    fake_odoo.down = True
    [inbound] = reply(kit, "R-5", "alô?").inbound
    assert inbound.created
    [routed] = kit.history(inbound.message.id)
    assert "queued" in routed.detail
    assert chat_messages(fake_odoo) == []
    fake_odoo.down = False
    report = store.flush()
    assert (report.error, report.pending) == (None, 0)
    [message] = chat_messages(fake_odoo)
    assert (message["msgid"], message["text"]) == ("loopback:R-5", "alô?")
    assert store.flush().written == 0


def test_the_conversation_is_linked_to_the_existing_partner(
        kit: SmsKit, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    partner = fake_odoo.add("res.partner", {"name": "Dona Maria", "phone": "(11) 98765-4321"})
    reply(kit, "R-3", "bom dia")
    [conversation] = fake_odoo.records("acrux.chat.conversation")
    assert conversation["res_partner_id"] == partner
    assert conversation["name"] == "Dona Maria"
    assert len([p for p in fake_odoo.records("res.partner") if p.get("mobile") == PHONE]) == 0


def test_connector_must_be_found_unambiguously(
        store: OdooStore, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    router = ChatRoomRouter(store.session)
    with pytest.raises(ConfigurationError, match="expected one ChatRoom connector"):
        router.connector()
    two = [fake_odoo.add("acrux.chat.connector", {"name": f"SMS {i}", "connector_type": "sms"})
           for i in range(2)]
    with pytest.raises(ConfigurationError, match="found 2"):
        ChatRoomRouter(store.session).connector()
    assert ChatRoomRouter(store.session, connector_name="SMS 1").connector() == two[1]
    with pytest.raises(ConfigurationError, match="acrux_connector_id 999"):
        ChatRoomRouter(store.session, connector_id=999).connector()


@pytest.mark.parametrize("fake_odoo", [{"sms_connector": False}], indirect=True)
def test_without_an_sms_connector_type_the_setting_is_named(
        store: OdooStore, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    with pytest.raises(ConfigurationError, match="acrux_connector_id"):
        ChatRoomRouter(store.session).connector()
    connector = fake_odoo.add("acrux.chat.connector", {"name": "SMS"})
    assert ChatRoomRouter(store.session, connector_id=connector).connector() == connector


def test_without_odoo_nothing_is_registered_and_the_plugins_still_load(tmp_path: Path) -> None:
    kit = SmsKit(Settings.load(environ={}), store=MemoryStore(), provider=LoopbackProvider())
    assert smskit_odoo.attach(kit) is None
    assert smskit_acrux.attach(kit) is None
    assert kit.hooks is not None  # first use announces the kit (kit_ready): harmless here
    assert kit.plugins.pm.get_plugin("smskit_odoo.kit") is None
    plugins = Plugins(Settings.load(environ={}))
    status = {p.name: p.status for p in plugins.report()}
    assert status["odoo"] == status["acrux"] == "loaded"
    assert "odoo" in plugins.stores()
    # a send and a reply without Odoo go through untouched
    assert kit.send(PHONE, "Olá").message_id
    assert reply(kit, "R-1", "oi").inbound[0].created


def test_kit_ready_attaches_both_when_odoo_is_the_store(
        store: OdooStore, connector: int, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    kit = SmsKit(Settings.load(environ={}), store=store, provider=LoopbackProvider())
    # Nothing attached by hand: the reply's hooks are the kit's first, so the core announces
    # the kit and both plugins attach themselves before it is routed.
    reply(kit, "R-1", "oi")
    assert kit.plugins.pm.get_plugin("smskit_odoo.kit") is not None
    assert kit.plugins.pm.get_plugin("smskit_acrux.kit") is not None
    assert len(chat_messages(fake_odoo)) == 1
