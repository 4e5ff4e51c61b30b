"""Odoo's own SMS sent through smskit (``smskit_odoo.origins``), on the fake Odoo: the
``sms.sms`` row Odoo made, its chatter notification and its mailing trace follow the message
(queued, sent, delivered, failed with the reason, canceled), no second row or note is made
for it, and a retried record is never sent twice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from odoo_fake import OdooServer, make_store, odoo_server  # noqa: F401
from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import Message, State, StatusEvent
from smskit.providers.loopback import LoopbackProvider
from smskit_odoo.origins import failure_type, origin_key, origin_of
from smskit_odoo.store import OdooStore
from smskit_odoo.testing import FakeOdoo
from smskit_odoo.testing.orm import Field

UUID = "8a3c-db"
#: 10:00 in São Paulo on a Thursday (quiet hours 21:00-08:00 let it through).
DAY = dt.datetime(2026, 11, 26, 13, 0, tzinfo=dt.timezone.utc)
NIGHT = dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.timezone.utc)  # 22:00 in São Paulo
FAILURES = [("sms_number_format", "Wrong Number Format"), ("sms_credit", "Insufficient Credit"),
            ("sms_server", "Server Error"), ("sms_blacklist", "Blacklisted"),
            ("sms_not_delivered", "Not Delivered"), ("sms_expired", "Expired"),
            ("sms_rejected", "Rejected"), ("unknown", "Unknown")]


def _odoo_with_stock_sms(variant: str) -> FakeOdoo:
    """A fake with Odoo's ``sms.sms`` as the addon extends it, ``mail.notification`` and
    ``mailing.trace`` (mass_mailing_sms)."""
    fake = FakeOdoo(variant, acrux=False)
    orm = fake.orm
    sms_fields: Dict[str, Field] = {
        "number": Field("char", "Number"), "body": Field("text", "Body"),
        "partner_id": Field("many2one", "Customer", relation="res.partner"),
        "state": Field("selection", "State", default="outgoing", selection=[
            ("outgoing", "In Queue"), ("process", "Processing"), ("sent", "Sent"),
            ("error", "Error"), ("canceled", "Canceled")]),
        "failure_type": Field("selection", "Failure", selection=list(FAILURES)),
        "smskit_state": Field("selection", "smskit", selection=[
            (s.value, s.value) for s in State]),
        "smskit_reason": Field("char", "Reason"),
    }
    if variant == "stock":
        orm.models["sms.sms"].fields.update(sms_fields)
        orm.models["sms.sms"].fields.pop("error_code")
    else:
        orm.add_model("sms.sms", "Outgoing SMS", sms_fields, rec_name="number")
    orm.add_model("mail.notification", "Notification", {
        "sms_id": Field("many2one", "SMS", relation="sms.sms"),
        "notification_type": Field("selection", "Type", selection=[("sms", "SMS")]),
        "notification_status": Field("selection", "Status", selection=[
            ("ready", "Ready"), ("process", "Processing"), ("pending", "Sent"),
            ("sent", "Delivered"), ("bounce", "Bounced"), ("exception", "Exception"),
            ("canceled", "Canceled")]),
        "failure_type": Field("selection", "Failure", selection=list(FAILURES)),
        "failure_reason": Field("text", "Reason"),
    })
    orm.add_model("mailing.trace", "Trace", {
        "sms_sms_id_int": Field("integer", "SMS id"),
        "trace_type": Field("selection", "Type", selection=[("sms", "SMS")]),
        "trace_status": Field("selection", "Status", selection=[
            ("outgoing", "Outgoing"), ("process", "Processing"), ("pending", "Sent"),
            ("sent", "Delivered"), ("open", "Opened"), ("reply", "Replied"),
            ("bounce", "Bounced"), ("error", "Exception"), ("cancel", "Canceled")]),
        "failure_type": Field("selection", "Failure", selection=list(FAILURES)),
        "sent_datetime": Field("datetime", "Sent On"),
    })
    for name in ("sms.sms", "mail.notification", "mailing.trace"):
        if not any(r["model"] == name for r in fake.records("ir.model")):
            fake.add("ir.model", {"model": name, "name": name})
    return fake


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(params=["stock", "sms_base_sr"])
def odoo(odoo_server: OdooServer, request: pytest.FixtureRequest,  # noqa: F811
         tmp_path: Path) -> Iterator[Tuple[FakeOdoo, OdooStore]]:
    fake = odoo_server.use(_odoo_with_stock_sms(request.param))
    store = make_store(odoo_server, tmp_path, via="env")
    yield fake, store
    store.close()


def _kit(store: OdooStore, clock: Clock, **settings: Any) -> SmsKit:
    return SmsKit(Settings.load(environ={}, provider="loopback", **settings), store=store,
                  provider=LoopbackProvider(max_batch=500), clock=clock)


def _odoo_sms(fake: FakeOdoo, phones: List[str], *, mailing: bool = True) -> List[int]:
    """What Odoo's composer makes: the sms.sms rows, their notifications and traces."""
    ids = []
    for phone in phones:
        partner = fake.add("res.partner", {"name": phone, "mobile": phone})
        sms = fake.add("sms.sms", {"number": phone, "body": "Oferta", "partner_id": partner})
        fake.add("mail.notification", {"sms_id": sms, "notification_type": "sms",
                                       "notification_status": "ready"})
        if mailing:
            fake.add("mailing.trace", {"sms_sms_id_int": sms, "trace_type": "sms",
                                       "trace_status": "outgoing"})
        ids.append(sms)
    return ids


def _send(kit: SmsKit, fake: FakeOdoo, ids: List[int]) -> None:
    rows = {r["id"]: r for r in fake.records("sms.sms")}
    recipients = [{"phone": rows[i]["number"], "content": rows[i]["body"],
                   "key": origin_key(UUID, "sms.sms", i),
                   "partner": f"res.partner,{rows[i]['partner_id']}"} for i in ids]
    kit.send_many(recipients, "{{ content }}", track_links=False, recipient_fields={
        "idempotency_key": "key", "partner_ref": "partner"})


def _state(fake: FakeOdoo, sms: int) -> Tuple[Any, ...]:
    [row] = [r for r in fake.records("sms.sms") if r["id"] == sms]
    [note] = [r for r in fake.records("mail.notification") if r["sms_id"] == sms]
    traces = [r for r in fake.records("mailing.trace") if r["sms_sms_id_int"] == sms]
    trace = traces[0] if traces else {}
    return (row["state"], row.get("smskit_state"), note["notification_status"],
            note.get("failure_type") or False, trace.get("trace_status"),
            trace.get("failure_type") or False)


def test_the_records_odoo_made_follow_the_message(odoo: Tuple[FakeOdoo, OdooStore]) -> None:
    fake, store = odoo
    kit = _kit(store, Clock(DAY))
    ok, lost, gone = _odoo_sms(fake, ["+5511987650001", "+5511987650002", "+5511987650003"])
    before = len(fake.records("sms.sms"))
    _send(kit, fake, [ok, lost, gone])
    for sms in (ok, lost, gone):
        assert _state(fake, sms) == ("sent", "sent", "pending", False, "pending", False)
    assert all(t["sent_datetime"] for t in fake.records("mailing.trace"))
    messages = {origin_of(m): m for m in _all(kit)}
    for sms, state, text in ((ok, State.DELIVERED, None), (lost, State.ERROR, "não entregue"),
                             (gone, State.EXPIRED, "expirada")):
        message = messages[("sms.sms", sms)]
        kit.apply_status(StatusEvent(provider="loopback", state=state, message_id=message.id,
                                     status_text=text))
    assert _state(fake, ok) == ("sent", "delivered", "sent", False, "sent", False)
    assert _state(fake, lost) == ("error", "error", "bounce", "sms_not_delivered", "bounce",
                                  "sms_not_delivered")
    assert _state(fake, gone) == ("error", "expired", "bounce", "sms_expired", "bounce",
                                  "sms_expired")
    [note] = [r for r in fake.records("mail.notification") if r["sms_id"] == lost]
    assert note["failure_reason"] == "não entregue"
    [row] = [r for r in fake.records("sms.sms") if r["id"] == lost]
    assert row["smskit_reason"] == "não entregue"
    # Odoo's row is the message's row: the mirror made no second sms.sms
    assert len(fake.records("sms.sms")) == before
    # and a retried batch of the same records sends nothing
    provider = kit.provider()
    assert isinstance(provider, LoopbackProvider)
    sent = len(provider.sent)
    _send(kit, fake, [ok, lost, gone])
    assert len(provider.sent) == sent == 3


def _all(kit: SmsKit) -> List[Message]:
    return kit.store.list_messages(limit=100)


def test_blacklisted_and_invalid(odoo: Tuple[FakeOdoo, OdooStore]) -> None:
    fake, store = odoo
    kit = _kit(store, Clock(DAY))
    blocked, bad = _odoo_sms(fake, ["+5511987650004", "+5511987650005"])
    fake.add("phone.blacklist", {"number": "+5511987650004", "active": True})
    for row in fake.records("sms.sms"):
        if row["id"] == bad:
            fake.orm.models["sms.sms"].records[bad]["number"] = "12ab"
    _send(kit, fake, [blocked, bad])
    assert _state(fake, blocked) == ("canceled", "canceled", "exception", "sms_blacklist",
                                     "cancel", "sms_blacklist")
    assert _state(fake, bad) == ("error", "rejected", "exception", "sms_number_format",
                                 "error", "sms_number_format")


def test_a_message_deferred_by_quiet_hours_is_processing_until_sent(
        odoo: Tuple[FakeOdoo, OdooStore]) -> None:
    fake, store = odoo
    clock = Clock(NIGHT)
    kit = _kit(store, clock, quiet_hours="21:00-08:00")
    [sms] = _odoo_sms(fake, ["+5511987650006"])
    _send(kit, fake, [sms])
    assert _state(fake, sms) == ("process", "outgoing", "process", False, "process", False)
    clock.now = NIGHT + dt.timedelta(hours=12)
    assert kit.dispatch().sent == 1
    assert _state(fake, sms) == ("sent", "sent", "pending", False, "pending", False)


def test_no_note_of_smskit_for_odoos_own_sms(odoo: Tuple[FakeOdoo, OdooStore]) -> None:
    fake, store = odoo
    kit = _kit(store, Clock(DAY))
    [sms] = _odoo_sms(fake, ["+5511987650007"], mailing=False)
    _send(kit, fake, [sms])
    [message] = _all(kit)
    kit.apply_status(StatusEvent(provider="loopback", state=State.DELIVERED,
                                 message_id=message.id))
    notes = [m for m in fake.records("mail.message") if m.get("model") == "res.partner"]
    assert notes == [], "Odoo's chatter shows its own SMS: no note of smskit, none of sms_base_sr"
    if fake.variant == "sms_base_sr":
        [row] = fake.records("sms.message")
        partner = next(r["partner_id"] for r in fake.records("sms.sms") if r["id"] == sms)
        assert (row["state"], row["partner_id"]) == ("delivered", partner)


@pytest.mark.parametrize(("state", "code", "text", "sent", "expected"), [
    (State.REJECTED, "invalid_phone", "bad", False, "sms_number_format"),
    (State.REJECTED, "request", "Saldo insuficiente", False, "sms_credit"),
    (State.REJECTED, "blacklist", "on the Kolmeya blacklist", False, "sms_blacklist"),
    (State.CANCELED, "policy", "number is on the blacklist", False, "sms_blacklist"),
    (State.CANCELED, "policy", "outside the contract", False, "sms_rejected"),
    (State.ERROR, "4", "não entregue", True, "sms_not_delivered"),
    (State.ERROR, "x", "gateway down", False, "sms_server"),
    (State.EXPIRED, "6", "expirada", True, "sms_expired"),
    (State.REJECTED, "5", "rejeitado", True, "sms_rejected"),
    (State.DELIVERED, None, None, True, None),
])
def test_failure_types(state: State, code: Any, text: Any, sent: bool, expected: Any) -> None:
    message = Message.new("+5511987650008", "Oi", state=state, error_code=code,
                          error_text=text, sent_at=DAY if sent else None)
    assert failure_type(message) == expected


def test_origin_keys() -> None:
    key = origin_key(UUID, "acrux.chat.message", 42)
    assert origin_of(Message.new("+5511987650008", "Oi", idempotency_key=key)) == (
        "acrux.chat.message", 42)
    assert origin_of(Message.new("+5511987650008", "Oi",
                                 idempotency_key=key + ":rejected")) == ("acrux.chat.message", 42)
    # Odoo's "Retry" of a failed sms.sms: a new message for the same row, refused or not
    retry = origin_key(UUID, "sms.sms", 7) + ":after-01M92GCFMJDVZMZ62GDZS74FFM"
    for suffix in ("", ":rejected"):
        assert origin_of(Message.new("+5511987650008", "Oi",
                                     idempotency_key=retry + suffix)) == ("sms.sms", 7)
    for other in (None, "campanha:+5511987650008", "odoo:x:sms.sms:abc"):
        assert origin_of(Message.new("+5511987650008", "Oi", idempotency_key=other)) is None
