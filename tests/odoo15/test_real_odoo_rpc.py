"""smskit's Odoo store and ChatRoom router over RPC against a real Odoo 15: the databases the
harness serves (both schema variants: the users' ``sms.message`` and stock ``sms.sms``), or,
when SMSKIT_ODOO_URL (``http://localhost:8069``), SMSKIT_ODOO_DB, SMSKIT_ODOO_USER and
SMSKIT_ODOO_PASSWORD are set, that Odoo instead (a staging copy of production, say).

They install nothing: they use whatever SMS schema the database has (and skip what it lacks),
create their own partners and ChatRoom connector with unique names, send only through the
loopback provider (no SMS leaves), and remove every record they created.
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, List, Tuple
from urllib.parse import quote, urlsplit

import pytest
from odoo15_harness import ADMIN_LOGIN, ADMIN_PASSWORD

from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import Direction, Message, State
from smskit.providers.loopback import LoopbackProvider
from smskit_acrux.router import ChatRoomRouter
from smskit_odoo.adapter import OdooUrl, RpcAdapter
from smskit_odoo.errors import OdooSchemaError
from smskit_odoo.journal import Journal
from smskit_odoo.partners import PartnerDirectory
from smskit_odoo.schema import detect_schema
from smskit_odoo.store import OdooStore, open_session, open_store

pytestmark = pytest.mark.real_odoo

_VARIABLES = ("SMSKIT_ODOO_URL", "SMSKIT_ODOO_DB", "SMSKIT_ODOO_USER", "SMSKIT_ODOO_PASSWORD")
_EXTERNAL = all(os.environ.get(name) for name in _VARIABLES)


def _external_url() -> str:
    parts = urlsplit(os.environ["SMSKIT_ODOO_URL"])
    scheme = "odoo+ssl" if parts.scheme == "https" else "odoo"
    port = parts.port or (443 if parts.scheme == "https" else 8069)
    user = quote(os.environ["SMSKIT_ODOO_USER"], safe="")
    password = quote(os.environ["SMSKIT_ODOO_PASSWORD"], safe="")
    return f"{scheme}://{user}:{password}@{parts.hostname}:{port}/{os.environ['SMSKIT_ODOO_DB']}"


@pytest.fixture(scope="module", params=["external"] if _EXTERNAL else ["sr", "stock"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """``odoo://`` URL of the Odoo under test."""
    if request.param == "external":
        yield _external_url()
        return
    servers = request.getfixturevalue("odoo_servers")
    server = servers.start(request.param)
    try:
        yield f"odoo://{ADMIN_LOGIN}:{ADMIN_PASSWORD}@127.0.0.1:{server.port}/{server.db}"
    finally:
        servers.stop(server)


def unique_phone() -> str:
    return f"+55119{random.randint(10_000_000, 99_999_999)}"


@pytest.fixture
def adapter(url: str) -> RpcAdapter:
    return RpcAdapter(OdooUrl.parse(url))


@pytest.fixture
def cleanup(adapter: RpcAdapter) -> Iterator[Callable[[str, List[int]], None]]:
    """``cleanup(model, ids)``: removed at the end, last registered first."""
    created: List[Tuple[str, List[int]]] = []
    yield lambda model, ids: created.append((model, list(ids)))
    for model, ids in reversed(created):
        if ids:
            existing = adapter.execute(model, "search", [("id", "in", ids)],
                                       context={"active_test": False})
            if existing:
                adapter.execute(model, "unlink", existing)


def test_the_schema_is_detected(adapter: RpcAdapter) -> None:
    try:
        schema = detect_schema(adapter)
    except OdooSchemaError as exc:
        pytest.skip(f"this database has no SMS model smskit can use: {exc}")
    assert schema.model in ("sms.message", "sms.sms")
    assert schema.describe().startswith("Odoo schema ")


def test_partners_by_phone_never_twice(adapter: RpcAdapter, url: str, tmp_path: Path,
                                       cleanup: Callable[[str, List[int]], None]) -> None:
    phone = unique_phone()
    journal = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    try:
        directory = PartnerDirectory(adapter, journal)
        assert directory.find([phone]) == {}
        first = directory.find_or_create([phone])
        cleanup("res.partner", list(first.values()))
        assert directory.find_or_create([phone]) == first
        other = PartnerDirectory(RpcAdapter(OdooUrl.parse(url)), journal)
        assert other.find_or_create([phone]) == first
        formatted = f"({phone[3:5]}) {phone[5:10]}-{phone[10:]}"
        [extra] = adapter.execute("res.partner", "create",
                                  [{"name": "smskit test", "phone": formatted}])
        cleanup("res.partner", [extra])
        assert directory.find([phone])[phone] == min(first[phone], extra)
    finally:
        journal.close()


def test_a_send_is_mirrored_with_notes(adapter: RpcAdapter, url: str, tmp_path: Path,
                                       cleanup: Callable[[str, List[int]], None]) -> None:
    settings = Settings.load(environ={}, odoo_sidecar_url=f"sqlite:///{tmp_path / 'side.db'}")
    store = open_store(url, settings)
    try:
        schema = store.session.schema
    except OdooSchemaError as exc:
        store.close()
        pytest.skip(f"this database has no SMS model smskit can use: {exc}")
    phone = unique_phone()
    [partner] = adapter.execute("res.partner", "create", [{"name": "smskit test",
                                                           "mobile": phone}])
    cleanup("res.partner", [partner])
    provider = LoopbackProvider()
    kit = SmsKit(settings, store=store, provider=provider)
    try:
        outcome = kit.send(phone, "smskit real Odoo test <ok>")
        assert outcome.state is State.SENT
        rows = _rows_of(adapter, store, [outcome.message_id or ""])
        cleanup(schema.model, [r["id"] for r in rows])
        assert [r[schema.fields["state"]] for r in rows] == [schema.states[State.SENT]]
        kit.apply_status(provider.status_event(outcome.message_id or "", State.DELIVERED))
        rows = _rows_of(adapter, store, [outcome.message_id or ""])
        assert [r[schema.fields["state"]] for r in rows] == [schema.states[State.DELIVERED]]
        notes = adapter.execute("mail.message", "search_read",
                                [("model", "=", "res.partner"), ("res_id", "=", partner)],
                                fields=["body"])
        bodies = [n["body"] for n in notes]
        assert any("&lt;ok&gt;" in b for b in bodies) and any("delivered" in b for b in bodies)
        assert store.journal.count() == 0 and store.journal.failed() == []
    finally:
        kit.close()


def _rows_of(adapter: RpcAdapter, store: OdooStore, ids: List[str]) -> List[Any]:
    links = store.journal.links(ids)
    odoo_ids = [link.odoo_id for link in links.values() if link.odoo_id]
    schema = store.session.schema
    return list(adapter.execute(schema.model, "read", odoo_ids, [schema.fields["state"]]))


def test_a_reply_reaches_the_chatroom_once(adapter: RpcAdapter, url: str, tmp_path: Path,
                                           cleanup: Callable[[str, List[int]], None]) -> None:
    if not adapter.execute("ir.model", "search", [("model", "=", "acrux.chat.conversation")]):
        pytest.skip("the acrux ChatRoom (whatsapp_connector) is not installed")
    settings = Settings.load(environ={}, odoo_sidecar_url=f"sqlite:///{tmp_path / 'side.db'}")
    session = open_session(url, settings)
    try:
        kinds = adapter.execute("acrux.chat.connector", "fields_get", ["connector_type"],
                                attributes=["selection"])
        offered = [s[0] for s in kinds["connector_type"]["selection"]]
        [connector] = adapter.execute("acrux.chat.connector", "create", [{
            "name": f"smskit test {uuid.uuid4().hex[:8]}",
            "connector_type": "sms" if "sms" in offered else "not_set"}])
        cleanup("acrux.chat.connector", [connector])
        router = ChatRoomRouter(session, connector_id=connector)
        phone = unique_phone()
        message = Message(phone=phone, body="smskit real Odoo reply", state=State.DELIVERED,
                          direction=Direction.INBOUND, provider="loopback")
        destination = router.route(message)
        assert destination.startswith("acrux.chat.conversation,")
        conversation = int(destination.split(",")[1])
        cleanup("acrux.chat.conversation", [conversation])
        router.route(message)  # again: found by msgid, not written twice
        found = adapter.execute("acrux.chat.message", "search_read",
                                [("msgid", "=", router.msgid(message))],
                                fields=["contact_id", "text"])
        cleanup("acrux.chat.message", [f["id"] for f in found])
        assert [(f["contact_id"][0], f["text"]) for f in found] == [
            (conversation, "smskit real Odoo reply")]
        [conv] = adapter.execute("acrux.chat.conversation", "read", [conversation],
                                 ["res_partner_id", "number"])
        assert conv["number"] == phone.lstrip("+")
        if conv["res_partner_id"]:
            cleanup("res.partner", [conv["res_partner_id"][0]])
    finally:
        session.close()
