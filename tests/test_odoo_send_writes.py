"""How smskit writes a send's result and later statuses to the Odoo rows (against the fake Odoo;
the real Odoo 15 behaviour is in tests/odoo15/test_real_odoo_entry_points.py).

* The write that moves a row from ``outgoing`` to ``sent`` carries Odoo's ``mail_notrack``
  context (no tracking message the users' own send path never logs); a later change
  (``delivered``) does not; ``odoo_track_sent`` gives the first one its tracking back.
* Inside Odoo (``EnvAdapter``) the rows are written with ``write_many``: one look-up of all
  the records and one commit, not ``load``'s look-up per row; a refused write falls back to
  ``load``, which says which rows Odoo refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from odoo_fake import OdooServer, fake_odoo, make_store, odoo_server  # noqa: F401
from smskit.config import Settings
from smskit.errors import ConfigurationError
from smskit.kit import SmsKit
from smskit.models import State
from smskit.providers.loopback import LoopbackProvider
from smskit_odoo.adapter import EnvAdapter
from smskit_odoo.errors import OdooValidationError
from smskit_odoo.store import OdooStore
from smskit_odoo.testing import FakeOdoo
from smskit_odoo.testing.env import FakeEnv, fake_call_kw

PHONES = ["+5511987654321", "+5511987654322", "+5511987654323"]


def _kit(store: OdooStore) -> SmsKit:
    return SmsKit(Settings.load(environ={}), store=store, provider=LoopbackProvider())


def _record_writes(store: OdooStore, monkeypatch: pytest.MonkeyPatch
                   ) -> List[Tuple[str, Dict[str, Any]]]:
    """(method, context) of every write of sms.message rows from now on (``load`` over RPC,
    ``write_many`` inside Odoo)."""
    seen: List[Tuple[str, Dict[str, Any]]] = []
    adapter = store.session.adapter
    execute = adapter.execute

    def recording_execute(model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if model == "sms.message" and method in ("load", "write"):
            seen.append((method, dict(kwargs.get("context") or {})))
        return execute(model, method, *args, **kwargs)

    monkeypatch.setattr(adapter, "execute", recording_execute)
    write_many = getattr(adapter, "write_many", None)
    if write_many is not None:
        def recording_write_many(model: str, rows: Any, *, context: Any = None) -> None:
            seen.append(("write_many", dict(context or {})))
            # the rows' own writes through execute are not counted twice
            monkeypatch.setattr(adapter, "execute", execute)
            try:
                write_many(model, rows, context=context)
            finally:
                monkeypatch.setattr(adapter, "execute", recording_execute)

        monkeypatch.setattr(adapter, "write_many", recording_write_many)
    return seen


@pytest.mark.parametrize("via", ["rpc", "env"])
def test_the_send_result_is_untracked_and_the_delivery_tracked(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    store = make_store(odoo_server, tmp_path, via=via)
    kit = _kit(store)
    try:
        writes = _record_writes(store, monkeypatch)
        outcome = kit.send(PHONES[0], "Olá")
        assert [r["state"] for r in fake_odoo.records("sms.message")] == ["sent"]
        method = "write_many" if via == "env" else "load"
        assert [(m, c.get("mail_notrack")) for m, c in writes] == [(method, True)]
        kit.apply_status(kit.provider().status_event(outcome.message_id or "",
                                                     State.DELIVERED))
        assert [r["state"] for r in fake_odoo.records("sms.message")] == ["delivered"]
        assert [(m, c.get("mail_notrack")) for m, c in writes[1:]] == [(method, None)]
    finally:
        kit.close()


@pytest.mark.parametrize("via", ["rpc", "env"])
def test_odoo_track_sent_tracks_the_send_result(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    store = make_store(odoo_server, tmp_path, via=via, odoo_track_sent="true")
    kit = _kit(store)
    try:
        writes = _record_writes(store, monkeypatch)
        kit.send(PHONES[0], "Olá")
        assert writes and all("mail_notrack" not in c for _, c in writes), writes
    finally:
        kit.close()


def test_odoo_track_sent_must_be_a_boolean(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(ConfigurationError, match="odoo_track_sent"):
        make_store(odoo_server, tmp_path, odoo_track_sent="sometimes")


def _counting_env(fake: FakeOdoo) -> Tuple[EnvAdapter, FakeEnv, List[Tuple[str, str]]]:
    """An in-process adapter on ``fake`` recording its ORM calls (its cursor counts commits)."""
    calls: List[Tuple[str, str]] = []

    def call_kw(records: Any, method: str, args: List[Any], kwargs: Dict[str, Any]) -> Any:
        calls.append((records.model, method))
        return fake_call_kw(records, method, args, kwargs)

    env = FakeEnv(fake, 1)
    return EnvAdapter(env, autocommit=True, call_kw=call_kw), env, calls


def test_write_many_looks_the_records_up_once(fake_odoo: FakeOdoo) -> None:  # noqa: F811
    ids = [fake_odoo.add("sms.message", {"phone": p, "body": "Oi", "state": "outgoing"})
           for p in PHONES]
    adapter, env, calls = _counting_env(fake_odoo)
    adapter.write_many("sms.message", [(oid, {"state": "sent", "provider_message_id": f"k{n}"})
                                       for n, oid in enumerate(ids)],
                       context={"mail_notrack": True})
    assert calls == [("sms.message", "search")] + [("sms.message", "write")] * 3
    assert env.cr.commits == 1
    rows = fake_odoo.records("sms.message")
    assert [(r["state"], r["provider_message_id"]) for r in rows] == [
        ("sent", "k0"), ("sent", "k1"), ("sent", "k2")]


def test_write_many_writes_nothing_when_a_record_is_gone(fake_odoo: FakeOdoo) -> None:  # noqa: F811
    kept = fake_odoo.add("sms.message", {"phone": PHONES[0], "body": "Oi", "state": "outgoing"})
    adapter, _, calls = _counting_env(fake_odoo)
    with pytest.raises(OdooValidationError, match="no longer exist"):
        adapter.write_many("sms.message", [(kept, {"state": "sent"}), (kept + 99,
                                                                      {"state": "sent"})])
    assert ("sms.message", "write") not in calls
    assert [r["state"] for r in fake_odoo.records("sms.message")] == ["outgoing"]


def test_a_refused_write_many_falls_back_to_load(
        odoo_server: OdooServer, fake_odoo: FakeOdoo, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(odoo_server, tmp_path, via="env")
    kit = _kit(store)
    try:
        writes = _record_writes(store, monkeypatch)
        adapter = store.session.adapter

        def refusing(model: str, rows: Any, *, context: Any = None) -> None:
            writes.append(("write_many", dict(context or {})))
            raise OdooValidationError("Odoo refused sms.message.write: a constraint")

        monkeypatch.setattr(adapter, "write_many", refusing)
        summary = kit.send_many(PHONES, "Olá")
        assert summary.sent == 3
        assert [m for m, _ in writes] == ["write_many", "load"]
        assert all(c.get("mail_notrack") for _, c in writes)
        assert {r["state"] for r in fake_odoo.records("sms.message")} == {"sent"}
        assert store.journal.failed() == []
    finally:
        kit.close()
