"""Wire-format tests of the Twilio clients with respx (no network): exact requests, answer
mapping, the retry policy (never a blind resend) and credential hygiene."""

from __future__ import annotations

import asyncio
import base64
import logging
from decimal import Decimal
from typing import Any, Dict, Iterator, List
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from smskit.config import Settings
from smskit.errors import (
    AmbiguousSendError,
    AuthenticationError,
    ConfigurationError,
    ProviderError,
    RateLimitedError,
    TransientProviderError,
)
from smskit.models import Message
from smskit.plugins import Plugins
from smskit_twilio import plugin, wire
from smskit_twilio.client import AsyncTwilioClient, TwilioClient
from smskit_twilio.provider import TwilioProvider
from smskit_twilio.settings import TwilioSettings

BASE = "https://api.twilio.test"
ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "auThT0k3nS3cr3tValue0123456789ab"
HOOK = "https://sms.example.com/webhooks/twilio/status?token=h00kS3cret"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"


def created(sid: str = "SM" + "1" * 32, status: str = "queued", **extra: Any) -> Dict[str, Any]:
    body = {"sid": sid, "status": status, "to": "+5511987654321", "from": "+15005550006",
            "body": "Olá", "direction": "outbound-api", "account_sid": ACCOUNT,
            "date_created": "Mon, 02 Mar 2026 15:00:00 +0000"}
    body.update(extra)
    return body


def msg(body: str = "Olá") -> Message:
    return Message(id="M1", phone="+5511987654321", body=body)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> List[float]:
    return []


@pytest.fixture
def client(sleeps: List[float]) -> Iterator[TwilioClient]:
    with TwilioClient(ACCOUNT, TOKEN, from_="+15005550006", status_callback=HOOK,
                      base_url=BASE, sleep=sleeps.append, max_retry_wait=10) as c:
        yield c


def form_of(request: httpx.Request) -> List[Any]:
    return parse_qsl(request.content.decode(), keep_blank_values=True)


def test_send_posts_the_form_with_basic_auth(router: respx.MockRouter,
                                             client: TwilioClient) -> None:
    route = router.post(MESSAGES).respond(201, json=created())
    result = client.send_message(msg("Olá Ana & cia"))
    assert result.sid == "SM" + "1" * 32 and result.status == "queued"
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert form_of(request) == [("To", "+5511987654321"), ("Body", "Olá Ana & cia"),
                                ("From", "+15005550006"), ("StatusCallback", HOOK)]


def test_api_key_authenticates_instead_of_the_token(router: respx.MockRouter) -> None:
    route = router.get(f"/2010-04-01/Accounts/{ACCOUNT}/Balance.json").respond(
        200, json={"balance": "9.50", "currency": "USD"})
    key = "SK" + "f" * 32
    with TwilioClient(ACCOUNT, api_key_sid=key, api_key_secret="k3y", base_url=BASE) as c:
        assert c.balance() == wire.Balance(Decimal("9.50"), "USD")
    assert route.calls.last.request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{key}:k3y".encode()).decode()


def test_list_follows_next_page_uri(router: respx.MockRouter, client: TwilioClient) -> None:
    second = f"{MESSAGES}?To=%2B5511987654321&PageSize=2&Page=1&PageToken=PA2"
    router.get(MESSAGES, params={"Page": "1"}).respond(200, json={
        "messages": [created("SM3")], "next_page_uri": None})
    first = router.get(MESSAGES).respond(200, json={
        "messages": [created("SM1"), created("SM2")], "next_page_uri": second})
    listed = client.list_messages(to="+5511987654321", page_size=2)
    assert [m.sid for m in listed.messages] == ["SM1", "SM2", "SM3"] and listed.complete
    assert dict(first.calls[0].request.url.params) == {"To": "+5511987654321", "PageSize": "2"}
    cut = client.list_messages(to="+5511987654321", page_size=2, max_pages=1)
    assert [m.sid for m in cut.messages] == ["SM1", "SM2"] and not cut.complete


def test_connect_errors_are_retried_and_then_sent_nothing(router: respx.MockRouter,
                                                          client: TwilioClient,
                                                          sleeps: List[float]) -> None:
    route = router.post(MESSAGES).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransientProviderError) as info:
        client.send_message(msg())
    assert info.value.sent_nothing and route.call_count == 4 and len(sleeps) == 3


def test_429_waits_retry_after_then_succeeds(router: respx.MockRouter, client: TwilioClient,
                                             sleeps: List[float]) -> None:
    route = router.post(MESSAGES).mock(side_effect=[
        httpx.Response(429, json={"code": 20429, "message": "Too Many Requests"},
                       headers={"Retry-After": "2"}),
        httpx.Response(201, json=created())])
    assert client.send_message(msg()).status == "queued"
    assert route.call_count == 2 and sleeps == [2.0]


def test_a_long_retry_after_is_raised_at_once(router: respx.MockRouter, client: TwilioClient,
                                              sleeps: List[float]) -> None:
    router.post(MESSAGES).respond(429, json={"code": 20429}, headers={"Retry-After": "120"})
    with pytest.raises(RateLimitedError) as info:
        client.send_message(msg())
    assert info.value.retry_after == 120 and info.value.sent_nothing and sleeps == []


@pytest.mark.parametrize("failure", [
    httpx.ReadTimeout("read timed out"), httpx.RemoteProtocolError("peer closed"),
    httpx.Response(500, json={"code": 20500}), httpx.Response(502),
    httpx.Response(201, content=b"<html>"), httpx.Response(201, json={"status": "queued"}),
])
def test_an_ambiguous_send_is_never_retried(router: respx.MockRouter, client: TwilioClient,
                                            failure: Any) -> None:
    route = router.post(MESSAGES).mock(side_effect=[failure, httpx.Response(201, json=created())])
    with pytest.raises(AmbiguousSendError) as info:
        client.send_message(msg())
    assert not info.value.sent_nothing and route.call_count == 1


def test_reads_are_not_ambiguous(router: respx.MockRouter, client: TwilioClient) -> None:
    router.get(MESSAGES).respond(500)
    with pytest.raises(ProviderError) as info:
        client.list_messages(to="+5511987654321")
    assert not isinstance(info.value, AmbiguousSendError)


def test_a_refusal_carries_twilios_code(router: respx.MockRouter, client: TwilioClient) -> None:
    router.post(MESSAGES).respond(400, json={
        "code": 21610, "message": "Attempt to send to unsubscribed recipient",
        "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400})
    with pytest.raises(wire.TwilioRequestError) as info:
        client.send_message(msg())
    assert info.value.code == 21610 and info.value.about_recipient
    assert info.value.more_info == "https://www.twilio.com/docs/errors/21610"


def test_bad_credentials(router: respx.MockRouter, client: TwilioClient) -> None:
    router.post(MESSAGES).respond(401, json={"code": 20003, "message": "Authenticate"})
    with pytest.raises(AuthenticationError) as info:
        client.send_message(msg())
    assert info.value.sent_nothing


def test_secrets_never_show(router: respx.MockRouter, client: TwilioClient,
                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    router.post(MESSAGES).respond(400, json={"code": 21609, "message": f"Invalid url {HOOK}"})
    with pytest.raises(ProviderError) as info:
        client.send_message(msg())
    shown = " ".join([str(info.value), repr(client), caplog.text])
    assert TOKEN not in shown and "h00kS3cret" not in shown
    assert "********" in repr(client)


def test_async_client_does_the_same(router: respx.MockRouter) -> None:
    waits: List[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    route = router.post(MESSAGES).mock(side_effect=[
        httpx.Response(429, json={"code": 20429}, headers={"Retry-After": "1"}),
        httpx.Response(201, json=created())])
    router.get(MESSAGES).respond(200, json={"messages": [created()], "next_page_uri": None})

    async def scenario() -> None:
        async with AsyncTwilioClient(ACCOUNT, TOKEN, from_="+15005550006", base_url=BASE,
                                     sleep=record) as c:
            assert (await c.send_message(msg())).status == "queued"
            assert len((await c.list_messages(to="+5511987654321")).messages) == 1
        router.post(MESSAGES).mock(side_effect=httpx.ReadTimeout("slow"))
        async with AsyncTwilioClient(ACCOUNT, TOKEN, from_="+15005550006",
                                     base_url=BASE) as c:
            with pytest.raises(AmbiguousSendError):
                await c.send_message(msg())

    asyncio.run(scenario())
    assert waits == [1.0] and route.call_count == 3  # the read timeout was not retried


# -- settings and plugin ----------------------------------------------------------------------

def settings(**values: str) -> Settings:
    base = {"twilio_account_sid": ACCOUNT, "twilio_auth_token": TOKEN,
            "twilio_from": "+15005550006"}
    base.update(values)
    return Settings.load(environ={}, **base)


def test_settings_build_the_status_callback() -> None:
    ts = TwilioSettings.from_settings(settings(public_url="https://sms.example.com/",
                                               webhook_secret="h00kS3cret"))
    assert ts.status_callback is not None
    assert ts.status_callback.reveal() == HOOK
    assert "h00kS3cret" not in repr(ts)
    assert TwilioSettings.from_settings(settings()).status_callback is None


@pytest.mark.parametrize(("values", "complaint"), [
    ({"twilio_account_sid": "AC123"}, "twilio_account_sid"),
    ({"twilio_auth_token": ""}, "AUTH_TOKEN"),
    ({"twilio_from": "", "twilio_messaging_service_sid": ""}, "sender"),
    ({"twilio_from": "5511987654321"}, "twilio_from"),
    ({"twilio_messaging_service_sid": "MG1"}, "twilio_messaging_service_sid"),
    ({"twilio_api_key_sid": "SK" + "0" * 32}, "go together"),
    ({"twilio_base_url": "http://api.twilio.test"}, "plain http"),
    ({"twilio_max_batch": "0"}, "twilio_max_batch"),
])
def test_bad_settings_are_named(values: Dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        TwilioSettings.from_settings(settings(**values))


def test_webhooks_need_the_auth_token() -> None:
    with pytest.raises(ConfigurationError, match="signs"):
        TwilioSettings.from_settings(settings(
            twilio_auth_token="", twilio_api_key_sid="SK" + "0" * 32,
            twilio_api_key_secret="k", public_url="https://sms.example.com"))


def test_plugin_registers_the_twilio_provider() -> None:
    plugins = Plugins(settings(provider="twilio", twilio_base_url=BASE), entry_points=False)
    plugins.register(plugin, "twilio")
    provider = plugins.create_provider("twilio")
    try:
        assert isinstance(provider, TwilioProvider) and provider.name == "twilio"
        assert provider.max_batch == 50 and provider.capabilities.reply_polling
        assert not provider.capabilities.blacklist
    finally:
        provider.close()


def test_plugin_adds_the_simulate_command() -> None:
    from click.testing import CliRunner

    from smskit_twilio.commands import twilio

    result = CliRunner().invoke(twilio, ["simulate", "--help"])
    assert result.exit_code == 0 and "--inbound-url" in result.output
    bad = CliRunner().invoke(twilio, ["simulate", "--outcome", "delivered"])
    assert bad.exit_code != 0 and "STATUS=SHARE" in bad.output

