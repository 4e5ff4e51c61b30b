"""Wire-format tests of the Kolmeya clients and provider with respx (no network).

Every endpoint: method POST, exact path, exact JSON body, Bearer token and JSON headers. Then
response mapping, the error map, the retry policy (never a blind resend) and token hygiene.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from decimal import Decimal
from typing import Any, Dict, Iterator, List, Optional

import httpx
import pytest
import respx

from smskit.config import Secret, Settings
from smskit.errors import (
    AmbiguousSendError,
    AuthenticationError,
    ConfigurationError,
    InvalidPhoneError,
    ProviderError,
    ProviderNotFoundError,
    RateLimitedError,
    RequestRejectedError,
    TransientProviderError,
    ValidationError,
)
from smskit.models import Message, State
from smskit.plugins import Plugins
from smskit.provider import Provider
from smskit.webhooks import WebhookRequest
from smskit_kolmeya import plugin
from smskit_kolmeya.client import AsyncKolmeyaClient, KolmeyaClient
from smskit_kolmeya.provider import KolmeyaProvider

BASE = "https://kolmeya.test/api/v1"
TOKEN = "kT0k3nAbCdEfGhIjKlMnOpQrStUvWxYz01234567"
HOOK = "https://sms.example.com/webhooks/kolmeya/status?token=h00kS3cret"
UTC = dt.timezone.utc


def msg(phone: str = "+5548991234567", body: str = "Olá", id: str = "M1") -> Message:
    return Message(id=id, phone=phone, body=body)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> List[float]:
    return []


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One shared client: building an SSL context per test is the slow part.
    with httpx.Client() as shared:
        yield shared


@pytest.fixture
def client(sleeps: List[float], http: httpx.Client) -> Iterator[KolmeyaClient]:
    with KolmeyaClient(TOKEN, base_url=BASE, sleep=sleeps.append, http=http) as c:
        yield c


def body_of(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


def assert_request(route: respx.Route, path: str, body: Any, index: int = -1) -> None:
    request = route.calls[index].request
    assert request.method == "POST"
    assert request.url.path == "/api/v1" + path
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert json.loads(request.content) == body


STORE_OK = {"id": "req-1", "reference": "B1",
            "valids": [{"id": "u1", "phone": 48991234567, "reference": "M1"}],
            "invalids": [], "duplicates": [], "blacklist": [], "not_disturb": []}


# -- every endpoint's request ----------------------------------------------------------------

def test_store(router: respx.MockRouter, client: KolmeyaClient) -> None:
    route = router.post("/sms/store").respond(200, json=STORE_OK)
    (outcome,) = client.send_batch([msg()], batch_id="B1", webhook_url=HOOK,
                                   cost_centre_id=3)
    assert_request(route, "/sms/store", {
        "messages": [{"phone": 48991234567, "message": "Olá", "reference": "M1"}],
        "reference": "B1", "webhook_url": HOOK, "tenant_segment_id": 3})
    assert outcome.request_id == "req-1"
    (result,) = outcome.results
    assert (result.message_id, result.state, result.provider_message_id,
            result.provider_request_id) == ("M1", State.SENT, "u1", "req-1")


def test_store_uses_client_defaults(router: respx.MockRouter) -> None:
    route = router.post("/sms/store").respond(200, json=STORE_OK)
    with KolmeyaClient(TOKEN, base_url=BASE, webhook_url=HOOK, cost_centre_id=9,
                       sms_api_id=2) as c:
        c.send_batch([msg()], batch_id="B1")
        c.send_batch([msg()], batch_id="B1", webhook_url="")
    assert body_of(route, 0) == {
        "messages": [{"phone": 48991234567, "message": "Olá", "reference": "M1"}],
        "reference": "B1", "webhook_url": HOOK, "tenant_segment_id": 9, "sms_api_id": 2}
    assert "webhook_url" not in body_of(route, 1)


def test_store_chunks_of_1000_with_numbered_references(router: respx.MockRouter,
                                                       client: KolmeyaClient) -> None:
    route = router.post("/sms/store").respond(200, json={"id": "r", "valids": []})
    messages = [msg(f"+55119{i:08d}", id=f"M{i}") for i in range(1001)]
    outcomes = client.send_batch(messages, batch_id="B")
    assert len(outcomes) == 2
    assert route.call_count == 2
    first, second = body_of(route, 0), body_of(route, 1)
    assert (len(first["messages"]), first["reference"]) == (1000, "B-1")
    assert (len(second["messages"]), second["reference"]) == (1, "B-2")
    assert second["messages"][0] == {"phone": 11900001000, "message": "Olá", "reference": "M1000"}


def test_store_bad_phone_anywhere_sends_nothing(router: respx.MockRouter,
                                                client: KolmeyaClient) -> None:
    route = router.post("/sms/store").respond(200, json=STORE_OK)
    messages = [msg(f"+55119{i:08d}", id=f"M{i}") for i in range(1000)] + [msg("+1415555")]
    with pytest.raises(InvalidPhoneError, match="1415555"):
        client.send_batch(messages, batch_id="B")
    assert route.call_count == 0


def test_store_token(router: respx.MockRouter, client: KolmeyaClient) -> None:
    route = router.post("/sms/store-token").respond(200, json=STORE_OK)
    outcome = client.send_token(msg(body="Seu código é 1234"), reference="otp-1")
    assert_request(route, "/sms/store-token", {
        "messages": [{"phone": 48991234567, "message": "Seu código é 1234", "reference": "M1"}],
        "reference": "otp-1"})
    assert outcome.results[0].state is State.SENT


def test_request_status_by_id_and_reference(router: respx.MockRouter,
                                            client: KolmeyaClient) -> None:
    route = router.post("/sms/status/request").respond(200, json={
        "id": "req-1", "status": "Válido", "status_code": 2, "reference": "B1",
        "messages": [{"id": "u1", "reference": "M1", "status": "entregue", "status_code": 3}]})
    answer = client.request_status(id="req-1")
    assert_request(route, "/sms/status/request", {"id": "req-1"})
    client.request_status(reference="B1")
    assert_request(route, "/sms/status/request", {"reference": "B1"})
    assert answer.messages[0].state is State.DELIVERED
    with pytest.raises(ValidationError):
        client.request_status()
    assert route.call_count == 2


def test_message_status(router: respx.MockRouter, client: KolmeyaClient) -> None:
    route = router.post("/sms/status/message").respond(200, json={
        "id": "u1", "reference": "M1", "status": "enviado", "status_code": 2})
    status = client.message_status("u1")
    assert_request(route, "/sms/status/message", {"id": "u1"})
    assert (status.state, status.reference) == (State.SENT, "M1")


@pytest.mark.parametrize(("raw", "amount"), [("R$9.397,30", "9397.30"), ("1500.50", "1500.50"),
                                             (12.5, "12.5")])
def test_balance(router: respx.MockRouter, client: KolmeyaClient, raw: Any, amount: str) -> None:
    route = router.post("/sms/balance").respond(200, json={"balance": raw})
    assert client.balance() == Decimal(amount)
    assert_request(route, "/sms/balance", {})


def test_cost_centres(router: respx.MockRouter, client: KolmeyaClient) -> None:
    route = router.post("/sms/segments").respond(200, json={
        "segments": [{"id": 1, "name": "Corporativo"}]})
    (centre,) = client.cost_centres()
    assert (centre.id, centre.name) == (1, "Corporativo")
    assert_request(route, "/sms/segments", {})


def reply(n: int) -> Dict[str, Any]:
    return {"id": n, "reply": f"resposta {n}", "received_at": "15/11/2025 10:30:00",
            "message": {"id": f"u{n}", "reference": f"M{n}", "phone": 48991234567}}


def test_replies_follow_pages(router: respx.MockRouter, client: KolmeyaClient) -> None:
    route = router.post("/sms/replys").mock(side_effect=[
        httpx.Response(200, json={"current_page": 1, "data": [reply(1), reply(2)],
                                  "next_page_url": BASE + "/sms/replys?page=2", "per_page": 2,
                                  "last_page": 2}),
        httpx.Response(200, json={"current_page": 2, "data": [reply(3)],
                                  "next_page_url": None, "per_page": 2, "last_page": 2}),
    ])
    replies = client.replies(24)
    assert [r.provider_reply_id for r in replies] == ["1", "2", "3"]
    assert route.call_count == 2
    assert_request(route, "/sms/replys", {"period": 24}, 0)
    assert_request(route, "/sms/replys", {"period": 24, "page": 2}, 1)
    assert replies[0].in_reply_to_message_id == "M1"
    assert replies[0].phone == "+5548991234567"


def test_reports_split_into_windows(router: respx.MockRouter, client: KolmeyaClient) -> None:
    route = router.post("/sms/reports/statuses").respond(200, json={"messages": [
        {"telefone": 48991234567, "status": "entregue", "enviada_em": "02/01/2025 10:00"}]})
    start = dt.datetime(2025, 1, 1, 3, 0, tzinfo=UTC)
    end = dt.datetime(2025, 1, 11, 3, 0, tzinfo=UTC)
    rows = client.report_statuses(start, end, now=dt.datetime(2025, 2, 1, tzinfo=UTC))
    assert len(rows) == 2
    assert_request(route, "/sms/reports/statuses", {
        "start_at": "2025-01-01 00:00", "end_at": "2025-01-08 00:00", "limit": 30000}, 0)
    assert_request(route, "/sms/reports/statuses", {
        "start_at": "2025-01-08 00:00", "end_at": "2025-01-11 00:00", "limit": 30000}, 1)


def test_reports_truncated_window_is_split(router: respx.MockRouter,
                                           client: KolmeyaClient) -> None:
    row = {"telefone": 48991234567, "status": "entregue"}
    route = router.post("/sms/reports/statuses").mock(side_effect=[
        httpx.Response(200, json={"messages": [row, row]}),  # hit the limit: split
        httpx.Response(200, json={"messages": [row]}),
        httpx.Response(200, json={"messages": []}),
    ])
    start = dt.datetime(2025, 1, 1, 3, 0, tzinfo=UTC)
    rows = client.report_statuses(start, start + dt.timedelta(hours=2), limit=2,
                                  now=dt.datetime(2025, 2, 1, tzinfo=UTC))
    assert len(rows) == 1
    assert [(b["start_at"], b["end_at"]) for b in (body_of(route, i) for i in range(3))] == [
        ("2025-01-01 00:00", "2025-01-01 02:00"), ("2025-01-01 00:00", "2025-01-01 01:00"),
        ("2025-01-01 01:00", "2025-01-01 02:00")]


def test_blacklist_store_and_destroy(router: respx.MockRouter, client: KolmeyaClient) -> None:
    store = router.post("/blacklist/store").respond(201)
    destroy = router.post("/blacklist/destroy").respond(204)
    client.blacklist_add(["+5548991234567", "+5511987654321"])
    client.blacklist_remove(["+5548991234567"])
    assert_request(store, "/blacklist/store",
                   {"phones": [{"phone": 48991234567}, {"phone": 11987654321}]})
    assert_request(destroy, "/blacklist/destroy", {"phones": [{"phone": 48991234567}]})


def test_blacklist_chunks_of_1000(router: respx.MockRouter, client: KolmeyaClient) -> None:
    store = router.post("/blacklist/store").respond(201)
    client.blacklist_add([f"+55119{i:08d}" for i in range(1500)])
    assert [len(body_of(store, i)["phones"]) for i in range(2)] == [1000, 500]


def test_jobs_path_form(router: respx.MockRouter, client: KolmeyaClient) -> None:
    pause = router.post("/sms/jobs/1234567/pause").respond(200, json={"message": "ok"})
    play = router.post("/sms/jobs/1234567/play").respond(204)
    assert client.pause_job(1234567) == {"message": "ok"}
    assert client.play_job(1234567) == {}
    assert_request(pause, "/sms/jobs/1234567/pause", {})
    assert_request(play, "/sms/jobs/1234567/play", {})


def test_jobs_body_form(router: respx.MockRouter) -> None:
    route = router.post("/sms/jobs/pause").respond(200, json={})
    with KolmeyaClient(TOKEN, base_url=BASE, job_control="body") as c:
        c.pause_job(42)
    assert_request(route, "/sms/jobs/pause", {"smsJob": 42})


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "cls"), [
    (401, AuthenticationError), (403, AuthenticationError), (404, ProviderNotFoundError),
    (422, RequestRejectedError), (400, RequestRejectedError)])
def test_store_http_errors_that_sent_nothing(router: respx.MockRouter, client: KolmeyaClient,
                                             status: int, cls: type) -> None:
    route = router.post("/sms/store").respond(status, json={"errors": ["Nope."]})
    with pytest.raises(cls, match="Nope") as info:
        client.send_batch([msg()], batch_id="B1")
    assert info.value.sent_nothing
    assert route.call_count == 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_store_5xx_is_ambiguous_and_not_retried(router: respx.MockRouter, client: KolmeyaClient,
                                                status: int) -> None:
    route = router.post("/sms/store").respond(status, text="Server Error")
    with pytest.raises(AmbiguousSendError, match="reconcile") as info:
        client.send_batch([msg()], batch_id="B1")
    assert not info.value.sent_nothing
    assert route.call_count == 1


@pytest.mark.parametrize("error", [httpx.ReadTimeout("timed out"),
                                   httpx.WriteTimeout("timed out"),
                                   httpx.RemoteProtocolError("peer closed connection"),
                                   httpx.ReadError("connection reset")])
def test_store_failure_after_sending_is_ambiguous_and_sent_once(
        router: respx.MockRouter, client: KolmeyaClient, sleeps: List[float],
        error: Exception) -> None:
    route = router.post("/sms/store").mock(side_effect=error)
    with pytest.raises(AmbiguousSendError, match="may have been sent"):
        client.send_batch([msg()], batch_id="B1")
    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize("content", [b"<html>oops</html>", b'{"errors":["Undefined array key"]}',
                                     b'{"id": "r", "valids": "x"}'])
def test_store_unreadable_success_is_ambiguous(router: respx.MockRouter, client: KolmeyaClient,
                                               content: bytes) -> None:
    router.post("/sms/store").respond(200, content=content)
    with pytest.raises(AmbiguousSendError):
        client.send_batch([msg()], batch_id="B1")


def test_store_arrays_written_as_php_objects_are_their_values(
        router: respx.MockRouter, client: KolmeyaClient) -> None:
    # PHP's json_encode writes an array whose keys are not 0, 1, 2... (array_filter keeps its
    # keys) as an object, and an empty one cast to an object as {}: the batch is not ambiguous
    invalid = {"phone": 48991234568, "reference": "M2", "error": "Número inválido"}
    router.post("/sms/store").respond(200, json={
        **STORE_OK, "invalids": {"1": invalid}, "duplicates": {}, "not_disturb": {}})
    (outcome,) = client.send_batch([msg(), msg("+5548991234568", id="M2")], batch_id="B1")
    assert [(r.message_id, r.state, r.error_code, r.error_text) for r in outcome.results] == [
        ("M1", State.SENT, None, None), ("M2", State.REJECTED, "invalid", "Número inválido")]


def test_read_5xx_and_timeout(router: respx.MockRouter, client: KolmeyaClient,
                              sleeps: List[float]) -> None:
    router.post("/sms/balance").respond(500)
    with pytest.raises(ProviderError) as info:
        client.balance()
    assert type(info.value) is ProviderError
    route = router.post("/sms/segments").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransientProviderError):
        client.cost_centres()
    assert route.call_count == 1
    assert sleeps == []


# -- retries ---------------------------------------------------------------------------------

def test_connect_error_is_retried_then_succeeds(router: respx.MockRouter, client: KolmeyaClient,
                                                sleeps: List[float]) -> None:
    route = router.post("/sms/store").mock(side_effect=[
        httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"),
        httpx.Response(200, json=STORE_OK)])
    (outcome,) = client.send_batch([msg()], batch_id="B1")
    assert outcome.results[0].state is State.SENT
    assert route.call_count == 3
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0
    assert 1.0 <= sleeps[1] <= 1.5


def test_connect_error_gives_up_after_max_attempts(router: respx.MockRouter,
                                                   sleeps: List[float]) -> None:
    route = router.post("/sms/store").mock(side_effect=httpx.ConnectError("refused"))
    c = KolmeyaClient(TOKEN, base_url=BASE, sleep=sleeps.append, max_attempts=3)
    with pytest.raises(TransientProviderError, match="nothing was sent") as info:
        c.send_batch([msg()], batch_id="B1")
    c.close()
    assert info.value.sent_nothing
    assert route.call_count == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(router: respx.MockRouter, client: KolmeyaClient,
                                 sleeps: List[float], status: int) -> None:
    route = router.post("/sms/store").mock(side_effect=[
        httpx.Response(status, headers={"Retry-After": "7"}, json={"errors": ["Too Many"]}),
        httpx.Response(200, json=STORE_OK)])
    (outcome,) = client.send_batch([msg()], batch_id="B1")
    assert outcome.results[0].state is State.SENT
    assert sleeps == [7.0]
    assert route.call_count == 2


def test_long_retry_after_is_raised_not_slept(router: respx.MockRouter, client: KolmeyaClient,
                                              sleeps: List[float]) -> None:
    route = router.post("/sms/store").respond(429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimitedError) as info:
        client.send_batch([msg()], batch_id="B1")
    assert info.value.retry_after == 3600
    assert info.value.sent_nothing
    assert route.call_count == 1
    assert sleeps == []


def test_429_without_retry_after_backs_off_then_gives_up(router: respx.MockRouter,
                                                         client: KolmeyaClient,
                                                         sleeps: List[float]) -> None:
    route = router.post("/sms/balance").respond(429)
    with pytest.raises(RateLimitedError):
        client.balance()
    assert route.call_count == 4
    assert len(sleeps) == 3


# -- secrets ---------------------------------------------------------------------------------

def test_token_never_shown(router: respx.MockRouter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    router.post("/sms/store").mock(side_effect=[
        httpx.ConnectError(f"refused Bearer {TOKEN}"),
        httpx.Response(401, json={"errors": [f"Unauthenticated {TOKEN} {HOOK}"]})])
    router.post("/sms/balance").mock(side_effect=httpx.ReadTimeout(f"timeout {TOKEN}"))
    sleeps: List[float] = []
    client = KolmeyaClient(TOKEN, base_url=BASE, webhook_url=HOOK, sleep=sleeps.append)
    shown = [repr(client), str(client)]
    for call in (lambda: client.send_batch([msg()], batch_id="B1"), client.balance):
        with pytest.raises(ProviderError) as info:
            call()
        shown += [str(info.value), repr(info.value), repr(info.value.errors)]
    client.close()
    shown.append(caplog.text)
    for text in shown:
        assert TOKEN not in text
        assert "h00kS3cret" not in text
    assert "Unauthenticated" in shown[2]


def test_missing_token_and_bad_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMSKIT_KOLMEYA_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="SMSKIT_KOLMEYA_TOKEN"):
        KolmeyaClient()
    with pytest.raises(ConfigurationError, match="plain http"):
        KolmeyaClient(TOKEN, base_url="http://kolmeya.com.br/api/v1")
    with pytest.raises(ConfigurationError, match="http"):
        KolmeyaClient(TOKEN, base_url="ftp://x")
    KolmeyaClient(TOKEN, base_url="http://127.0.0.1:8080/api/v1").close()


def test_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSKIT_KOLMEYA_TOKEN", TOKEN)
    monkeypatch.setenv("SMSKIT_KOLMEYA_BASE_URL", BASE + "/")
    with KolmeyaClient() as c:
        assert c.base_url == BASE
    monkeypatch.delenv("SMSKIT_KOLMEYA_BASE_URL")
    with KolmeyaClient() as c:
        assert c.base_url == "https://kolmeya.com.br/api/v1"


def test_injected_http_client_is_not_closed(router: respx.MockRouter) -> None:
    router.post("/sms/balance").respond(200, json={"balance": "R$1,00"})
    http = httpx.Client()
    with KolmeyaClient(TOKEN, base_url=BASE, http=http) as c:
        assert c.balance() == Decimal("1.00")
    assert not http.is_closed
    http.close()


# -- async client ----------------------------------------------------------------------------

def test_async_client(router: respx.MockRouter) -> None:
    store = router.post("/sms/store").mock(side_effect=[
        httpx.ConnectError("refused"), httpx.Response(200, json=STORE_OK)])
    router.post("/sms/balance").respond(200, json={"balance": "R$ 9.397,30"})
    replies = router.post("/sms/replys").mock(side_effect=[
        httpx.Response(200, json={"current_page": 1, "last_page": 2, "data": [reply(1)]}),
        httpx.Response(200, json={"current_page": 2, "last_page": 2, "data": [reply(2)]})])
    sleeps: List[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> None:
        async with AsyncKolmeyaClient(TOKEN, base_url=BASE, sleep=record) as c:
            (outcome,) = await c.send_batch([msg()], batch_id="B1")
            assert outcome.results[0].provider_message_id == "u1"
            assert await c.balance() == Decimal("9397.30")
            got = await c.replies(1)
            assert [r.provider_reply_id for r in got] == ["1", "2"]

    asyncio.run(scenario())
    assert store.call_count == 2
    assert len(sleeps) == 1
    assert_request(store, "/sms/store", {
        "messages": [{"phone": 48991234567, "message": "Olá", "reference": "M1"}],
        "reference": "B1"})
    assert_request(replies, "/sms/replys", {"period": 1, "page": 2})


def test_async_ambiguous_send(router: respx.MockRouter) -> None:
    route = router.post("/sms/store").mock(side_effect=httpx.ReadTimeout("timed out"))

    async def scenario() -> None:
        async with AsyncKolmeyaClient(TOKEN, base_url=BASE) as c:
            with pytest.raises(AmbiguousSendError):
                await c.send_batch([msg()], batch_id="B1")

    asyncio.run(scenario())
    assert route.call_count == 1


def test_async_other_endpoints(router: respx.MockRouter) -> None:
    router.post("/sms/status/request").respond(200, json={"id": "r", "messages": []})
    router.post("/sms/status/message").respond(200, json={"id": "u1", "status_code": 3})
    router.post("/sms/segments").respond(200, json={"segments": []})
    bl = router.post("/blacklist/store").respond(201)
    router.post("/blacklist/destroy").respond(204)
    job = router.post("/sms/jobs/5/play").respond(200, json={"ok": True})
    router.post("/sms/store-token").respond(200, json=STORE_OK)
    router.post("/sms/reports/statuses").respond(200, json={"messages": []})

    async def scenario() -> None:
        async with AsyncKolmeyaClient(TOKEN, base_url=BASE) as c:
            assert (await c.request_status(reference="B1")).request_id == "r"
            assert (await c.message_status("u1")).state is State.DELIVERED
            assert await c.cost_centres() == []
            await c.blacklist_add(["+5548991234567"])
            await c.blacklist_remove(["+5548991234567"])
            assert await c.play_job(5) == {"ok": True}
            assert (await c.send_token(msg())).results[0].state is State.SENT
            start = dt.datetime(2025, 1, 1, tzinfo=UTC)
            assert await c.report_statuses(start, start + dt.timedelta(days=1)) == []

    asyncio.run(scenario())
    assert_request(bl, "/blacklist/store", {"phones": [{"phone": 48991234567}]})
    assert job.call_count == 1


# -- provider --------------------------------------------------------------------------------

def settings(**values: str) -> Settings:
    base = {"kolmeya_token": TOKEN, "kolmeya_base_url": BASE}
    base.update(values)
    return Settings(values=base, public_url="https://sms.example.com",
                    webhook_secret=Secret("h00kS3cret"))


@pytest.fixture
def provider(router: respx.MockRouter) -> Iterator[KolmeyaProvider]:
    p = KolmeyaProvider.from_settings(settings(kolmeya_cost_centre_id="12"))
    yield p
    p.close()


def test_provider_contract_and_plugin(router: respx.MockRouter) -> None:
    plugins = Plugins(settings(), entry_points=False)
    plugins.register(plugin, name="kolmeya")
    provider = plugins.create_provider("kolmeya")
    assert isinstance(provider, KolmeyaProvider)
    assert isinstance(provider, Provider)
    assert provider.max_batch == 1000
    caps = provider.capabilities
    assert all([caps.status_query, caps.reconcile, caps.balance, caps.blacklist, caps.webhooks,
                caps.reply_polling])
    assert "h00kS3cret" not in repr(provider)
    assert TOKEN not in repr(provider)
    provider.close()


def test_provider_send_batch_sends_webhook_and_cost_centre(router: respx.MockRouter,
                                                           provider: KolmeyaProvider) -> None:
    route = router.post("/sms/store").respond(200, json={
        "id": "req-1", "valids": [{"id": "u1", "phone": 48991234567, "reference": "M1"}],
        "blacklist": [{"phone": 11987654321}]})
    bad = msg("+14155550123", id="M0")
    results = provider.send_batch([bad, msg(id="M1"), msg("+5511987654321", id="M2"),
                                   msg("+5521987654321", id="M3")], batch_id="B1")
    assert_request(route, "/sms/store", {
        "messages": [{"phone": 48991234567, "message": "Olá", "reference": "M1"},
                     {"phone": 11987654321, "message": "Olá", "reference": "M2"},
                     {"phone": 21987654321, "message": "Olá", "reference": "M3"}],
        "reference": "B1", "tenant_segment_id": 12,
        "webhook_url": "https://sms.example.com/webhooks/kolmeya/status?token=h00kS3cret"})
    assert [(r.message_id, r.state, r.error_code) for r in results] == [
        ("M0", State.REJECTED, "invalid_phone"), ("M1", State.SENT, None),
        ("M2", State.REJECTED, "blacklist")]


def test_provider_send_all_invalid_sends_nothing(router: respx.MockRouter,
                                                 provider: KolmeyaProvider) -> None:
    route = router.post("/sms/store").respond(200, json=STORE_OK)
    results = provider.send_batch([msg("123", id="X")], batch_id="B")
    assert [r.error_code for r in results] == ["invalid_phone"]
    assert route.call_count == 0
    with pytest.raises(ValidationError, match="at most 1000"):
        provider.send_batch([msg(id=str(i)) for i in range(1001)], batch_id="B")


def test_provider_send_ambiguous_propagates(router: respx.MockRouter,
                                            provider: KolmeyaProvider) -> None:
    route = router.post("/sms/store").mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(AmbiguousSendError) as info:
        provider.send_batch([msg()], batch_id="B1")
    assert info.value.sent_nothing is False
    assert route.call_count == 1


@pytest.mark.parametrize("response", [
    httpx.Response(404, json={"errors": ["Not found."]}), httpx.Response(200, json={}),
    httpx.Response(200, content=b"")])
def test_provider_reconcile_unknown(router: respx.MockRouter, provider: KolmeyaProvider,
                                    response: httpx.Response) -> None:
    route = router.post("/sms/status/request").mock(return_value=response)
    answer = provider.reconcile("B1", [msg()])
    assert answer.known is False
    assert_request(route, "/sms/status/request", {"reference": "B1"})


def test_provider_reconcile_known(router: respx.MockRouter, provider: KolmeyaProvider) -> None:
    router.post("/sms/status/request").respond(200, json={
        "id": "req-1", "status": "Válido", "status_code": 2, "reference": "B1", "messages": [
            {"id": "u1", "reference": "M1", "status": "enviado", "status_code": 2},
            {"id": "u2", "reference": "M2", "status": "entregue", "status_code": 3},
            {"id": "u9", "reference": "OTHER", "status_code": 2}]})
    messages = [msg(id="M1"), msg(id="M2"), msg(id="M3")]
    answer = provider.reconcile("B1", messages)
    assert answer.known
    assert [(r.message_id, r.state, r.provider_message_id, r.provider_request_id)
            for r in answer.results] == [("M1", State.SENT, "u1", "req-1"),
                                         ("M2", State.SENT, "u2", "req-1")]
    (event,) = answer.statuses
    assert (event.message_id, event.state, event.provider_message_id) == (
        "M2", State.DELIVERED, "u2")


def test_provider_reconcile_known_without_messages_is_not_resendable(
        router: respx.MockRouter, provider: KolmeyaProvider) -> None:
    router.post("/sms/status/request").respond(200, json={"id": "req-1", "messages": []})
    with pytest.raises(AmbiguousSendError, match="later"):
        provider.reconcile("B1", [msg()])


def test_provider_reconcile_other_errors_propagate(router: respx.MockRouter,
                                                   provider: KolmeyaProvider) -> None:
    router.post("/sms/status/request").respond(422, json={"errors": ["reference invalid"]})
    with pytest.raises(RequestRejectedError):
        provider.reconcile("B1", [msg()])


def test_provider_other_capabilities(router: respx.MockRouter, provider: KolmeyaProvider) -> None:
    router.post("/sms/balance").respond(200, json={"balance": "R$9.397,30"})
    bl = router.post("/blacklist/store").respond(201)
    unbl = router.post("/blacklist/destroy").respond(204)
    replies = router.post("/sms/replys").respond(200, json={"current_page": 1,
                                                            "data": [reply(1)]})
    web = router.post("/sms/replys-web").respond(200, json={"current_page": 1, "data": [{
        "id": 7, "job": 1000001, "phone": 48991234567, "parameters": {"VALOR": "10,00"},
        "reply": "Sim", "message": "Sua fatura", "send_at": "15/11/2025 10:00:00",
        "received_at": "15/11/2025 11:00:00"}]})
    router.post("/sms/status/message").respond(200, json={"id": "u1", "reference": "M1",
                                                          "status_code": "4"})
    assert provider.balance() == Decimal("9397.30")
    provider.blacklist_add(["+5548991234567"])
    provider.blacklist_remove(["+5548991234567"])
    assert body_of(bl) == body_of(unbl) == {"phones": [{"phone": 48991234567}]}
    now = dt.datetime(2025, 11, 15, 12, 0, tzinfo=UTC)
    got = provider.poll_replies(now - dt.timedelta(hours=2, minutes=5), now=now)
    assert body_of(replies) == {"period": 3}
    assert got[0].provider_reply_id == "1"
    # Replies to panel campaigns too, in their own id space, answering no message of ours.
    assert body_of(web) == {}
    assert [(r.provider_reply_id, r.phone, r.body, r.in_reply_to_provider_id)
            for r in got[1:]] == [("web:7", "+5548991234567", "Sim", None)]
    assert got[1].received_at == dt.datetime(2025, 11, 15, 14, 0, tzinfo=UTC)
    provider.poll_replies(now - dt.timedelta(days=30), now=now)
    assert body_of(replies) == {"period": 168}
    provider.poll_replies()
    assert body_of(replies) == {"period": 24}
    event = provider.message_status("u1")
    assert (event.state, event.message_id, event.status_code) == (State.ERROR, "M1", 4)
    payload = provider.parse_webhook(WebhookRequest(
        provider="kolmeya", kind="status",
        data={"id": "r", "messages": [{"id": "u1", "reference": "M1", "status_code": 3}]}))
    assert payload.statuses[0].state is State.DELIVERED


def test_panel_replies_that_fail_leave_the_api_replies(router: respx.MockRouter,
                                                       provider: KolmeyaProvider) -> None:
    router.post("/sms/replys").respond(200, json={"current_page": 1, "data": [reply(1)]})
    router.post("/sms/replys-web").respond(404, json={"errors": ["Not found."]})
    assert [r.provider_reply_id for r in provider.poll_replies()] == ["1"]


def test_provider_blacklist_bad_phone_sends_nothing(router: respx.MockRouter,
                                                    provider: KolmeyaProvider) -> None:
    route = router.post("/blacklist/store").respond(201)
    with pytest.raises(InvalidPhoneError):
        provider.blacklist_add(["+5548991234567", "not a phone"])
    assert route.call_count == 0


def test_the_cost_centre_setting_keeps_its_former_name() -> None:
    from smskit_kolmeya.settings import KolmeyaSettings

    def centre(**environ: str) -> Optional[int]:
        loaded = Settings.load(environ={"SMSKIT_KOLMEYA_TOKEN": TOKEN, **environ})
        return KolmeyaSettings.from_settings(loaded).cost_centre_id

    assert centre(SMSKIT_KOLMEYA_COST_CENTRE_ID="12") == 12
    assert centre(SMSKIT_KOLMEYA_SEGMENT_ID="13") == 13  # the name before the rename
    assert centre(SMSKIT_KOLMEYA_COST_CENTRE_ID="12", SMSKIT_KOLMEYA_SEGMENT_ID="12") == 12
    assert centre() is None


def test_settings_errors() -> None:
    with pytest.raises(ConfigurationError, match="SMSKIT_KOLMEYA_TOKEN"):
        KolmeyaProvider.from_settings(Settings(values={}))
    with pytest.raises(ConfigurationError, match="webhook_secret"):
        KolmeyaProvider.from_settings(Settings(values={"kolmeya_token": TOKEN},
                                               public_url="https://x.example"))
    with pytest.raises(ConfigurationError, match="kolmeya_cost_centre_id"):
        KolmeyaProvider.from_settings(settings(kolmeya_cost_centre_id="abc"))
    with pytest.raises(ConfigurationError, match="kolmeya_segment_id"):
        KolmeyaProvider.from_settings(settings(kolmeya_segment_id="abc"))
    with pytest.raises(ConfigurationError, match="differ"):
        KolmeyaProvider.from_settings(settings(kolmeya_cost_centre_id="12",
                                               kolmeya_segment_id="13"))
    with pytest.raises(ConfigurationError, match="kolmeya_timeout"):
        KolmeyaProvider.from_settings(settings(kolmeya_timeout="-1"))
    with pytest.raises(ConfigurationError, match="kolmeya_job_control"):
        KolmeyaProvider.from_settings(settings(kolmeya_job_control="query"))
    p = KolmeyaProvider.from_settings(Settings(values={"kolmeya_token": TOKEN}))
    assert p.client.webhook_url is None
    assert p.client.base_url == "https://kolmeya.com.br/api/v1"
    p.close()
