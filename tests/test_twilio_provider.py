"""TwilioProvider against the simulator: a batch that fails part-way is reconciled and never
sent twice, refusals per recipient, webhooks through the provider and the kit, balance, status
queries and reply polling."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Dict, Iterator, List, Tuple
from urllib.parse import urlencode

import attrs
import pytest

from smskit.errors import (
    AmbiguousSendError,
    ConfigurationError,
    RateLimitedError,
    RequestRejectedError,
)
from smskit.ids import new_id
from smskit.kit import SmsKit
from smskit.models import Direction, Message, State, utcnow
from smskit.store.memory import MemoryStore
from smskit.testing.conformance import sample_messages
from smskit.webhooks import WebhookRequest, parse_query, receive
from smskit.webhooks.auth import AuthResult
from smskit_twilio.provider import PartialSendError, TwilioProvider
from smskit_twilio.signature import compute_signature
from twilio_helpers import Receiver, SimServer, twilio_settings

FORM = {"content-type": "application/x-www-form-urlencoded"}


def make_provider(sim_server: SimServer, **values: Any) -> TwilioProvider:
    sim, base = sim_server
    return TwilioProvider.from_settings(twilio_settings(sim, base, **values))


@pytest.fixture
def provider(twilio_sim: SimServer) -> Iterator[TwilioProvider]:
    p = make_provider(twilio_sim, twilio_timeout="0.5")
    yield p
    p.close()


def hang_on(sim_server: SimServer, phone: str) -> None:
    """Creates to ``phone`` are accepted, then their answer never comes in time."""
    sim, _ = sim_server
    sim.configure(timeout_after_accept_rate=1.0, hang_seconds=5.0, fault_numbers=[phone])


def settle_sim(sim_server: SimServer) -> None:
    sim, _ = sim_server
    sim.configure(timeout_after_accept_rate=0.0, fault_numbers=[])


def sids_by_body(sim_server: SimServer) -> dict:  # type: ignore[type-arg]
    sim, _ = sim_server
    return {m.body: m.sid for m in sim.messages.values()}


# -- message 3 of 10 is ambiguous ----------------------------------------------------------------

def test_message_3_of_10_times_out_then_reconcile_knows_exactly_what_went_out(
        twilio_sim: SimServer, provider: TwilioProvider) -> None:
    sim, _ = twilio_sim
    messages = sample_messages(10)
    hang_on(twilio_sim, messages[2].phone)
    with pytest.raises(PartialSendError) as info:
        provider.send_batch(messages, batch_id="B1")
    failure = info.value
    assert not failure.sent_nothing and isinstance(failure, AmbiguousSendError)
    assert [r.message_id for r in failure.results] == [m.id for m in messages[:2]]
    assert failure.ambiguous == (messages[2].id,)
    assert failure.unsent == tuple(m.id for m in messages[3:])
    assert len(sim.messages) == 3  # Twilio created the third one

    answer = provider.reconcile("B1", messages)
    created = sids_by_body(twilio_sim)
    assert answer.known
    assert [(r.message_id, r.provider_message_id) for r in answer.results] == [
        (m.id, created[m.body]) for m in messages[:3]]

    # Another process (no journal) reaches the same answer by listing.
    fresh = make_provider(twilio_sim)
    try:
        again = fresh.reconcile("B1", messages)
    finally:
        fresh.close()
    assert again.results == answer.results


def test_reconcile_waits_for_the_grace_after_an_ambiguous_send(twilio_sim: SimServer) -> None:
    messages = sample_messages(2)
    hang_on(twilio_sim, messages[0].phone)
    patient = make_provider(twilio_sim, twilio_timeout="0.5", twilio_reconcile_grace="60")
    try:
        with pytest.raises(PartialSendError):
            patient.send_batch(messages, batch_id="B2")
        with pytest.raises(AmbiguousSendError, match="too soon"):
            patient.reconcile("B2", messages)
    finally:
        patient.close()


def test_a_create_that_never_arrived_is_reported_unknown(twilio_sim: SimServer,
                                                         provider: TwilioProvider) -> None:
    sim, _ = twilio_sim
    sim.configure(fail_500_rate=1.0, fault_endpoints=["messages.create"])
    messages = sample_messages(3)
    with pytest.raises(PartialSendError) as info:
        provider.send_batch(messages, batch_id="B3")
    assert info.value.ambiguous == (messages[0].id,) and not info.value.results
    sim.configure(fail_500_rate=0.0)
    assert not provider.reconcile("B3", messages).known


def test_the_pipeline_sends_each_message_once_through_a_timeout(twilio_sim: SimServer) -> None:
    sim, base = twilio_sim
    phones = [m.phone for m in sample_messages(10)]
    hang_on(twilio_sim, phones[2])
    settings = twilio_settings(sim, base, twilio_timeout="0.5", twilio_max_batch="10")
    with SmsKit(settings, store=MemoryStore(),
                provider=TwilioProvider.from_settings(settings)) as kit:
        summary = kit.send_many(phones, "Sua fatura vence amanhã")
        # Two went out, the third may have: only it waits for reconciliation (with the two
        # sent, in its batch); the seven never sent went back to the queue.
        assert (summary.queued, summary.held, summary.sent, summary.failed_dispatch) == (
            7, 1, 2, 8)
        (batch,) = kit.store.batches(status="ambiguous")
        assert set(batch.message_ids) == {m.id for m in kit.store.list_messages(limit=100)
                                          if m.phone in phones[:3]}
        assert kit.dispatch().sent == 7  # the never-sent ones go; the third does not
        settle_sim(twilio_sim)

        report = kit.reconcile()
        assert (report.confirmed, report.resendable, report.still_unknown) == (1, 0, 0)
        assert kit.dispatch().batches == 0

        sent = [m for m in kit.store.list_messages(limit=100)
                if m.direction is Direction.OUTBOUND]
    assert sorted(m.state for m in sent) == [State.SENT] * 10
    by_phone = {m.to: m.sid for m in sim.messages.values()}
    assert {m.phone: m.provider_message_id for m in sent} == by_phone
    assert len(sim.messages) == 10 and not sim.sent_twice()


# -- refusals and errors ------------------------------------------------------------------------

def test_recipient_refusals_are_per_message(twilio_sim: SimServer,
                                            provider: TwilioProvider) -> None:
    sim, _ = twilio_sim
    messages = sample_messages(4)
    sim.configure(opted_out=[messages[1].phone], landlines=[messages[2].phone])
    results = {r.message_id: r for r in provider.send_batch(messages, batch_id=new_id())}
    assert [results[m.id].state for m in messages] == [State.SENT, State.REJECTED,
                                                       State.REJECTED, State.SENT]
    assert results[messages[1].id].error_code == "21610" and results[messages[1].id].opted_out
    assert not results[messages[2].id].opted_out
    assert "opted out" in (results[messages[1].id].error_text or "")
    assert results[messages[2].id].error_code == "21614"
    assert provider.send_batch([Message(phone="5511987654321", body="x")],
                               batch_id=new_id())[0].error_code == "invalid_phone"


def test_sent_nothing_before_anything_went_out_is_raised_as_it_is(
        twilio_sim: SimServer, provider: TwilioProvider) -> None:
    sim, _ = twilio_sim
    sim.configure(fail_429_rate=1.0, retry_after=300)
    with pytest.raises(RateLimitedError) as info:
        provider.send_batch(sample_messages(3), batch_id=new_id())
    assert info.value.sent_nothing and not isinstance(info.value, PartialSendError)


def test_sent_nothing_after_something_went_out_must_be_reconciled(
        twilio_sim: SimServer, provider: TwilioProvider) -> None:
    sim, _ = twilio_sim
    messages = sample_messages(3)
    sim.configure(fail_429_rate=1.0, retry_after=300, fault_numbers=[messages[1].phone])
    with pytest.raises(PartialSendError) as info:
        provider.send_batch(messages, batch_id="B4")
    assert info.value.ambiguous == () and not info.value.sent_nothing
    assert info.value.unsent == (messages[1].id, messages[2].id)
    answer = provider.reconcile("B4", messages)
    assert [r.message_id for r in answer.results] == [messages[0].id]


def test_an_account_level_refusal_stops_the_batch(twilio_sim: SimServer) -> None:
    wrong = make_provider(twilio_sim, twilio_from="+15550009999")
    try:
        with pytest.raises(RequestRejectedError) as info:
            wrong.send_batch(sample_messages(2), batch_id=new_id())
    finally:
        wrong.close()
    assert getattr(info.value, "code", None) == 21606


# -- webhooks -----------------------------------------------------------------------------------

def status_form(sid: str) -> List[Tuple[str, str]]:
    return [("MessageSid", sid), ("MessageStatus", "delivered"), ("To", "+5511987654321"),
            ("From", "+15005550006"), ("AccountSid", "AC" + "5f1a" * 8)]


def signed_request(sim: Any, url: str, params: List[Tuple[str, str]], *,
                   called: str, **headers: str) -> WebhookRequest:
    """A status callback Twilio signed for ``url``, as a receiver saw it at ``called``."""
    signature = compute_signature(sim.config.auth_token, url, params)
    return WebhookRequest(provider="twilio", kind="status", url=called,
                          headers={**FORM, "X-Twilio-Signature": signature, **headers},
                          query=parse_query(called.partition("?")[2]),
                          body=urlencode(params).encode(), client_host="127.0.0.1")


def test_the_signature_covers_the_public_url_and_the_query_as_called(
        twilio_sim: SimServer) -> None:
    sim, _ = twilio_sim
    hooked = make_provider(twilio_sim, public_url="https://sms.example.com/base",
                           webhook_secret="s3cret")
    params = status_form("SM1")
    public = "https://sms.example.com/base/webhooks/twilio/status?token=s3cret"
    # Behind a proxy: the server sees its own host, and the path without the prefix.
    seen = "http://10.0.0.5:8000/webhooks/twilio/status?token=s3cret"
    request = attrs.evolve(signed_request(sim, public, params, called=seen),
                           data=tuple(params))
    assert hooked.signed_url(request) == public
    assert hooked.verify_webhook(request) is AuthResult.OK
    (event,) = hooked.parse_webhook(request).statuses
    assert event.state is State.DELIVERED and event.provider_message_id == "SM1"
    # Another query, a tampered field, another token, no header:
    assert hooked.verify_webhook(attrs.evolve(request, url=seen.split("?")[0])) \
        is AuthResult.WRONG
    tampered = attrs.evolve(request, data=(*params[:-1], ("AccountSid", "AC" + "0" * 32)))
    assert hooked.verify_webhook(tampered) is AuthResult.WRONG
    other = compute_signature("not-the-token", public, params)
    assert hooked.verify_webhook(attrs.evolve(
        request, headers={**FORM, "X-Twilio-Signature": other})) is AuthResult.WRONG
    assert hooked.verify_webhook(attrs.evolve(request, headers=FORM)) is AuthResult.MISSING
    hooked.close()
    # Without public_url the URL as called is what Twilio signed.
    direct = make_provider(twilio_sim)
    assert direct.verify_webhook(attrs.evolve(request, url=public)) is AuthResult.OK
    assert direct.verify_webhook(request) is AuthResult.WRONG
    direct.close()
    unsigned = make_provider(twilio_sim, twilio_verify_signatures="false")
    assert unsigned.verify_webhook(attrs.evolve(request, headers=FORM)) is AuthResult.OK
    unsigned.close()
    # a typo never switches the check off: it is refused when the provider is built
    with pytest.raises(ConfigurationError, match="twilio_verify_signatures: expected a boolean"):
        make_provider(twilio_sim, twilio_verify_signatures="flase")


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, 200), ({"X-Twilio-Signature": "AAAA"}, 403), ({"X-Twilio-Signature": ""}, 401)])
def test_the_webhook_gate_checks_the_twilio_signature(
        twilio_sim: SimServer, headers: Dict[str, str], expected: int) -> None:
    sim, base = twilio_sim
    settings = twilio_settings(sim, base, public_url="https://sms.example.com",
                               webhook_secret="s3cret")
    params = status_form("SM404")
    public = "https://sms.example.com/webhooks/twilio/status?token=s3cret"
    request = signed_request(sim, public, params, called="http://127.0.0.1:8000"
                             "/webhooks/twilio/status?token=s3cret", **headers)
    with SmsKit(settings, store=MemoryStore(),
                provider=TwilioProvider.from_settings(settings)) as kit:
        response = receive(kit, request)
    assert response.status == expected, response.body
    if expected == 200:  # accepted: a status for a SID we never sent is reported unknown
        assert response.body["unknown"] == 1


def test_status_callbacks_and_a_stop_reply_reach_the_kit(
        twilio_sim: SimServer, receiver: Tuple[Receiver, str]) -> None:
    sim, base = twilio_sim
    found, hook_base = receiver
    settings = twilio_settings(sim, base, public_url=hook_base, webhook_secret="s3cret")
    sim.configure(inbound_url=f"{hook_base}/webhooks/twilio/reply?token=s3cret",
                  forced_outcomes={"+5511987654321": "delivered"})
    with SmsKit(settings, store=MemoryStore(),
                provider=TwilioProvider.from_settings(settings)) as kit:
        kit.send("+5511987654321", "Olá!")
        sim.advance()
        # STOPALL is Twilio's keyword, not one of smskit's: Twilio's word is enough.
        assert "STOPALL" not in settings.optout_keywords
        sim.add_inbound("+5511987654321", "stopall")
        # Each request Twilio made, through the webhook gate (token, then signature):
        for request in found.requests:
            url = request["url"]
            kind = url.split("/webhooks/twilio/")[1].split("?")[0]
            response = receive(kit, WebhookRequest(
                provider="twilio", kind=kind, headers=request["headers"], url=url,
                query=parse_query(url.partition("?")[2]), body=request["body"]))
            assert response.status == 200, response.body
        (message,) = [m for m in kit.store.list_messages(limit=10)
                      if m.direction is Direction.OUTBOUND]
        assert message.state is State.DELIVERED
        assert kit.store.is_blacklisted("+5511987654321")
        replies = [m for m in kit.store.list_messages(limit=10)
                   if m.direction is Direction.INBOUND]
        assert [r.body for r in replies] == ["stopall"]
        assert "optout" in [e.kind for e in kit.history(replies[0].id)]


def test_a_21610_refusal_blacklists_the_number_in_smskit(twilio_sim: SimServer) -> None:
    sim, base = twilio_sim
    sim.configure(opted_out=["+5511987654321"])
    settings = twilio_settings(sim, base)
    with SmsKit(settings, store=MemoryStore(),
                provider=TwilioProvider.from_settings(settings)) as kit:
        outcome = kit.send("+5511987654321", "Promoção")
        message = kit.get(outcome.message_id)
        assert message is not None and message.state is State.REJECTED
        assert message.error_code == "21610"
        assert kit.store.is_blacklisted("+5511987654321")
        assert "optout" in [e.kind for e in kit.history(message.id)]
        # The next message is canceled by smskit itself, without asking Twilio.
        again = kit.get(kit.send("+5511987654321", "De novo").message_id)
        assert again is not None and again.state is State.CANCELED
    assert sim.stats()["rejected"] == {"21610": 1}


# -- queries ------------------------------------------------------------------------------------

def test_balance_status_and_reply_polling(twilio_sim: SimServer,
                                          provider: TwilioProvider) -> None:
    sim, _ = twilio_sim
    assert provider.balance() == Decimal("20.00000")
    (result,) = provider.send_batch(sample_messages(1), batch_id=new_id())
    sim.advance()
    event = provider.message_status(result.provider_message_id or "")
    assert event.provider_message_id == result.provider_message_id and event.state.is_final
    before = utcnow() - dt.timedelta(seconds=5)
    sim.add_inbound("+5511987654321", "Pode ligar amanhã")
    (reply,) = provider.poll_replies(since=before)
    assert reply.phone == "+5511987654321" and reply.body == "Pode ligar amanhã"
    assert not provider.poll_replies(since=utcnow() + dt.timedelta(seconds=5))
