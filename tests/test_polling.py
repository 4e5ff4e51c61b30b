"""Safety nets for lost callbacks, end to end: the Kolmeya simulator drops 30% of its
callbacks on their way to the reference webhook server; the worker's status polling brings
every message to its final state, and its reply polling brings every reply in once (also the
replies to campaigns sent from Kolmeya's panel, ``sms/replys-web``)."""

from __future__ import annotations

import datetime as dt
from typing import Iterator, List, Optional, Tuple

import attrs
import pytest

from smskit.hookspecs import hookimpl
from smskit.kit import SmsKit
from smskit.models import Direction, Message, State, StatusEvent, utcnow
from smskit.outreach.polling import PollSettings, StatusPoller
from smskit.providers.loopback import LoopbackProvider
from smskit.server.app import create_app
from smskit.store.memory import MemoryStore
from smskit.testing.servers import serve_in_thread
from smskit.worker import Worker
from smskit_kolmeya.testing.simulator import KolmeyaSimulator
from test_kolmeya_e2e import SECRET, TEXT, Clock, LateApp, make_kit, national, phones

SimServer = Tuple[KolmeyaSimulator, str]
FINAL = {1: State.SENT, 2: State.SENT, 3: State.DELIVERED, 4: State.ERROR, 5: State.REJECTED,
         6: State.EXPIRED}


class Inbox:
    """Records the inbound hooks (once per reply?) and routes every reply to a "chat"."""

    def __init__(self) -> None:
        self.received: List[str] = []
        self.routed: List[str] = []

    @hookimpl
    def message_received(self, message: Message) -> None:
        self.received.append(message.id)

    @hookimpl
    def route_inbound(self, message: Message) -> Optional[str]:
        self.routed.append(message.phone)
        return f"chat:{message.phone}"


@pytest.fixture
def hooked(kolmeya_sim: SimServer) -> Iterator[Tuple[SmsKit, KolmeyaSimulator, Clock, Inbox]]:
    """A kit whose callbacks reach the reference webhook server; its clock moves by hand."""
    simulator, _ = kolmeya_sim
    late = LateApp()
    clock = Clock()
    with serve_in_thread(late) as server_url:
        kit = make_kit(kolmeya_sim, MemoryStore(), clock, public_url=server_url,
                       webhook_secret=SECRET)
        inbox = Inbox()
        kit.plugins.register(inbox, name="inbox")
        late.app = create_app(kit)
        yield kit, simulator, clock, inbox
        kit.close()


def outbound(kit: SmsKit) -> List[Message]:
    return [m for m in kit.store.list_messages(limit=10_000)
            if m.direction is Direction.OUTBOUND]


def test_status_polling_brings_every_message_whose_callback_was_lost_to_its_final_state(
        hooked: Tuple[SmsKit, KolmeyaSimulator, Clock, Inbox]) -> None:
    kit, simulator, clock, _ = hooked
    simulator.configure(callback_shape="flat", callback_drop_rate=0.3)
    summary = kit.send_many(phones(200), TEXT)
    assert summary.sent == 200
    simulator.advance()  # every message final at Kolmeya; a third of the callbacks lost
    stuck = [m for m in outbound(kit) if m.state is State.SENT]
    assert 20 < len(stuck) < 120
    worker = Worker(kit, poll_replies=False)
    assert worker.run_once().statuses["kolmeya"].asked == 0  # not before status_poll_after
    clock.advance(901)
    passes = 0
    while any(m.state is State.SENT for m in outbound(kit)) and passes < 2:
        report = worker.run_once().statuses["kolmeya"]
        passes += 1
        assert report.error is None
    by_reference = {m.reference: m for m in simulator.messages.values()}
    for message in outbound(kit):
        assert message.state is FINAL[by_reference[message.id].status_code]
    assert passes == 1
    assert "kolmeya" not in worker.run_once().statuses  # the next pass is 300 s later
    clock.advance(301)
    assert worker.run_once().statuses["kolmeya"].asked == 0  # and nothing waits any more


def test_status_polling_falls_back_to_the_report_when_a_request_cannot_be_looked_up(
        hooked: Tuple[SmsKit, KolmeyaSimulator, Clock, Inbox]) -> None:
    kit, simulator, _, _ = hooked
    simulator.configure(callback_drop_rate=1.0)
    kit.send_many(phones(3), TEXT)
    simulator.advance()
    messages = outbound(kit)
    # As if Kolmeya had given no request id: the status report, matched by phone and text.
    events = kit.provider().poll_statuses([_without_request_id(m) for m in messages])
    by_reference = {m.reference: m for m in simulator.messages.values()}
    assert {e.message_id: e.state for e in events} == {
        m.id: FINAL[by_reference[m.id].status_code] for m in messages}


def _without_request_id(message: Message) -> Message:
    return attrs.evolve(message, provider_request_id=None)


def test_reply_polling_brings_every_lost_reply_in_once(
        hooked: Tuple[SmsKit, KolmeyaSimulator, Clock, Inbox]) -> None:
    kit, simulator, clock, inbox = hooked
    numbers = phones(60)
    kit.send_many(numbers, TEXT)
    simulator.configure(callback_drop_rate=0.3)
    for n, phone in enumerate(numbers):
        simulator.add_reply(national(phone), f"Resposta {n}")
    simulator.deliver_callbacks()
    by_webhook = len(inbox.received)
    assert 20 < by_webhook < 60
    simulator.add_web_reply(national(numbers[0]), "Quero saber mais")  # a panel campaign
    report = Worker(kit).run_once()  # the first cycle polls at once
    assert report.replies == {"kolmeya": 60 - by_webhook + 1}
    replies = [m for m in kit.store.list_messages(limit=1000) if m.direction is
               Direction.INBOUND]
    assert len(replies) == 61 and len(inbox.received) == 61  # each once, hooks once
    assert sorted(inbox.routed) == sorted([*numbers, numbers[0]])
    web = [m for m in replies if m.body == "Quero saber mais"]
    assert [(m.phone, m.in_reply_to) for m in web] == [(numbers[0], None)]
    # The dropped callbacks never come; a second cycle (300 s later) finds nothing new.
    clock.advance(301)
    assert Worker(kit).run_once().replies == {"kolmeya": 0}


class Delivers(LoopbackProvider):
    """Says every message it accepted is delivered, one message at a time."""

    def message_status(self, provider_message_id: str) -> StatusEvent:
        event = super().message_status(provider_message_id)
        return attrs.evolve(event, state=State.DELIVERED)


def test_a_provider_without_batch_polling_is_asked_one_message_at_a_time() -> None:
    store = MemoryStore()
    now = [utcnow()]
    kit = SmsKit(store=store, provider=Delivers(), clock=lambda: now[0],
                 database_url="memory://")
    kit.send_many(["+5511987654321", "+5511987654322"], "Oi")
    every = dt.timedelta(seconds=60)
    poller = StatusPoller(kit, PollSettings(status_after=every, status_every=every))
    early = poller.run("loopback", now[0] + dt.timedelta(seconds=30))
    assert early is not None and early.asked == 0  # too soon after they were sent
    assert poller.run("loopback", now[0] + dt.timedelta(seconds=61)) is None  # pass not due
    report = poller.run("loopback", now[0] + dt.timedelta(seconds=91))
    assert report is not None and (report.asked, report.changed, report.done) == (2, 2, True)
    assert {m.state for m in store.list_messages()} == {State.DELIVERED}
