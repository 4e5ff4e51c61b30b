"""Pure tests of the Kolmeya wire format (no I/O): builders, parsers and the error map."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smskit.errors import (
    AmbiguousSendError,
    AuthenticationError,
    InvalidPhoneError,
    ProviderError,
    ProviderNotFoundError,
    RateLimitedError,
    RequestRejectedError,
    TransientProviderError,
    ValidationError,
)
from smskit.models import Message, State
from smskit_kolmeya import wire

UTC = dt.timezone.utc


def msg(phone: str = "+5548991234567", body: str = "Olá", id: str = "M1") -> Message:
    return Message(id=id, phone=phone, body=body)


# -- sms/store ------------------------------------------------------------------------------

def test_store_request_has_exactly_the_confirmed_shape() -> None:
    body = wire.build_store_request([msg(id="M1"), msg("+55 11 98765-4321", "Oi", "M2")],
                                    batch_id="B1")
    assert body == {
        "messages": [
            {"phone": 48991234567, "message": "Olá", "reference": "M1"},
            {"phone": 11987654321, "message": "Oi", "reference": "M2"},
        ],
        "reference": "B1",
    }


def test_store_request_optional_fields_only_when_set() -> None:
    body = wire.build_store_request([msg()], batch_id="B1", webhook_url="https://h/w?token=t",
                                    cost_centre_id=7, sms_api_id=0)
    assert body["webhook_url"] == "https://h/w?token=t"
    assert body["tenant_segment_id"] == 7
    assert body["sms_api_id"] == 0
    assert set(wire.build_store_request([msg()], batch_id="B1")) == {"messages", "reference"}


def test_store_request_limits() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        wire.build_store_request([], batch_id="B")
    many = [msg(id=f"M{i}") for i in range(1001)]
    with pytest.raises(ValidationError, match="at most 1000 messages, got 1001"):
        wire.build_store_request(many, batch_id="B")
    assert len(wire.build_store_request(many[:1000], batch_id="B")["messages"]) == 1000


def test_store_token_request_holds_one_message() -> None:
    body = wire.build_store_token_request(msg(), reference="R")
    assert body == {"messages": [{"phone": 48991234567, "message": "Olá", "reference": "M1"}],
                    "reference": "R"}
    assert "reference" not in wire.build_store_token_request(msg())


@pytest.mark.parametrize(("raw", "digits"), [
    ("+5548991234567", "48991234567"),
    ("5548991234567", "48991234567"),
    ("(48) 99123-4567", "48991234567"),
    ("+55 48 3222-1234", "4832221234"),
    ("55991234567", "55991234567"),  # DDD 55 without the country code
])
def test_national_digits(raw: str, digits: str) -> None:
    assert wire.national_digits(raw) == digits


@pytest.mark.parametrize("raw", ["+14155550123", "12345", "", "+55 48 9912"])
def test_national_digits_rejects_non_brazilian(raw: str) -> None:
    with pytest.raises(InvalidPhoneError, match="invalid phone number"):
        wire.national_digits(raw)


def test_chunk() -> None:
    assert [list(c) for c in wire.chunk([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
    with pytest.raises(ValidationError):
        list(wire.chunk([1], 0))


def test_store_response_matches_by_reference_and_phone_int_or_string() -> None:
    m1, m2, m3 = msg(id="M1"), msg("+5511987654321", id="M2"), msg("+5521987654321", id="M3")
    data = {
        "id": "req-uuid", "reference": "B1",
        "valids": [{"id": "u2", "phone": 11987654321, "reference": "M2"},
                   {"id": "u1", "phone": "5548991234567", "reference": None}],
        "invalids": [], "duplicates": [], "blacklist": [], "not_disturb": [],
    }
    out = wire.parse_store_response(data, [m1, m2, m3])
    assert out.request_id == "req-uuid"
    assert out.reference == "B1"
    assert [(r.message_id, r.state, r.provider_message_id, r.provider_request_id)
            for r in out.results] == [("M1", State.SENT, "u1", "req-uuid"),
                                      ("M2", State.SENT, "u2", "req-uuid")]
    # M3 is not mentioned: no result, it stays outgoing for reconciliation.


def test_store_response_rejection_arrays() -> None:
    ms = [msg(f"+55119876543{i:02d}", id=f"M{i}") for i in range(4)]
    data = {
        "id": "r",
        "invalids": [{"phone": 11987654300, "message": "x", "reference": "M0",
                      "error": "Número inválido"}],
        "blacklist": [{"phone": 11987654301}],
        "not_disturb": [{"phone": "11987654302"}],
        "valids": [{"id": "u3", "phone": 11987654303, "reference": "M3"}],
    }
    out = {r.message_id: r for r in wire.parse_store_response(data, ms).results}
    assert (out["M0"].state, out["M0"].error_code, out["M0"].error_text) == (
        State.REJECTED, "invalid", "Número inválido")
    assert (out["M1"].state, out["M1"].error_code) == (State.REJECTED, "blacklist")
    assert (out["M2"].state, out["M2"].error_code) == (State.REJECTED, "not_disturb")
    assert "Perturbe" in (out["M2"].error_text or "")
    assert out["M3"].state is State.SENT
    assert not any(r.duplicate for r in out.values())


def test_store_response_duplicates_same_phone_without_references() -> None:
    first, second = msg(id="A", body="one"), msg(id="B", body="two")
    data = {"id": "r", "valids": [{"id": "u1", "phone": 48991234567}],
            "duplicates": [{"phone": 48991234567}]}
    out = wire.parse_store_response(data, [first, second])
    by_id = {r.message_id: r for r in out.results}
    assert by_id["A"].state is State.SENT
    assert by_id["A"].provider_message_id == "u1"
    assert by_id["B"].state is State.REJECTED
    assert by_id["B"].error_code == "duplicate"
    assert by_id["B"].duplicate is True


def test_store_response_duplicate_echoing_the_kept_reference_rejects_the_other() -> None:
    first, second = msg(id="A"), msg(id="B")
    data = {"id": "r", "valids": [{"id": "u1", "phone": 48991234567, "reference": "A"}],
            "duplicates": [{"phone": 48991234567, "reference": "A"}]}
    by_id = {r.message_id: r for r in wire.parse_store_response(data, [first, second]).results}
    assert by_id["A"].state is State.SENT
    assert by_id["B"].error_code == "duplicate"


def test_store_response_second_valid_for_same_phone_goes_to_second_message() -> None:
    first, second = msg(id="A"), msg(id="B")
    data = {"id": "r", "valids": [{"id": "u1", "phone": 48991234567},
                                  {"id": "u2", "phone": 48991234567}]}
    by_id = {r.message_id: r for r in wire.parse_store_response(data, [first, second]).results}
    assert (by_id["A"].provider_message_id, by_id["B"].provider_message_id) == ("u1", "u2")


def test_store_response_unmatched_items_are_reported_not_invented() -> None:
    data = {"id": "r", "valids": [{"id": "u9", "phone": 11911112222, "reference": "ZZ"}]}
    out = wire.parse_store_response(data, [msg(id="A")])
    assert out.results == ()
    assert out.unmatched == ({"id": "u9", "phone": 11911112222, "reference": "ZZ"},)


@pytest.mark.parametrize("data", [None, [], "ok", {"id": "r", "valids": "nope"}])
def test_store_response_unexpected_shapes(data: object) -> None:
    with pytest.raises(ProviderError, match="unexpected Kolmeya response"):
        wire.parse_store_response(data, [msg()])


# -- statuses -------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "state"), [
    (1, State.SENT), (2, State.SENT), (3, State.DELIVERED), (4, State.ERROR),
    (5, State.REJECTED), (6, State.EXPIRED), (99, State.SENT),
])
def test_status_codes(code: int, state: State) -> None:
    assert wire.state_for(code) is state


@pytest.mark.parametrize(("text", "state"), [
    ("enviado", State.SENT), ("entregue", State.DELIVERED), ("NÃO ENTREGUE", State.ERROR),
    ("nao entregue", State.ERROR), ("REJEITADO NA OPERADORA", State.REJECTED),
    ("expirada", State.EXPIRED), ("delivered", State.DELIVERED), ("TENTANDO ENVIAR", State.SENT),
])
def test_status_texts_when_no_code(text: str, state: State) -> None:
    assert wire.state_for(None, text) is state


def test_status_request_builder() -> None:
    assert wire.build_request_status_request(id="u") == {"id": "u"}
    assert wire.build_request_status_request(reference="B1") == {"reference": "B1"}
    with pytest.raises(ValidationError, match="exactly one"):
        wire.build_request_status_request()
    with pytest.raises(ValidationError, match="exactly one"):
        wire.build_request_status_request(id="u", reference="B")


def test_parse_request_status() -> None:
    data = {"id": "r", "status": "Válido", "status_code": 2, "reference": None, "messages": [
        {"id": "u1", "reference": "M1", "status": "enviado", "status_code": 2},
        {"id": "u2", "reference": "M2", "status": "entregue", "status_code": "3"},
    ]}
    out = wire.parse_request_status(data)
    assert out.known
    assert (out.request_id, out.status, out.status_code) == ("r", "Válido", 2)
    assert [(m.reference, m.state, m.status_code) for m in out.messages] == [
        ("M1", State.SENT, 2), ("M2", State.DELIVERED, 3)]
    event = out.messages[1].to_event("r")
    assert (event.message_id, event.provider_message_id, event.provider_request_id) == (
        "M2", "u2", "r")
    assert not wire.parse_request_status({}).known
    assert not wire.parse_request_status(None).known


def test_parse_message_status_shapes() -> None:
    bare = {"id": "u1", "reference": "M1", "status": "entregue", "status_code": 3}
    for data in (bare, {"message": bare}, {"messages": [bare]}):
        assert wire.parse_message_status(data).state is State.DELIVERED
    assert wire.build_message_status_request("u1") == {"id": "u1"}
    with pytest.raises(ProviderError):
        wire.parse_message_status({"messages": []})
    with pytest.raises(ProviderError, match="not a status code"):
        wire.parse_message_status({"id": "u1", "status_code": "three"})


# -- balance, segments ------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "amount"), [
    ("R$9.397,30", "9397.30"), ("R$ 9.397,30", "9397.30"), ("9397.30", "9397.30"),
    ("9397,30", "9397.30"), (9397.3, "9397.3"), (9397, "9397"), ("R$\xa01.234.567,89",
                                                                 "1234567.89"),
    ("-R$ 10,00", "-10.00"), ("R$ 0,00", "0.00"), ("1500.50", "1500.50"),
])
def test_balance_formats(raw: object, amount: str) -> None:
    assert wire.parse_balance({"balance": raw}) == Decimal(amount)


@pytest.mark.parametrize("raw", ["", "R$", "abc", None, True, float("nan"), [1]])
def test_balance_garbage(raw: object) -> None:
    with pytest.raises(ProviderError, match="balance"):
        wire.parse_balance({"balance": raw})


def test_balance_missing_field() -> None:
    with pytest.raises(ProviderError, match="'balance'"):
        wire.parse_balance({"errors": ["x"]})


@given(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False))
def test_balance_brazilian_currency_roundtrip(amount: Decimal) -> None:
    whole, _, cents = f"{amount:,.2f}".partition(".")
    text = "R$" + whole.replace(",", ".") + "," + cents
    assert wire.parse_balance_value(text) == amount


def test_cost_centres() -> None:
    out = wire.parse_cost_centres({"segments": [{"id": 12, "name": "Corporativo"},
                                                {"id": "13", "name": "Cobrança"}]})
    assert out == [wire.CostCentre(12, "Corporativo"), wire.CostCentre(13, "Cobrança")]
    with pytest.raises(ProviderError):
        wire.parse_cost_centres({"segments": [{"name": "no id"}]})


# -- replies ---------------------------------------------------------------------------------

def test_replies_request() -> None:
    assert wire.build_replies_request(1) == {"period": 1}
    assert wire.build_replies_request(168, page=3) == {"period": 168, "page": 3}
    for bad in (0, 169):
        with pytest.raises(ValidationError, match="1..168"):
            wire.build_replies_request(bad)


def test_reply_item() -> None:
    item = {"id": 981, "reply": "SAIR", "received_at": "15/11/2025 10:30:05",
            "message": {"id": "u1", "reference": "M1", "phone": 48991234567, "content": "Oi"}}
    reply = wire.parse_reply_item(item)
    assert reply.provider_reply_id == "981"
    assert reply.phone == "+5548991234567"
    assert reply.body == "SAIR"
    # São Paulo is UTC-3 (no DST since 2019).
    assert reply.received_at == dt.datetime(2025, 11, 15, 13, 30, 5, tzinfo=UTC)
    assert (reply.in_reply_to_provider_id, reply.in_reply_to_message_id) == ("u1", "M1")


def test_replies_page_pagination_fields() -> None:
    page = wire.parse_replies_page({"current_page": 1, "data": [
        {"id": 1, "reply": "ok", "message": {"id": "u", "phone": "5511987654321"}}],
        "next_page_url": "https://kolmeya.com.br/api/v1/sms/replys?page=2", "per_page": 1})
    assert page.has_next
    assert page.replies[0].phone == "+5511987654321"
    last = wire.parse_replies_page({"current_page": 2, "last_page": 2, "data": [
        {"id": 2, "reply": "ok", "message": {"phone": "11987654321"}}], "next_page_url": None})
    assert not last.has_next
    assert not wire.parse_replies_page({"current_page": 1, "data": []}).has_next


# -- reports ---------------------------------------------------------------------------------

def test_report_windows_split_into_seven_days_and_clamp_to_now() -> None:
    start = dt.datetime(2025, 1, 1, tzinfo=UTC)
    now = dt.datetime(2025, 1, 18, 12, 0, 42, tzinfo=UTC)
    windows = wire.report_windows(start, dt.datetime(2025, 2, 1, tzinfo=UTC), now=now)
    assert windows == [
        (start, dt.datetime(2025, 1, 8, tzinfo=UTC)),
        (dt.datetime(2025, 1, 8, tzinfo=UTC), dt.datetime(2025, 1, 15, tzinfo=UTC)),
        (dt.datetime(2025, 1, 15, tzinfo=UTC), dt.datetime(2025, 1, 18, 12, 0, tzinfo=UTC)),
    ]
    assert all(b - a <= dt.timedelta(days=7) for a, b in windows)
    with pytest.raises(ValidationError, match="empty"):
        wire.report_windows(now, now + dt.timedelta(days=1), now=now)


def test_report_request_format_in_sao_paulo_time() -> None:
    body = wire.build_report_statuses_request(dt.datetime(2025, 1, 1, 3, 0, tzinfo=UTC),
                                              dt.datetime(2025, 1, 2, 3, 0, tzinfo=UTC), 500)
    assert body == {"start_at": "2025-01-01 00:00", "end_at": "2025-01-02 00:00", "limit": 500}
    with pytest.raises(ValidationError, match="at most 7 days"):
        wire.build_report_statuses_request(dt.datetime(2025, 1, 1, tzinfo=UTC),
                                           dt.datetime(2025, 1, 9, tzinfo=UTC))
    with pytest.raises(ValidationError, match="limit"):
        wire.build_report_statuses_request(dt.datetime(2025, 1, 1, tzinfo=UTC),
                                           dt.datetime(2025, 1, 2, tzinfo=UTC), 30001)


def test_report_rows() -> None:
    rows = wire.parse_report_statuses({"messages": [{
        "telefone": 48991234567, "nome": "Ana", "cpf": 0, "mensagem": "Oi", "status": "entregue",
        "enviada_em": "15/11/2025 10:30", "parametros": [], "lote": 55, "job": 1234567,
        "centro_custo": "Corporativo"}]})
    (row,) = rows
    assert (row.phone, row.state, row.job, row.batch, row.cost_centre) == (
        "+5548991234567", State.DELIVERED, 1234567, 55, "Corporativo")
    assert row.sent_at == dt.datetime(2025, 11, 15, 13, 30, tzinfo=UTC)


# -- blacklist and jobs ------------------------------------------------------------------------

def test_blacklist_request() -> None:
    assert wire.build_blacklist_request(["+5548991234567", "11987654321"]) == {
        "phones": [{"phone": 48991234567}, {"phone": 11987654321}]}
    with pytest.raises(ValidationError):
        wire.build_blacklist_request([])
    with pytest.raises(ValidationError, match="at most 1000"):
        wire.build_blacklist_request(["11987654321"] * 1001)


def test_job_request_forms() -> None:
    assert wire.build_job_request(1234567, "pause") == ("/sms/jobs/1234567/pause", {})
    assert wire.build_job_request(7, "play", "body") == ("/sms/jobs/play", {"smsJob": 7})
    with pytest.raises(ValidationError):
        wire.build_job_request(7, "stop")
    with pytest.raises(ValidationError):
        wire.build_job_request(0, "pause")
    with pytest.raises(ValidationError):
        wire.build_job_request(7, "pause", "query")


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "send", "cls"), [
    (401, True, AuthenticationError), (403, False, AuthenticationError),
    (404, False, ProviderNotFoundError), (422, True, RequestRejectedError),
    (400, True, RequestRejectedError), (408, True, TransientProviderError),
    (429, True, RateLimitedError), (500, True, AmbiguousSendError),
    (502, True, AmbiguousSendError), (503, True, AmbiguousSendError),
])
def test_error_map(status: int, send: bool, cls: type) -> None:
    exc = wire.error_for_response(status, {"errors": ["Problema"]}, {}, endpoint="/sms/store",
                                  send=send)
    assert type(exc) is cls
    assert exc.status_code == status
    assert exc.errors == ("Problema",)
    assert "Problema" in str(exc)
    assert "/sms/store" in str(exc)


def test_error_map_5xx_on_read_is_plain_provider_error() -> None:
    exc = wire.error_for_response(500, None, {}, endpoint="/sms/balance", send=False)
    assert type(exc) is ProviderError


def test_error_map_retry_after() -> None:
    exc = wire.error_for_response(503, None, {"Retry-After": "7"}, endpoint="/sms/store",
                                  send=True)
    assert isinstance(exc, RateLimitedError)
    assert exc.retry_after == 7
    assert exc.sent_nothing
    now = dt.datetime(2015, 10, 21, 7, 27, tzinfo=UTC)
    exc = wire.error_for_response(429, None, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
                                  endpoint="/sms/store", send=True, now=now)
    assert isinstance(exc, RateLimitedError)
    assert exc.retry_after == 60


def test_error_bodies_laravel_shapes_and_secrets_masked() -> None:
    assert wire.errors_in_body({"message": "The given data was invalid.",
                                "errors": {"messages": ["required"]}}) == ["messages: required"]
    assert wire.errors_in_body({"error": "boom"}) == ["boom"]
    exc = wire.error_for_response(422, {"errors": ["bad url https://h/w?token=S3CR3T"]}, {},
                                  endpoint="/sms/store", send=True, secrets=("S3CR3T",))
    assert "S3CR3T" not in str(exc)
    assert "S3CR3T" not in repr(exc.errors)


def test_parse_datetime_formats() -> None:
    expected = dt.datetime(2025, 11, 15, 13, 30, tzinfo=UTC)
    for text in ("15/11/2025 10:30", "15/11/2025 10:30:00", "2025-11-15 10:30:00",
                 "2025-11-15T13:30:00Z", "2025-11-15T10:30:00-03:00"):
        assert wire.parse_datetime(text) == expected, text
    assert wire.parse_datetime("yesterday") is None
    assert wire.parse_datetime(None) is None
