"""Kolmeya callback parsing: both status shapes, request rejections, replies, bad input."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from smskit.errors import ValidationError
from smskit.models import Message, State, apply_status
from smskit_kolmeya.webhooks import parse_webhook

UTC = dt.timezone.utc


def body(data: Any) -> bytes:
    return json.dumps(data).encode("utf-8")


def test_wrapped_status_per_docs() -> None:
    payload = parse_webhook(body({
        "id": "req-uuid", "reference": "B1",
        "messages": [
            {"id": "u1", "reference": "M1", "status_code": 3, "status": "entregue"},
            {"id": "u2", "reference": "M2", "status_code": "4", "status": "não entregue"},
            {"id": "u3", "reference": None, "status_code": 6},
        ]}))
    assert payload.inbound == ()
    first, second, third = payload.statuses
    assert (first.provider, first.state, first.message_id, first.provider_message_id,
            first.provider_request_id, first.status_code, first.status_text) == (
        "kolmeya", State.DELIVERED, "M1", "u1", "req-uuid", 3, "entregue")
    assert (second.state, second.status_code) == (State.ERROR, 4)
    assert (third.state, third.message_id, third.provider_message_id) == (
        State.EXPIRED, None, "u3")
    assert first.raw == {"id": "u1", "reference": "M1", "status_code": 3, "status": "entregue"}


def test_flat_status_shapes() -> None:
    flat = parse_webhook(body({"id": "u1", "reference": "M1", "status": "rejeitado",
                               "status_code": 5, "phone": "5548991234567"}))
    (event,) = flat.statuses
    assert (event.state, event.message_id, event.provider_message_id, event.provider_request_id) \
        == (State.REJECTED, "M1", "u1", None)
    english = parse_webhook(body({"id": "u1", "status": "delivered", "phone": "5548991234567",
                                  "reference": "M1", "delivered_at": "2025-11-15T13:30:00Z"}))
    (event,) = english.statuses
    assert event.state is State.DELIVERED
    assert event.occurred_at == dt.datetime(2025, 11, 15, 13, 30, tzinfo=UTC)


def test_status_event_applies_to_the_message() -> None:
    message = Message(id="M1", phone="+5548991234567", body="x", state=State.SENT)
    (event,) = parse_webhook(body({"id": "r", "messages": [
        {"id": "u1", "reference": "M1", "status_code": 5, "status": "rejeitado"}]})).statuses
    transition = apply_status(message, event)
    assert transition.applied
    assert transition.message.state is State.REJECTED
    assert transition.message.error_code == "5"
    assert transition.message.error_text == "rejeitado"


def test_unknown_status_code_is_non_final_sent() -> None:
    (event,) = parse_webhook(body({"id": "r", "messages": [
        {"id": "u1", "reference": "M1", "status_code": 42}]})).statuses
    assert event.state is State.SENT
    assert not event.state.is_final
    assert event.status_code == 42


def test_request_rejected_at_homologation() -> None:
    (event,) = parse_webhook(body({"id": "req-uuid", "reference": "B1", "status": "rejected",
                                   "status_message": "Conteúdo não permitido"})).statuses
    assert (event.state, event.message_id, event.provider_message_id,
            event.provider_request_id) == (State.REJECTED, None, None, "req-uuid")
    assert event.error_code == "request_rejected"
    assert event.error_text == "Conteúdo não permitido"
    assert event.raw is not None
    assert event.raw["reference"] == "B1"
    # Also recognised inside an empty wrapper.
    (wrapped,) = parse_webhook(body({"id": "req-uuid", "status": "rejected", "messages": [],
                                     "status_message": "x"})).statuses
    assert wrapped.provider_request_id == "req-uuid"


def test_wrapped_reply() -> None:
    payload = parse_webhook(body({"reply": {
        "id": 981, "reply": "Sim, aceito!", "received_at": "15/11/2025 10:30:05",
        "message": {"id": "u1", "reference": "M1", "phone": "48991234567", "content": "Oferta"}}}),
        kind="reply")
    assert payload.statuses == ()
    (reply,) = payload.inbound
    assert (reply.provider, reply.provider_reply_id, reply.phone, reply.body) == (
        "kolmeya", "981", "+5548991234567", "Sim, aceito!")
    assert (reply.in_reply_to_provider_id, reply.in_reply_to_message_id) == ("u1", "M1")
    assert reply.received_at == dt.datetime(2025, 11, 15, 13, 30, 5, tzinfo=UTC)


def test_reply_arrives_at_the_status_url_too() -> None:
    payload = parse_webhook(body({"reply": {"id": "7", "reply": "SAIR",
                                            "message": {"phone": 5511987654321}}}), "status")
    assert payload.inbound[0].phone == "+5511987654321"


def test_bare_reply_item_as_polled() -> None:
    (reply,) = parse_webhook(body({"id": 5, "reply": "ok", "received_at": "15/11/2025 10:30:00",
                                   "message": {"id": "u1", "phone": 48991234567}})).inbound
    assert reply.provider_reply_id == "5"


def test_flat_speculative_reply_gets_a_stable_id() -> None:
    data = {"phone": "5548991234567", "message": "Sim, aceito!", "reference": "M1",
            "data": "15/11/2025 10:30:00"}
    (first,) = parse_webhook(body(data)).inbound
    (again,) = parse_webhook(body(data)).inbound
    assert first.provider_reply_id == again.provider_reply_id
    assert first.provider_reply_id.startswith("sha256:")
    assert (first.phone, first.body, first.in_reply_to_message_id) == (
        "+5548991234567", "Sim, aceito!", "M1")
    assert first.received_at == dt.datetime(2025, 11, 15, 13, 30, tzinfo=UTC)
    other = dict(data, message="Não")
    assert parse_webhook(body(other)).inbound[0].provider_reply_id != first.provider_reply_id


def test_list_of_events_and_mixed_kinds() -> None:
    payload = parse_webhook(body([
        {"id": "r", "messages": [{"id": "u1", "reference": "M1", "status_code": 3}]},
        {"reply": {"id": 1, "reply": "ok", "message": {"phone": "48991234567"}}},
    ]))
    assert len(payload.statuses) == 1
    assert len(payload.inbound) == 1


def test_unreadable_timestamp_keeps_the_reply() -> None:
    (reply,) = parse_webhook(body({"reply": {"id": 1, "reply": "ok", "received_at": "ontem",
                                             "message": {"phone": "48991234567"}}})).inbound
    assert reply.received_at.tzinfo is not None


@pytest.mark.parametrize(("raw", "match"), [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "empty list"),
    (b"42", "expected a JSON object"),
    (b'{"foo": 1}', r"not a status or reply payload \(keys: foo\)"),
    (b'{"id": "r", "messages": "u1"}', "'messages' is not a list"),
    (b'{"id": "r", "messages": {"id": "u1"}}', "must be an object"),  # an object: its values
    (b'{"id": "r", "messages": ["u1"]}', "must be an object"),
    (b'{"id": "r", "messages": [{"status_code": 3}]}', "neither 'id' nor 'reference'"),
    (b'{"id": "r", "messages": [{"id": "u1"}]}', "neither 'status_code' nor 'status'"),
    (b'{"id": "r", "messages": [{"id": "u1", "status_code": "abc"}]}', "not a status code"),
    (b'{"id": "r", "messages": [{"id": "u1", "status_code": true}]}', "not a status code"),
    (b'{"status": "rejected", "status_message": "x"}', "no request 'id'"),
    (b'{"reply": {"reply": "ok", "message": {"phone": "48991234567"}}}', "no 'id'"),
    (b'{"reply": {"id": 1, "reply": 5, "message": {"phone": "48991234567"}}}', "not a text"),
    (b'{"reply": {"id": 1, "reply": "ok", "message": {}}}', "no phone"),
    (b'{"reply": {"id": 1, "reply": "ok", "message": 5}}', "not an object"),
    (b'{"reply": {"id": 1, "reply": "ok", "message": "x"}}', "panel reply 1: no phone"),
    (b'{"phone": "", "message": "hi"}', "no phone"),
])
def test_malformed(raw: bytes, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_webhook(raw)


def test_unknown_kind() -> None:
    with pytest.raises(ValidationError, match="kind"):
        parse_webhook(b"{}", kind="delivery")
