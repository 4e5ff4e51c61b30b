"""End to end: Kolmeya's simulator, the reference webhook server, the Odoo store on the fake
Odoo and the ChatRoom router, all over HTTP on 127.0.0.1.

A bulk send shows up in Odoo as ``outgoing`` rows before Kolmeya accepts it, then ``sent``;
Kolmeya's callbacks (each delivered twice) move the rows to their final states with one note
each; a customer's reply (delivered twice too) lands once in the SMS conversation of the
partner."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

import smskit_acrux
from odoo_fake import OdooServer, fake_odoo, make_store, odoo_server  # noqa: F401
from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import State
from smskit.server.app import create_app
from smskit.testing.servers import serve_in_thread
from smskit_kolmeya.provider import KolmeyaProvider
from smskit_kolmeya.testing.simulator import KolmeyaSimulator
from smskit_odoo.testing import FakeOdoo

SECRET = "e2e-odoo-secret"
PHONES = ["+5511910000001", "+5511910000002", "+5511910000003"]
FORCED = {PHONES[0]: 3, PHONES[1]: 4, PHONES[2]: 6}  # delivered, not delivered, expired
FINAL = {PHONES[0]: "delivered", PHONES[1]: "error", PHONES[2]: "expired"}


class LateApp:
    """An ASGI app set once the server listens (the kit's settings need the server's URL)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.app(scope, receive, send)


@pytest.fixture
def world(kolmeya_sim: Tuple[KolmeyaSimulator, str], odoo_server: OdooServer,  # noqa: F811
          fake_odoo: FakeOdoo, tmp_path: Path) -> Iterator[Tuple[SmsKit, Any]]:  # noqa: F811
    simulator, base = kolmeya_sim
    store = make_store(odoo_server, tmp_path)
    late = LateApp()
    with serve_in_thread(late) as server_url:
        settings = Settings.load(environ={}, provider="kolmeya",
                                 kolmeya_base_url=f"{base}/api/v1",
                                 kolmeya_token=simulator.config.token,
                                 public_url=server_url, webhook_secret=SECRET)
        kit = SmsKit(settings, store=store, provider=KolmeyaProvider.from_settings(settings))
        late.app = create_app(kit)
        yield kit, simulator
        kit.close()


def test_send_callbacks_and_a_reply_through_odoo(world: Tuple[SmsKit, Any],
                                                 fake_odoo: FakeOdoo) -> None:  # noqa: F811
    kit, simulator = world
    partner = fake_odoo.add("res.partner", {"name": "Ana", "mobile": "(11) 91000-0001"})
    connector = fake_odoo.add("acrux.chat.connector", {"name": "SMS", "connector_type": "sms"})
    assert smskit_acrux.attach(kit) is not None
    simulator.configure(forced_outcomes={p[3:]: code for p, code in FORCED.items()},
                        callback_duplicate_rate=1.0)

    summary = kit.send_many(PHONES, "Olá, sua fatura vence amanhã.")
    assert summary.sent == 3
    rows = {r["phone"]: r for r in fake_odoo.records("sms.message")}
    assert {r["state"] for r in rows.values()} == {"sent"}
    assert set(simulator.accepted_references().values()) == {1}

    simulator.advance()
    rows = {r["phone"]: r for r in fake_odoo.records("sms.message")}
    assert {p: rows[p]["state"] for p in PHONES} == FINAL
    assert rows[PHONES[1]]["error_message"]
    assert rows[PHONES[0]]["delivered_date"]
    notes = [m["body"] for m in fake_odoo.records("mail.message") if m["res_id"] == partner]
    # sms_base_sr's own note for the new row, smskit's for the final status: one each
    assert notes == ["SMS outgoing<br/>Olá, sua fatura vence amanhã.",
                     f"SMS to {PHONES[0]} delivered."]

    reply = simulator.add_reply(PHONES[0][3:], "Quero negociar")
    assert simulator.deliver_callbacks() == 2  # the gateway repeats itself
    [chat] = fake_odoo.records("acrux.chat.message")
    [conversation] = fake_odoo.records("acrux.chat.conversation")
    assert (chat["text"], chat["msgid"]) == ("Quero negociar", f"kolmeya:{reply['id']}")
    assert (conversation["connector_id"], conversation["res_partner_id"]) == (connector,
                                                                              partner)
    incoming = [r for r in fake_odoo.records("sms.message") if r["direction"] == "incoming"]
    assert [(r["phone"], r["partner_id"], r["parent_id"]) for r in incoming] == [
        (PHONES[0], partner, rows[PHONES[0]]["id"])]
    assert kit.store.journal.count() == 0  # type: ignore[attr-defined]
    assert all(m.state is not State.OUTGOING for m in kit.store.list_messages())
