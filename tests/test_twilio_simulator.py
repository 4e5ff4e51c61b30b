"""The Twilio simulator behaves as Twilio documents, over HTTP under a real uvicorn."""

from __future__ import annotations

import base64
from typing import Dict, Tuple

import httpx
import pytest

from smskit.config import Secret
from smskit.errors import AmbiguousSendError, ConfigurationError, ProviderError, RateLimitedError
from smskit.models import Message
from smskit_twilio import wire
from smskit_twilio.client import TwilioClient
from smskit_twilio.testing.simulator import DEFAULT_NUMBER, DEFAULT_SERVICE_SID, SimulatorConfig
from smskit_twilio.webhooks import SignatureCheck, parse_webhook
from twilio_helpers import Receiver, SimServer

TO = "+5511987654321"


def client(sim_server: SimServer, **options: object) -> TwilioClient:
    sim, base = sim_server
    options.setdefault("from_", DEFAULT_NUMBER)
    return TwilioClient(sim.config.account_sid, sim.config.auth_token, base_url=base,
                        sleep=lambda _s: None, **options)  # type: ignore[arg-type]


def test_a_message_goes_queued_sent_delivered_with_signed_callbacks(
        twilio_sim: SimServer, receiver: Tuple[Receiver, str]) -> None:
    sim, _ = twilio_sim
    found, hook_base = receiver
    hook = f"{hook_base}/webhooks/twilio/status?token=abc"
    sim.configure(forced_outcomes={TO: "delivered"})
    with client(twilio_sim, status_callback=hook) as c:
        created = c.send_message(Message.new(TO, "Olá!"))
        assert created.status == "queued" and created.from_ == DEFAULT_NUMBER
        assert sim.advance() == 3
        assert c.fetch_message(created.sid).status == "delivered"
    # Twilio calls back on sent and on the final status (not on the initial status).
    assert [f["MessageStatus"] for f in found.forms()] == ["sent", "delivered"]
    check = SignatureCheck(Secret(sim.config.auth_token))
    for request in found.requests:
        payload = parse_webhook("status", request["headers"], request["body"],
                                url=request["url"], check=check)
        assert payload.statuses[0].provider_message_id == created.sid
    assert "RawDlrDoneDate" in found.forms()[-1]


def test_a_messaging_service_accepts_then_queues(twilio_sim: SimServer,
                                                 receiver: Tuple[Receiver, str]) -> None:
    sim, _ = twilio_sim
    found, hook_base = receiver
    sim.configure(forced_outcomes={TO: "undelivered"})
    with client(twilio_sim, from_=None, messaging_service_sid=DEFAULT_SERVICE_SID,
                status_callback=f"{hook_base}/s") as c:
        created = c.send_message(Message.new(TO, "Olá!"))
        assert created.status == "accepted" and created.from_ is None
        sim.advance()
        final = c.fetch_message(created.sid)
    assert final.status == "undelivered" and final.error_code == 30003
    assert final.from_ == DEFAULT_NUMBER and final.messaging_service_sid == DEFAULT_SERVICE_SID
    forms = found.forms()
    assert [f["MessageStatus"] for f in forms] == ["queued", "sent", "undelivered"]
    assert forms[-1]["ErrorCode"] == "30003"


def test_twilios_refusals(twilio_sim: SimServer) -> None:
    sim, _ = twilio_sim
    sim.configure(invalid=["+5511900000001"], unreachable=["+5511900000002"],
                  landlines=["+551133334444"])
    with client(twilio_sim) as c:
        for phone, code in (("+5511900000001", 21211), ("+5511900000002", 21612),
                            ("+551133334444", 21614)):
            with pytest.raises(wire.TwilioRequestError) as info:
                c.send_message(Message.new(phone, "x"))
            assert info.value.code == code and info.value.about_recipient
        with pytest.raises(wire.TwilioRequestError) as info:
            c.send_message(Message.new(TO, "x" * 1601))
        assert info.value.code == 21617
    with client(twilio_sim, from_="+15550009999") as c:
        with pytest.raises(wire.TwilioRequestError) as info:
            c.send_message(Message.new(TO, "x"))
        assert info.value.code == 21606 and not info.value.about_recipient
    assert sim.stats()["rejected"] == {"21211": 1, "21606": 1, "21612": 1, "21614": 1,
                                       "21617": 1}
    assert not sim.messages


def test_stop_blocks_and_start_lifts_and_inbound_is_posted_signed(
        twilio_sim: SimServer, receiver: Tuple[Receiver, str]) -> None:
    sim, base = twilio_sim
    found, hook_base = receiver
    inbound_url = f"{hook_base}/webhooks/twilio/reply?token=abc"
    sim.configure(inbound_url=inbound_url)
    answer = httpx.post(f"{base}/_sim/inbound", json={"from": TO, "body": "STOP"})
    assert answer.status_code == 200 and answer.json()["direction"] == "inbound"
    assert sim.is_opted_out(TO) and sim.is_opted_out(TO, DEFAULT_SERVICE_SID)
    (request,) = found.requests
    assert request["url"] == inbound_url
    payload = parse_webhook("reply", request["headers"], request["body"], url=inbound_url,
                            check=SignatureCheck(Secret(sim.config.auth_token)))
    assert payload.inbound[0].body == "STOP" and payload.inbound[0].phone == TO
    with client(twilio_sim) as c:
        with pytest.raises(wire.TwilioRequestError) as info:
            c.send_message(Message.new(TO, "Promo"))
        assert info.value.code == wire.OPTED_OUT
        sim.add_inbound(TO, "start")
        assert c.send_message(Message.new(TO, "Promo")).status == "queued"


def test_advanced_opt_out_adds_opt_out_type(twilio_sim: SimServer,
                                            receiver: Tuple[Receiver, str]) -> None:
    sim, _ = twilio_sim
    found, hook_base = receiver
    sim.configure(inbound_url=f"{hook_base}/r", advanced_opt_out=True)
    sim.add_inbound(TO, "Quit")
    sim.add_inbound(TO, "Oi, tudo bem?")
    forms = found.forms()
    assert forms[0]["OptOutType"] == "STOP" and "OptOutType" not in forms[1]


def test_the_list_filters_pages_and_leaves_unsent_out_of_date_filters(
        twilio_sim: SimServer) -> None:
    sim, _ = twilio_sim
    with client(twilio_sim) as c:
        for i in range(5):
            c.send_message(Message.new(TO, f"n{i}"))
        c.send_message(Message.new("+5521998765432", "other"))
        listed = c.list_messages(to=TO, page_size=2)
        assert [m.body for m in listed.messages] == ["n4", "n3", "n2", "n1", "n0"]
        assert listed.complete
        today = sim.now().date()
        # Not sent yet: a DateSent filter does not show them (why reconciliation uses none).
        assert not c.list_messages(to=TO, date_sent_after=today).messages
        sim.advance()
        assert len(c.list_messages(to=TO, date_sent_after=today).messages) == 5
        assert len(c.list_messages(from_=DEFAULT_NUMBER).messages) == 6


def test_authentication(twilio_sim: SimServer) -> None:
    sim, base = twilio_sim
    path = f"{base}/2010-04-01/Accounts/{sim.config.account_sid}/Balance.json"
    wrong = httpx.get(path, auth=(sim.config.account_sid, "nope"))
    assert wrong.status_code == 401 and wrong.json()["code"] == 20003
    assert httpx.get(path, auth=(sim.config.account_sid, sim.config.auth_token)).json()[
        "currency"] == "USD"
    other = f"{base}/2010-04-01/Accounts/AC{'0' * 32}/Balance.json"
    assert httpx.get(other, auth=(sim.config.account_sid, sim.config.auth_token)).status_code \
        == 404
    key, secret = "SK" + "e" * 32, "key-secret"
    sim.configure(api_key_sid=key, api_key_secret=secret)
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    assert httpx.get(path, headers={"Authorization": f"Basic {token}"}).status_code == 200


def test_fault_429_sends_nothing(twilio_sim: SimServer) -> None:
    sim, _ = twilio_sim
    sim.configure(fail_429_rate=1.0, retry_after=0)
    with client(twilio_sim, max_attempts=2) as c, pytest.raises(RateLimitedError):
        c.send_message(Message.new(TO, "x"))
    assert not sim.messages


def test_fault_500_before_creating(twilio_sim: SimServer) -> None:
    sim, _ = twilio_sim
    sim.configure(fail_500_rate=1.0, fault_endpoints=["messages.create"])
    with client(twilio_sim) as c:
        with pytest.raises(AmbiguousSendError):  # the client cannot know it was not created
            c.send_message(Message.new(TO, "x"))
        assert c.balance().currency == "USD"  # other endpoints are spared
    assert not sim.messages


@pytest.mark.parametrize("fault", [{"timeout_after_accept_rate": 1.0, "hang_seconds": 5.0},
                                   {"error_after_accept_rate": 1.0}])
def test_faults_after_accepting_create_the_message(twilio_sim: SimServer,
                                                   fault: Dict[str, float]) -> None:
    sim, _ = twilio_sim
    sim.configure(fault_numbers=[TO], **fault)
    with client(twilio_sim, timeout=0.5) as c:
        with pytest.raises(AmbiguousSendError):
            c.send_message(Message.new(TO, "x"))
        assert c.send_message(Message.new("+5521998765432", "y")).status == "queued"
    assert sorted(m.to for m in sim.messages.values()) == [TO, "+5521998765432"]


def test_slow_answers(twilio_sim: SimServer) -> None:
    sim, _ = twilio_sim
    sim.configure(slow_seconds=1.0)
    with client(twilio_sim, timeout=0.3) as c, pytest.raises(ProviderError):
        c.balance()


def test_callback_chaos(twilio_sim: SimServer, receiver: Tuple[Receiver, str]) -> None:
    sim, _ = twilio_sim
    found, hook_base = receiver
    with client(twilio_sim, status_callback=f"{hook_base}/s") as c:
        sim.configure(callback_drop_rate=1.0)
        c.send_message(Message.new(TO, "dropped"))
        sim.advance()
        assert not found.requests and sim.stats()["callbacks"]["dropped"] == 2
        sim.configure(callback_drop_rate=0.0, callback_duplicate_rate=1.0)
        c.send_message(Message.new(TO, "twice"))
        sim.advance()
    assert len(found.requests) == 4
    assert sum(1 for entry in sim.callbacks_sent if entry["duplicate"]) == 2


def test_control_endpoints(twilio_sim: SimServer) -> None:
    sim, base = twilio_sim
    changed = httpx.post(f"{base}/_sim/config", json={"fail_500_rate": 0.5})
    assert changed.status_code == 200 and changed.json()["fail_500_rate"] == 0.5
    assert changed.json()["auth_token"] == "********"
    bad = httpx.post(f"{base}/_sim/config", json={"fail_500_rate": 2})
    assert bad.status_code == 422 and "fail_500_rate" in bad.json()["error"]
    assert httpx.post(f"{base}/_sim/config", json={"nope": 1}).status_code == 422
    sim.configure(fail_500_rate=0.0)
    with client(twilio_sim) as c:
        c.send_message(Message.new(TO, "x"))
    assert httpx.post(f"{base}/_sim/advance").json()["changed"] == 3
    stats = httpx.get(f"{base}/_sim/stats").json()
    assert stats["messages"] == 1 and stats["sent_twice"] == 0
    assert httpx.post(f"{base}/_sim/inbound", json={"from": TO}).status_code == 422
    assert httpx.post(f"{base}/_sim/reset").json() == {"reset": True}
    assert not sim.messages


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="fault_endpoints"):
        SimulatorConfig(fault_endpoints=["sms/store"])
    with pytest.raises(ConfigurationError, match="E.164"):
        SimulatorConfig(numbers=["15005550006"])
    with pytest.raises(ConfigurationError, match="outcomes"):
        SimulatorConfig(outcomes={"read": 1.0})
