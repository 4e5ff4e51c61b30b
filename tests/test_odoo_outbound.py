"""Sending through the Odoo store: rows before the gateway, batched writes forward only,
partners, chatter notes, template variables and ``phone.blacklist``, on the three schemas."""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

from odoo_fake import OdooServer, fake_odoo, make_store, odoo_server, odoo_store  # noqa: F401
from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import Message, SendResult, State, StatusEvent
from smskit.providers.loopback import LoopbackProvider
from smskit_odoo import attach
from smskit_odoo.adapter import OdooUrl, RpcAdapter
from smskit_odoo.bench import measure_bulk_rpc
from smskit_odoo.journal import Journal
from smskit_odoo.partners import PartnerDirectory
from smskit_odoo.store import OdooStore
from smskit_odoo.testing import FakeOdoo
from smskit_odoo.testing.orm import Field

PHONE = "+5511987654321"


class WatchingProvider(LoopbackProvider):
    """A loopback gateway that looks at Odoo each time it is called."""

    def __init__(self, fake: FakeOdoo, model: str = "sms.message") -> None:
        super().__init__(max_batch=1000)
        self.fake = fake
        self.model = model
        self.seen: List[Dict[str, str]] = []

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        rows = self.fake.records(self.model)
        self.seen.append({str(r.get("provider_reference") or r.get("x_smskit_id") or r["id"]):
                          r["state"] for r in rows})
        return super().send_batch(messages, batch_id=batch_id)


@pytest.fixture
def kit(odoo_store: OdooStore, fake_odoo: FakeOdoo) -> SmsKit:  # noqa: F811
    k = SmsKit(Settings.load(environ={}), store=odoo_store,
               provider=WatchingProvider(fake_odoo))
    return k


def notes(fake: FakeOdoo, partner: int) -> List[str]:
    """smskit's chatter notes on a partner (sms_base_sr's own notes start with "SMS out")."""
    return [m["body"] for m in fake.records("mail.message")
            if m["model"] == "res.partner" and m["res_id"] == partner
            and not str(m["body"]).startswith("SMS outgoing")]


# -- the order of things --------------------------------------------------------------------


def test_rows_are_outgoing_in_odoo_before_the_gateway_is_called(
        kit: SmsKit, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    summary = kit.send_many([PHONE, "+5511987654322"], "Olá")
    assert summary.sent == 2
    provider = kit.provider()
    assert isinstance(provider, WatchingProvider)
    [seen] = provider.seen
    sent_ids = [r.message_id for r in provider.sent]
    assert {seen[mid] for mid in sent_ids} == {"outgoing"}
    rows = {r["provider_reference"]: r for r in fake_odoo.records("sms.message")}
    for record in provider.sent:
        row = rows[record.message_id]
        assert (row["state"], row["provider_message_id"], row["direction"]) == (
            "sent", record.provider_message_id, "outgoing")
        assert row["sent_date"]
    # the module's own send action was never called
    assert not fake_odoo.calls("sms.message", "action_send")


def test_a_bulk_of_1000_costs_at_most_10_round_trips() -> None:
    result = measure_bulk_rpc(1000, partners=100)
    assert result.sent == 1000
    assert result.round_trips <= 10, result.by_call
    assert result.by_call["sms.message.create"] == 1
    assert result.by_call["sms.message.load"] == 1
    assert result.by_call["mail.message.create"] == 1  # 100 notes in one call


def test_results_are_written_forward_only_and_never_move_odoo_back(
        odoo_store: OdooStore, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    store = odoo_store
    [early, late] = [o.message for o in store.add_messages(
        [Message.new(PHONE, "a", state=State.OUTGOING, provider="loopback"),
         Message.new("+5511987654322", "b", state=State.OUTGOING, provider="loopback")])]
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    batch = store.claim_batch("loopback", 10, now, "B1")
    assert batch is not None
    # a delivery report outran the send result
    store.apply_status(StatusEvent(provider="loopback", state=State.DELIVERED,
                                   message_id=early.id))
    # someone canceled the other row by hand in Odoo
    row = next(r for r in fake_odoo.records("sms.message") if r["provider_reference"] == late.id)
    fake_odoo.execute_kw(2, "sms.message", "write", [[row["id"]], {"state": "canceled"}], {})
    store.record_results("B1", [
        SendResult(message_id=early.id, state=State.SENT, provider_message_id="K-1"),
        SendResult(message_id=late.id, state=State.SENT, provider_message_id="K-2")], now)
    rows = {r["provider_reference"]: r for r in fake_odoo.records("sms.message")}
    assert (rows[early.id]["state"], rows[early.id]["provider_message_id"]) == ("delivered",
                                                                                "K-1")
    assert rows[late.id]["state"] == "canceled"  # not moved back to "sent"
    assert rows[late.id]["provider_message_id"] == "K-2"  # but the id is filled in
    assert store.get(late.id).state is State.SENT  # type: ignore[union-attr]


def test_a_provider_id_already_on_another_odoo_row_is_not_written_twice(
        odoo_store: OdooStore, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    import datetime as dt

    other = fake_odoo.add("sms.message", {"phone": PHONE, "body": "sent by another module",
                                          "state": "sent", "provider_message_id": "K-9"})
    [m] = [o.message for o in odoo_store.add_messages(
        [Message.new(PHONE, "x", state=State.OUTGOING, provider="loopback")])]
    now = dt.datetime.now(dt.timezone.utc)
    odoo_store.claim_batch("loopback", 10, now, "B1")
    odoo_store.record_results("B1", [SendResult(message_id=m.id, state=State.SENT,
                                                provider_message_id="K-9")], now)
    rows = fake_odoo.records("sms.message")
    assert [r["id"] for r in rows if r.get("provider_message_id") == "K-9"] == [other]
    mine = next(r for r in rows if r.get("provider_reference") == m.id)
    assert mine["state"] == "sent" and not mine.get("provider_message_id")


# -- partners and notes -----------------------------------------------------------------------


def test_notes_on_sent_and_on_final_status_escaped_once_each(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    store = make_store(odoo_server, tmp_path, odoo_notes="all")
    kit = SmsKit(Settings.load(environ={}), store=store, provider=LoopbackProvider())
    partner = fake_odoo.add("res.partner", {"name": "Ana", "phone": "(11) 98765-4321"})
    outcome = kit.send(PHONE, "Olá <b>Ana</b> & cia")
    assert outcome.state is State.SENT
    row = next(r for r in fake_odoo.records("sms.message")
               if r["provider_reference"] == outcome.message_id)
    assert row["partner_id"] == partner  # found through the free-form "(11) 98765-4321"
    provider = kit.provider()
    assert isinstance(provider, LoopbackProvider)
    event = provider.status_event(outcome.message_id or "", State.DELIVERED)
    kit.apply_status(event)
    kit.apply_status(event)  # the gateway repeats itself
    bodies = notes(fake_odoo, partner)
    assert bodies == [
        f"SMS sent to {PHONE} via loopback:<br/>{html.escape('Olá <b>Ana</b> & cia')}",
        f"SMS to {PHONE} delivered."]
    posted = [m for m in fake_odoo.records("mail.message") if m["body"] in bodies]
    note_subtype = fake_odoo.records("ir.model.data")[0]["res_id"]
    assert {(m["message_type"], m["subtype_id"]) for m in posted} == {("comment", note_subtype)}
    assert fake_odoo.calls("res.partner", "message_post")  # a single note: message_post
    kit.close()


@pytest.mark.parametrize(("variant", "sent_note"), [("sms_base_sr", False),
                                                     ("sms_core_unified", True)])
def test_one_message_one_note(odoo_server: OdooServer, tmp_path: Path,  # noqa: F811
                              variant: str, sent_note: bool) -> None:
    fake = odoo_server.use(FakeOdoo(variant))
    store = make_store(odoo_server, tmp_path)  # odoo_notes: auto
    kit = SmsKit(Settings.load(environ={}), store=store, provider=LoopbackProvider())
    partner = fake.add("res.partner", {"name": "Ana", "mobile": PHONE})
    outcome = kit.send(PHONE, "Uma nota só")
    kit.apply_status(kit.provider().status_event(outcome.message_id or "", State.DELIVERED))
    about_the_text = [m["body"] for m in fake.records("mail.message")
                      if m["res_id"] == partner and "Uma nota só" in str(m["body"])]
    # sms_base_sr posts a note for each new sms.message itself: smskit adds none for the send
    assert len(about_the_text) == 1, about_the_text
    assert about_the_text[0].startswith("SMS sent to") is sent_note
    assert store.sent_notes is sent_note
    assert f"SMS to {PHONE} delivered." in [m["body"] for m in fake.records("mail.message")]
    kit.close()


def test_partner_found_by_normalised_phone_never_duplicated(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    fake_odoo.add("res.partner", {"name": "Bia", "mobile": "+55 (21) 99876-5432"})
    fake_odoo.add("res.partner", {"name": "Other", "mobile": "21 3876-5432"})  # a landline
    journal = Journal(f"sqlite:///{tmp_path / 'side.db'}")
    adapters = [RpcAdapter(OdooUrl.parse(odoo_server.url())) for _ in range(4)]
    directories = [PartnerDirectory(a, journal) for a in adapters]
    assert directories[0].find(["+5521998765432"]) == {"+5521998765432": 4}
    barrier = threading.Barrier(4)
    results: List[Dict[str, int]] = [{}] * 4

    def work(i: int) -> None:
        barrier.wait()
        results[i] = directories[i].find_or_create(["+5511912345678", "+5521998765432"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    created = [p for p in fake_odoo.records("res.partner") if p["name"] == "+5511912345678"]
    assert len(created) == 1
    assert {r["+5511912345678"] for r in results} == {created[0]["id"]}
    assert {r["+5521998765432"] for r in results} == {4}
    journal.close()


def test_partner_saved_before_the_ninth_digit_is_found_not_duplicated(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    # Saved before Brazilian mobiles got their ninth digit: "(11) 8765-4321" is +5511987654321.
    old = fake_odoo.add("res.partner", {"name": "Dona Cida", "mobile": "(11) 8765-4321"})
    fake_odoo.add("res.partner", {"name": "Landline", "phone": "(11) 3765-4321"})
    journal = Journal(f"sqlite:///{tmp_path / 'side.db'}")
    directory = PartnerDirectory(RpcAdapter(OdooUrl.parse(odoo_server.url())), journal)
    assert directory.find([PHONE]) == {PHONE: old}
    # The landline has the same last 8 digits as +5511937654321 but is another number.
    found = directory.find_or_create([PHONE, "+5511937654321"])
    created = [p for p in fake_odoo.records("res.partner") if p["name"].startswith("+55")]
    assert [p["name"] for p in created] == ["+5511937654321"]
    assert found == {PHONE: old, "+5511937654321": created[0]["id"]}
    journal.close()


def test_template_variables_from_the_partner_and_the_record(
        kit: SmsKit, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    partner = fake_odoo.add("res.partner", {"name": "Carla", "mobile": PHONE,
                                            "email": "carla@example.com"})
    fake_odoo.orm.add_model("account.move", "Invoice", {
        "name": Field("char", "Number"),
        "partner_id": Field("many2one", "Customer", relation="res.partner")})
    invoice = fake_odoo.add("account.move", {"name": "INV/2024/0042", "partner_id": partner})
    assert attach(kit) is not None
    assert attach(kit) is attach(kit)  # registered once
    plain = kit.send(PHONE, "Sem variáveis do Odoo")
    assert not fake_odoo.calls("res.partner", "read")  # no variable used: nothing read
    outcome = kit.send(PHONE, "Olá {{ partner.name }}, fatura {{ object.name }} de "
                       "{{ object.partner_id.name }} ({{ partner.function | default('-') }})",
                       variables={"odoo_record": f"account.move,{invoice}"})
    assert plain.state is State.SENT and outcome.state is State.SENT
    message = kit.get(outcome.message_id or "")
    assert message is not None
    assert message.body == "Olá Carla, fatura INV/2024/0042 de Carla (-)"
    # the caller's own variables win over Odoo's
    mine = kit.send(PHONE, "Olá {{ partner.name }}", variables={"partner": {"name": "Dona"}})
    assert kit.get(mine.message_id or "").body == "Olá Dona"  # type: ignore[union-attr]


def test_phone_blacklist_is_honoured_up_to_the_last_moment(
        kit: SmsKit, fake_odoo: FakeOdoo, odoo_store: OdooStore) -> None:  # noqa: F811
    fake_odoo.add("phone.blacklist", {"number": PHONE})
    refused = kit.send(PHONE, "Oferta")
    assert refused.state is State.CANCELED
    assert "blacklist" in (refused.reason or "")
    # queued while allowed, blacklisted in Odoo before the send
    queued = kit.send("+5511987654322", "Oferta", dispatch=False)
    assert queued.state is State.OUTGOING
    # through Odoo's own create, which stores the number sanitised (E.164)
    fake_odoo.execute_kw(2, "phone.blacklist", "create", [{"number": "+55 11 98765-4322"}], {})
    kit.dispatch()
    final = kit.get(queued.message_id or "")
    assert final is not None and final.state is State.CANCELED
    provider = kit.provider()
    assert isinstance(provider, LoopbackProvider) and provider.sent == []
    row = next(r for r in fake_odoo.records("sms.message")
               if r["provider_reference"] == queued.message_id)
    assert row["state"] == "canceled"


def test_smskit_opt_outs_go_into_phone_blacklist(
        odoo_store: OdooStore, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    assert odoo_store.blacklist_add(PHONE, "SAIR", "inbound:loopback") is True
    assert [(r["number"], r["active"]) for r in fake_odoo.records("phone.blacklist")] == [
        (PHONE, True)]
    assert odoo_store.blacklist_remove(PHONE) is True
    assert [(r["number"], r["active"]) for r in fake_odoo.records("phone.blacklist")] == [
        (PHONE, False)]
    assert not odoo_store.is_blacklisted(PHONE)


# -- the other schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("fake_odoo", [{"variant": "stock"}], indirect=True)
def test_stock_sms_never_gets_an_outgoing_row(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    store = make_store(odoo_server, tmp_path)
    provider = WatchingProvider(fake_odoo, model="sms.sms")
    kit = SmsKit(Settings.load(environ={}), store=store, provider=provider)
    try:
        assert "degraded" in store.describe().lower()
        assert "no delivered state: shown as sent" in store.describe()
        outcome = kit.send(PHONE, "Olá")
        assert provider.seen == [{}]  # nothing in sms.sms while the gateway was called
        [row] = fake_odoo.records("sms.sms")
        assert (row["number"], row["state"], row["body"]) == (PHONE, "sent", "Olá")
        kit.apply_status(provider.status_event(outcome.message_id or "", State.DELIVERED))
        assert fake_odoo.records("sms.sms")[0]["state"] == "sent"  # degraded: no delivered
        assert kit.get(outcome.message_id or "").state is State.DELIVERED  # type: ignore
        provider.refuse("+5511987654322", "blacklist")
        kit.send("+5511987654322", "Olá")
        refused = [r for r in fake_odoo.records("sms.sms") if r["number"] == "+5511987654322"]
        assert [(r["state"], r["error_code"]) for r in refused] == [("error", "sms_server")]
        assert all(r["state"] != "outgoing" for r in fake_odoo.records("sms.sms"))
    finally:
        kit.close()


@pytest.mark.parametrize("fake_odoo", [{"variant": "sms_core_unified", "smskit_fields": True}],
                         indirect=True)
def test_unified_schema_maps_renamed_fields(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    store = make_store(odoo_server, tmp_path)
    provider = LoopbackProvider()
    kit = SmsKit(Settings.load(environ={}), store=store, provider=provider)
    try:
        assert "field x_smskit_id" in store.describe()
        outcome = kit.send(PHONE, "Olá")
        kit.apply_status(provider.status_event(outcome.message_id or "", State.DELIVERED))
        [row] = fake_odoo.records("sms.message")
        message = kit.get(outcome.message_id or "")
        assert message is not None
        assert (row["x_smskit_id"], row["x_smskit_batch_id"], row["external_id"],
                row["state"]) == (message.id, message.batch_id, message.provider_message_id,
                                  "delivered")
        assert row["delivery_date"] and "direction" not in row
    finally:
        kit.close()


def test_datetimes_are_written_in_utc_whatever_the_user_time_zone(
        odoo_store: OdooStore, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    import datetime as dt

    assert fake_odoo.orm.user_tz == "America/Sao_Paulo"
    [m] = [o.message for o in odoo_store.add_messages(
        [Message.new(PHONE, "x", state=State.OUTGOING, provider="loopback")])]
    at = dt.datetime(2024, 5, 10, 23, 30, tzinfo=dt.timezone.utc)
    odoo_store.claim_batch("loopback", 10, at, "B1")
    odoo_store.record_results("B1", [SendResult(message_id=m.id, state=State.SENT,
                                                provider_message_id="K-1")], at)
    [row] = fake_odoo.records("sms.message")
    assert row["sent_date"] == "2024-05-10 23:30:00"


def test_in_process_env_takes_the_same_path(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    store = make_store(odoo_server, tmp_path, via="env")
    kit = SmsKit(Settings.load(environ={}), store=store, provider=LoopbackProvider())
    try:
        before = len(fake_odoo.requests)
        outcome = kit.send(PHONE, "Olá")
        assert outcome.state is State.SENT
        assert len(fake_odoo.requests) == before  # nothing went over HTTP
        [row] = fake_odoo.records("sms.message")
        assert row["state"] == "sent"
        env = store.session.adapter.env  # type: ignore[attr-defined]
        assert env.cr.commits >= 2  # the outgoing row was committed before the send
    finally:
        kit.close()


def test_low_balance_leaves_a_note_for_the_operator_in_odoo(
        kit: SmsKit, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    from decimal import Decimal

    kit.hooks.balance_low(provider="kolmeya", balance=Decimal("12.50"),
                          threshold=Decimal("50"))
    (admin,) = [u for u in fake_odoo.records("res.users") if u["login"] == "admin"]
    admin_partner = admin["partner_id"]
    bodies = notes(fake_odoo, admin_partner)
    assert bodies == ["Saldo baixo no provedor de SMS kolmeya: 12.50 (limite configurado: 50)."]


def test_an_odoo_domain_campaign_finds_the_kits_odoo_by_itself(
        kit: SmsKit, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    from smskit.outreach.campaigns import Campaigns
    from smskit.worker import Worker

    for i, street in enumerate(["Recife", "Olinda", "Recife"]):
        fake_odoo.add("res.partner", {"name": f"Parceiro {i}", "mobile": f"8199876543{i}",
                                      "comment": street})
    campaigns = Campaigns(kit)  # no adapter given: the Odoo plugin supplies the kit's own
    created = campaigns.create("recife", "Oi {{ name }}", {
        "type": "odoo", "model": "res.partner", "domain": [["comment", "=", "Recife"]],
        "phone_field": "mobile", "fields": ["name"]})
    campaigns.start(created.id)
    worker = Worker(kit, poll_replies=False, campaigns=campaigns)
    for _ in range(5):
        worker.run_once()
        if campaigns.get(created.id).status == "done":
            break
    provider = kit.provider()
    assert isinstance(provider, LoopbackProvider)
    assert sorted(r.body for r in provider.sent) == ["Oi Parceiro 0", "Oi Parceiro 2"]
    assert campaigns.get(created.id).status == "done"


def test_kit_blacklist_changes_are_audited_and_mirrored_into_phone_blacklist(
        kit: SmsKit, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    assert kit.blacklist_add(PHONE, reason="pediu", source="cli:ana") is True
    assert [(r["number"], r["active"]) for r in fake_odoo.records("phone.blacklist")] == [
        (PHONE, True)]
    store = kit.store
    audit = store.blacklist_audit(PHONE)  # type: ignore[attr-defined]
    assert [(a.action, a.source) for a in audit] == [("add", "cli:ana")]
    assert kit.blacklist_remove(PHONE) is True
    assert [(r["number"], r["active"]) for r in fake_odoo.records("phone.blacklist")] == [
        (PHONE, False)]
