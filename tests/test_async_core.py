"""The core AsyncSmsKit shares with SmsKit: both give the same outcomes for the same input, the
decisions on a provider's answer are plain values, routing and failover, reconciliation, webhooks,
look-ups and the plugin hooks work the same awaited; a provider without async methods runs in
a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, Dict, List, Sequence, Tuple, TypeVar

import pytest

from smskit import AsyncSmsKit, SmsKit, hookimpl
from smskit.config import Settings
from smskit.errors import (
    AmbiguousSendError,
    ConfigurationError,
    PartialSendError,
    RequestRejectedError,
    TransientProviderError,
)
from smskit.models import InboundMessage, Message, SendResult, State, utcnow
from smskit.outbox import decisions as d
from smskit.plugins import Plugins
from smskit.provider import Provider, ReconcileResult
from smskit.providers.loopback import LoopbackProvider
from smskit.store.base import BatchInfo
from smskit.store.memory import MemoryStore
from test_routing import BR, BR2, FAILOVER, Gateway, Gateways

T = TypeVar("T")
ROWS: List[Any] = ["(11) 98765-4321", {"phone": "21998765432", "nome": "Bia"}, "nope",
                   "+5511987654321", "+5531991234567", ""]


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())


def test_both_kits_give_the_same_outcomes_for_the_same_input() -> None:
    def kit_parts() -> Dict[str, Any]:
        provider = LoopbackProvider()
        provider.refuse("+5531991234567", "invalid")
        return {"database_url": "memory://", "provider": provider}

    sync_kit = SmsKit(**kit_parts())
    sync_kit.blacklist_add("+5521998765432")
    sync_outcomes: List[Any] = []
    sync_summary = sync_kit.send_many(ROWS, "Olá {{ nome }}", variables={"nome": "você"},
                                      idempotency_prefix="p", on_outcome=sync_outcomes.append)
    sync_again = sync_kit.send_many(ROWS, "Olá {{ nome }}", variables={"nome": "você"},
                                    idempotency_prefix="p")

    async def scenario() -> Tuple[Any, Any, List[Any], List[Tuple[str, State]]]:
        async with AsyncSmsKit(**kit_parts()) as kit:
            await kit.blacklist_add("+5521998765432")
            outcomes: List[Any] = []
            summary = await kit.send_many(ROWS, "Olá {{ nome }}", variables={"nome": "você"},
                                          idempotency_prefix="p", on_outcome=outcomes.append)
            again = await kit.send_many(ROWS, "Olá {{ nome }}", variables={"nome": "você"},
                                        idempotency_prefix="p")
            stored = [(m.body, m.state) for m in
                      await kit.to_thread(kit.store.list_messages, limit=100)]
            return summary, again, outcomes, stored

    summary, again, outcomes, stored = run(scenario)
    assert (summary, again) == (sync_summary, sync_again)
    # sent, blacklisted, not a phone, a repeat, refused by the gateway, blank: each recipient
    # counted once, where its message is at the end (the gateway's refusal is a rejection)
    assert (summary.sent, summary.canceled, summary.rejected, summary.duplicates) == (1, 1, 3, 1)
    assert summary.total == 6 and (again.duplicates, again.sent) == (6, 0)
    assert [(o.index, o.recipient, o.state, o.reason, o.created) for o in outcomes] == [
        (o.index, o.recipient, o.state, o.reason, o.created) for o in sync_outcomes]
    assert sorted(stored) == sorted((m.body, m.state)
                                    for m in sync_kit.store.list_messages(limit=100))
    sync_kit.close()


def test_an_unknown_provider_stores_nothing_even_without_dispatching() -> None:
    async def scenario() -> List[Message]:
        async with AsyncSmsKit(database_url="memory://", provider=LoopbackProvider()) as kit:
            for dispatch in (True, False):
                with pytest.raises(ConfigurationError, match="unknown provider 'kolmyea'"):
                    await kit.send_many(["11987654321"], "Oi", provider="kolmyea",
                                        dispatch=dispatch)
                with pytest.raises(ConfigurationError, match="unknown provider 'kolmyea'"):
                    await kit.send("11987654321", "Oi", provider="kolmyea", dispatch=dispatch)
            return await kit.to_thread(kit.store.list_messages, limit=10)

    assert run(scenario) == []


class Threaded(Provider):
    """A provider with no async methods: AsyncSmsKit runs it in a worker thread."""

    name = "threaded"
    max_batch = 10
    ambiguous_sends_need_a_person = True

    def __init__(self) -> None:
        self.threads: List[int] = []

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        self.threads.append(threading.get_ident())
        return [SendResult(message_id=m.id, state=State.SENT, provider_message_id=f"t-{m.id}")
                for m in messages]


def test_a_provider_without_async_methods_runs_off_the_event_loop() -> None:
    provider = Threaded()

    async def scenario() -> int:
        async with AsyncSmsKit(database_url="memory://", provider=provider) as kit:
            assert (await kit.send(BR, "Oi")).state is State.SENT
        return threading.get_ident()

    loop_thread = run(scenario)
    assert provider.threads and loop_thread not in provider.threads


def test_routing_and_failover_work_awaited() -> None:
    kolmeya, twilio = Gateway("kolmeya", max_batch=5), Gateway("twilio", max_batch=5)
    kolmeya.down = True
    settings = Settings.load(environ={}, provider="kolmeya", database_url="memory://",
                             **FAILOVER)
    plugins = Plugins(settings, entry_points=False)
    plugins.register(Gateways(kolmeya, twilio), name="test-gateways")

    async def scenario() -> None:
        async with AsyncSmsKit(settings, plugins=plugins) as kit:
            first = await kit.send(BR, "Olá")  # tried on kolmeya, moved, sent by twilio
            assert first.state is State.SENT
            second = await kit.send(BR2, "Olá de novo")  # the circuit is open: twilio
            assert second.state is State.SENT
            moved = await kit.get(first.message_id or "")
            assert moved is not None and moved.provider == "twilio"

    run(scenario)
    assert len(kolmeya.calls) == 1 and len(twilio.sent) == 2


class Events:
    """A plugin recording the kit it was announced to and the hooks it heard."""

    def __init__(self) -> None:
        self.ready: List[Any] = []
        self.heard: List[Tuple[str, str]] = []

    @hookimpl
    def kit_ready(self, kit: Any) -> None:
        self.ready.append(kit)

    @hookimpl
    def message_sent(self, message: Message) -> None:
        self.heard.append(("sent", message.id))

    @hookimpl
    def message_status_changed(self, message: Message, old: State, new: State) -> None:
        self.heard.append((new.value, message.id))

    @hookimpl
    def message_received(self, message: Message) -> None:
        self.heard.append(("received", message.body))


def test_status_replies_lookups_and_hooks() -> None:
    provider, events = LoopbackProvider(), Events()
    settings = Settings.load(environ={}, provider="loopback", database_url="memory://")
    plugins = Plugins(settings, entry_points=False)
    plugins.register(events, name="events")

    async def scenario() -> None:
        async with AsyncSmsKit(settings, provider=provider, plugins=plugins) as kit:
            sent = await asyncio.gather(kit.send(BR, "Oi"), kit.send(BR2, "Oi"))
            assert events.ready == [kit]  # announced once, however many calls began at once
            first = sent[0].message_id or ""
            outcome = await kit.apply_status(provider.status_event(first, State.DELIVERED))
            assert outcome.applied
            assert [o.applied for o in await kit.apply_statuses(
                [provider.status_event(first, State.DELIVERED)])] == [False]
            later = await kit.send(BR, "Depois", dispatch=False)
            canceled = await kit.cancel(later.message_id or "")
            assert canceled is not None and canceled.state is State.CANCELED
            assert [e.kind for e in await kit.history(first)][-1] == "status"
            reply = InboundMessage(provider="loopback", provider_reply_id="r1", phone=BR2,
                                   body="SAIR")
            assert (await kit.receive(reply)).created
            assert not (await kit.receive(reply)).created  # once per reply id
            blocked = await kit.send(BR2, "Oi de novo")
            assert blocked.state is State.CANCELED  # the opt-out took effect
            assert await kit.blacklist_remove(BR2) and not await kit.blacklist_remove(BR2)
            report = await kit.handle_webhook("loopback", "status",
                                              {"content-type": "application/json"},
                                              b'{"message_id": "%s", "state": "delivered"}'
                                              % (sent[1].message_id or "").encode())
            assert [s.applied for s in report.statuses] == [True]
        assert ("delivered", first) in events.heard and ("received", "SAIR") in events.heard
        assert sorted(h for h in events.heard if h[0] == "sent") == sorted(
            ("sent", o.message_id) for o in sent)

    run(scenario)


def test_an_ambiguous_send_waits_for_reconciliation() -> None:
    provider = LoopbackProvider()
    provider.fail_next(AmbiguousSendError("read timeout"), after_accept=True)

    async def scenario() -> None:
        async with AsyncSmsKit(database_url="memory://", provider=provider) as kit:
            outcome = await kit.send(BR, "Oi")
            assert outcome.state is State.OUTGOING
            assert (await kit.dispatch()).batches == 0
            report = await kit.reconcile()
            assert (report.confirmed, report.resendable) == (1, 0)
            message = await kit.get(outcome.message_id or "")
            assert message is not None and message.state is State.SENT

    run(scenario)
    assert provider.accepted_counts()[provider.sent[0].message_id] == 1


def test_a_provider_crash_marks_the_batch_ambiguous_and_is_raised() -> None:
    class Crashing(LoopbackProvider):
        async def asend_batch(self, messages: Sequence[Message], *,
                              batch_id: str) -> List[SendResult]:
            raise RuntimeError("bug in the plugin")

    async def scenario() -> None:
        async with AsyncSmsKit(database_url="memory://", provider=Crashing()) as kit:
            with pytest.raises(RuntimeError, match="bug in the plugin"):
                await kit.send(BR, "Oi")
            (batch,) = await kit.to_thread(kit.store.batches, status="ambiguous")
            assert "unexpected error" in (batch.error_text or "")

    run(scenario)


def test_closing_closes_the_providers_asynchronously() -> None:
    closed: List[str] = []

    class Closing(LoopbackProvider):
        async def aclose(self) -> None:
            closed.append(self.name)

    async def scenario() -> None:
        async with AsyncSmsKit(database_url="memory://", provider=Closing()) as kit:
            await kit.send(BR, "Oi")

    run(scenario)
    assert closed == ["loopback"]


# -- the decisions, as plain values ----------------------------------------------------------
def _claimed(*phones: str, blocked: Sequence[str] = ()) -> d.Claimed:
    messages = [Message(phone=p, body="x", state=State.OUTGOING) for p in phones]
    now = utcnow()
    return d.Claimed.check(BatchInfo(id="b1", provider="p", status="claimed", created_at=now,
                                     updated_at=now, message_ids=[m.id for m in messages]),
                           messages, blocked)


def test_decide_reads_each_answer_of_the_provider() -> None:
    claimed = _claimed(BR, BR2, blocked=[BR2])
    assert [r.message_id for r in claimed.canceled] == [claimed.messages[1].id]
    (to_send,) = claimed.to_send
    ok = [SendResult(message_id=to_send.id, state=State.SENT)]
    assert (d.decide(claimed, ok).verdict, d.decide(claimed, ok).go_on) == (d.SENT, True)
    refused = d.decide(claimed, RequestRejectedError("bad request"))
    assert (refused.verdict, refused.go_on) == (d.REFUSED, True)
    assert [(r.state, r.error_code) for r in refused.results] == [(State.REJECTED, "request")]
    released = d.decide(claimed, TransientProviderError("refused"))
    assert (released.verdict, released.unsent, released.go_on) == (d.RELEASED, (to_send,),
                                                                    False)
    assert d.decide(claimed, AmbiguousSendError("timeout")).verdict == d.AMBIGUOUS
    partial = d.decide(claimed, PartialSendError("stop", results=ok, unsent=[to_send.id]))
    assert (partial.verdict, partial.results, partial.unsent) == (d.PARTIAL, tuple(ok),
                                                                  (to_send,))
    crashed = d.decide(claimed, KeyError("x"))
    assert crashed.verdict == d.CRASHED and "unexpected error" in crashed.reason


def test_decide_reconcile_reads_each_answer_of_the_gateway() -> None:
    messages = list(_claimed(BR, BR2).messages)
    found = SendResult(message_id=messages[0].id, state=State.SENT)
    known = d.decide_reconcile(messages, ReconcileResult(known=True, results=[found]))
    assert (known.verdict, known.results, known.missing) == (d.CONFIRMED, (found,),
                                                             (messages[1].id,))
    # "Never received" is acted on only from a proven lookup; otherwise the batch is held.
    never = ReconcileResult(known=False)
    assert d.decide_reconcile(messages, never, proven=True).verdict == d.RESEND
    assert d.decide_reconcile(messages, never).verdict == d.HELD
    assert d.decide_reconcile(messages, RequestRejectedError("422")).verdict == d.HELD
    assert d.decide_reconcile(messages, TransientProviderError("down")).verdict == d.UNKNOWN
    assert d.decide_reconcile(messages, ValueError("bug")).verdict == d.CRASHED


def test_the_async_kit_is_exported_and_import_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, smskit\n"
            "assert smskit.AsyncSmsKit.__name__ == 'AsyncSmsKit'\n"
            "print(sorted(m for m in ('asyncio', 'sqlalchemy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"
    assert MemoryStore  # the memory store answers every kit above


def test_the_async_section_of_the_sending_page_runs() -> None:
    from pathlib import Path

    from docs_blocks import python_blocks, run_python

    page = Path(__file__).resolve().parents[1] / "docs" / "sending.md"
    assert any("AsyncSmsKit" in block for block in python_blocks(page))
    run_python(page)  # its asserts hold


@pytest.mark.parametrize("database", ["memory", "sqlite"])
def test_gathered_sends_each_answer_their_messages_final_state(database: str,
                                                               tmp_path: Any) -> None:
    # Small batches: most sends find their message claimed by another send's dispatch, and
    # wait for that batch rather than answer "outgoing" while it is being sent.
    url = "memory://" if database == "memory" else f"sqlite:///{tmp_path / 'g.db'}"

    async def scenario() -> None:
        for round_ in range(3):
            provider = LoopbackProvider(max_batch=3)
            async with AsyncSmsKit(database_url=url, provider=provider) as kit:
                outcomes = await asyncio.gather(*(
                    kit.send(f"+55119{30_000_000 + 100 * round_ + i:08d}", "Oi")
                    for i in range(40)))
            assert {o.state for o in outcomes} == {State.SENT}
            assert max(provider.accepted_counts().values()) == 1

    run(scenario)
