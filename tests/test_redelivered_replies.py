"""A reply delivered again finishes what its first delivery left undone, once.

The first delivery of a reply stores it, then applies its opt-out keyword and routes it (the
ChatRoom...). When that delivery fails after the store (a router that raised, a process killed,
an error answered so that the gateway retries), the reply is stored but not acted on. A later
delivery of the same reply (the gateway's retry, a duplicate callback, the overlap of reply
polling) used to stop at "already stored"; it now does what no event says was done, and
nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from smskit.config import Settings
from smskit.hookspecs import hookimpl
from smskit.kit import SmsKit
from smskit.models import InboundMessage, Message, utcnow
from smskit.providers.loopback import LoopbackProvider
from smskit.server.app import create_app
from smskit.store.base import EventRecord, Store
from smskit.store.memory import MemoryStore
from smskit.store.sql import SqlStore
from smskit.testing.servers import serve_in_thread
from smskit_kolmeya.testing.simulator import KolmeyaSimulator
from test_kolmeya_e2e import SECRET, TEXT, LateApp, inbound, make_kit, national, phones

PHONE = "+5511987654321"


class Chat:
    """A router whose first ``failures`` calls raise (the ChatRoom down for a moment)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self.routed: List[str] = []

    @hookimpl
    def route_inbound(self, message: Message) -> Optional[str]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("the ChatRoom did not answer")
        self.routed.append(message.body)
        return f"chat:{message.phone}"


class CountingStore(MemoryStore):
    """Counts the history reads (a redelivery reads it only when there is something to
    check)."""

    def __init__(self) -> None:
        super().__init__()
        self.history_reads = 0

    def history(self, message_id: str) -> List[EventRecord]:
        self.history_reads += 1
        return super().history(message_id)


def _kit(store: Store) -> SmsKit:
    return SmsKit(Settings.load(environ={}, provider="loopback"), store=store,
                  provider=LoopbackProvider())


def _reply(body: str = "Pode ligar amanhã?", reply_id: str = "R-1") -> InboundMessage:
    return InboundMessage(provider="loopback", phone=PHONE, body=body,
                          provider_reply_id=reply_id, received_at=utcnow())


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SqlStore(
        f"sqlite:///{tmp_path / 'sms.db'}")
    yield made
    made.close()


def test_a_reply_stored_by_a_process_that_died_is_routed_by_its_redelivery(
        store: Store) -> None:
    kit = _kit(store)
    chat = Chat()
    kit.plugins.register(chat, name="chat")
    # the first delivery's process stored the reply and died before routing it
    first = store.record_inbound(_reply())
    assert first.created and chat.routed == []

    again = kit.receive(_reply())
    assert not again.created and again.message.id == first.message.id
    assert chat.routed == ["Pode ligar amanhã?"]
    assert [e.detail for e in kit.history(first.message.id) if e.kind == "routed"] == [
        f"chat:{PHONE}"]

    kit.receive(_reply())  # a third delivery: routed already, nothing more
    assert chat.routed == ["Pode ligar amanhã?"] and chat.calls == 1


def test_a_reply_whose_router_failed_is_routed_by_its_redelivery_once(store: Store) -> None:
    kit = _kit(store)
    chat = Chat(failures=1)
    kit.plugins.register(chat, name="chat")
    outcome = kit.receive(_reply())
    assert outcome.created and chat.routed == []
    errors = [e.detail for e in kit.history(outcome.message.id) if e.kind == "hook_error"]
    assert errors == ["route_inbound: RuntimeError('the ChatRoom did not answer')"]

    for _ in range(3):
        assert not kit.receive(_reply()).created
    assert chat.routed == ["Pode ligar amanhã?"] and chat.calls == 2
    assert len(kit.store.list_messages(phone=PHONE)) == 1


def test_an_opt_out_stored_by_a_process_that_died_is_applied_by_its_redelivery_once(
        store: Store) -> None:
    kit = _kit(store)
    store.record_inbound(_reply("SAIR"))  # stored; the process died before the blacklist
    assert not kit.store.is_blacklisted(PHONE)

    outcome = kit.receive(_reply("SAIR"))
    assert not outcome.created and kit.store.is_blacklisted(PHONE)
    kit.blacklist_remove(PHONE, reason="the customer asked again")
    kit.receive(_reply("SAIR"))  # the opt-out was applied: a later delivery changes nothing
    assert not kit.store.is_blacklisted(PHONE)
    kinds = [e.kind for e in kit.history(outcome.message.id)]
    assert kinds.count("optout") == 1


def test_a_plain_repeat_reads_nothing_more() -> None:
    store = CountingStore()
    kit = _kit(store)
    kit.receive(_reply())
    kit.receive(_reply())
    assert store.history_reads == 0  # no keyword, no router: nothing to check
    kit.plugins.register(Chat(), name="chat")
    kit.receive(_reply())
    assert store.history_reads == 1


@pytest.fixture
def served(kolmeya_sim: Tuple[KolmeyaSimulator, str]
           ) -> Iterator[Tuple[SmsKit, KolmeyaSimulator, Chat]]:
    """The reference webhook server under uvicorn, its kit sending through the simulator,
    with a ChatRoom that fails its first call."""
    simulator, _ = kolmeya_sim
    late = LateApp()
    with serve_in_thread(late) as server_url:
        kit = make_kit(kolmeya_sim, MemoryStore(), public_url=server_url,
                       webhook_secret=SECRET)
        chat = Chat(failures=1)
        kit.plugins.register(chat, name="chat")
        late.app = create_app(kit)
        yield kit, simulator, chat
        kit.close()


def test_kolmeyas_duplicate_reply_callback_routes_what_the_first_could_not(
        served: Tuple[SmsKit, KolmeyaSimulator, Chat]) -> None:
    kit, simulator, chat = served
    (phone,) = phones(1)
    kit.send(phone, TEXT)
    simulator.configure(callback_duplicate_rate=1.0)
    simulator.add_reply(national(phone), "Quero remarcar")
    assert simulator.deliver_callbacks() == 2  # the reply's callback, posted twice
    (stored,) = inbound(kit, phone)
    assert chat.routed == ["Quero remarcar"] and chat.calls == 2
    kinds = [e.kind for e in kit.history(stored.id)]
    assert kinds.count("hook_error") == 1 and kinds.count("routed") == 1
    # reply polling sees it once more: nothing is routed twice
    for reply in kit.provider().poll_replies():
        assert not kit.receive(reply).created
    assert chat.calls == 2
