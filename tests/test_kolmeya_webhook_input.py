"""Kolmeya callbacks in every plausible shape, through the real webhook gate.

No Kolmeya callback has been captured, so the receiving side accepts every shape Kolmeya's
Laravel backend could plausibly send (``docs/kolmeya.md``, "Webhooks"). Each test sends
through the simulator on 127.0.0.1, then posts a callback about that message to
:func:`smskit.webhooks.receive` (the whole path of a synchronous receiver: token, media type,
decoding, parsing, applying) and checks what the store holds afterwards.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, Optional, Tuple, Union
from urllib.parse import urlencode

import pytest

from smskit.kit import SmsKit
from smskit.models import Direction, Message, State
from smskit.webhooks import WebhookRequest, WebhookResponse, receive
from smskit_kolmeya.testing.sim.state import SimRequest
from smskit_kolmeya.testing.simulator import KolmeyaSimulator
from test_kolmeya_e2e import SimServer, make_kit

SECRET = "input-webhook-secret"
PHONE = "+5548991234567"


@pytest.fixture
def kit(kolmeya_sim: SimServer) -> Iterator[SmsKit]:
    k = make_kit(kolmeya_sim, webhook_secret=SECRET, public_url="http://127.0.0.1:9")
    yield k
    k.close()


@pytest.fixture
def sim(kolmeya_sim: SimServer) -> KolmeyaSimulator:
    return kolmeya_sim[0]


def sent(kit: SmsKit, sim: KolmeyaSimulator) -> Tuple[Message, SimRequest]:
    """A message sent through the simulator (``sent``, with Kolmeya's ids) and its request."""
    message = kit.get(kit.send(PHONE, "Olá").message_id)
    assert message is not None and message.state is State.SENT
    return message, sim.requests[message.provider_request_id or ""]


def post(kit: SmsKit, body: Union[bytes, Dict[str, Any]],
         content_type: Optional[str] = "application/json",
         kind: str = "status") -> WebhookResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return receive(kit, WebhookRequest(provider="kolmeya", kind=kind, headers=headers,
                                       query=[("token", SECRET)], body=raw,
                                       client_host="127.0.0.1"))


def state(kit: SmsKit, message: Message) -> State:
    current = kit.get(message.id)
    assert current is not None
    return current.state


def delivered(message: Message, request: SimRequest, **item: Any) -> Dict[str, Any]:
    """The documented status callback: the request envelope with the message delivered."""
    return {"id": request.id, "reference": request.reference,
            "messages": [{"id": message.provider_message_id, "reference": message.id,
                          "status_code": 3, "status": "entregue", **item}]}


# -- media types ------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    "application/json", None, "text/plain", "text/json", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x"])
def test_a_json_callback_is_read_whatever_its_content_type_says(
        kit: SmsKit, sim: KolmeyaSimulator, content_type: Optional[str]) -> None:
    message, request = sent(kit, sim)
    response = post(kit, delivered(message, request), content_type)
    assert (response.status, response.body["applied"]) == (200, 1), response.body
    assert state(kit, message) is State.DELIVERED


def test_a_php_form_callback_is_read_as_the_same_nested_body(kit: SmsKit,
                                                              sim: KolmeyaSimulator) -> None:
    # what PHP's http_build_query makes of the documented callback (Laravel's Http::asForm)
    message, request = sent(kit, sim)
    form = urlencode([("id", request.id), ("reference", request.reference),
                      ("messages[0][id]", message.provider_message_id),
                      ("messages[0][reference]", message.id),
                      ("messages[0][status_code]", "4"),
                      ("messages[0][status]", "não entregue")]).encode()
    response = post(kit, form, "application/x-www-form-urlencoded")
    assert (response.status, response.body["applied"]) == (200, 1), response.body
    current = kit.get(message.id)
    assert current is not None
    assert (current.state, current.error_code, current.error_text) == (
        State.ERROR, "4", "não entregue")
    # a reply posted as a form, without a Content-Type
    reply = urlencode([("reply[id]", "77"), ("reply[reply]", "Pode ligar"),
                       ("reply[received_at]", "15/11/2025 10:00:00"),
                       ("reply[message][id]", message.provider_message_id),
                       ("reply[message][phone]", "48991234567")]).encode()
    response = post(kit, reply, None, kind="reply")
    assert (response.status, response.body["new_inbound"]) == (200, 1), response.body
    (stored,) = [m for m in kit.store.list_messages(phone=PHONE, limit=10)
                 if m.direction is Direction.INBOUND]
    assert (stored.body, stored.in_reply_to) == ("Pode ligar", message.id)


@pytest.mark.parametrize(("body", "error"), [
    (b"hello", "malformed body"),  # neither JSON nor a form
    (b'{"id": "r", "messages": [', "malformed body"),  # opens like JSON: never a form
    (b"a=1&b=2", "invalid payload"),  # a form, but no callback
])
def test_a_body_that_is_no_callback_is_a_400_and_writes_nothing(
        kit: SmsKit, sim: KolmeyaSimulator, body: bytes, error: str) -> None:
    message, _ = sent(kit, sim)
    before = kit.store.history(message.id)
    response = post(kit, body, "text/plain")
    assert (response.status, response.body["error"]) == (400, error)
    assert kit.store.history(message.id) == before


# -- null values ------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{"reply": None}, {"messages": None, "phone": 48991234567},
                                   {"reply": None, "phone": 48991234567}])
def test_keys_whose_value_is_null_say_nothing(kit: SmsKit, sim: KolmeyaSimulator,
                                              extra: Dict[str, Any]) -> None:
    message, request = sent(kit, sim)
    if "messages" in extra or "phone" in extra:  # the flat form, naming the message
        body = {"id": message.provider_message_id, "reference": message.id,
                "status": "entregue", "status_code": 3, **extra}
    else:
        body = {**delivered(message, request), **extra}
    response = post(kit, body)
    assert (response.status, response.body["applied"]) == (200, 1), response.body
    assert state(kit, message) is State.DELIVERED


# -- request rejections and message statuses --------------------------------------------------


@pytest.mark.parametrize("extra", [
    {}, {"status_code": 9}, {"status_code": 3}, {"status_code": 3, "messages": []},
    {"status": "Inválido", "status_code": 7},
    "listed",  # the status/request envelope, its message still "tentando enviar"
], ids=["plain", "request-code-9", "request-code-3", "empty-messages", "invalido", "listed"])
def test_a_request_rejection_rejects_its_messages_whatever_request_code_it_carries(
        kit: SmsKit, sim: KolmeyaSimulator, extra: Union[str, Dict[str, Any]]) -> None:
    message, request = sent(kit, sim)
    body: Dict[str, Any] = {"id": request.id, "reference": request.reference,
                            "status": "rejected", "status_message": "Conteúdo não aprovado"}
    if extra == "listed":
        body["messages"] = [{"id": message.provider_message_id, "reference": message.id,
                             "status_code": 1, "status": "tentando enviar"}]
    else:
        assert isinstance(extra, dict)
        body.update(extra)
    response = post(kit, body)
    assert response.status == 200, response.body
    current = kit.get(message.id)
    assert current is not None
    assert (current.state, current.error_code, current.error_text) == (
        State.REJECTED, "request_rejected", "Conteúdo não aprovado")


@pytest.mark.parametrize(("status", "expected"), [("entregue", State.DELIVERED),
                                                  ("não entregue", State.ERROR)])
def test_a_flat_message_status_with_a_status_message_is_the_messages(
        kit: SmsKit, sim: KolmeyaSimulator, status: str, expected: State) -> None:
    message, _ = sent(kit, sim)
    response = post(kit, {"id": message.provider_message_id, "reference": message.id,
                          "status": status, "status_message": "detalhe",
                          "phone": 48991234567})
    assert (response.status, response.body["applied"]) == (200, 1), response.body
    assert state(kit, message) is expected


def test_a_request_level_status_that_is_no_rejection_rejects_nothing(
        kit: SmsKit, sim: KolmeyaSimulator) -> None:
    message, request = sent(kit, sim)
    for body in ({"id": request.id, "status": "Válido", "status_code": 2,
                  "status_message": "Requisição aprovada"},
                 {"id": request.id, "reference": request.reference, "status": "Válido",
                  "status_code": 2, "status_message": "ok", "messages": []}):
        assert post(kit, body).status == 200
    assert state(kit, message) is State.SENT


@pytest.mark.parametrize(("item", "expected", "code"), [
    ({"status": 3}, State.DELIVERED, None),
    ({"status": "4"}, State.ERROR, "4"),
    ({"status_code": "", "status": "entregue"}, State.DELIVERED, None),
    ({"status_code": "  ", "status": "NAO_ENTREGUE"}, State.ERROR, "NAO_ENTREGUE"),
    ({"status_code": None, "status": "expirada"}, State.EXPIRED, "expirada"),
])
def test_status_values_as_a_php_backend_may_write_them(
        kit: SmsKit, sim: KolmeyaSimulator, item: Dict[str, Any], expected: State,
        code: Optional[str]) -> None:
    message, request = sent(kit, sim)
    response = post(kit, {"id": request.id, "messages": [
        {"id": message.provider_message_id, "reference": message.id, **item}]})
    assert (response.status, response.body["applied"]) == (200, 1), response.body
    current = kit.get(message.id)
    assert current is not None and current.state is expected
    assert (current.error_code or current.error_text) == code


def test_messages_written_as_a_php_keyed_object_are_its_values(
        kit: SmsKit, sim: KolmeyaSimulator) -> None:
    first, request = sent(kit, sim)
    body = delivered(first, request)
    body["messages"] = {"1": body["messages"][0]}
    response = post(kit, body)
    assert (response.status, response.body["applied"]) == (200, 1), response.body
    assert state(kit, first) is State.DELIVERED


# -- replies to panel campaigns ---------------------------------------------------------------


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_panel_campaign_reply_by_webhook_is_the_one_polled(
        kit: SmsKit, sim: KolmeyaSimulator, wrapped: bool) -> None:
    item = sim.add_web_reply(48991234567, "QUERO", parameters={"VALOR": "10"})
    response = post(kit, {"reply": item} if wrapped else item, kind="reply")
    assert (response.status, response.body["new_inbound"]) == (200, 1), response.body
    polled = [r for r in kit.provider().poll_replies() if r.provider_reply_id.startswith("web:")]
    assert [r.provider_reply_id for r in polled] == [f"web:{item['id']}"]
    assert [kit.receive(r).created for r in polled] == [False]  # the same reply: stored once
    (stored,) = [m for m in kit.store.list_messages(phone=PHONE, limit=10)
                 if m.direction is Direction.INBOUND]
    assert stored.body == "QUERO"
