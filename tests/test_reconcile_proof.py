"""Reconciliation that proves its lookup, end to end against the Kolmeya simulator.

After a send whose answer was lost, smskit asks Kolmeya about the request by our reference.
That form of ``sms/status/request`` is documented only second-hand; a gateway that answers it
404 (or 422) for every reference must not make smskit send the same SMS again. A "never
received" answer is trusted only once the same lookup found a request smskit knows Kolmeya
accepted (a witness from an ordinary send); otherwise the batch is held for a person, visible
and resolvable, and ``batch_ambiguous`` tells the plugins.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Iterator, List, Sequence, Tuple

import pytest

from smskit import AsyncSmsKit, outbox
from smskit.config import Settings
from smskit.errors import NotSupportedError, ProviderError, RequestRejectedError
from smskit.hookspecs import hookimpl
from smskit.kit import SmsKit
from smskit.models import Message, SendResult, State, utcnow
from smskit.outbox.decisions import CONFIRMED, HELD, UNKNOWN, decide_reconcile
from smskit.provider import Capabilities, Provider, ReconcileResult
from smskit.store.base import BatchInfo, Store
from smskit.store.memory import MemoryStore
from smskit.worker import Worker
from smskit_kolmeya.provider import KolmeyaProvider
from smskit_kolmeya.testing.simulator import KolmeyaSimulator

SimServer = Tuple[KolmeyaSimulator, str]
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.timezone.utc)
PHONE = "+5511987654321"
OTHER = "+5511987654322"


@pytest.fixture(params=["memory", "sql"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from smskit.store.sql import SqlStore

    sql = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    yield sql
    sql.close()


class Held:
    """Records the ``batch_ambiguous`` hook."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, str, List[str]]] = []

    @hookimpl
    def batch_ambiguous(self, batch: BatchInfo, messages: List[Message], reason: str) -> None:
        self.calls.append((batch.id, reason, [m.id for m in messages]))


class Clock:
    """The kit's clock; each worker cycle moves it on by two minutes (past the time a held
    batch waits before it is asked about again)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now


def make_kit(sim_server: SimServer, store: Store) -> Tuple[SmsKit, Held]:
    simulator, base = sim_server
    settings = Settings.load(environ={}, provider="kolmeya", kolmeya_base_url=f"{base}/api/v1",
                             kolmeya_token=simulator.config.token)
    kit = SmsKit(settings, store=store, provider=KolmeyaProvider.from_settings(settings),
                 clock=Clock())
    held = Held()
    kit.plugins.register(held, name="held-recorder")
    return kit, held


def lost_answer(simulator: KolmeyaSimulator, lookup: str) -> None:
    """Every send is accepted but answered 500; lookups by reference answer ``lookup``."""
    simulator.configure(error_after_accept_rate=1.0, fault_endpoints=["sms/store"],
                        reference_lookup=lookup)


def cycles(kit: SmsKit, count: int) -> None:
    worker = Worker(kit, poll_replies=False)
    clock = kit.clock
    assert isinstance(clock, Clock)
    for _ in range(count):
        clock.now += dt.timedelta(minutes=2)
        worker.run_once()


@pytest.mark.parametrize("lookup", ["404", "422"])
def test_an_unproven_lookup_never_sends_twice_and_holds_the_batch(
        kolmeya_sim: SimServer, store: Store, lookup: str) -> None:
    simulator, _ = kolmeya_sim
    kit, held = make_kit(kolmeya_sim, store)
    lost_answer(simulator, lookup)
    outcome = kit.send(PHONE, "Olá, sua fatura vence amanhã.")
    assert outcome.state is State.OUTGOING
    cycles(kit, 3)
    assert simulator.accepted_references()[outcome.message_id] == 1
    (batch,) = kit.held()
    assert batch.message_ids == (outcome.message_id,)
    assert "not proven" in batch.reason or lookup in batch.reason
    assert [c[2] for c in held.calls] == [[outcome.message_id]]  # once, not every cycle
    kit.close()


@pytest.mark.parametrize("lookup", ["404", "422"])
def test_a_witness_the_lookup_cannot_find_proves_nothing(kolmeya_sim: SimServer, store: Store,
                                                         lookup: str) -> None:
    simulator, _ = kolmeya_sim
    kit, _ = make_kit(kolmeya_sim, store)
    assert kit.send(OTHER, "Primeira").state is State.SENT  # a witness
    lost_answer(simulator, lookup)
    outcome = kit.send(PHONE, "Segunda")
    cycles(kit, 3)
    assert simulator.accepted_references()[outcome.message_id] == 1
    assert [b.message_ids for b in kit.held()] == [(outcome.message_id,)]
    kit.close()


def test_a_proven_lookup_confirms_what_arrived(kolmeya_sim: SimServer, store: Store) -> None:
    simulator, _ = kolmeya_sim
    kit, _ = make_kit(kolmeya_sim, store)
    lost_answer(simulator, "documented")
    outcome = kit.send(PHONE, "Olá")
    simulator.configure(error_after_accept_rate=0.0)
    cycles(kit, 2)
    message = kit.get(outcome.message_id)
    assert message is not None and message.state is State.SENT
    assert simulator.accepted_references()[outcome.message_id] == 1
    assert kit.held() == []
    kit.close()


def test_a_proven_lookup_resends_what_never_arrived_once(kolmeya_sim: SimServer,
                                                         store: Store) -> None:
    simulator, _ = kolmeya_sim
    kit, _ = make_kit(kolmeya_sim, store)
    assert kit.send(OTHER, "Primeira").state is State.SENT  # a witness
    # The request fails before Kolmeya accepts it, but smskit cannot know that.
    simulator.configure(fail_500_rate=1.0, fault_endpoints=["sms/store"])
    outcome = kit.send(PHONE, "Segunda")
    assert outcome.state is State.OUTGOING
    simulator.configure(fail_500_rate=0.0)
    cycles(kit, 2)
    message = kit.get(outcome.message_id)
    assert message is not None and message.state is State.SENT
    assert simulator.accepted_references()[outcome.message_id] == 1
    kit.close()


def test_without_a_witness_a_not_found_answer_is_held(kolmeya_sim: SimServer,
                                                      store: Store) -> None:
    simulator, _ = kolmeya_sim
    kit, _ = make_kit(kolmeya_sim, store)
    simulator.configure(fail_500_rate=1.0, fault_endpoints=["sms/store"])
    outcome = kit.send(PHONE, "Olá")
    simulator.configure(fail_500_rate=0.0)
    cycles(kit, 2)
    assert simulator.accepted_references()[outcome.message_id] == 0
    assert [b.message_ids for b in kit.held()] == [(outcome.message_id,)]
    # A later ordinary send gives a witness; the held batch is then settled by itself.
    assert kit.send(OTHER, "Outra").state is State.SENT
    cycles(kit, 1)
    message = kit.get(outcome.message_id)
    assert message is not None and message.state is State.SENT
    assert simulator.accepted_references()[outcome.message_id] == 1
    assert kit.held() == []
    kit.close()


@pytest.mark.parametrize("how", ["sent", "resend"])
def test_a_person_resolves_a_held_batch(kolmeya_sim: SimServer, store: Store,
                                        how: str) -> None:
    simulator, _ = kolmeya_sim
    kit, _ = make_kit(kolmeya_sim, store)
    lost_answer(simulator, "422")
    outcome = kit.send(PHONE, "Olá")
    cycles(kit, 1)
    (batch,) = kit.held()
    simulator.configure(error_after_accept_rate=0.0)
    resolved = kit.resolve(batch.id, sent=how == "sent")
    assert resolved == [outcome.message_id]
    cycles(kit, 1)
    message = kit.get(outcome.message_id)
    assert message is not None and message.state is State.SENT
    expected = 1 if how == "sent" else 2  # resend: the person decided it never arrived
    assert simulator.accepted_references()[outcome.message_id] == expected
    assert kit.held() == []
    kinds = [e.kind for e in kit.history(outcome.message_id)]
    assert "resolved" in kinds
    kit.close()


def test_resolving_one_message_leaves_the_rest_held(kolmeya_sim: SimServer,
                                                    store: Store) -> None:
    simulator, _ = kolmeya_sim
    kit, _ = make_kit(kolmeya_sim, store)
    lost_answer(simulator, "422")
    summary = kit.send_many([PHONE, OTHER], "Olá")
    assert summary.held == 2
    cycles(kit, 1)
    (batch,) = kit.held()
    first, second = batch.message_ids
    assert kit.resolve(first, sent=True) == [first]
    (rest,) = kit.held()
    assert rest.message_ids == (second,)
    kit.close()



# -- the asynchronous kit shares all of it -------------------------------------------------------

def make_async_kit(sim_server: SimServer, store: Store) -> Tuple[AsyncSmsKit, Held]:
    simulator, base = sim_server
    settings = Settings.load(environ={}, provider="kolmeya", kolmeya_base_url=f"{base}/api/v1",
                             kolmeya_token=simulator.config.token)
    kit = AsyncSmsKit(settings, store=store, provider=KolmeyaProvider.from_settings(settings),
                      clock=Clock())
    held = Held()
    kit.plugins.register(held, name="held-recorder")
    return kit, held


async def async_cycles(kit: AsyncSmsKit, count: int) -> None:
    clock = kit.clock
    assert isinstance(clock, Clock)
    for _ in range(count):
        clock.now += dt.timedelta(minutes=2)
        await kit.reconcile()
        await kit.dispatch()


def test_the_async_kit_holds_an_unproven_never_received_and_resolves_it(
        kolmeya_sim: SimServer, store: Store) -> None:
    simulator, _ = kolmeya_sim

    async def scenario() -> None:
        kit, held = make_async_kit(kolmeya_sim, store)
        async with kit:
            lost_answer(simulator, "404")
            outcome = await kit.send(PHONE, "Olá")
            assert (outcome.state, outcome.held) == (State.OUTGOING, True)
            await async_cycles(kit, 3)
            assert simulator.accepted_references()[outcome.message_id] == 1
            (batch,) = await kit.held()
            assert batch.message_ids == (outcome.message_id,)
            assert [c[2] for c in held.calls] == [[outcome.message_id]]
            assert await kit.resolve(batch.id, sent=True) == [outcome.message_id]
            assert await kit.held() == []
            assert simulator.accepted_references()[outcome.message_id] == 1

    asyncio.run(scenario())


def test_the_async_kit_resends_once_what_a_proven_lookup_never_saw(
        kolmeya_sim: SimServer, store: Store) -> None:
    simulator, _ = kolmeya_sim

    async def scenario() -> None:
        kit, _ = make_async_kit(kolmeya_sim, store)
        async with kit:
            assert (await kit.send(OTHER, "Primeira")).state is State.SENT  # a witness
            simulator.configure(fail_500_rate=1.0, fault_endpoints=["sms/store"])
            summary = await kit.send_many([PHONE], "Segunda")
            assert (summary.held, summary.sent) == (1, 0)
            simulator.configure(fail_500_rate=0.0)
            await async_cycles(kit, 2)
            (message,) = [m for m in await kit.to_thread(kit.store.list_messages, limit=10)
                          if m.phone == PHONE]
            assert message.state is State.SENT
            assert simulator.accepted_references()[message.id] == 1
            assert await kit.held() == []

    asyncio.run(scenario())


# -- the decision, and the crash window, without a gateway --------------------------------------

class Lookup(Provider):
    """A gateway whose lookup answers what the test says."""

    name = "fake"
    max_batch = 10
    capabilities = Capabilities(reconcile=True)

    def __init__(self) -> None:
        self.answer: Any = ReconcileResult(known=False, form="by reference")
        self.asked: List[str] = []

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        return [SendResult(message_id=m.id, state=State.SENT, provider_message_id=f"P-{m.id}")
                for m in messages]

    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        self.asked.append(batch_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        result: ReconcileResult = self.answer(batch_id, messages) if callable(self.answer) \
            else self.answer
        return result


def message(n: int) -> Message:
    return Message.new(f"+55119876{n:05d}", f"Olá {n}", state=State.OUTGOING, provider="fake")


def test_the_decision_resends_only_on_a_proven_never_received() -> None:
    messages = [message(1), message(2)]
    ids = tuple(m.id for m in messages)
    never = ReconcileResult(known=False, form="f")
    assert decide_reconcile(messages, never, proven=True).resend == ids
    held = decide_reconcile(messages, never, proven=False, why="no witness", provider="fake")
    assert (held.verdict, held.resend, held.hold) == (HELD, (), ids)
    assert "not proven: no witness" in held.reason
    part = ReconcileResult(known=True, form="f", results=[
        SendResult(message_id=messages[0].id, state=State.SENT)])
    verdict = decide_reconcile(messages, part, proven=False)
    assert ([r.message_id for r in verdict.results], verdict.hold, verdict.resend) == (
        [messages[0].id], (messages[1].id,), ())
    assert verdict.verdict == CONFIRMED
    assert decide_reconcile(messages, part, proven=True).resend == (messages[1].id,)
    refused = decide_reconcile(messages, RequestRejectedError("HTTP 422"), proven=True)
    assert (refused.verdict, refused.hold, refused.resend) == (HELD, ids, ())
    passing = decide_reconcile(messages, ProviderError("HTTP 502"), proven=True)
    assert (passing.verdict, passing.hold, passing.resend) == (UNKNOWN, ids, ())
    cannot = decide_reconcile(messages, NotSupportedError("fake", "reconcile"), proven=True)
    assert "settle it by hand" in cannot.reason and cannot.verdict == HELD


class Dies(MemoryStore):
    """A store whose process dies right after the results of a batch are written."""

    def mark_batch_ambiguous(self, batch_id: str, error_text: str) -> None:
        raise KeyboardInterrupt("the process dies here")


def test_a_death_right_after_the_results_leaves_no_message_stranded() -> None:
    store = Dies()
    gateway = Lookup()
    ids = [o.message.id for o in store.add_messages([message(1), message(2)])]
    answered = [ids[0]]
    original = gateway.send_batch
    gateway.send_batch = lambda batch, *, batch_id: [  # type: ignore
        r for r in original(batch, batch_id=batch_id) if r.message_id in answered]
    with pytest.raises(KeyboardInterrupt):
        outbox.dispatch(store, gateway, now=NOW)
    # Recording the results alone left the batch for reconciliation.
    (batch,) = store.batches(status="ambiguous")
    assert ids[1] in batch.message_ids
    assert outbox.dispatch(store, gateway, now=NOW).batches == 0  # never sent blindly


def test_a_passing_failure_of_the_probe_proves_nothing_either_way() -> None:
    store = MemoryStore()
    gateway = Lookup()
    lookups = outbox.Lookups(lambda: store)
    (first,) = [o.message for o in store.add_messages([message(1)])]
    outbox.dispatch(store, gateway, now=NOW, lookups=lookups)  # a witness
    gateway.answer = ProviderError("HTTP 503")
    assert lookups.probe(store, gateway, "by reference", NOW)[0] is False
    assert lookups.proof("fake", "by reference") is None  # nothing recorded
    lookups.probe(store, gateway, "by reference", NOW)
    assert len(gateway.asked) == 2  # and asked again at once
    gateway.answer = ReconcileResult(known=False, form="by reference")
    assert lookups.probe(store, gateway, "by reference", NOW)[0] is False
    proof = lookups.proof("fake", "by reference")
    assert proof is not None and not proof.proven
    lookups.probe(store, gateway, "by reference", NOW + dt.timedelta(seconds=30))
    assert len(gateway.asked) == 3  # a refusal is not asked again within a minute
    gateway.answer = lambda batch_id, messages: ReconcileResult(
        known=True, form="by reference", results=[
            SendResult(message_id=m.id, state=State.SENT, provider_message_id=f"P-{m.id}")
            for m in messages])
    assert lookups.probe(store, gateway, "by reference", NOW + dt.timedelta(minutes=2))[0]
    assert lookups.trusted("fake", "by reference", NOW + dt.timedelta(minutes=3))
    assert not lookups.trusted("fake", "by reference", NOW + dt.timedelta(days=2))
    assert store.get(first.id) is not None and store.get(first.id).state is State.SENT


def test_held_messages_are_counted_on_the_dashboard_and_in_the_metrics(
        kolmeya_sim: SimServer, store: Store) -> None:
    from prometheus_client import generate_latest

    from smskit.routing.status import provider_lines
    from smskit.server.metrics import ServerMetrics

    simulator, _ = kolmeya_sim
    kit, _ = make_kit(kolmeya_sim, store)
    lost_answer(simulator, "422")
    kit.send_many([PHONE, "+5511987654322"], "Olá")
    cycles(kit, 1)
    (line,) = provider_lines(kit, kit.clock())
    assert (line.provider, line.held, line.as_dict()["held"]) == ("kolmeya", 2, 2)
    text = generate_latest(ServerMetrics(kit).registry).decode()
    assert 'smskit_messages_held{provider="kolmeya"} 2.0' in text
    kit.close()
