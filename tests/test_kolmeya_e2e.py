"""End to end: SmsKit + KolmeyaProvider over HTTP against the simulator under uvicorn.

Every fault test proves the two guarantees a user relies on: no message is lost (each ends
``sent`` or in a final state) and none is accepted twice (``simulator.accepted_references()``
counts each of our message ids once). Status callbacks and replies flow from the simulator
through the real reference webhook server (:func:`smskit.server.app.create_app`).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import httpx
import pytest

from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import Direction, Message, State, utcnow
from smskit.server.app import create_app
from smskit.store.base import Store
from smskit.store.memory import MemoryStore
from smskit.testing.servers import serve_in_thread
from smskit_kolmeya.provider import KolmeyaProvider
from smskit_kolmeya.testing.simulator import KolmeyaSimulator

SimServer = Tuple[KolmeyaSimulator, str]
SECRET = "webhook-secret-e2e"
TEXT = "Olá, sua fatura vence amanhã."


class Clock:
    """The kit's clock, moved by hand (the simulator keeps real time)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class LateApp:
    """An ASGI app whose real app is set once the server listens, so that the real app's
    settings can name the server's own URL (``public_url``)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the webhook server needs no startup work
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.app(scope, receive, send)


@pytest.fixture(params=["memory", "sql"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Store]:
    """A memory store, or a SQLite file store."""
    if request.param == "memory":
        yield MemoryStore()
        return
    from smskit.store.sql import SqlStore

    sql = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    yield sql
    sql.close()


def make_kit(sim_server: SimServer, store: Optional[Store] = None,
             clock: Optional[Clock] = None, **values: str) -> SmsKit:
    """A kit sending through the simulator (``values``: extra settings such as timeouts)."""
    simulator, base = sim_server
    settings = Settings.load(environ={}, provider="kolmeya", kolmeya_base_url=f"{base}/api/v1",
                             kolmeya_token=simulator.config.token, **values)
    return SmsKit(settings, store=store if store is not None else MemoryStore(),
                  provider=KolmeyaProvider.from_settings(settings), clock=clock or utcnow)


@pytest.fixture
def kit(kolmeya_sim: SimServer, store: Store) -> Iterator[SmsKit]:
    k = make_kit(kolmeya_sim, store)
    yield k
    k.close()


@pytest.fixture
def hooked(kolmeya_sim: SimServer,
           store: Store) -> Iterator[Tuple[SmsKit, KolmeyaSimulator, str]]:
    """A kit whose sends carry a callback URL to the reference webhook server, running."""
    simulator, _ = kolmeya_sim
    late = LateApp()
    with serve_in_thread(late) as server_url:
        k = make_kit(kolmeya_sim, store, public_url=server_url, webhook_secret=SECRET)
        late.app = create_app(k)
        yield k, simulator, server_url
        k.close()


def phones(n: int, start: int = 0) -> List[str]:
    return [f"+55119{10_000_000 + start + i:08d}" for i in range(n)]


def national(e164: str) -> str:
    return e164[3:]


def outbound(kit: SmsKit) -> List[Message]:
    return [m for m in kit.store.list_messages(limit=10_000) if m.direction is Direction.OUTBOUND]


def inbound(kit: SmsKit, phone: str) -> List[Message]:
    return [m for m in kit.store.list_messages(phone=phone, limit=100)
            if m.direction is Direction.INBOUND]


def assert_sent_once(kit: SmsKit, simulator: KolmeyaSimulator,
                     messages: Sequence[Message]) -> None:
    """Each message is ``sent`` with the simulator's ids, and was accepted exactly once."""
    by_reference = {m.reference: m for m in simulator.messages.values()}
    accepted = simulator.accepted_references()
    for message in messages:
        current = kit.get(message.id)
        assert current is not None and current.state is State.SENT, current
        assert accepted[message.id] == 1
        sim_message = by_reference[message.id]
        assert current.provider_message_id == sim_message.id
        assert current.provider_request_id == sim_message.request_id
    assert not [ref for ref, count in accepted.items() if count > 1]


# -- volume ------------------------------------------------------------------------------------

def test_2500_messages_go_out_in_three_requests(kolmeya_sim: SimServer, kit: SmsKit) -> None:
    simulator, _ = kolmeya_sim
    summary = kit.send_many(phones(2500), TEXT)

    assert (summary.total, summary.queued, summary.sent, summary.failed_dispatch) == (
        2500, 0, 2500, 0)
    requests = sorted(simulator.requests.values(), key=lambda r: r.job)
    assert [len(r.message_ids) for r in requests] == [1000, 1000, 500]
    batches = kit.store.batches(status="done")
    assert {b.id for b in batches} == {r.reference for r in requests}
    sim_messages = simulator.messages
    for request in requests:
        batch = kit.store.get_batch(request.reference)
        assert batch is not None
        assert {sim_messages[i].reference for i in request.message_ids} == set(batch.message_ids)
    sent = outbound(kit)
    assert len(sent) == 2500
    assert_sent_once(kit, simulator, sent)
    assert kit.dispatch().batches == 0


# -- faults: a request that may have arrived is reconciled, never resent blindly ---------------

@pytest.mark.parametrize(("fault", "accepted"), [
    ({"timeout_after_accept_rate": 1.0, "hang_seconds": 10.0}, True),
    ({"error_after_accept_rate": 1.0}, True),
    ({"fail_500_rate": 1.0}, False),
], ids=["timeout-after-accept", "500-after-accept", "500-before-accept"])
def test_ambiguous_send_is_reconciled_and_sent_exactly_once(
        kolmeya_sim: SimServer, store: Store, fault: Dict[str, float], accepted: bool) -> None:
    simulator, _ = kolmeya_sim
    with make_kit(kolmeya_sim, store, kolmeya_timeout="1") as kit:
        # An ordinary send first: reconciliation trusts Kolmeya's "not found" only once its
        # lookup has found a request Kolmeya accepted.
        assert kit.send(phones(1, start=50)[0], TEXT).state is State.SENT
        simulator.configure(fault_endpoints=["sms/store"], **fault)
        check_reconciled(kit, simulator, fault, accepted)


def check_reconciled(kit: SmsKit, simulator: KolmeyaSimulator, fault: Dict[str, float],
                     accepted: bool) -> None:
    """Send under ``fault``: ambiguous; then reconcile without it: sent exactly once."""
    before = {m.id for m in outbound(kit)}
    requests = len(simulator.requests)
    summary = kit.send_many(phones(3), TEXT)

    assert (summary.held, summary.sent, summary.failed_dispatch) == (3, 0, 3)
    messages = [m for m in outbound(kit) if m.id not in before]
    assert [m.state for m in messages] == [State.OUTGOING] * 3
    assert all(m.provider_message_id is None for m in messages)
    (batch,) = kit.store.batches(status="ambiguous")
    assert "reconcile" in (batch.error_text or "")
    assert sum(simulator.accepted_references().values()) == len(before) + (3 if accepted else 0)
    # While the outcome is unknown, dispatching again sends nothing.
    assert kit.dispatch().batches == 0
    assert len(simulator.requests) == requests + (1 if accepted else 0)

    simulator.configure(**{name: 0.0 for name in fault if name.endswith("_rate")})
    report = kit.reconcile()

    assert report.batches == 1 and report.still_unknown == 0
    if accepted:
        assert (report.confirmed, report.resendable) == (3, 0)
        assert kit.dispatch().batches == 0
    else:
        assert (report.confirmed, report.resendable) == (0, 3)
        assert kit.dispatch().sent == 3
    assert_sent_once(kit, simulator, messages)
    assert len(simulator.requests) == requests + 1
    assert kit.dispatch().batches == 0
    assert kit.store.batches(status="ambiguous") == []


def test_reconcile_also_brings_statuses_reached_meanwhile(kolmeya_sim: SimServer,
                                                         kit: SmsKit) -> None:
    simulator, _ = kolmeya_sim
    expected = dict(zip(phones(2), (State.DELIVERED, State.ERROR)))
    simulator.configure(error_after_accept_rate=1.0, fault_endpoints=["sms/store"],
                        forced_outcomes={national(p): 3 if s is State.DELIVERED else 4
                                         for p, s in expected.items()})
    kit.send_many(list(expected), TEXT)
    assert simulator.advance() == 2  # final at the gateway while we do not know it was sent

    simulator.configure(error_after_accept_rate=0.0)
    report = kit.reconcile()

    assert (report.confirmed, report.resendable) == (2, 0)
    for message in outbound(kit):
        assert message.state is expected[message.phone]
        assert message.provider_message_id and message.sent_at is not None
    assert sum(simulator.accepted_references().values()) == 2
    assert kit.dispatch().batches == 0


def test_429_with_short_retry_after_is_waited_out_in_process(kolmeya_sim: SimServer) -> None:
    simulator, _ = kolmeya_sim
    simulator.configure(fail_429_rate=1.0, retry_after=1, fault_endpoints=["sms/store"])
    waits: List[float] = []

    def sleep(seconds: float) -> None:  # the gateway recovers while the client waits
        waits.append(seconds)
        simulator.configure(fail_429_rate=0.0)

    settings = Settings.load(environ={}, provider="kolmeya",
                             kolmeya_base_url=f"{kolmeya_sim[1]}/api/v1",
                             kolmeya_token=simulator.config.token)
    with SmsKit(settings, store=MemoryStore(),
                provider=KolmeyaProvider.from_settings(settings, sleep=sleep)) as kit:
        summary = kit.send_many(phones(3), TEXT)

        assert waits == [1.0]  # Retry-After honoured
        assert (summary.sent, summary.failed_dispatch) == (3, 0)
        assert_sent_once(kit, simulator, outbound(kit))
        assert len(simulator.requests) == 1


def test_429_with_long_retry_after_is_rescheduled(kolmeya_sim: SimServer) -> None:
    simulator, _ = kolmeya_sim
    simulator.configure(fail_429_rate=1.0, retry_after=120, fault_endpoints=["sms/store"])
    clock = Clock()
    with make_kit(kolmeya_sim, clock=clock, kolmeya_max_retry_wait="5") as kit:
        kit.send_many(phones(3), TEXT, dispatch=False)
        report = kit.dispatch()

        assert (report.sent, report.released) == (0, 3)
        assert report.retry_at == clock.now + dt.timedelta(seconds=120)
        assert [m.state for m in outbound(kit)] == [State.OUTGOING] * 3
        assert not simulator.accepted_references() and not simulator.requests

        simulator.configure(fail_429_rate=0.0)
        assert kit.dispatch().batches == 0  # not due before Retry-After
        clock.advance(121)
        assert kit.dispatch().sent == 3
        assert_sent_once(kit, simulator, outbound(kit))
        assert kit.dispatch().batches == 0


# -- per-number refusals -------------------------------------------------------------------------

def test_refused_numbers_are_rejected_with_reasons_and_the_rest_sent(
        kolmeya_sim: SimServer, kit: SmsKit) -> None:
    simulator, _ = kolmeya_sim
    good, blocked, quiet, invalid = phones(4)
    simulator.configure(blacklist=[national(blocked)], not_disturb=[national(quiet)],
                        invalid=[national(invalid)])
    summary = kit.send_many([good, blocked, quiet, invalid, good, "12345"], TEXT)

    # Every recipient counted once, by where it ended: one sent, the rest refused (one
    # locally, four by Kolmeya: blacklist, not disturb, invalid, the same number twice).
    assert (summary.total, summary.queued, summary.rejected, summary.sent) == (6, 0, 5, 1)

    messages = {m.id: m for m in outbound(kit)}
    by_phone: Dict[str, List[Message]] = {}
    for message in messages.values():
        by_phone.setdefault(message.phone, []).append(message)
    reasons = {phone: sorted((m.state.value, m.error_code or "") for m in found)
               for phone, found in by_phone.items()}
    assert reasons == {
        good: [("rejected", "duplicate"), ("sent", "")],
        blocked: [("rejected", "blacklist")],
        quiet: [("rejected", "not_disturb")],
        invalid: [("rejected", "invalid")],
        "12345": [("rejected", "invalid_phone")],
    }
    assert by_phone[invalid][0].error_text == simulator.config.invalid_error
    assert all(m.error_text for m in messages.values() if m.state is State.REJECTED)
    # Only the one good message was accepted; the local reject never left the process.
    sent = [m for m in messages.values() if m.state is State.SENT]
    assert dict(simulator.accepted_references()) == {sent[0].id: 1}
    (request,) = simulator.requests.values()
    assert request.rejected == {"invalids": 1, "duplicates": 1, "blacklist": 1, "not_disturb": 1}
    assert kit.dispatch().batches == 0


# -- balance ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("balance_format", ["brl", "plain"])
def test_balance_decreases_by_segments_times_price(kolmeya_sim: SimServer,
                                                   balance_format: str) -> None:
    simulator, _ = kolmeya_sim
    simulator.configure(balance=Decimal("9397.30"), balance_format=balance_format)
    with make_kit(kolmeya_sim) as kit:
        provider = kit.provider()
        before = provider.balance()
        assert before == Decimal("9397.30")
        kit.send(phones(1)[0], "Oi")                                   # 1 GSM segment
        kit.send(phones(1, 1)[0], "Fatura " + "x" * 200)               # 2 GSM segments
        kit.send(phones(1, 2)[0], "Ação " * 20)                        # 2 UCS-2 segments
        messages = outbound(kit)
        segments = sum(m.segments for m in messages)

        assert [m.state for m in messages] == [State.SENT] * 3
        assert segments == 5
        spent = before - provider.balance()
        assert spent == segments * simulator.config.price_per_segment
        assert spent == sum((m.cost or Decimal(0)) for m in messages)


# -- status callbacks through the reference server ---------------------------------------------

FORCED = {3: State.DELIVERED, 4: State.ERROR, 5: State.REJECTED, 6: State.EXPIRED}


def send_forced(kit: SmsKit, simulator: KolmeyaSimulator) -> Dict[str, State]:
    """Send one message per final code (forced by number); {our id: expected final state}."""
    numbers = phones(len(FORCED))
    simulator.configure(forced_outcomes={national(p): code
                                         for p, code in zip(numbers, FORCED)})
    expected: Dict[str, State] = {}
    for phone, state in zip(numbers, FORCED.values()):
        outcome = kit.send(phone, TEXT)
        assert outcome.state is State.SENT and outcome.message_id
        expected[outcome.message_id] = state
    return expected


@pytest.mark.parametrize("shape", ["nested", "flat"])
def test_status_callbacks_reach_final_states(
        hooked: Tuple[SmsKit, KolmeyaSimulator, str], shape: str) -> None:
    kit, simulator, server_url = hooked
    simulator.configure(callback_shape=shape)
    expected = send_forced(kit, simulator)
    for request in simulator.requests.values():
        assert (request.webhook_url or "").startswith(
            f"{server_url}/webhooks/kolmeya/status?token=")

    assert simulator.advance() == len(expected)

    log = simulator.callbacks_sent
    assert len(log) == len(expected) and all(entry["status_code"] == 200 for entry in log)
    for message_id, state in expected.items():
        message = kit.get(message_id)
        assert message is not None and message.state is state
        if state is State.DELIVERED:
            assert message.delivered_at is not None and message.error_code is None
        else:
            assert message.error_code and message.error_text
    assert kit.store.orphan_events() == []


def test_duplicated_shuffled_and_late_callbacks_never_move_backwards(
        hooked: Tuple[SmsKit, KolmeyaSimulator, str]) -> None:
    kit, simulator, _ = hooked
    expected = send_forced(kit, simulator)
    simulator.configure(callbacks_on="all", callback_duplicate_rate=1.0, callback_shuffle=True)

    simulator.advance()
    # The gateway's own callbacks once more, latest first: every "enviado" (2) now arrives
    # after the final status of its message.
    log = simulator.callbacks_sent
    with httpx.Client(timeout=10) as http:
        for entry in reversed(log):
            response = http.post(entry["url"], json=entry["payload"])
            assert response.status_code == 200
            assert response.json()["applied"] == 0

    assert all(entry["ok"] for entry in log)
    assert sum(1 for entry in log if entry["duplicate"]) == len(log) // 2
    for message_id, state in expected.items():
        message = kit.get(message_id)
        assert message is not None and message.state is state
        events = [e for e in kit.history(message_id) if e.kind == "status"]
        applied = [e for e in events if e.applied]
        # "enviado" (2) and the final status, each posted twice, then all four replayed.
        assert len(events) == 8
        assert [(e.old_state, e.new_state) for e in applied] == [("sent", state.value)]
        after_final = events[events.index(applied[0]) + 1:]
        assert after_final and all(not e.applied for e in after_final)
        assert {e.new_state for e in events} == {"sent", state.value}
        assert {e.detail for e in events if not e.applied} == {
            "duplicate", f"already final ({state.value})"}


# -- replies ---------------------------------------------------------------------------------------

def test_optout_reply_by_webhook_blacklists_once_and_polling_deduplicates(
        hooked: Tuple[SmsKit, KolmeyaSimulator, str]) -> None:
    kit, simulator, _ = hooked
    first, second = phones(2)
    sent = {phone: kit.send(phone, TEXT).message_id for phone in (first, second)}
    simulator.configure(callback_duplicate_rate=1.0)

    reply = simulator.add_reply(national(first), "SAIR")
    assert simulator.deliver_callbacks() == 2  # delivered twice

    (stored,) = inbound(kit, first)
    assert stored.body == "SAIR" and stored.in_reply_to == sent[first]
    assert kit.store.is_blacklisted(first)
    # An opted-out number is never sent to again.
    assert kit.send(first, TEXT).state is State.CANCELED
    assert simulator.accepted_references()[sent[first] or ""] == 1
    assert len(simulator.requests) == 2

    # Polling fallback: the second reply's callback has not arrived (yet).
    simulator.add_reply(national(second), "Obrigado!")
    polled = kit.provider().poll_replies()
    assert sorted(r.provider_reply_id for r in polled) == sorted([str(reply["id"]), "2"])
    created = {r.phone: kit.receive(r).created for r in polled}
    assert created == {first: False, second: True}
    simulator.deliver_callbacks()  # the late webhook of a reply already polled
    for phone, body in ((first, "SAIR"), (second, "Obrigado!")):
        (only,) = inbound(kit, phone)
        assert only.body == body
    assert not kit.store.is_blacklisted(second)


def test_an_optout_from_a_number_written_before_the_ninth_digit_blocks_the_mobile(
        hooked: Tuple[SmsKit, KolmeyaSimulator, str]) -> None:
    """A Brazilian mobile written without its ninth digit is the same person: their SAIR
    must block the number smskit sends to, not a form of it no message ever goes to."""
    kit, _, server_url = hooked
    mobile = "+5511987650031"
    # A reply to a panel campaign, shaped as sms/replys-web lists it, its sender written as
    # before 2016 ("11 8765-0031").
    answer = httpx.post(f"{server_url}/webhooks/kolmeya/status?token={SECRET}", json={
        "id": 501, "job": 7, "phone": 1187650031, "parameters": {}, "reply": "SAIR",
        "message": "Campanha do painel"})
    assert answer.status_code == 200 and answer.json()["new_inbound"] == 1

    assert kit.store.is_blacklisted(mobile)
    (reply,) = inbound(kit, mobile)
    assert reply.body == "SAIR"
    refused = kit.send("(11) 98765-0031", TEXT)
    assert refused.state is State.CANCELED and "blacklist" in (refused.reason or "")
