"""Bad input and bad days: Odoo unreachable, down while webhooks arrive, access denied, a model
missing, one record refused in a batch. Each test checks what the user sees and that nothing
was lost or sent twice."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import List

import httpx
import pytest

from odoo_fake import OdooServer, fake_odoo, make_store, odoo_server  # noqa: F401
from smskit.config import Settings
from smskit.errors import ConfigurationError, StoreError
from smskit.kit import SmsKit
from smskit.models import Direction, SendResult, State
from smskit.providers.loopback import LoopbackProvider
from smskit.server.app import create_app
from smskit.testing.servers import serve_in_thread
from smskit_odoo.errors import (
    OdooAccessError,
    OdooSchemaError,
    OdooUnavailableError,
)
from smskit_odoo.store import OdooStore, open_store
from smskit_odoo.testing import FakeOdoo

PHONES = [f"+55119876500{i:02d}" for i in range(5)]
SECRET = "webhook-secret-odoo"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_kit(store: OdooStore, **values: str) -> SmsKit:
    return SmsKit(Settings.load(environ={}, webhook_secret=SECRET, **values), store=store,
                  provider=LoopbackProvider())


def loopback(kit: SmsKit) -> LoopbackProvider:
    provider = kit.provider()
    assert isinstance(provider, LoopbackProvider)
    return provider


# -- Odoo unreachable -------------------------------------------------------------------------


def test_unreachable_odoo_fails_the_send_before_the_gateway(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings.load(environ={}, odoo_sidecar_url=f"sqlite:///{tmp_path / 's.db'}")
    store = open_store(f"odoo://admin:pa55word@127.0.0.1:{port}/smskit", settings)
    kit = make_kit(store)
    try:
        with pytest.raises(OdooUnavailableError) as caught:
            kit.send(PHONES[0], "Olá")
        text = str(caught.value)
        assert f"127.0.0.1:{port}" in text and "unreachable" in text
        assert "pa55word" not in text and "pa55word" not in repr(store)
        assert loopback(kit).calls == []
        assert store.list_messages() == []
    finally:
        kit.close()


def test_odoo_going_down_stops_sends_not_webhooks(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    store = make_store(odoo_server, tmp_path)
    kit = make_kit(store)
    try:
        first = kit.send(PHONES[0], "Olá")
        fake_odoo.down = True
        with pytest.raises(OdooUnavailableError, match="503"):
            kit.send(PHONES[1], "Olá")
        assert [r.message_id for r in loopback(kit).sent] == [first.message_id]
        assert [m.id for m in store.list_messages()] == [first.message_id]
    finally:
        kit.close()


def test_webhooks_while_odoo_is_down_are_kept_and_written_once_it_is_back(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    partner = fake_odoo.add("res.partner", {"name": "Ana", "mobile": PHONES[0]})
    store = make_store(odoo_server, tmp_path)
    # No ChatRoom here: its routing ops wait for a kit with a router, not for this flush.
    kit = make_kit(store, disable_plugins="acrux")
    outcomes = [kit.send(p, "Olá") for p in PHONES[:3]]
    assert {o.state for o in outcomes} == {State.SENT}
    fake_odoo.down = True
    with serve_in_thread(create_app(kit)) as base:
        answers = [httpx.post(f"{base}/webhooks/loopback/status?token={SECRET}",
                              json={"message_id": o.message_id, "state": "delivered"})
                   for o in outcomes]
        answers.append(httpx.post(f"{base}/webhooks/loopback/reply?token={SECRET}",
                                  json={"id": "R-1", "phone": PHONES[4], "text": "Quero"}))
    assert [a.status_code for a in answers] == [200] * 4
    assert {m.state for m in store.list_messages() if m.direction is Direction.OUTBOUND} == {
        State.DELIVERED}
    assert {r["state"] for r in fake_odoo.records("sms.message")} == {"sent"}
    pending = store.journal.count()
    assert pending >= 5  # three rows, one note, one reply
    kit.close()  # the process restarts while Odoo is still down

    fake_odoo.down = False
    again = make_store(odoo_server, tmp_path)
    try:
        report = again.flush()
        assert (report.pending, report.failed, report.error) == (0, 0, None)
        rows = fake_odoo.records("sms.message")
        assert sorted(r["state"] for r in rows) == ["delivered"] * 4
        [reply] = [r for r in rows if r["direction"] == "incoming"]
        assert (reply["phone"], reply["body"]) == (PHONES[4], "Quero")
        delivered_notes = [m for m in fake_odoo.records("mail.message")
                           if m["res_id"] == partner and "delivered" in m["body"]]
        assert len(delivered_notes) == 1
        assert again.flush().written == 0  # nothing written twice
    finally:
        again.close()


# -- access, schema ---------------------------------------------------------------------------


def test_access_denied_is_a_clear_error_and_nothing_is_sent(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    uid = fake_odoo.add_user("sms_bot", "bot-pw")
    fake_odoo.deny(uid, "sms.message", "create")
    store = make_store(odoo_server, tmp_path, user="sms_bot", password="bot-pw")
    kit = make_kit(store)
    try:
        with pytest.raises(OdooAccessError, match=r"sms\.message.*not allowed to create"):
            kit.send(PHONES[0], "Olá")
        assert loopback(kit).calls == [] and store.list_messages() == []
    finally:
        kit.close()


def test_a_wrong_password_names_the_user_not_the_password(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    store = make_store(odoo_server, tmp_path, password="wrong-pw")
    try:
        with pytest.raises(OdooAccessError) as caught:
            store.describe()
        assert "'admin'" in str(caught.value) and "wrong-pw" not in str(caught.value)
    finally:
        store.close()


@pytest.mark.parametrize("fake_odoo", [{"variant": "none"}], indirect=True)
def test_no_sms_model_names_what_to_install(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    store = make_store(odoo_server, tmp_path)
    kit = make_kit(store)
    try:
        with pytest.raises(OdooSchemaError) as caught:
            kit.send(PHONES[0], "Olá")
        assert isinstance(caught.value, ConfigurationError)
        for name in ("sms.message", "sms.sms", "sms_base_sr"):
            assert name in str(caught.value)
        assert loopback(kit).calls == []
    finally:
        kit.close()


def test_a_model_without_a_state_field_is_refused_by_name(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    del fake_odoo.orm.model("sms.message").fields["state"]
    store = make_store(odoo_server, tmp_path)
    try:
        with pytest.raises(OdooSchemaError, match=r"sms\.message lacks .*state"):
            store.describe()
    finally:
        store.close()


# -- one record refused -----------------------------------------------------------------------


def test_a_record_odoo_refuses_is_reported_and_the_others_are_sent(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    fake_odoo.bad_phones = {PHONES[2]}
    store = make_store(odoo_server, tmp_path)
    kit = make_kit(store)
    try:
        summary = kit.send_many(PHONES, "Olá")
        assert summary.sent == 4
        sent = [r.phone for r in loopback(kit).sent]
        assert sorted(sent) == sorted(p for p in PHONES if p != PHONES[2])
        [refused] = store.list_messages(phone=PHONES[2])
        assert refused.state is State.REJECTED
        assert "Invalid phone number for SMS" in (refused.error_text or "")
        [event] = store.history(refused.id)
        assert event.kind == "odoo_error" and PHONES[2] in event.detail
        assert sorted(r["phone"] for r in fake_odoo.records("sms.message")) == sorted(sent)
    finally:
        kit.close()


def test_an_update_odoo_refuses_is_reported_and_the_others_written(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    store = make_store(odoo_server, tmp_path)
    kit = make_kit(store)
    try:
        ids: List[str] = [o.message.id for o in store.add_messages(
            [kit.composer("loopback").compose(p, "Olá", now=kit.clock()) for p in PHONES[:3]])]

        def no_sent_for_the_second(record: dict) -> object:
            if record.get("phone") == PHONES[1] and record.get("state") == "sent":
                return "This number may not be marked sent"
            return None

        fake_odoo.orm.model("sms.message").constraints.append(no_sent_for_the_second)
        now = dt.datetime.now(dt.timezone.utc)
        assert store.claim_batch("loopback", 10, now, "B1") is not None
        store.record_results("B1", [SendResult(message_id=i, state=State.SENT,
                                               provider_message_id=f"K-{n}")
                                    for n, i in enumerate(ids)], now)
        rows = {r["provider_reference"]: r for r in fake_odoo.records("sms.message")}
        assert [rows[i]["state"] for i in ids] == ["sent", "outgoing", "sent"]
        assert {m.state for m in store.get_many(ids)} == {State.SENT}  # smskit's truth
        [failed] = store.journal.failed()
        assert failed.message_id == ids[1] and "may not be marked sent" in (
            failed.last_error or "")
        assert [e.kind for e in store.history(ids[1])] == ["odoo_error"]
        # once the cause is fixed, the refused write can be retried
        fake_odoo.orm.model("sms.message").constraints.remove(no_sent_for_the_second)
        assert store.journal.retry() == 1
        store.flush()
        assert fake_odoo.records("sms.message")[1]["state"] == "sent"
    finally:
        kit.close()


def test_the_sidecar_cannot_be_an_odoo_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SQL store URL"):
        open_store("odoo://a:b@127.0.0.1:1/db",
                   Settings.load(environ={}, odoo_sidecar_url="odoo://x:y@h/db"))


def test_store_errors_are_store_errors() -> None:
    assert issubclass(OdooUnavailableError, StoreError)
    assert issubclass(OdooAccessError, StoreError)


def test_the_odoo_scheme_builds_a_store_without_calling_odoo(tmp_path: Path) -> None:
    from smskit.plugins import Plugins

    port = free_port()
    settings = Settings.load(environ={}, database_url=f"odoo://bot:pw@127.0.0.1:{port}/db",
                             odoo_sidecar_url=f"sqlite:///{tmp_path / 's.db'}")
    store = Plugins(settings).create_store()
    try:
        assert isinstance(store, OdooStore)
        store.ping()  # healthy: webhooks only need the sidecar
        assert "pw@" not in repr(store)
    finally:
        store.close()


def test_deferred_flush_writes_a_moment_later_in_one_batch(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    import time

    store = make_store(odoo_server, tmp_path, odoo_flush="deferred")
    kit = make_kit(store)
    try:
        outcomes = [kit.send(p, "Olá") for p in PHONES[:3]]
        store.flush()
        before = len(fake_odoo.calls("sms.message", "load"))
        for o in outcomes:
            kit.apply_status(loopback(kit).status_event(o.message_id or "", State.DELIVERED))
        deadline = time.monotonic() + 5
        while store.journal.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {r["state"] for r in fake_odoo.records("sms.message")} == {"delivered"}
        assert len(fake_odoo.calls("sms.message", "load")) - before <= 2
    finally:
        kit.close()
